"""environment.yml and pyproject.toml pin the same versions; repro.setup does what it says."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import pytest
import torch
import yaml

ROOT = Path(__file__).resolve().parents[1]


def _pins_pyproject() -> dict[str, str]:
    deps = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    return dict(re.fullmatch(r"([A-Za-z0-9_.-]+)==(\S+)", d).groups() for d in deps)  # type: ignore[union-attr]


def _pins_environment() -> dict[str, str]:
    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    pip = next(d["pip"] for d in env["dependencies"] if isinstance(d, dict) and "pip" in d)
    return dict(p.split("==") for p in pip if "==" in p)


def test_every_dependency_is_pinned_exactly():
    deps = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    assert all("==" in d for d in deps), [d for d in deps if "==" not in d]


def test_environment_yml_matches_pyproject():
    assert _pins_environment() == _pins_pyproject()


def test_environment_yml_python_matches():
    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    assert "python=3.11" in env["dependencies"]


def test_installed_versions_are_the_pinned_ones():
    from importlib.metadata import version

    for name in ("torch", "torchvision", "torchao"):
        assert version(name).split("+")[0] == _pins_pyproject()[name]


def test_setup_fixes_threads_seed_and_engine():
    from qhelpers.course import setup

    line = setup(seed=5, threads=1)
    a = torch.rand(3)
    setup(seed=5, threads=2)
    assert torch.equal(a, torch.rand(3))
    assert torch.get_num_threads() == 2 and torch.backends.quantized.engine == "x86"
    assert "seed 5" in line
    with pytest.raises(ValueError, match="not supported"):
        setup(engine="nonsense")
