"""Lower-precision copies of a trained float model: FP16/BF16 casts and dynamic INT8.

Every converter returns a *new* model and leaves its input untouched:

- :func:`to_dtype` casts all weights to FP16 or BF16 (``.half()`` /
  ``.to(torch.bfloat16)``) and wraps the model so it still takes and returns
  float32 tensors; :class:`Autocast` keeps FP32 weights and runs the forward
  pass under ``torch.autocast("cpu", ...)``.
- :func:`dynamic_int8` quantizes the ``nn.Linear`` layers to INT8 with either
  ``torch.ao.quantization.quantize_dynamic`` (deprecated) or torchao's
  ``quantize_`` with ``Int8DynamicActivationInt8WeightConfig`` /
  ``Int8WeightOnlyConfig`` (a :class:`DynamicBackend`).

torchao stores a quantized weight as a tensor *subclass* (``Int8Tensor``):
measure it with :func:`qhelpers.bench.payload_bytes` / :func:`qhelpers.bench.storage`,
which look inside it.

Converters take a float model (not one already quantized: that would
quantize twice or fail inside torchao) and known dtypes/backends; bad
arguments raise a ValueError or TypeError saying what to pass.
"""

from __future__ import annotations

import copy
from enum import Enum
from typing import Any, Callable

import torch
from torch import nn

from .checks import check_float_model, check_module
from .formats import check_float_dtype

__all__ = ["CastInputs", "to_dtype", "Autocast", "DynamicBackend", "dynamic_int8", "variants"]


def _check_callable(name: str, fn: object, example: str) -> None:
    if fn is not None and not callable(fn):
        raise TypeError(f"{name} must be a function, e.g. {example}, or None; got {type(fn).__name__} {fn!r}")


class CastInputs(nn.Module):
    """Runs ``model`` on inputs cast to ``dtype`` and returns float32: a drop-in for the FP32 model."""

    def __init__(self, model: nn.Module, dtype: torch.dtype) -> None:
        super().__init__()
        check_module(model)
        check_float_dtype(dtype)
        self.model = model
        self.dtype = dtype

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x.to(self.dtype)).float()


_HALF_DTYPES = {"fp16": torch.float16, "bf16": torch.bfloat16, torch.float16: torch.float16, torch.bfloat16: torch.bfloat16}


def _half_dtype(dtype: Any) -> torch.dtype:
    if dtype not in _HALF_DTYPES:
        raise ValueError(f"dtype must be torch.float16 or torch.bfloat16 (or 'fp16'/'bf16'), got {dtype!r}")
    return _HALF_DTYPES[dtype]


def to_dtype(model: nn.Module, dtype: torch.dtype | str) -> CastInputs:
    """A copy of ``model`` with every parameter and buffer in FP16 or BF16, taking float32 inputs.

    Same as ``copy.deepcopy(model).half()`` (or ``.to(torch.bfloat16)``) plus the
    input cast; ``.model`` is the converted network itself.
    """
    check_float_model(model)
    dt = _half_dtype(dtype)
    return CastInputs(copy.deepcopy(model).to(dt).eval(), dt)


class Autocast(nn.Module):
    """FP32 weights, forward pass under ``torch.autocast('cpu', dtype)``: matmuls and convs run in ``dtype``.

    Nothing is smaller on disk; autocast is about compute, and casts weights on the fly.
    The output is returned as float32.
    """

    def __init__(self, model: nn.Module, dtype: torch.dtype | str = torch.bfloat16) -> None:
        super().__init__()
        check_module(model)
        self.model = model
        self.dtype = _half_dtype(dtype)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        with torch.autocast("cpu", dtype=self.dtype):
            return self.model(x).float()


class DynamicBackend(Enum):
    """Which library converts the ``nn.Linear`` layers to INT8, and how (see :func:`dynamic_int8`)."""

    TORCH_AO = "torch.ao"  # quantize_dynamic: DynamicQuantizedLinear, INT8 activations per batch
    TORCHAO_DYNAMIC = "torchao-dynamic"  # Int8DynamicActivationInt8WeightConfig: INT8 activations per token
    TORCHAO_WEIGHT_ONLY = "torchao-weight-only"  # Int8WeightOnlyConfig: INT8 weights, float matmul

    @classmethod
    def _missing_(cls, value: object) -> "DynamicBackend":
        raise ValueError(f"unknown backend {value!r}; choose one of {', '.join(f'DynamicBackend.{b.name}' for b in cls)}")


