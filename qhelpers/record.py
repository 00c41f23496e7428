"""``record(name, value)``: a notebook's key results, shown and saved for the book runner.

Each call prints one line ``[record] name = value`` and, when the environment
variable ``QHELPERS_RESULTS`` names a JSON file (the book runner sets it for
each chapter), merges ``{name: value}`` into that file. Values are kept at full
precision in the file; the printed line rounds floats to 4 significant digits.
"""

from __future__ import annotations

import json
import math
import os
import re
import tempfile
from pathlib import Path
from typing import Union

__all__ = ["record", "RESULTS_ENV", "read_results"]

RESULTS_ENV = "QHELPERS_RESULTS"
Value = Union[bool, int, float, str, list, dict, None]
_NAME = re.compile(r"^[a-z][a-z0-9_]*$")


def _check(value: Value, name: str) -> None:
    if isinstance(value, float) and not math.isfinite(value):
        raise ValueError(f"record({name!r}): value {value} is not finite")
    try:
        json.dumps(value, allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise TypeError(
            f"record({name!r}): value of type {type(value).__name__} is not JSON-serializable; "
            "pass a number, string, bool, or a list/dict of them (use float(t) for a tensor)"
        ) from exc


def _fmt(value: Value) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return json.dumps(value)


def read_results(path: Path | str) -> dict[str, Value]:
    """The ``{name: value}`` results saved in ``path`` ({} if the file does not exist)."""
    path = Path(path)
    return json.loads(path.read_text()) if path.is_file() else {}


def record(name: str, value: Value) -> Value:
    """Show a key result and save it where the book runner collects it; returns ``value``."""
    if not isinstance(name, str) or not _NAME.match(name):
        raise ValueError(f"record name {name!r} must be snake_case: lowercase letters, digits and '_'")
    if hasattr(value, "item") and not isinstance(value, (list, dict)):
        value = value.item()  # a 0-d tensor or NumPy scalar
    _check(value, name)
    target = os.environ.get(RESULTS_ENV)
    if target:
        path = Path(target)
        path.parent.mkdir(parents=True, exist_ok=True)
        results = read_results(path)
        results[name] = value
        with tempfile.NamedTemporaryFile("w", dir=path.parent, suffix=".tmp", delete=False) as tmp:
            json.dump(results, tmp, indent=2, sort_keys=True)
        os.replace(tmp.name, path)
    print(f"[record] {name} = {_fmt(value)}")
    return value
