"""Clipping ranges: min/max, percentile, or the range that minimizes the quantization error.

(Choosing a range is what PyTorch's observers do while *calibrating*: running
batches through a prepared model, :func:`qhelpers.ptq.calibrate`. Here the
ranges are computed directly on a tensor, to compare the rules.)

Quantization error has two parts. Values inside the clipping range are
*rounded* to the nearest grid level (error at most half a step); values
outside it are *clipped* to the ends (error as large as the outlier). A wide
range (min/max) has no clipping error but coarse steps; a narrow one has fine
steps but clips. Each function here returns a :class:`ClipRange` whose
``min_val``/``max_val`` go straight into :func:`qhelpers.quant.choose_qparams`::

    r = percentile_range(x, 99.9)
    qp = choose_qparams(x, bits=8, **r.as_kwargs())

Per-tensor ranges are 0-d tensors; with ``PerChannel(axis)`` they have one
value per channel, as ``choose_qparams`` expects.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

import torch

from .checks import check_int, describe
from .quant import (
    Granularity,
    MappingType,
    PerChannel,
    PerTensor,
    QParams,
    broadcast,
    check_mapping,
    check_order,
    check_qparams,
    check_real,
    as_float32,
    grid_codes,
    qparams_for_range,
    range_tensor,
    rows_by_granularity,
    quant_range,
)

__all__ = [
    "ClipRange",
    "minmax_range",
    "percentile_range",
    "mse_range",
    "error_breakdown",
    "clip_sweep",
]

@dataclass(frozen=True)
class ClipRange:
    """A clipping range ``[min_val, max_val]`` and the method that chose it."""

    min_val: torch.Tensor
    max_val: torch.Tensor
    method: str

    def __post_init__(self) -> None:
        for name in ("min_val", "max_val"):
            value = getattr(self, name)
            if not isinstance(value, torch.Tensor):
                raise TypeError(f"ClipRange.{name} must be a torch.Tensor, got {describe(value)}; e.g. torch.tensor(-1.0)")
            range_tensor(f"ClipRange.{name}", value)
        if self.min_val.shape != self.max_val.shape:
            raise ValueError(
                f"ClipRange.min_val (shape {tuple(self.min_val.shape)}) and max_val "
                f"(shape {tuple(self.max_val.shape)}) must have the same shape: one range per scale"
            )
        check_order(self.min_val.float(), self.max_val.float())
        if not isinstance(self.method, str):
            raise TypeError(f"ClipRange.method must be a str naming how the range was chosen, got {describe(self.method)}")

    def as_kwargs(self) -> dict[str, torch.Tensor]:
        """``{'min_val': ..., 'max_val': ...}`` for :func:`qhelpers.quant.choose_qparams`."""
        return {"min_val": self.min_val, "max_val": self.max_val}

    def __str__(self) -> str:
        if self.min_val.dim() == 0:
            return f"{self.method}: [{float(self.min_val):.4g}, {float(self.max_val):.4g}]"
        return f"{self.method}: {self.min_val.numel()} per-channel ranges"


def minmax_range(x: torch.Tensor, granularity: Granularity = PerTensor()) -> ClipRange:
    """The full range ``[min(x), max(x)]``: no clipping at all (what ``MinMaxObserver`` uses)."""
    rows, shape = rows_by_granularity(x, granularity)
    lo, hi = torch.aminmax(rows, dim=1)
    return ClipRange(lo.reshape(shape), hi.reshape(shape), "minmax")


def percentile_range(x: torch.Tensor, percentile: float = 99.99, granularity: Granularity = PerTensor()) -> ClipRange:
    """Clip the ``(100 - percentile)`` % most extreme values on each side.

    ``percentile=99.9`` keeps ``[q_0.1%, q_99.9%]``; ``100`` is the same as min/max.
    """
    if not 50.0 < check_real("percentile", percentile) <= 100.0:
        raise ValueError(f"percentile={percentile} must be in (50, 100], e.g. 99.9 or 99.99")
    rows, shape = rows_by_granularity(x, granularity)
    n = rows.shape[1]
    # kthvalue instead of torch.quantile: no size limit, and exactly an element of x.
    k_hi = max(1, min(n, int(round(percentile / 100.0 * (n - 1))) + 1))
    k_lo = max(1, min(n, n + 1 - k_hi))
    hi = torch.kthvalue(rows, k_hi, dim=1).values
    lo = torch.kthvalue(rows, k_lo, dim=1).values
    return ClipRange(lo.reshape(shape), hi.reshape(shape), f"percentile {percentile:g}")


def mse_range(
    x: torch.Tensor,
    bits: int = 8,
    mapping: MappingType = MappingType.ASYMMETRIC,
    signed: bool = False,
    granularity: Granularity = PerTensor(),
    *,
    num_candidates: int = 100,
    min_fraction: float = 0.01,
) -> ClipRange:
    """The range, among ``num_candidates`` shrinkings of min/max, with the smallest quantization MSE.

    Candidate ``i`` is ``[f * min, f * max]`` with ``f`` evenly spaced from
    ``min_fraction`` to 1; min/max itself (``f = 1``) is always a candidate, so
    the result is never worse than :func:`minmax_range`. Per channel, each
    channel gets its own best ``f``.
    """
    check_int("num_candidates", num_candidates, 1, hint="; e.g. 100")
    if not 0.0 < check_real("min_fraction", min_fraction) <= 1.0:
        raise ValueError(f"min_fraction={min_fraction} must be in (0, 1], e.g. 0.01")
    quant_range(bits, signed)
    check_mapping(mapping)
    rows, shape = rows_by_granularity(x, granularity)
    lo, hi = torch.aminmax(rows, dim=1)
    best_err = torch.full_like(lo, float("inf"), dtype=torch.float64)
    best_f = torch.ones_like(lo)
    for f in torch.linspace(min_fraction, 1.0, num_candidates).tolist():
        qp = qparams_for_range(lo * f, hi * f, bits, mapping, signed, PerChannel(0))
        err = ((_fake_quantize(rows, qp) - rows).double() ** 2).mean(dim=1)
        better = err < best_err
        best_err = torch.where(better, err, best_err)
        best_f = torch.where(better, torch.full_like(best_f, f), best_f)
    return ClipRange((lo * best_f).reshape(shape), (hi * best_f).reshape(shape), "mse")


@dataclass(frozen=True)
class ErrorBreakdown:
    """Mean squared error split into its rounding part (values inside the range) and clipping part."""

    rounding_mse: float
    clipping_mse: float
    clipped_fraction: float

    @property
    def total_mse(self) -> float:
        return self.rounding_mse + self.clipping_mse


def error_breakdown(x: torch.Tensor, qparams: QParams) -> ErrorBreakdown:
    """How much of the quantize-dequantize error comes from rounding and how much from clipping.

    Both parts are divided by the total number of elements, so they add up to the MSE.
    """
    x = as_float32(x)
    check_qparams(qparams, x)
    return _breakdown(x, qparams)


def _fake_quantize(x: torch.Tensor, qparams: QParams) -> torch.Tensor:
    """dequantize(quantize(x)) for a checked float32 ``x``, without checking again (for the loops here)."""
    grid, scale, zero_point = grid_codes(x, qparams)
    return (torch.clamp(grid, qparams.quant_min, qparams.quant_max) - zero_point) * scale


def _breakdown(x: torch.Tensor, qparams: QParams) -> ErrorBreakdown:
    x_hat = _fake_quantize(x, qparams)
    g = qparams.granularity
    scale = broadcast(qparams.scale.float(), x, g)
    zero_point = broadcast(qparams.zero_point, x, g)
    lo = (qparams.quant_min - zero_point) * scale  # the grid's two ends
    hi = (qparams.quant_max - zero_point) * scale
    half = scale / 2 * (1 + 1e-5)  # a value half a step beyond an end is rounding, not clipping (float slack)
    clipped = (x < lo - half) | (x > hi + half)
    sq = (x.double() - x_hat.double()) ** 2
    n = x.numel()
    return ErrorBreakdown(float(sq[~clipped].sum()) / n, float(sq[clipped].sum()) / n, float(clipped.sum()) / n)


def clip_sweep(
    x: torch.Tensor,
    fractions: Sequence[float],
    bits: int = 8,
    mapping: MappingType = MappingType.SYMMETRIC,
    signed: bool = True,
) -> dict[str, list[float]]:
    """Rounding, clipping and total MSE when the range is ``fraction * max|x|`` (per tensor), for each fraction."""
    x = as_float32(x)
    a = float(x.abs().max())
    example = "e.g. torch.linspace(0.05, 1, 40).tolist()"
    if isinstance(fractions, (str, bytes, torch.Tensor)) or not isinstance(fractions, Sequence):
        raise TypeError(f"fractions must be a list of numbers, {example}; got {describe(fractions)}")
    if not len(fractions):
        raise ValueError(f"fractions is empty: pass {example}")
    for i, f in enumerate(fractions):
        if not (check_real(f"fractions[{i}]", f) > 0 and math.isfinite(f)):
            raise ValueError(f"fractions[{i}]={f} must be a positive finite number (1 is the full range max|x|)")
    quant_range(bits, signed)
    check_mapping(mapping)
    out: dict[str, list[float]] = {"clip": [], "rounding": [], "clipping": [], "total": []}
    for f in fractions:
        qp = qparams_for_range(torch.tensor(-a * f), torch.tensor(a * f), bits, mapping, signed, PerTensor())
        e = _breakdown(x, qp)
        out["clip"].append(a * f)
        out["rounding"].append(e.rounding_mse)
        out["clipping"].append(e.clipping_mse)
        out["total"].append(e.total_mse)
    return out
