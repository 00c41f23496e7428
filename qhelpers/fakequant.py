"""Fake quantization: quantize-dequantize in float, the straight-through gradient, and a model built on it.

Chapter 03's helpers. The source article imports ``fake_quantize`` and
``fake_dequantize`` from ``torch.quantization``; neither exists. PyTorch's
real pieces are the functions ``torch.fake_quantize_per_tensor_affine`` /
``torch.fake_quantize_per_channel_affine`` (one call does quantize *and*
dequantize) and the module ``torch.ao.quantization.FakeQuantize`` (an observer
that learns the range plus that function). :class:`FakeQuantizedModel` is the
article's model rewritten with them, and :meth:`FakeQuantizedModel.to_int8`
builds the truly INT8 model with the same scales and zero-points, so the two
can be compared output for output.

Bad arguments (a scale that is not a positive finite number, a zero-point
outside the grid, a layer that is not an ``nn.Linear`` with a bias, inputs of
the wrong width) and a model in the wrong state (not calibrated, not frozen,
calibrated on NaN) raise a ValueError or TypeError saying what to do.
"""

from __future__ import annotations

import math
import numbers

import torch
import torch.nn.functional as F
from torch import nn
from torch.ao.quantization import FakeQuantize, MinMaxObserver

__all__ = ["ste_curve", "module_types", "inserted_modules", "FakeQuantizedModel", "Int8Linear"]


# --- argument checks ------------------------------------------------------------------------------

def _check_int(name: str, value: object, lo: int | None = None) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name}={value!r} must be an int, not {type(value).__name__}")
    if lo is not None and value < lo:
        raise ValueError(f"{name}={value} must be at least {lo}")
    return int(value)


def _check_module(value: object, what: str = "model") -> nn.Module:
    if not isinstance(value, nn.Module):
        raise TypeError(f"{what} must be a torch.nn.Module, not {type(value).__name__}")
    return value


def _check_width(x: object, in_features: int) -> None:
    """``x`` is a float tensor whose last dimension is the layer's ``in_features``."""
    if not isinstance(x, torch.Tensor) or not x.is_floating_point():
        kind = f"a {x.dtype} tensor" if isinstance(x, torch.Tensor) else type(x).__name__
        raise TypeError(f"the input must be a float tensor, not {kind}")
    if x.dim() == 0 or x.shape[-1] != in_features:
        raise ValueError(f"the input has shape {tuple(x.shape)}; this layer takes {in_features} features in its last "
                         f"dimension, e.g. shape (batch, {in_features})")


def _check_ready(fake: object) -> None:
    """``fake`` is a calibrated, frozen FakeQuantizedModel whose qparams are finite: ready for :class:`Int8Linear`."""
    if not isinstance(fake, FakeQuantizedModel):
        raise TypeError(f"Int8Linear is built from a FakeQuantizedModel (calibrated and frozen), not {type(fake).__name__}")
    fqs = (fake.input_fq, fake.weight_fq, fake.output_fq)
    if any(bool(fq.observer_enabled[0]) for fq in fqs):
        raise ValueError("call .freeze() after calibration and before to_int8(), so the qparams stop moving")
    if float(fake.input_fq.scale) == 1.0 and int(fake.input_fq.zero_point) == 0:
        raise ValueError("the model has not been calibrated: run some batches through it before freeze()")
    for name, (scale, _) in fake.qparams().items():
        if not math.isfinite(scale):
            raise ValueError(f"the {name} scale is {scale}: the observers saw NaN/inf during calibration. Build a "
                             "new model and calibrate it on finite inputs")


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
        _check_int(name, value)
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


def module_types(model: nn.Module) -> dict[str, str]:
    """``{qualified name: class name}`` for every submodule (the root is ``''``)."""
    _check_module(model)
    return {name: mod._get_name() for name, mod in model.named_modules()}


def inserted_modules(before: nn.Module, after: nn.Module) -> dict[str, str]:
    """Submodules of ``after`` that are new or changed class compared with ``before``: what a prepare/convert step did."""
    _check_module(before, "before")
    _check_module(after, "after")
    old = module_types(before)
    return {name: cls for name, cls in module_types(after).items() if old.get(name) != cls and name}


def _fq(quant_min: int, quant_max: int, dtype: torch.dtype, qscheme: torch.qscheme) -> FakeQuantize:
    return FakeQuantize(observer=MinMaxObserver, quant_min=quant_min, quant_max=quant_max, dtype=dtype, qscheme=qscheme)


