"""Checkers for the chapters' exercises: run the learner's answer on fixed cases and say what is wrong.

Each ``check_*`` returns a :class:`Feedback`: true when the answer is right,
and shown in a notebook as one readable message (what was tested, and on
failure the first thing that went wrong with a hint). The checkers never
raise on a wrong answer; they raise ``TypeError`` only when the thing passed
is not even a function or model, and ``ValueError`` when the exercise's own
setup is wrong (a model already quantized, an example the model cannot run on).

- chapter 01: :func:`check_quantize` (write the affine quantize step);
- chapter 02: :func:`check_skip_last_linear` (quantize every Linear but the last);
- chapter 03: :func:`check_fake_quant_ste` (fake quantization with a straight-through gradient).
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Callable

import torch
from torch import nn

from .checks import check_float_model

__all__ = ["Feedback", "check_quantize", "check_skip_last_linear", "check_fake_quant_ste"]


@dataclass(frozen=True)
class Feedback:
    """The verdict on an exercise: ``bool(feedback)`` is whether it passed; printing it shows the message."""

    passed: bool
    message: str

    def __bool__(self) -> bool:
        return self.passed

    def __repr__(self) -> str:
        return ("PASS: " if self.passed else "NOT YET: ") + self.message

    __str__ = __repr__


def _require_callable(fn: object, what: str) -> None:
    if not callable(fn):
        raise TypeError(f"pass your {what} itself (a function), not {type(fn).__name__}")


def _call(fn: Callable, *args) -> tuple[object, str | None]:
    try:
        return fn(*args), None
    except Exception as exc:  # the learner's code: report it, do not crash the notebook
        return None, f"calling it raised {type(exc).__name__}: {exc}"


# (name, quant_min, quant_max, torch dtype for the reference, scale, zero_point)
_QUANTIZE_CASES = [
    ("UINT8 asymmetric", 0, 255, torch.quint8, 0.05, 128),
    ("INT8 symmetric", -128, 127, torch.qint8, 0.02, 0),
    ("UINT8 with an off-centre zero-point", 0, 255, torch.quint8, 0.1, 10),
]


def _quantize_inputs() -> torch.Tensor:
    g = torch.Generator().manual_seed(1234)
    x = torch.randn(4000, generator=g) * 2.0
    # Exact grid points, points halfway between two levels, and values far outside the range.
    extra = torch.tensor([0.0, 0.025, -0.025, 0.075, 1e3, -1e3, 12.0, -12.0])
    return torch.cat([x, extra])


def check_quantize(fn: Callable) -> Feedback:
    """Exercise 01: ``fn(x, scale, zero_point, quant_min, quant_max)`` must return the integer codes.

    Checked against ``torch.quantize_per_tensor(...).int_repr()`` on three
    (range, scale, zero-point) cases, including values far outside the range.
    """
    _require_callable(fn, "quantize function")
    x = _quantize_inputs()
    for name, qmin, qmax, dtype, scale, zp in _QUANTIZE_CASES:
        expected = torch.quantize_per_tensor(x, scale, zp, dtype).int_repr().to(torch.int64)
        got, err = _call(fn, x.clone(), scale, zp, qmin, qmax)
        if err:
            return Feedback(False, f"[{name}] {err}")
        if not isinstance(got, torch.Tensor):
            return Feedback(False, f"[{name}] return a torch.Tensor of integer codes, not {type(got).__name__}")
        if got.shape != x.shape:
            return Feedback(False, f"[{name}] the result has shape {tuple(got.shape)}, the input {tuple(x.shape)}: quantize element-wise")
        got = got.detach()
        if got.is_floating_point() and not torch.equal(got, got.round()):
            return Feedback(False, f"[{name}] the codes are not whole numbers: round x / scale to the nearest integer (torch.round)")
        got = got.to(torch.int64)
        if got.min() < qmin or got.max() > qmax:
            return Feedback(False, f"[{name}] codes from {int(got.min())} to {int(got.max())} leave [{qmin}, {qmax}]: clamp them (torch.clamp)")
        diff = (got - expected).abs()
        if diff.max() == 0:
            continue
        no_zp = torch.clamp(torch.round(x * (1.0 / scale)), qmin, qmax).to(torch.int64)
        if zp != 0 and ((got - no_zp).abs() > 0).float().mean() <= 1e-3:
            return Feedback(False, f"[{name}] off by exactly the zero-point ({zp}): add zero_point after rounding")
        if diff.max() <= 1 and float((diff > 0).float().mean()) <= 1e-3:
            continue  # a tie or two rounded the other way (x / scale versus x * (1 / scale)): accepted
        floor = torch.clamp(torch.floor(x / scale) + zp, qmin, qmax).to(torch.int64)
        if torch.equal(got, floor):
            return Feedback(False, f"[{name}] you round down (floor/int()); round to the nearest integer with torch.round")
        bad = int((diff > 0).sum())
        i = int(torch.nonzero(diff)[0])
        return Feedback(
            False,
            f"[{name}] {bad} of {x.numel()} codes differ; e.g. x={float(x[i]):.4g} gave {int(got[i])}, "
            f"expected {int(expected[i])} = clamp(round(x / {scale}) + {zp}, {qmin}, {qmax})",
        )
    return Feedback(True, f"your quantize matches torch.quantize_per_tensor on {len(_QUANTIZE_CASES)} cases ({x.numel()} values each)")


def _is_quantized_linear(mod: nn.Module) -> bool:
    name = mod._get_name()
    if name in ("DynamicQuantizedLinear", "QuantizedLinear") or "Quantized" in name:
        return True
    w = getattr(mod, "weight", None)
    return isinstance(w, torch.Tensor) and type(w) not in (torch.Tensor, nn.Parameter)


def _linear_names(model: nn.Module) -> list[str]:
    return [n for n, m in model.named_modules() if "Linear" in m._get_name() and "PackedParams" not in m._get_name()]


def check_skip_last_linear(fn: Callable[[nn.Module], nn.Module], model: nn.Module, example: torch.Tensor) -> Feedback:
    """Exercise 02: ``fn(model)`` returns a *copy* with every Linear quantized to INT8 except the last one.

    Checks that ``model`` itself is unchanged, that the last Linear is still a
    float ``nn.Linear``, that every other one is quantized (torch.ao's
    ``DynamicQuantizedLinear`` or a torchao quantized weight), and that the
    copy still computes nearly the same outputs on ``example``.
    """
    _require_callable(fn, "conversion function")
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be an nn.Module, got {type(model).__name__}")
    check_float_model(model)
    if not isinstance(example, torch.Tensor):
        raise TypeError(f"example must be an input batch as a torch.Tensor, got {type(example).__name__}")
    names = _linear_names(model)
    if len(names) < 2:
        raise ValueError("the model needs at least two Linear layers for this exercise")
    reference = copy.deepcopy(model).eval()
    try:
        with torch.inference_mode():
            expected = reference(example)
    except (RuntimeError, TypeError, ValueError, IndexError) as exc:
        raise ValueError(f"the model fails on example (shape {tuple(example.shape)}): {str(exc).strip().splitlines()[0]}. "
                         "Pass an input batch shaped like its data, e.g. a few test images") from None
    result, err = _call(fn, model)
    if err:
        return Feedback(False, err)
    if not isinstance(result, nn.Module):
        return Feedback(False, f"return the converted model (an nn.Module), not {type(result).__name__}")
    if any(_is_quantized_linear(m) for m in model.modules()) or any(
        not torch.equal(a, b) for a, b in zip(model.state_dict().values(), reference.state_dict().values())
    ):
        return Feedback(False, "your function changed the model it was given: convert a copy (copy.deepcopy(model))")
    modules = dict(result.named_modules())
    last = names[-1]
    if last not in modules:
        return Feedback(False, f"the converted model has no module {last!r}; keep the structure (quantize in place on a copy)")
    if _is_quantized_linear(modules[last]) or type(modules[last]) is not nn.Linear:
        return Feedback(False, f"the last Linear ({last!r}) was quantized too: skip it (filter_fn, or a set of names)")
    float_ones = [n for n in names[:-1] if n in modules and not _is_quantized_linear(modules[n])]
    if float_ones:
        return Feedback(False, f"these Linear layers are still float: {float_ones}; quantize every Linear but the last")
    with torch.inference_mode():
        got = result.eval()(example)
    if got.shape != expected.shape:
        return Feedback(False, f"the converted model returns shape {tuple(got.shape)}, the original {tuple(expected.shape)}")
    # Judged by the predicted class, not by the largest deviation: on a CPU without INT8 dot products torchao's
    # dynamic INT8 can saturate a few products (chapter 01), which moves some logits a lot but few predictions.
    agree = float((got.argmax(-1) == expected.argmax(-1)).float().mean())
    if agree < 0.9:
        return Feedback(False, f"the converted model predicts the original's class on only {agree:.0%} of the example "
                               "(expected at least 90 %): is the right model converted?")
    return Feedback(True, f"{len(names) - 1} Linear layer(s) quantized, {last!r} kept in float, the original untouched")


def check_fake_quant_ste(fn: Callable) -> Feedback:
    """Exercise 03: ``fn(x, scale, zero_point, quant_min, quant_max)`` fake-quantizes ``x`` with a clipped STE.

    The forward values must equal ``torch.fake_quantize_per_tensor_affine``
    (up to a rare tie); the gradient must be 1 where ``x`` is inside the
    clipping range and 0 where it was clipped, as PyTorch's.
    """
    _require_callable(fn, "fake-quantize function")
    g = torch.Generator().manual_seed(7)
    x0 = torch.cat([torch.randn(3000, generator=g) * 3.0, torch.tensor([0.0, 100.0, -100.0])])
    scale, zp, qmin, qmax = 0.05, 3, -128, 127
    xr = x0.clone().requires_grad_(True)
    ref = torch.fake_quantize_per_tensor_affine(xr, scale, zp, qmin, qmax)
    ref.sum().backward()
    x = x0.clone().requires_grad_(True)
    got, err = _call(fn, x, scale, zp, qmin, qmax)
    if err:
        return Feedback(False, err)
    if not isinstance(got, torch.Tensor) or got.shape != x0.shape:
        return Feedback(False, "return a tensor with the same shape as x")
    if not got.is_floating_point():
        return Feedback(False, "fake quantization stays in float: dequantize the codes again, (q - zero_point) * scale")
    got_v = got.detach()
    diff = (got_v - ref.detach()).abs()
    if diff.max() > 1e-6 and not (diff.max() <= scale * 1.001 and float((diff > 1e-6).float().mean()) <= 1e-3):
        i = int(torch.argmax(diff))
        return Feedback(
            False,
            f"forward values differ from torch.fake_quantize_per_tensor_affine: x={float(x0[i]):.4g} gave "
            f"{float(got_v[i]):.4g}, expected {float(ref.detach()[i]):.4g} (quantize, clamp, then dequantize)",
        )
    if not got.requires_grad:
        return Feedback(False, "no gradient flows back to x: torch.round has zero gradient, detach it and pass x's gradient straight through")
    got.sum().backward()
    if x.grad is None:
        return Feedback(False, "no gradient reached x")
    if torch.count_nonzero(x.grad) == 0:
        return Feedback(False, "the gradient is zero everywhere (that is what rounding gives): use the straight-through trick")
    if not torch.equal(x.grad, xr.grad):
        clipped = xr.grad == 0
        if torch.all(x.grad == 1):
            return Feedback(False, f"the gradient is 1 everywhere, also for the {int(clipped.sum())} clipped values: multiply it by the inside-the-range mask")
        return Feedback(False, "the gradient should be exactly 1 inside the clipping range and 0 outside")
    return Feedback(True, "forward matches torch.fake_quantize_per_tensor_affine, gradient is the clipped straight-through estimator")
