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
float, with a straight-through gradient), :func:`ste_curve` (PyTorch's own
fake-quantize function and its gradient, point by point) and the error
metrics :func:`mse`, :func:`sqnr_db` and :func:`max_abs_error`.

The verbs without a suffix follow ``torch.ao.quantization``'s conventions
(FP32 scales, ``x / scale``, an unsigned symmetric grid centred on 128, and
:func:`quant_range` ``(bits, signed)`` naming the integer dtype's range).
:mod:`qhelpers.weight_only` follows torchao's ``quant_primitives`` instead
and carries its names (``choose_qparams_affine``, ``quantize_affine``, ...),
:mod:`qhelpers.codebook` torchao's codebook ops (``..._codebook``). The
granularities :class:`PerTensor`, :class:`PerChannel` and :class:`PerGroup`
are the one way every module takes a group size.

What "bit for bit" covers, and where it stops:

- float32 input: codes, dequantized values, fake-quantized values, gradients and
  qparams all equal PyTorch's.
- float16/bfloat16/float64 input: :func:`fake_quantize` equals
  ``torch.fake_quantize_per_{tensor,channel}_affine`` (values and gradient). As
  there, float64 is rounded in double (``x * (1/scale)`` with the float32
  reciprocal); float16/bfloat16 widen exactly to float32. :func:`quantize`
  rounds the same way; PyTorch's ``quantize_per_*`` take float32 only.
- PyTorch's per-channel fake-quantize kernel casts ``round(x / scale)`` to
  int64 before clamping: where ``|x / scale| >= 2**63`` it returns
  ``quant_min`` (gradient 0) whatever the sign of ``x``. Here such values clamp
  to the nearer end, as the per-tensor kernels do.
- Unsigned symmetric zero-points follow the observers: ``2**(bits-1)`` at 8
  and 16 bits (their ``quint8``/``uint16`` dtypes: 128, 32768), the rounded-down
  midpoint at other widths (``quint8`` with a custom ``quant_min/quant_max``).
- A range too wide for float32 (e.g. ``[-3e38, 3e38]``, whose width overflows):
  ``MinMaxObserver`` returns ``scale=inf`` and everything dequantizes to NaN;
  :func:`choose_qparams` refuses it with a ValueError instead.

Bad arguments (wrong types, NaN/inf, empty tensors, shapes that do not fit,
qparams built by hand that are not a valid grid) raise a ValueError or
TypeError that names the argument and says what to pass instead.
"""

from __future__ import annotations

import math
import numbers
from dataclasses import dataclass
from enum import Enum
from typing import Union

import torch

from .checks import check_int

__all__ = [
    "EPS",
    "MappingType",
    "PerTensor",
    "PerChannel",
    "PerGroup",
    "QParams",
    "quant_range",
    "choose_qparams",
    "quantize",
    "dequantize",
    "fake_quantize",
    "mse",
    "sqnr_db",
    "max_abs_error",
    "ste_curve",
]

MIN_BITS, MAX_BITS = 2, 16
# The package's one epsilon: float32's machine epsilon (1.19e-07). It is the smallest scale, as in torch.ao.quantization's
# observers (and what weight_only passes to torchao's choose_qparams_affine as eps=), and the floor that keeps
# SmoothQuant's factors and static activation scales (qhelpers.smoothing) away from 0, as torchao's observer does.
EPS = torch.finfo(torch.float32).eps
# Every grid lies inside the codes of the supported bit-widths: [-2**15, 2**16 - 1].
CODE_MIN, CODE_MAX = -(2 ** (MAX_BITS - 1)), 2**MAX_BITS - 1


# --- argument checks (public for qhelpers.ranges; not in __all__) ---------------------------------

def _kind(value: object) -> str:
    """A short description of a bad argument for an error message."""
    if isinstance(value, torch.Tensor):
        return f"a {value.dtype} tensor of shape {tuple(value.shape)}"
    return f"{type(value).__name__} {value!r}"[:80]


def check_real(name: str, value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a number, got {_kind(value)}")
    return float(value)


def _where(mask: torch.Tensor) -> str:
    """`` at index (i, ...)`` of the first True in ``mask``, or nothing for a 0-d mask."""
    return f" at index {tuple(int(i) for i in mask.nonzero()[0])}" if mask.dim() else ""


def _check_float(x: torch.Tensor, what: str = "x") -> None:
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{what} must be a torch.Tensor, got {_kind(x)}; wrap it: torch.tensor(...)")
    if x.is_quantized:
        raise TypeError(f"{what} is a PyTorch quantized tensor ({x.dtype}); pass {what}.dequantize()")
    if x.is_complex():
        raise TypeError(f"{what} is complex ({x.dtype}); quantization works on real numbers: pass {what}.real")
    if not x.is_floating_point():
        raise TypeError(f"{what} must be a floating-point tensor, got dtype {x.dtype}; convert it with .float()")
    if x.numel() == 0:
        raise ValueError(f"{what} is empty (shape {tuple(x.shape)}): pass a tensor with at least one element")
    if not torch.isfinite(x).all():
        n_bad = int((~torch.isfinite(x)).sum())
        raise ValueError(
            f"{what} holds {n_bad} NaN/inf value(s); quantization and its error metrics need finite numbers. "
            "Find where they come from (an overflow in FP16? a division by zero?) first."
        )


def as_float32(x: torch.Tensor, what: str = "x") -> torch.Tensor:
    """``x`` checked and as a detached float32 tensor (ranges and scales are float32)."""
    _check_float(x, what)
    xf = x.detach().float()
    if x.dtype == torch.float64 and not torch.isfinite(xf).all():
        raise ValueError(
            f"{what} holds values beyond float32's range (largest |value| {float(x.abs().max()):.3g} > 3.4e38) "
            f"and scales are float32: divide {what} by a power of ten first"
        )
    return xf


def _check_granularity(granularity: object) -> None:
    if not isinstance(granularity, (PerTensor, PerChannel, PerGroup)):
        hint = f" (a class: call it, {granularity.__name__}(...))" if isinstance(granularity, type) else ""
        raise TypeError(
            f"granularity must be PerTensor(), PerChannel(axis) or PerGroup(size), got {_kind(granularity)}{hint}"
        )


def check_weight_granularity(granularity: object, *, per_row: bool = True) -> PerGroup | PerChannel:
    """``granularity`` if it is a weight-only layout: ``PerGroup(size)`` (torchao's ``block_size=(1, size)``) or, if
    ``per_row``, ``PerChannel(0)``, one scale per output row (``block_size=(1, in_features)``; per token for
    activations laid out ``(tokens, channels)``). A bare int or None (the old ``group_size=``) is refused with the
    object to pass instead."""
    rows = " (or quant.PerChannel(0) for one scale per row)" if per_row else ""
    if isinstance(granularity, numbers.Integral) and not isinstance(granularity, bool):
        if granularity < 1:
            raise TypeError(f"granularity={granularity!r} is a bare int: pass a group of at least 1 weight as "
                            f"quant.PerGroup(size), e.g. quant.PerGroup(64){rows}")
        raise TypeError(f"granularity={granularity!r} is a bare int: pass quant.PerGroup({granularity}), not {granularity}{rows}")
    if granularity is None:
        if per_row:
            raise TypeError("granularity=None: pass quant.PerChannel(0) for one scale per row, or quant.PerGroup(size)")
        raise TypeError("granularity=None: pass quant.PerGroup(size); for one scale per row, quant.PerGroup(in_features)")
    if not isinstance(granularity, (PerTensor, PerChannel, PerGroup)):
        if type(granularity).__module__.startswith("torchao"):
            raise TypeError(f"granularity={granularity} is torchao's {type(granularity).__name__}: pass qhelpers' own, "
                            "e.g. quant.PerGroup(64)")
        hint = f" (a class: call it, {granularity.__name__}(...))" if isinstance(granularity, type) else ""
        raise TypeError(f"granularity must be quant.PerGroup(size){rows.replace(' (or', ' or').rstrip(')')}, got "
                        f"{_kind(granularity)}{hint}")
    if isinstance(granularity, PerGroup) or per_row and isinstance(granularity, PerChannel) and granularity.axis in (0, -2):
        return granularity
    if per_row:
        raise ValueError(f"granularity={granularity}: weight-only scales belong to rows of the (out_features, in_features) "
                         "weight: pass quant.PerChannel(0) for one scale per row, or quant.PerGroup(size) for groups of a row")
    raise ValueError(f"granularity={granularity}: the bits per weight need the number of weights per scale: pass "
                     "quant.PerGroup(size) (for one scale per row, quant.PerGroup(in_features))")


def group_size_of(granularity: PerGroup | PerChannel, in_features: int) -> int:
    """Weights per scale in a row of ``in_features`` weights: ``PerGroup(size)``'s size, or the whole row."""
    return granularity.group_size if isinstance(granularity, PerGroup) else in_features


def check_mapping(mapping: object) -> None:
    if not isinstance(mapping, MappingType):
        raise TypeError(f"mapping must be MappingType.SYMMETRIC or MappingType.ASYMMETRIC, got {_kind(mapping)}")


def _check_fits(x: torch.Tensor, granularity: Granularity, what: str = "x") -> None:
    """``granularity`` applies to ``x``: an axis it has, a group size that divides its last dimension."""
    _check_granularity(granularity)
    shape = tuple(x.shape)
    if x.dim() == 0 and not isinstance(granularity, PerTensor):
        raise ValueError(
            f"{granularity} needs a tensor with at least one dimension, but {what} is 0-d; use PerTensor()"
        )
    if isinstance(granularity, PerChannel):
        if not -x.dim() <= granularity.axis < x.dim():
            raise ValueError(
                f"PerChannel(axis={granularity.axis}) does not fit {what} of shape {shape} ({x.dim()} dimension(s)); "
                f"use an axis from {-x.dim()} to {x.dim() - 1} (0: a weight's output channels)"
            )
    elif isinstance(granularity, PerGroup):
        g = granularity.group_size
        if x.shape[-1] % g:
            raise ValueError(
                f"PerGroup(group_size={g}) needs the last dimension of {what} (shape {shape}) to be a multiple "
                f"of {g}; pick a group size that divides {x.shape[-1]}"
            )


def check_qparams(qparams: object, x: torch.Tensor, what: str = "x") -> None:
    """``qparams`` is a QParams whose scales fit ``x``: one per tensor, per channel or per group of ``x``."""
    if not isinstance(qparams, QParams):
        raise TypeError(f"qparams must be a QParams (from choose_qparams), got {_kind(qparams)}")
    g = qparams.granularity
    _check_fits(x, g, what)
    have, want = tuple(qparams.scale.shape), _qparams_shape(x, g)
    if (qparams.scale.numel() != 1) if isinstance(g, PerTensor) else have != want:
        raise ValueError(
            f"qparams hold scales of shape {have} but {g} on {what} of shape {tuple(x.shape)} needs shape {want}: "
            f"choose them on a tensor shaped like {what}"
        )


def range_tensor(name: str, value: object) -> torch.Tensor:
    """A clipping-range end (``min_val``/``max_val``) as float32: a finite number or real tensor."""
    if isinstance(value, torch.Tensor) and not (value.is_quantized or value.is_complex() or value.dtype == torch.bool):
        t = value.detach().float()
    elif isinstance(value, numbers.Real) and not isinstance(value, bool):
        t = torch.tensor(float(value))
    else:
        raise TypeError(f"{name} must be a number or a real tensor, got {_kind(value)}")
    if t.numel() == 0:
        raise ValueError(f"{name} is empty (shape {tuple(t.shape)}): give one value per scale")
    bad = ~torch.isfinite(t)
    if bad.any():
        raise ValueError(f"{name} holds {float(t[bad].reshape(-1)[0])}{_where(bad)}: a clipping range must be finite")
    return t


def check_order(min_val: torch.Tensor, max_val: torch.Tensor) -> None:
    bad = min_val > max_val
    if bad.any():
        lo, hi = float(min_val[bad].reshape(-1)[0]), float(max_val[bad].reshape(-1)[0])
        raise ValueError(f"min_val ({lo:g}) exceeds max_val ({hi:g}){_where(bad)}: a range needs min_val <= max_val")


def _grid_overflows(scale: torch.Tensor, zero_point: torch.Tensor, quant_min: int, quant_max: int) -> torch.Tensor:
    """Where the grid's ends ``(quant_min - zero_point) * scale``, ``(quant_max - ...)`` are not finite float32."""
    lo = (quant_min - zero_point.long()).float() * scale.float()
    hi = (quant_max - zero_point.long()).float() * scale.float()
    return ~(torch.isfinite(lo) & torch.isfinite(hi))


# --- the types ------------------------------------------------------------------------------------

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

    @classmethod
    def _missing_(cls, value: object) -> MappingType:
        raise ValueError(f"unknown mapping {value!r}: use MappingType.SYMMETRIC or MappingType.ASYMMETRIC")


@dataclass(frozen=True)
class PerTensor:
    """One scale and zero-point for the whole tensor."""


@dataclass(frozen=True)
class PerChannel:
    """One scale and zero-point per slice along ``axis`` (output channels are axis 0; negative counts from the end)."""

    axis: int = 0

    def __post_init__(self) -> None:
        check_int("PerChannel axis", self.axis, hint="; e.g. PerChannel(0) for a weight's output channels")


@dataclass(frozen=True)
class PerGroup:
    """One scale and zero-point per ``group_size`` consecutive elements of each row.

    The tensor is viewed as rows along its last dimension, which must be a
    multiple of ``group_size`` (torchao's int4 weight-only layout).
    """

    group_size: int

    def __post_init__(self) -> None:
        if check_int("PerGroup group_size", self.group_size, hint="; e.g. PerGroup(32)") < 1:
            raise ValueError(f"PerGroup group_size must be at least 1, got {self.group_size}; e.g. PerGroup(32)")


Granularity = Union[PerTensor, PerChannel, PerGroup]


@dataclass(frozen=True)
class QParams:
    """Everything needed to quantize and dequantize: the grid and where zero sits.

    Checked when built (by hand too): ``scale`` a float tensor of finite values
    ``>= EPS`` (float32 eps, the smallest scale :func:`choose_qparams` and
    PyTorch's observers produce), ``zero_point`` an integer tensor of the same shape inside
    ``[quant_min, quant_max]``, ``quant_min < quant_max`` ints of a grid of at
    most 16 bits, and a grid whose ends are finite float32 numbers.
    """

    scale: torch.Tensor  # float32; shape () per tensor, (C,) per channel, (rows, groups) per group
    zero_point: torch.Tensor  # int64, same shape as scale
    quant_min: int
    quant_max: int
    granularity: Granularity = PerTensor()

    def __post_init__(self) -> None:
        qmin = check_int("QParams.quant_min", self.quant_min, hint="; e.g. from quant_range(8, signed=False)")
        qmax = check_int("QParams.quant_max", self.quant_max, hint="; e.g. from quant_range(8, signed=False)")
        if not (CODE_MIN <= qmin < qmax <= CODE_MAX and qmax - qmin <= 2**MAX_BITS - 1):
            raise ValueError(
                f"QParams: quant_min={qmin}, quant_max={qmax} is not a grid of at most {MAX_BITS} bits: need "
                f"quant_min < quant_max, both in [{CODE_MIN}, {CODE_MAX}]; e.g. quant_range(8, signed=False) = (0, 255)"
            )
        _check_granularity(self.granularity)
        scale, zp = self.scale, self.zero_point
        for name, t in (("scale", scale), ("zero_point", zp)):
            if not isinstance(t, torch.Tensor):
                raise TypeError(f"QParams.{name} must be a torch.Tensor, got {_kind(t)}; wrap it: torch.tensor({t!r})")
        if not scale.is_floating_point():
            raise TypeError(
                f"QParams.scale must be a floating-point tensor, got dtype {scale.dtype}; e.g. torch.tensor(0.1)"
            )
        if zp.is_quantized or zp.is_floating_point() or zp.is_complex() or zp.dtype == torch.bool:
            raise TypeError(
                f"QParams.zero_point must be an integer tensor, got dtype {zp.dtype}; e.g. torch.tensor(128), "
                "or .round().long() if you computed it in float"
            )
        g = self.granularity
        if scale.numel() == 0 or zp.shape != scale.shape:
            raise ValueError(
                f"QParams.scale (shape {tuple(scale.shape)}) and zero_point (shape {tuple(zp.shape)}) "
                "must have the same, non-empty shape"
            )
        if isinstance(g, PerTensor) and scale.numel() != 1:
            raise ValueError(
                f"QParams: PerTensor() takes one scale, got shape {tuple(scale.shape)}; "
                "for one scale per channel use PerChannel(axis)"
            )
        if isinstance(g, PerChannel) and scale.dim() != 1:
            raise ValueError(f"QParams: {g} takes one scale per channel (shape (C,)), got shape {tuple(scale.shape)}")
        s = scale.detach().float()
        bad = ~(torch.isfinite(s) & (s >= EPS))
        if bad.any():
            raise ValueError(
                f"QParams.scale must be finite and at least {EPS:.3g} (float32 eps, the smallest scale choose_qparams "
                f"and PyTorch's observers produce), got {float(scale.detach()[bad].reshape(-1)[0]):g}{_where(bad)}; "
                "get qparams from choose_qparams(x, ...) or pass a larger scale"
            )
        bad = (zp < qmin) | (zp > qmax)
        if bad.any():
            raise ValueError(
                f"QParams.zero_point={int(zp[bad].reshape(-1)[0])}{_where(bad)} is outside [quant_min, quant_max] = "
                f"[{qmin}, {qmax}]: zero must be one of the codes"
            )
        bad = _grid_overflows(s, zp, qmin, qmax)
        if bad.any():
            raise ValueError(
                f"QParams: scale {float(s[bad].reshape(-1)[0]):g}{_where(bad)} puts the grid's ends beyond float32's "
                "range (3.4e38); use a smaller scale"
            )

    @property
    def bits(self) -> int:
        """Bits needed to store one code: ``quant_max - quant_min`` in binary (8 for (0, 255), 3 for (-4, 3))."""
        return (self.quant_max - self.quant_min).bit_length()


def quant_range(bits: int, signed: bool) -> tuple[int, int]:
    """Integer range for ``bits`` bits: signed is ``[-2**(b-1), 2**(b-1)-1]``, unsigned ``[0, 2**b-1]``.

    >>> quant_range(8, signed=True)
    (-128, 127)
    >>> quant_range(4, signed=False)
    (0, 15)
    """
    check_int("bits", bits, hint=f"; pick one from {MIN_BITS} to {MAX_BITS}, e.g. 8")
    if not MIN_BITS <= bits <= MAX_BITS:
        raise ValueError(
            f"bits={bits} is outside the supported range {MIN_BITS}-{MAX_BITS}; "
            "pick a bit-width such as 8 (INT8) or 4 (INT4)."
        )
    if not isinstance(signed, bool):
        raise TypeError(f"signed must be True or False, got {_kind(signed)}")
    if signed:
        return -(2 ** (bits - 1)), 2 ** (bits - 1) - 1
    return 0, 2**bits - 1


def _reduce_dims(x: torch.Tensor, granularity: Granularity) -> torch.Tensor:
    """``x`` reshaped so that each row holds the elements that share one scale (``granularity`` fits ``x``)."""
    if isinstance(granularity, PerTensor):
        return x.reshape(1, -1)
    if isinstance(granularity, PerChannel):
        axis = granularity.axis % x.dim()
        return x.movedim(axis, 0).reshape(x.shape[axis], -1)
    return x.reshape(-1, granularity.group_size)


def _qparams_shape(x: torch.Tensor, granularity: Granularity) -> tuple[int, ...]:
    if isinstance(granularity, PerTensor):
        return ()
    if isinstance(granularity, PerChannel):
        return (x.shape[granularity.axis],)
    return (*x.shape[:-1], x.shape[-1] // granularity.group_size)


def rows_by_granularity(x: torch.Tensor, granularity: Granularity) -> tuple[torch.Tensor, tuple[int, ...]]:
    """``x`` checked, as float32 rows that share one range each, and the shape of the qparams."""
    xf = as_float32(x)
    _check_fits(x, granularity)
    return _reduce_dims(xf, granularity), _qparams_shape(x, granularity)


def _range_arg(name: str, value: object, x: torch.Tensor, granularity: Granularity) -> torch.Tensor:
    """A user's ``min_val``/``max_val``: finite, and one value per scale (shaped like the qparams)."""
    t = range_tensor(name, value)
    shape = _qparams_shape(x, granularity)
    if isinstance(granularity, PerTensor) and t.numel() != 1:
        raise ValueError(
            f"{name} has shape {tuple(t.shape)} but PerTensor() takes one range (a single value); "
            "for one range per channel pass granularity=PerChannel(axis)"
        )
    if not isinstance(granularity, PerTensor) and tuple(t.shape) != shape:
        raise ValueError(
            f"{name} has {t.numel()} value(s) (shape {tuple(t.shape)}) but {granularity} on x of shape "
            f"{tuple(x.shape)} takes {math.prod(shape)} (shape {shape}): one per scale"
        )
    return t.reshape(shape)


def choose_qparams(
    x: torch.Tensor,
    bits: int = 8,
    mapping: MappingType = MappingType.ASYMMETRIC,
    signed: bool = False,
    granularity: Granularity = PerTensor(),
    *,
    min_val: torch.Tensor | float | None = None,
    max_val: torch.Tensor | float | None = None,
) -> QParams:
    """Scale and zero-point that map the range of ``x`` onto ``bits``-bit integers.

    The range is ``[min(x), max(x)]`` widened to include 0 (pass ``min_val`` /
    ``max_val`` to use a calibrated range instead, e.g. a percentile: finite, one
    value per scale). This is exactly what ``MinMaxObserver`` /
    ``PerChannelMinMaxObserver`` compute, except that a range too wide for
    float32 (its grid would reach beyond 3.4e38; the observers return
    ``scale=inf``) raises a ValueError.
    """
    quant_range(bits, signed)
    check_mapping(mapping)
    rows, shape = rows_by_granularity(x, granularity)
    lo, hi = torch.aminmax(rows, dim=1) if min_val is None or max_val is None else (None, None)
    min_val = lo.reshape(shape) if min_val is None else _range_arg("min_val", min_val, x, granularity)
    max_val = hi.reshape(shape) if max_val is None else _range_arg("max_val", max_val, x, granularity)
    return qparams_for_range(min_val, max_val, bits, mapping, signed, granularity)


def qparams_for_range(
    min_val: torch.Tensor,
    max_val: torch.Tensor,
    bits: int,
    mapping: MappingType,
    signed: bool,
    granularity: Granularity,
) -> QParams:
    """The observers' formulas, for a finite float32 range already shaped like the qparams (arguments checked)."""
    quant_min, quant_max = quant_range(bits, signed)
    check_order(min_val, max_val)
    min_neg = torch.minimum(min_val, torch.zeros_like(min_val))
    max_pos = torch.maximum(max_val, torch.zeros_like(max_val))

    if mapping is MappingType.SYMMETRIC:
        max_pos = torch.maximum(-min_neg, max_pos)
        scale = max_pos / (float(quant_max - quant_min) / 2)
        scale = torch.clamp(scale, min=EPS)
        # Zero sits in the middle of the grid: 0 for signed. Unsigned, PyTorch's observers put it at 2**(bits-1)
        # for their own dtypes (quint8: 128, uint16: 32768) and at the rounded-down midpoint of a custom
        # quant_min/quant_max (quint8 with (0, 15): 7) for other widths. We follow them exactly.
        middle = 2 ** (bits - 1) if bits in (8, 16) else (quant_min + quant_max) // 2
        zero_point = torch.full_like(scale, 0 if signed else middle, dtype=torch.int64)
    else:
        scale = (max_pos - min_neg) / float(quant_max - quant_min)
        scale = torch.clamp(scale, min=EPS)
        zero_point = quant_min - torch.round(min_neg / scale).to(torch.int64)
        zero_point = torch.clamp(zero_point, quant_min, quant_max)
    bad = _grid_overflows(scale, zero_point, quant_min, quant_max)
    if bad.any():
        lo_, hi_ = float(min_val[bad].reshape(-1)[0]), float(max_val[bad].reshape(-1)[0])
        raise ValueError(
            f"the range [{lo_:g}, {hi_:g}]{_where(bad)} is too wide for float32: its scale or the ends of its "
            f"{bits}-bit grid overflow 3.4e38 (MinMaxObserver returns them anyway; they dequantize to inf/NaN). "
            "Divide x (and any min_val/max_val) by a power of ten first, e.g. x / 1e30"
        )
    return QParams(scale, zero_point, quant_min, quant_max, granularity)


def broadcast(p: torch.Tensor, x: torch.Tensor, granularity: Granularity) -> torch.Tensor:
    """Reshape a per-channel/per-group parameter so that it broadcasts against ``x``."""
    if isinstance(granularity, PerTensor):
        return p
    if isinstance(granularity, PerChannel):
        shape = [1] * x.dim()
        shape[granularity.axis] = -1
        return p.reshape(shape)
    return p.repeat_interleave(granularity.group_size, dim=-1)


def grid_codes(x: torch.Tensor, qparams: QParams) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """round(x / scale) + zero_point, not yet clamped, and the broadcast scale and zero-point.

    Computed as PyTorch's kernels do: they multiply by the float32 reciprocal
    ``1 / scale`` (they do not divide), in double for float64 input and in
    float32 otherwise (float16/bfloat16 widen exactly), and round half to even
    (``nearbyint``); each detail matters for bit-exact agreement.
    """
    g = qparams.granularity
    scale = broadcast(qparams.scale.detach().float(), x, g)
    zero_point = broadcast(qparams.zero_point.detach().long(), x, g)
    dtype = torch.float64 if x.dtype == torch.float64 else torch.float32
    return torch.round(x.detach().to(dtype) * (1.0 / scale).to(dtype)) + zero_point, scale, zero_point


def quantize(x: torch.Tensor, qparams: QParams) -> torch.Tensor:
    """Float tensor -> integer codes (int32 holding values in ``[quant_min, quant_max]``)."""
    _check_float(x)
    check_qparams(qparams, x)
    grid, _, _ = grid_codes(x, qparams)
    return torch.clamp(grid, qparams.quant_min, qparams.quant_max).to(torch.int32)


def dequantize(q: torch.Tensor, qparams: QParams) -> torch.Tensor:
    """Integer codes (e.g. from :func:`quantize`) -> float32 values ``(q - zero_point) * scale``."""
    if not isinstance(q, torch.Tensor):
        raise TypeError(f"q must be a tensor of integer codes (from quantize), got {_kind(q)}")
    if q.is_quantized:
        raise TypeError(
            f"q is a PyTorch quantized tensor ({q.dtype}); pass q.int_repr() for its codes, or use q.dequantize()"
        )
    if q.is_floating_point() or q.is_complex() or q.dtype == torch.bool:
        raise TypeError(
            f"q must hold integer codes (from quantize), got dtype {q.dtype}; "
            "to snap float values to the grid use fake_quantize(x, qparams)"
        )
    if q.numel() == 0:
        raise ValueError(f"q is empty (shape {tuple(q.shape)}): pass at least one code")
    check_qparams(qparams, q, "q")
    lo, hi = (int(v) for v in torch.aminmax(q))
    if lo < qparams.quant_min or hi > qparams.quant_max:
        raise ValueError(
            f"q holds codes from {lo} to {hi}, outside the grid [{qparams.quant_min}, {qparams.quant_max}]: "
            "were they quantized with other qparams?"
        )
    g = qparams.granularity
    scale = broadcast(qparams.scale.detach().float(), q, g)
    zero_point = broadcast(qparams.zero_point.detach().long(), q, g)
    return (q.to(torch.int64) - zero_point).float() * scale


class _RoundSTE(torch.autograd.Function):
    """Quantize-dequantize whose backward passes the gradient straight through
    inside the clipping range and blocks it outside (the clipped STE)."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, qparams: QParams) -> torch.Tensor:  # type: ignore[override]
        grid, scale, zero_point = grid_codes(x, qparams)
        ctx.save_for_backward((grid >= qparams.quant_min) & (grid <= qparams.quant_max))
        steps = torch.clamp(grid, qparams.quant_min, qparams.quant_max) - zero_point
        # PyTorch's per-channel kernel multiplies in double (exact) and rounds once to x's dtype; the per-tensor
        # one multiplies in float32. The same for float32 input; not for float64 (or, rarely, float16).
        dtype = torch.float64 if isinstance(qparams.granularity, PerChannel) else torch.float32
        return (steps.to(dtype) * scale.to(dtype)).to(x.dtype)

    @staticmethod
    def backward(ctx, grad_out: torch.Tensor):  # type: ignore[override]
        (inside,) = ctx.saved_tensors
        return grad_out * inside, None


def fake_quantize(x: torch.Tensor, qparams: QParams) -> torch.Tensor:
    """Quantize then dequantize, staying in float (``x``'s dtype): the values snap to the grid.

    The gradient is the straight-through estimator: 1 where ``x`` falls inside
    the clipping range, 0 where it was clipped (rounding itself would have a
    zero gradient almost everywhere). Values and gradient equal
    ``torch.fake_quantize_per_{tensor,channel}_affine`` for float16, bfloat16,
    float32 and float64 input, except where ``|x / scale| >= 2**63``: PyTorch's
    per-channel kernel overflows there (returns ``quant_min``), this clamps.
    """
    _check_float(x)
    check_qparams(qparams, x)
    return _RoundSTE.apply(x, qparams)


def _check_pair(x: torch.Tensor, x_hat: torch.Tensor) -> None:
    """Two finite, non-empty float tensors of the same shape (the metrics do not broadcast)."""
    for what, t in (("x", x), ("x_hat", x_hat)):
        if isinstance(t, torch.Tensor) and not (t.is_floating_point() or t.is_complex() or t.is_quantized):
            raise TypeError(
                f"{what} holds {t.dtype} values, not floats: if they are codes from quantize(), "
                f"compare dequantize(q, qparams); otherwise convert with .float()"
            )
        _check_float(t, what)
    if x.shape != x_hat.shape:
        raise ValueError(
            f"x has shape {tuple(x.shape)} but x_hat has shape {tuple(x_hat.shape)}: "
            "the metrics compare element by element and do not broadcast"
        )


def mse(x: torch.Tensor, x_hat: torch.Tensor) -> float:
    """Mean squared error between a tensor and its reconstruction (same shape, computed in float64)."""
    _check_pair(x, x_hat)
    return float(torch.mean((x.detach().double() - x_hat.detach().double()) ** 2))


def sqnr_db(x: torch.Tensor, x_hat: torch.Tensor) -> float:
    """Signal-to-quantization-noise ratio in dB: ``10 log10(sum x^2 / sum (x - x_hat)^2)``.

    Each extra bit halves the step and so adds about 6.02 dB. ``inf`` when the
    reconstruction is exact (even if ``x`` is all zeros); ``-inf`` when ``x`` is
    all zeros and ``x_hat`` is not: there is no signal, only noise.
    """
    _check_pair(x, x_hat)
    signal = float(torch.sum(x.detach().double() ** 2))
    noise = float(torch.sum((x.detach().double() - x_hat.detach().double()) ** 2))
    if noise == 0.0:
        return math.inf
    if signal == 0.0:
        return -math.inf
    return 10.0 * math.log10(signal / noise)


def max_abs_error(x: torch.Tensor, x_hat: torch.Tensor) -> float:
    """Largest absolute difference between a tensor and its reconstruction (same shape)."""
    _check_pair(x, x_hat)
    return float(torch.max(torch.abs(x.detach().double() - x_hat.detach().double())))


def ste_curve(
    x: torch.Tensor, scale: float, zero_point: int, quant_min: int, quant_max: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """``torch.fake_quantize_per_tensor_affine`` at each point of ``x`` and its autograd gradient there.

    The gradient is the straight-through estimator: 1 inside the clipping
    range, 0 where the value was clipped.
    """
    if not isinstance(x, torch.Tensor) or x.is_complex() or x.is_quantized:
        raise TypeError(f"x must be a real torch.Tensor, e.g. torch.linspace(-2, 2, 401), not {type(x).__name__}")
    if x.numel() == 0:
        raise ValueError("x is empty: give the points to draw the curve at, e.g. torch.linspace(-2, 2, 401)")
    if not torch.isfinite(x).all():
        raise ValueError("x holds NaN/inf values: the curve needs finite points, e.g. torch.linspace(-2, 2, 401)")
    if isinstance(scale, bool) or not isinstance(scale, numbers.Real):
        raise TypeError(f"scale={scale!r} must be a number, not {type(scale).__name__}")
    for name, value in (("zero_point", zero_point), ("quant_min", quant_min), ("quant_max", quant_max)):
        check_int(name, value)
    if quant_min >= quant_max:
        raise ValueError(f"quant_min={quant_min} must be below quant_max={quant_max}")
    if not (math.isfinite(scale) and scale > 0):
        raise ValueError(f"scale={scale} must be positive and finite")
    if not quant_min <= zero_point <= quant_max:
        raise ValueError(f"zero_point={zero_point} must lie on the grid [{quant_min}, {quant_max}]")
    x = x.detach().float().clone().requires_grad_(True)
    y = torch.fake_quantize_per_tensor_affine(x, scale, zero_point, quant_min, quant_max)
    y.sum().backward()
    return y.detach(), x.grad.detach()  # type: ignore[union-attr]
