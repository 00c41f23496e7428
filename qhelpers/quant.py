"""Affine quantization written from plain tensor ops.

This is the math the concepts chapter teaches, kept small on purpose and
tested bit for bit against PyTorch's own kernels (``torch.quantize_per_tensor``,
``torch.quantize_per_channel``, ``torch.fake_quantize_per_*_affine`` and the
``MinMaxObserver`` qparams).

The map between a real number ``x`` and an integer ``q`` is::

    q = clamp(round(x / scale) + zero_point, quant_min, quant_max)
    x_hat = (q - zero_point) * scale

Three public verbs, as in torchao: :func:`choose_qparams`, :func:`quantize`,
:func:`dequantize`; plus :func:`fake_quantize` (quantize then dequantize, in
float, with a straight-through gradient) and the error metrics :func:`mse`,
:func:`sqnr_db` and :func:`max_abs_error`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from enum import Enum
from typing import Union

import torch

__all__ = [
    "MappingType",
    "PerTensor",
    "PerChannel",
    "PerGroup",
    "Granularity",
    "QParams",
    "quant_range",
    "choose_qparams",
    "quantize",
    "dequantize",
    "fake_quantize",
    "mse",
    "sqnr_db",
    "max_abs_error",
]

MIN_BITS, MAX_BITS = 2, 16
# The smallest scale allowed, as in torch.ao.quantization's observers.
EPS = torch.finfo(torch.float32).eps


class MappingType(Enum):
    """How the float range is mapped onto the integer range.

    SYMMETRIC: the range is ``[-a, a]`` with ``a = max(|min|, |max|)``, so zero
    maps to the middle of the integer range. Example: float range (-3.5, 10.2)
    to int8 (-128, 127) gives ``scale = 10.2 / 127.5 = 0.08`` and
    ``zero_point = 0``; the negative half of the grid below -3.5 is wasted.

    ASYMMETRIC: the range is ``[min, max]`` (always widened to include 0, so
    that zero is exactly representable). The same range to uint8 (0, 255) gives
    ``scale = 13.7 / 255 = 0.0537`` and ``zero_point = round(3.5 / 0.0537) = 65``.
    """

    SYMMETRIC = "symmetric"
    ASYMMETRIC = "asymmetric"


@dataclass(frozen=True)
class PerTensor:
    """One scale and zero-point for the whole tensor."""


@dataclass(frozen=True)
class PerChannel:
    """One scale and zero-point per slice along ``axis`` (output channels are axis 0)."""

    axis: int = 0


@dataclass(frozen=True)
class PerGroup:
    """One scale and zero-point per ``group_size`` consecutive elements of each row.

    The tensor is viewed as rows along its last dimension, which must be a
    multiple of ``group_size`` (torchao's int4 weight-only layout).
    """

    group_size: int


Granularity = Union[PerTensor, PerChannel, PerGroup]


@dataclass(frozen=True)
class QParams:
    """Everything needed to quantize and dequantize: the grid and where zero sits."""

    scale: torch.Tensor  # float32; shape () per tensor, (C,) per channel, (rows, groups) per group
    zero_point: torch.Tensor  # int64, same shape as scale
    quant_min: int
    quant_max: int
    granularity: Granularity = PerTensor()

    @property
    def bits(self) -> int:
        return int(math.log2(self.quant_max - self.quant_min + 1))


def quant_range(bits: int, signed: bool) -> tuple[int, int]:
    """Integer range for ``bits`` bits: signed is ``[-2**(b-1), 2**(b-1)-1]``, unsigned ``[0, 2**b-1]``.

    >>> quant_range(8, signed=True)
    (-128, 127)
    >>> quant_range(4, signed=False)
    (0, 15)
    """
    if isinstance(bits, bool) or not isinstance(bits, int):
        raise TypeError(f"bits must be an int between {MIN_BITS} and {MAX_BITS}, got {bits!r}")
    if not MIN_BITS <= bits <= MAX_BITS:
        raise ValueError(
            f"bits={bits} is outside the supported range {MIN_BITS}-{MAX_BITS}; "
            "pick a bit-width such as 8 (INT8) or 4 (INT4)."
        )
    if signed:
        return -(2 ** (bits - 1)), 2 ** (bits - 1) - 1
    return 0, 2**bits - 1


def _check_float(x: torch.Tensor, what: str = "x") -> None:
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{what} must be a torch.Tensor, got {type(x).__name__}")
    if not x.is_floating_point():
        raise TypeError(f"{what} must be a floating-point tensor, got dtype {x.dtype}; convert it with .float()")
    if x.numel() == 0:
        raise ValueError(f"{what} is empty: there is nothing to quantize")
    if not torch.isfinite(x).all():
        n_bad = int((~torch.isfinite(x)).sum())
        raise ValueError(
            f"{what} holds {n_bad} NaN/inf value(s); quantization needs finite numbers. "
            "Find where they come from (an overflow in FP16? a division by zero?) before quantizing."
        )


def _reduce_dims(x: torch.Tensor, granularity: Granularity) -> torch.Tensor:
    """``x`` reshaped so that each row holds the elements that share one scale."""
    if isinstance(granularity, PerTensor):
        return x.reshape(1, -1)
    if isinstance(granularity, PerChannel):
        axis = granularity.axis % x.dim() if x.dim() else 0
        return x.movedim(axis, 0).reshape(x.shape[axis], -1)
    if isinstance(granularity, PerGroup):
        g = granularity.group_size
        if g <= 0 or x.shape[-1] % g:
            raise ValueError(
                f"PerGroup(group_size={g}) needs the last dimension ({x.shape[-1]}) to be a positive multiple of it"
            )
        return x.reshape(-1, g)
    raise TypeError(f"unknown granularity {granularity!r}; use PerTensor(), PerChannel(axis) or PerGroup(size)")


def _qparams_shape(x: torch.Tensor, granularity: Granularity) -> tuple[int, ...]:
    if isinstance(granularity, PerTensor):
        return ()
    if isinstance(granularity, PerChannel):
        return (x.shape[granularity.axis],)
    return (*x.shape[:-1], x.shape[-1] // granularity.group_size)


def choose_qparams(
    x: torch.Tensor,
    bits: int = 8,
    mapping: MappingType = MappingType.ASYMMETRIC,
    signed: bool = False,
    granularity: Granularity = PerTensor(),
    *,
    min_val: torch.Tensor | None = None,
    max_val: torch.Tensor | None = None,
) -> QParams:
    """Scale and zero-point that map the range of ``x`` onto ``bits``-bit integers.

    The range is ``[min(x), max(x)]`` widened to include 0 (pass ``min_val`` /
    ``max_val`` to use a calibrated range instead, e.g. a percentile). This is
    exactly what ``MinMaxObserver`` / ``PerChannelMinMaxObserver`` compute.
    """
    _check_float(x)
    quant_min, quant_max = quant_range(bits, signed)
    if min_val is None or max_val is None:
        rows = _reduce_dims(x.detach().float(), granularity)
        lo, hi = torch.aminmax(rows, dim=1)
        shape = _qparams_shape(x, granularity)
        min_val = lo.reshape(shape) if min_val is None else min_val
        max_val = hi.reshape(shape) if max_val is None else max_val
    min_val = torch.as_tensor(min_val, dtype=torch.float32)
    max_val = torch.as_tensor(max_val, dtype=torch.float32)
    if (min_val > max_val).any():
        raise ValueError("min_val must not exceed max_val")
    min_neg = torch.minimum(min_val, torch.zeros_like(min_val))
    max_pos = torch.maximum(max_val, torch.zeros_like(max_val))

    if mapping is MappingType.SYMMETRIC:
        max_pos = torch.maximum(-min_neg, max_pos)
        scale = max_pos / (float(quant_max - quant_min) / 2)
        scale = torch.clamp(scale, min=EPS)
        # Zero sits in the middle of the grid: 0 for signed; for unsigned PyTorch's observers use
        # 128 for 8 bits and the rounded-down midpoint for other widths. We follow them exactly.
        middle = 128 if bits == 8 else (quant_min + quant_max) // 2
        zero_point = torch.full_like(scale, 0 if signed else middle, dtype=torch.int64)
    elif mapping is MappingType.ASYMMETRIC:
        scale = (max_pos - min_neg) / float(quant_max - quant_min)
        scale = torch.clamp(scale, min=EPS)
        zero_point = quant_min - torch.round(min_neg / scale).to(torch.int64)
        zero_point = torch.clamp(zero_point, quant_min, quant_max)
    else:
        raise TypeError(f"mapping must be a MappingType, got {mapping!r}")
    return QParams(scale, zero_point, quant_min, quant_max, granularity)


def _broadcast(p: torch.Tensor, x: torch.Tensor, granularity: Granularity) -> torch.Tensor:
    """Reshape a per-channel/per-group parameter so that it broadcasts against ``x``."""
    if isinstance(granularity, PerTensor):
        return p
    if isinstance(granularity, PerChannel):
        shape = [1] * x.dim()
        shape[granularity.axis] = -1
        return p.reshape(shape)
    return p.repeat_interleave(granularity.group_size, dim=-1)


def _to_grid(x: torch.Tensor, qparams: QParams) -> torch.Tensor:
    """round(x / scale) + zero_point, clamped: computed as PyTorch's kernels do.

    PyTorch multiplies by the float32 reciprocal ``1 / scale`` (it does not
    divide) and rounds half to even (``nearbyint``); both details matter for
    bit-exact agreement.
    """
    g = qparams.granularity
    inv_scale = 1.0 / _broadcast(qparams.scale.float(), x, g)
    zero_point = _broadcast(qparams.zero_point, x, g)
    q = torch.round(x.float() * inv_scale) + zero_point
    return torch.clamp(q, qparams.quant_min, qparams.quant_max)


def quantize(x: torch.Tensor, qparams: QParams) -> torch.Tensor:
    """Float tensor -> integer codes (int32 holding values in ``[quant_min, quant_max]``)."""
    _check_float(x)
    return _to_grid(x, qparams).to(torch.int32)


def dequantize(q: torch.Tensor, qparams: QParams) -> torch.Tensor:
    """Integer codes -> float32 values ``(q - zero_point) * scale``."""
    g = qparams.granularity
    scale = _broadcast(qparams.scale.float(), q, g)
    zero_point = _broadcast(qparams.zero_point, q, g)
    return (q.to(torch.int64) - zero_point).float() * scale


class _RoundSTE(torch.autograd.Function):
    """Quantize-dequantize whose backward passes the gradient straight through
    inside the clipping range and blocks it outside (the clipped STE)."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, qparams: QParams) -> torch.Tensor:  # type: ignore[override]
        g = qparams.granularity
        scale = _broadcast(qparams.scale.float(), x, g)
        zero_point = _broadcast(qparams.zero_point, x, g)
        unclamped = torch.round(x.float() * (1.0 / scale)) + zero_point
        inside = (unclamped >= qparams.quant_min) & (unclamped <= qparams.quant_max)
        ctx.save_for_backward(inside)
        q = torch.clamp(unclamped, qparams.quant_min, qparams.quant_max)
        return ((q - zero_point) * scale).to(x.dtype)

    @staticmethod
    def backward(ctx, grad_out: torch.Tensor):  # type: ignore[override]
        (inside,) = ctx.saved_tensors
        return grad_out * inside, None


def fake_quantize(x: torch.Tensor, qparams: QParams) -> torch.Tensor:
    """Quantize then dequantize, staying in float: the values snap to the grid.

    The gradient is the straight-through estimator: 1 where ``x`` falls inside
    the clipping range, 0 where it was clipped (rounding itself would have a
    zero gradient almost everywhere).
    """
    _check_float(x)
    return _RoundSTE.apply(x, qparams)


def mse(x: torch.Tensor, x_hat: torch.Tensor) -> float:
    """Mean squared error between a tensor and its reconstruction."""
    return float(torch.mean((x.double() - x_hat.double()) ** 2))


def sqnr_db(x: torch.Tensor, x_hat: torch.Tensor) -> float:
    """Signal-to-quantization-noise ratio in dB: ``10 log10(sum x^2 / sum (x - x_hat)^2)``.

    Each extra bit halves the step and so adds about 6.02 dB. Infinite when
    the reconstruction is exact.
    """
    signal = float(torch.sum(x.double() ** 2))
    noise = float(torch.sum((x.double() - x_hat.double()) ** 2))
    if noise == 0.0:
        return math.inf
    return 10.0 * math.log10(signal / noise)


def max_abs_error(x: torch.Tensor, x_hat: torch.Tensor) -> float:
    """Largest absolute difference between a tensor and its reconstruction."""
    return float(torch.max(torch.abs(x.double() - x_hat.double())))