def _is_linear(module: nn.Module, fqn: str) -> bool:
    return isinstance(module, nn.Linear)


def dynamic_int8(
    model: nn.Module,
    backend: DynamicBackend = DynamicBackend.TORCHAO_DYNAMIC,
    *,
    filter_fn: Callable[[nn.Module, str], bool] | None = None,
) -> nn.Module:
    """A copy of ``model`` whose ``nn.Linear`` layers hold INT8 weights.

    - ``DynamicBackend.TORCH_AO``: ``torch.ao.quantization.quantize_dynamic(m, {nn.Linear}, dtype=torch.qint8)``;
      Linear becomes ``DynamicQuantizedLinear`` (per-tensor INT8 weight, packed for fbgemm);
      activations are quantized to INT8 on the fly, per batch.
    - ``DynamicBackend.TORCHAO_DYNAMIC``: ``quantize_(m, Int8DynamicActivationInt8WeightConfig())``;
      the Linear stays, its weight becomes an ``Int8Tensor`` (per-row INT8 + scales),
      activations are quantized per token on the fly.
    - ``DynamicBackend.TORCHAO_WEIGHT_ONLY``: ``quantize_(m, Int8WeightOnlyConfig())``; INT8 weights,
      dequantized for a float matmul (saves memory, not arithmetic).

    ``filter_fn(module, fqn)`` chooses which Linear layers to convert (all by default).
    Convolutions are never touched: they need static quantization (chapters 04-05).
    """
    check_module(model)
    if not isinstance(backend, DynamicBackend):
        raise TypeError(f"backend must be a DynamicBackend, e.g. DynamicBackend.TORCHAO_DYNAMIC, not {backend!r}; "
                        f"choose one of {', '.join(f'DynamicBackend.{b.name}' for b in DynamicBackend)}")
    _check_callable("filter_fn", filter_fn, "lambda module, fqn: fqn != 'fc2'")
    check_float_model(model)
    m = copy.deepcopy(model).eval()
    keep = filter_fn or _is_linear
    if backend is DynamicBackend.TORCH_AO:
        from torch.ao.quantization import quantize_dynamic

        names = {name for name, mod in m.named_modules() if isinstance(mod, nn.Linear) and keep(mod, name)}
        if not names:
            return m
        return quantize_dynamic(m, names, dtype=torch.qint8)
    from torchao.quantization import Int8DynamicActivationInt8WeightConfig, Int8WeightOnlyConfig, quantize_

    config = Int8DynamicActivationInt8WeightConfig() if backend is DynamicBackend.TORCHAO_DYNAMIC else Int8WeightOnlyConfig()
    quantize_(m, config, filter_fn=lambda mod, fqn: isinstance(mod, nn.Linear) and keep(mod, fqn))
    return m


def variants(model: nn.Module, *, autocast: bool = False) -> dict[str, nn.Module]:
    """The lineup of lower-precision copies: FP32, FP16, BF16 (and BF16 autocast), INT8 via torch.ao and via torchao (two configs)."""
    check_float_model(model)
    if not isinstance(autocast, bool):
        raise TypeError(f"autocast={autocast!r} must be True or False, not {type(autocast).__name__}")
    out: dict[str, nn.Module] = {
        "FP32": copy.deepcopy(model).eval(),
        "FP16": to_dtype(model, torch.float16),
        "BF16": to_dtype(model, torch.bfloat16),
    }
    if autocast:
        out["BF16 autocast"] = Autocast(copy.deepcopy(model).eval(), torch.bfloat16)
    out["INT8 dynamic (torch.ao)"] = dynamic_int8(model, DynamicBackend.TORCH_AO)
    out["INT8 dynamic (torchao)"] = dynamic_int8(model, DynamicBackend.TORCHAO_DYNAMIC)
    out["INT8 weight-only (torchao)"] = dynamic_int8(model, DynamicBackend.TORCHAO_WEIGHT_ONLY)
    return out