class FakeQuantizedModel(nn.Module):
    """The article's ``FakeQuantizedModel``, working: a Linear layer with fake-quantized input, weight and output.

    Each ``FakeQuantize`` holds a ``MinMaxObserver``: in calibration (observers
    enabled) it records the range it sees; :meth:`freeze` stops that, and from
    then on every forward pass uses fixed scales and zero-points.

    - input: UINT8 asymmetric, restricted to ``[0, 127]`` (``reduce_range``):
      fbgemm's INT8 kernels on CPUs without VNNI add pairs of u8*s8 products in
      16 bits, which can overflow with the full range;
    - weight: INT8 symmetric per tensor, ``[-128, 127]``, zero-point 0;
    - output: UINT8 asymmetric, ``[0, 255]``.
    """

    def __init__(self, in_features: int = 10, out_features: int = 10, reduce_range: bool = True) -> None:
        super().__init__()
        _check_int("in_features", in_features, 1)
        _check_int("out_features", out_features, 1)
        if not isinstance(reduce_range, bool):
            raise TypeError(f"reduce_range={reduce_range!r} must be True or False, not {type(reduce_range).__name__}")
        self.fc = nn.Linear(in_features, out_features)
        self.input_fq = _fq(0, 127 if reduce_range else 255, torch.quint8, torch.per_tensor_affine)
        self.weight_fq = _fq(-128, 127, torch.qint8, torch.per_tensor_symmetric)
        self.output_fq = _fq(0, 255, torch.quint8, torch.per_tensor_affine)

    @classmethod
    def from_linear(cls, linear: nn.Linear, reduce_range: bool = True) -> "FakeQuantizedModel":
        """Wrap a copy of a trained ``nn.Linear``."""
        if not isinstance(linear, nn.Linear):
            raise TypeError(f"linear must be a torch.nn.Linear (e.g. mlp.net[5]), not {type(linear).__name__}")
        if linear.bias is None:
            raise ValueError("linear has no bias; FakeQuantizedModel wraps an nn.Linear with a bias (bias=True)")
        model = cls(linear.in_features, linear.out_features, reduce_range)
        model.fc.load_state_dict(linear.state_dict())
        return model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        _check_width(x, self.fc.in_features)
        x = self.input_fq(x)
        w = self.weight_fq(self.fc.weight)
        return self.output_fq(F.linear(x, w, self.fc.bias))

    def freeze(self) -> "FakeQuantizedModel":
        """Stop the observers: the qparams seen so far are fixed. Returns ``self``."""
        for fq in (self.input_fq, self.weight_fq, self.output_fq):
            fq.disable_observer()
        return self

    def qparams(self) -> dict[str, tuple[float, int]]:
        """``{'input'|'weight'|'output': (scale, zero_point)}`` as calibrated so far."""
        out = {}
        for name, fq in (("input", self.input_fq), ("weight", self.weight_fq), ("output", self.output_fq)):
            scale, zp = fq.calculate_qparams()
            out[name] = (float(scale), int(zp))
        return out

    def to_int8(self) -> "Int8Linear":
        """The truly quantized model with exactly these qparams (INT8 weight, fbgemm integer kernel)."""
        _check_ready(self)
        return Int8Linear(self)


class Int8Linear(nn.Module):
    """A ``torch.ao.nn.quantized.Linear`` between an input quantize and an output dequantize.

    Inputs are first clamped to the grid the fake-quantized model used (its
    ``[0, 127]`` reduced range), then quantized to UINT8; the matmul runs on
    integers and its INT32 result is requantized to the output scale.
    """

    def __init__(self, fake: FakeQuantizedModel) -> None:
        super().__init__()
        from torch.ao.nn.quantized import Linear as QLinear

        _check_ready(fake)
        q = fake.qparams()
        self.in_scale, self.in_zero_point = q["input"]
        self.in_lo = (fake.input_fq.quant_min - self.in_zero_point) * self.in_scale
        self.in_hi = (fake.input_fq.quant_max - self.in_zero_point) * self.in_scale
        w_scale, w_zp = q["weight"]
        qweight = torch.quantize_per_tensor(fake.fc.weight.detach().float(), w_scale, w_zp, torch.qint8)
        self.linear = QLinear(fake.fc.in_features, fake.fc.out_features, dtype=torch.qint8)
        self.linear.set_weight_bias(qweight, fake.fc.bias.detach().float())
        self.linear.scale, self.linear.zero_point = q["output"]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        _check_width(x, self.linear.in_features)
        x = torch.clamp(x, self.in_lo, self.in_hi)
        xq = torch.quantize_per_tensor(x, self.in_scale, self.in_zero_point, torch.quint8)
        return self.linear(xq).dequantize()
