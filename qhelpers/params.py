"""Checks for a notebook's validation cell: a bad parameter stops the notebook with a clear message.

Call them right after the ``parameters`` cell, e.g.::

    check_choice("dataset", dataset, ["mnist", "fashion-mnist"])
    check_range("bits", bits, 2, 8)

Each raises ``ValueError`` saying what was wrong and what to do, and returns
the value so a check can be written inline.
"""

from __future__ import annotations

import math
from typing import Any, Iterable

__all__ = ["check_choice", "check_range", "check_type"]

_HOW = "set it in the parameters cell, or pass e.g. `-p {name}=...` to `python -m qhelpers.book run`"


def _show(value: Any) -> str:
    return repr(value) if isinstance(value, str) else str(value)


def check_type(name: str, value: Any, kind: type | tuple[type, ...]) -> Any:
    """``value`` if it is an instance of ``kind`` (``bool`` is not accepted as an ``int``), else ``ValueError``."""
    kinds = kind if isinstance(kind, tuple) else (kind,)
    ok = isinstance(value, kinds) and not (isinstance(value, bool) and bool not in kinds)
    if float in kinds and isinstance(value, int) and not isinstance(value, bool):
        ok = True  # an int is a fine float
    if not ok:
        names = " or ".join(k.__name__ for k in kinds)
        raise ValueError(f"parameter {name} = {_show(value)} must be of type {names}, not {type(value).__name__}; " + _HOW.format(name=name))
    return value


def check_choice(name: str, value: Any, allowed: Iterable[Any]) -> Any:
    """``value`` if it is one of ``allowed``, else ``ValueError`` listing the choices."""
    allowed = list(allowed)
    if not any(a == value and isinstance(a, bool) == isinstance(value, bool) for a in allowed):
        choices = ", ".join(_show(a) for a in allowed)
        raise ValueError(f"parameter {name} = {_show(value)} is not allowed: choose one of {choices}; " + _HOW.format(name=name))
    return value


def check_range(name: str, value: Any, lo: float | None = None, hi: float | None = None) -> Any:
    """``value`` if it is a finite number with ``lo <= value <= hi`` (``None`` = unbounded), else ``ValueError``."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError(f"parameter {name} = {_show(value)} must be a number; " + _HOW.format(name=name))
    if isinstance(value, float) and not math.isfinite(value):
        raise ValueError(f"parameter {name} = {value} must be a finite number; " + _HOW.format(name=name))
    if (lo is not None and value < lo) or (hi is not None and value > hi):
        bounds = f"[{'-inf' if lo is None else lo}, {'inf' if hi is None else hi}]"
        raise ValueError(f"parameter {name} = {value} is out of range: it must lie in {bounds}; " + _HOW.format(name=name))
    return value
