"""Argument checks shared by the helper modules: one clear TypeError/ValueError naming the argument and the rule."""

from __future__ import annotations

import math
import numbers
import os
from pathlib import Path
from typing import Callable, Iterable

import torch
from torch import Tensor, nn

__all__ = ["check_int", "check_flag", "check_module", "check_float_model", "SEED_MAX", "check_tensor",
           "check_number", "check_positive", "check_function", "check_dict", "check_selected", "linear_layers",
           "check_file"]

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


def check_flag(name: str, value: object, meaning: str = "") -> bool:
    """``value`` if it is ``True`` or ``False`` (not 0/1, not a string); ``meaning`` (e.g. ``" (True: ...)"``) goes
    into the message after "True or False"."""
    if not isinstance(value, bool):
        raise TypeError(f"{name}={value!r} must be True or False{meaning}, not {type(value).__name__}")
    return value


def describe(value: object) -> str:
    """A short description of a bad argument for an error message.

    The modules' checks share it, but it is not in ``__all__``: the exported ``describe`` is
    :func:`qhelpers.hardware.describe`, of the CPU (tests/test_architecture.py refuses one name exported twice).
    """
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


# --- tensors, numbers, functions and layer choices (the LLM-side modules: weight_only, codebook, smoothing, ...) ---

def check_tensor(name: str, value: object, *, kind: str = "float", dims: Iterable[int] | None = None,
                 shape_text: str = "") -> Tensor:
    """``value`` if it is a non-empty tensor of ``kind`` with one of ``dims`` dimensions (any if None).

    ``kind="float"``: floating point and finite (no NaN/inf); ``"int"``: integer codes or ids (not bool);
    ``"any"``: any real tensor. ``shape_text`` replaces ``"2-D"`` in the message, e.g.
    ``"2-D (out_features, in_features)"``. Checked in this order: type, dtype, dimensions, emptiness, finiteness.
    """
    if not isinstance(value, Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, not {describe(value)}")
    if value.is_quantized:
        raise TypeError(f"{name} is a PyTorch quantized tensor ({value.dtype}); pass {name}.dequantize()")
    if kind == "float" and not value.is_floating_point():
        raise TypeError(f"{name} must be a floating-point tensor, got dtype {value.dtype}; convert it with .float()")
    if kind == "int" and (value.is_floating_point() or value.is_complex() or value.dtype == torch.bool):
        raise TypeError(f"{name} must be an integer tensor, got dtype {value.dtype}")
    if kind == "any" and (value.is_complex() or value.dtype == torch.bool):
        raise TypeError(f"{name} must be a real tensor, got dtype {value.dtype}")
    dims = tuple(dims) if dims is not None else None
    if dims is not None and value.dim() not in dims:
        want = shape_text or " or ".join(f"{d}-D" for d in dims)
        raise ValueError(f"{name} must be {want}, got shape {tuple(value.shape)}")
    if value.numel() == 0:
        raise ValueError(f"{name} is empty (shape {tuple(value.shape)}): pass a tensor with at least one element")
    if value.is_floating_point():
        finite = torch.isfinite(value.detach())
        if not bool(finite.all()):
            raise ValueError(f"{name} holds {int((~finite).sum())} NaN/inf value(s); find where they come from "
                             "(an overflow in FP16? a division by zero?) first")
    return value


def check_number(name: str, value: object, lo: float | None = None, hi: float | None = None) -> float:
    """``value`` as a float if it is a real number (not a bool) with ``lo <= value <= hi`` (NaN never is)."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a number, not {describe(value)}")
    v = float(value)
    if math.isnan(v) or (lo is not None and v < lo) or (hi is not None and v > hi):
        raise ValueError(f"{name}={value} must lie in [{lo if lo is not None else '-inf'}, {hi if hi is not None else 'inf'}]")
    return v


def check_positive(name: str, value: object) -> float:
    """``value`` as a float if it is a real number (not a bool), above 0 and finite."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a number, not {describe(value)}")
    v = float(value)
    if not (math.isfinite(v) and v > 0):
        raise ValueError(f"{name}={value} must be a positive, finite number")
    return v


def check_function(name: str, value: object, signature: str) -> Callable:
    """``value`` if it is callable; ``signature`` (e.g. ``"(name, module) -> bool"``) goes into the message."""
    if not callable(value):
        raise TypeError(f"{name} must be a function {signature}, not {describe(value)}")
    return value


def check_dict(name: str, value: object, example: str) -> dict:
    """``value`` if it is a non-empty dict; ``example`` (e.g. ``"{'h.0.mlp.c_fc': s}"``) goes into the message."""
    if not isinstance(value, dict):
        raise TypeError(f"{name} must be a dict, e.g. {example}, not {describe(value)}")
    if not value:
        raise ValueError(f"{name} is empty: there is nothing to do; give e.g. {example}")
    return value


def linear_layers(model: nn.Module) -> str:
    """``"its nn.Linear layers are a, b, c"`` (the first eight), or ``"it has no nn.Linear layer"``: for messages."""
    names = [n or "(the model itself)" for n, m in model.named_modules() if isinstance(m, nn.Linear)]
    if not names:
        return "it has no nn.Linear layer"
    more = f", ... ({len(names)} in all)" if len(names) > 8 else ""
    return f"its nn.Linear layers are {', '.join(names[:8])}{more}"


def check_selected(names: list[str], model: nn.Module, include: Callable, what: str = "include") -> list[str]:
    """``names`` if ``include`` chose at least one layer; else a ValueError naming ``include`` and the Linear layers."""
    if names:
        return names
    label = getattr(include, "__name__", type(include).__name__)
    doc = (getattr(include, "__doc__", None) or "").strip().splitlines() if label != "<lambda>" else []
    about = f" ({doc[0].replace('``', '').rstrip('.')})" if doc else ""
    raise ValueError(f"{what}={label}{about} selected no layer of the {type(model).__name__}; {linear_layers(model)}. "
                     f"Pass {what}=lambda name, module: ... choosing the layers to use")


def check_file(path: object, what: str = "path", *, exists: bool) -> Path:
    """``path`` as a ``Path``: with ``exists``, a file to read (it must be there); else a file to write (its folder must
    be there). A TypeError for a path that is not a str or ``os.PathLike``, a FileNotFoundError otherwise."""
    if not isinstance(path, (str, os.PathLike)):
        raise TypeError(f"{what} must be a file path (str or pathlib.Path), not {describe(path)}")
    p = Path(path)
    if exists and not p.is_file():
        raise FileNotFoundError(f"{what} {p} does not exist (or is not a file): save the model there first")
    if not exists and not p.parent.is_dir():
        raise FileNotFoundError(f"the folder {p.parent} does not exist: create it first")
    return p
