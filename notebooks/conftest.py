"""nbval settings for the committed notebooks, so that plain ``pytest --nbval notebooks/`` is enough.

- the kernel is the Python running pytest (no kernelspec surprises);
- outputs pass through ``sanitize.cfg`` (recorded values, timings, addresses, paths);
- stderr (progress bars, warnings) is kept out of the comparison.
"""

from pathlib import Path

import pytest

HERE = Path(__file__).parent


def pytest_configure(config: pytest.Config) -> None:
    if not getattr(config.option, "nbval", False):
        return
    config.option.nbval_current_env = True
    if not config.option.nbval_sanitize_with:
        config.option.nbval_sanitize_with = str(HERE / "sanitize.cfg")
    if not config.option.nbval_cell_timeout:
        config.option.nbval_cell_timeout = 1800


def pytest_collectstart(collector: pytest.Collector) -> None:
    if hasattr(collector, "skip_compare") and "stderr" not in collector.skip_compare:
        collector.skip_compare = (*collector.skip_compare, "stderr")
