"""Argument checks shared by the helper modules: one clear TypeError/ValueError naming the argument and the rule."""

from __future__ import annotations

import numbers

__all__ = ["check_int"]


def check_int(name: str, value: object, lo: int, hi: int | None = None) -> int:
    """``value`` as an int if it is one (not a bool, not a float) with ``lo <= value`` (and ``<= hi`` if given)."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name}={value!r} must be an int, not {type(value).__name__}")
    if value < lo or (hi is not None and value > hi):
        raise ValueError(f"{name}={value} must be " + (f"at least {lo}" if hi is None else f"between {lo} and {hi}"))
    return int(value)
