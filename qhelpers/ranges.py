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

:class:`MSEObserver` and :class:`PerChannelMSEObserver` are the MSE rule as
torch.ao observers, for the flows that calibrate (``FakeQuantize.with_args(
observer=MSEObserver, quant_min=0, quant_max=7, ...)``): they search the range
on the grid they are given (``quant_min``/``quant_max``), where torch.ao's
``HistogramObserver`` searches for 256 levels whatever that grid is.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

import torch
from torch.ao.quantization.observer import MinMaxObserver, PerChannelMinMaxObserver

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
    "MSEObserver",
    "PerChannelMSEObserver",
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


# --- the MSE rule as torch.ao observers ------------------------------------------------------------

MSE_CANDIDATES = 100  # shrink factors of min/max tried, evenly spaced from 0.01 to 1 (as mse_range)
MSE_SAMPLE = 1 << 15  # values an MSEObserver keeps per observed batch (a seeded random subset)


def _best_qparams(observer, rows: torch.Tensor, lo: torch.Tensor, hi: torch.Tensor, per_channel: bool):
    """The qparams of ``observer``'s grid, among shrinkings ``f * [lo, hi]``, with the smallest MSE on ``rows``
    (one row per channel, or one row); ``f = 1`` (min/max) is a candidate."""
    best_err = torch.full(lo.shape, float("inf"), dtype=torch.float64)
    best_scale, best_zp = observer._calculate_qparams(lo, hi)
    for f in torch.linspace(0.01, 1.0, MSE_CANDIDATES).tolist():
        scale, zp = observer._calculate_qparams(lo * f, hi * f)
        if per_channel:
            xq = torch.fake_quantize_per_channel_affine(rows, scale.float(), zp.int(), 0, observer.quant_min,
                                                        observer.quant_max)
        else:
            xq = torch.fake_quantize_per_tensor_affine(rows, float(scale), int(zp), observer.quant_min, observer.quant_max)
        err = ((xq - rows).double() ** 2).mean(dim=-1).reshape(lo.shape)
        better = err < best_err
        best_err = torch.where(better, err, best_err)
        best_scale = torch.where(better, scale, best_scale)
        best_zp = torch.where(better, zp, best_zp)
    return best_scale, best_zp


class MSEObserver(MinMaxObserver):
    """A per-tensor observer whose range is the shrinking of min/max with the smallest quantization MSE.

    It tracks min/max as ``MinMaxObserver`` and keeps a seeded random sample of
    the values it saw (``MSE_SAMPLE`` per batch); ``calculate_qparams`` tries
    ``MSE_CANDIDATES`` ranges ``f * [min, max]`` (``f`` from 0.01 to 1) on the
    observer's own grid (``quant_min``/``quant_max``, ``qscheme``) and returns
    the scale and zero-point with the smallest MSE on that sample. Min/max is a
    candidate, so the result is never worse than ``MinMaxObserver``'s on the sample.
    """

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.sample: list[torch.Tensor] = []
        self.generator = torch.Generator().manual_seed(0)

    def forward(self, x_orig: torch.Tensor) -> torch.Tensor:
        if x_orig.numel() == 0:
            return x_orig
        super().forward(x_orig)
        x = x_orig.detach().reshape(-1).to(self.min_val.dtype)
        if x.numel() > MSE_SAMPLE:
            x = x[torch.randperm(x.numel(), generator=self.generator)[:MSE_SAMPLE]]
        self.sample.append(x)
        return x_orig

    def calculate_qparams(self):  # type: ignore[override]
        if not self.sample:
            return super().calculate_qparams()  # not calibrated: MinMaxObserver's default qparams (and warning)
        return _best_qparams(self, torch.cat(self.sample).unsqueeze(0), self.min_val, self.max_val, per_channel=False)


class PerChannelMSEObserver(PerChannelMinMaxObserver):
    """:class:`MSEObserver` per channel (for weights): each channel of the last tensor observed gets its own range.

    Meant for weights, which are the same tensor at every calibration batch: it
    searches on the last tensor seen, over all of its values.
    """

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.last: torch.Tensor | None = None

    def forward(self, x_orig: torch.Tensor) -> torch.Tensor:
        if x_orig.numel() == 0:
            return x_orig
        super().forward(x_orig)
        self.last = x_orig.detach().transpose(0, self.ch_axis).flatten(1).to(self.min_val.dtype)
        return x_orig

    def calculate_qparams(self):  # type: ignore[override]
        if self.last is None:
            return super().calculate_qparams()
        return _best_qparams(self, self.last, self.min_val, self.max_val, per_channel=True)
