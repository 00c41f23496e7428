"""Argument checks shared by the helper modules: one clear TypeError/ValueError naming the argument and the rule."""

from __future__ import annotations

import numbers

import torch
from torch import Tensor, nn

__all__ = ["check_int", "check_flag", "check_module", "check_float_model", "describe", "SEED_MAX"]

SEED_MAX = 2**32 - 1  # NumPy's limit, so that one seed works for every library the course seeds


def check_int(name: str, value: object, lo: int | None = None, hi: int | None = None, *, hint: str = "") -> int:
    """``value`` as an int if it is one (not a bool, not a float) with ``lo <= value <= hi`` (``None``: unbounded).

    ``hint`` is added to the message, e.g. ``"; e.g. PerGroup(32)"``.
    """
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name}={value!r} must be an int, not {type(value).__name__}{hint}")
    if (lo is not None and value < lo) or (hi is not None and value > hi):
        rule = f"between {lo} and {hi}" if lo is not None and hi is not None else f"at least {lo}" if lo is not None \
            else f"at most {hi}"
        raise ValueError(f"{name}={value} must be {rule}{hint}")
    return int(value)


def check_flag(name: str, value: object) -> bool:
    """``value`` if it is ``True`` or ``False`` (not 0/1, not a string)."""
    if not isinstance(value, bool):
        raise TypeError(f"{name}={value!r} must be True or False, not {type(value).__name__}")
    return value


def describe(value: object) -> str:
    """A short description of a bad argument for an error message."""
    if isinstance(value, Tensor):
        return f"a {value.dtype} tensor of shape {tuple(value.shape)}"
    if isinstance(value, nn.Module):
        return f"a {type(value).__name__} module"
    return f"{type(value).__name__} {value!r}".splitlines()[0][:80]


def check_module(model: object, what: str = "model") -> nn.Module:
    """``model`` if it is an ``nn.Module``."""
    if not isinstance(model, nn.Module):
        raise TypeError(f"{what} must be a torch.nn.Module, not {describe(model)}")
    return model


def _quantized_part(model: nn.Module) -> str | None:
    """Where ``model`` shows it was already prepared or quantized (a sentence), or None for a float model."""
    for name, mod in model.named_modules():
        cls, where = type(mod), name or "the model itself"
        torchao_observer = cls.__module__.startswith("torchao.quantization.pt2e") and (
            "Observer" in cls.__name__ or "FakeQuant" in cls.__name__)
        if isinstance(mod, (torch.ao.quantization.ObserverBase, torch.ao.quantization.FakeQuantizeBase)) or torchao_observer:
            return f"it is already prepared for quantization ({where} is a {cls.__name__})"
        if cls.__module__.startswith(("torch.ao.nn.quantized", "torch.ao.nn.intrinsic.quantized", "torch.ao.nn.qat",
                                      "torch.ao.nn.intrinsic.qat")) and cls.__name__ != "FloatFunctional":
            return f"it is already quantized ({where} is a {mod._get_name()})"
    for name, t in [*model.named_parameters(), *model.named_buffers()]:
        if t.is_quantized:
            return f"it is already quantized ({name} is a {t.dtype} tensor)"
        if type(t) not in (Tensor, nn.Parameter) and hasattr(t, "__tensor_flatten__"):
            return f"it is already quantized ({name} is a {type(t).__name__}, a quantized tensor subclass)"
    if isinstance(model, torch.fx.GraphModule):
        for node in model.graph.nodes:
            if node.op == "call_function" and "quantize_per_" in str(node.target):
                return f"it is already quantized (its graph calls {node.target})"
    return None


def check_float_model(model: object, what: str = "model") -> nn.Module:
    """``model`` if it is a float ``nn.Module``, not yet prepared (observers, fake quantization) or quantized.

    Every quantization flow starts from the float model; given a prepared or
    converted one it would quantize twice or fail deep inside PyTorch. Raises
    ``TypeError`` for something that is not a module, ``ValueError`` naming
    the first quantized part otherwise.
    """
    check_module(model, what)
    part = _quantized_part(model)
    if part:
        raise ValueError(f"{what} is not a float model: {part}. Pass the float model it was made from")
    return model
