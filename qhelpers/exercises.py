"""Checkers for the chapters' exercises: run the learner's answer on fixed cases and say what is wrong.

Each ``check_*`` returns a :class:`Feedback`: true when the answer is right,
and shown in a notebook as one readable message (what was tested, and on
failure the first thing that went wrong with a hint). The checkers never
raise on a wrong answer; they raise ``TypeError`` only when the thing passed
is not even a function or model, and ``ValueError`` when the exercise's own
setup is wrong (a model already quantized, an example the model cannot run on).

- chapter 01: :func:`check_quantize` (write the affine quantize step);
- chapter 02: :func:`check_skip_last_linear` (quantize every Linear but the last);
- chapter 03: :func:`check_fake_quant_ste` (fake quantization with a straight-through gradient);
- chapter 04: :func:`check_ptq_eager` (fuse, prepare, calibrate and convert a model yourself);
- chapter 05: :func:`check_keep_float` (choose the layers to keep in FP32 to reach an accuracy);
- chapter 06: :func:`check_pack_int4` (two 4-bit codes per byte, and back).

A stub that still raises ``NotImplementedError`` gets a "not done yet" verdict,
so a notebook shipping stubs runs clean. Where an exercise asks you to write a
kernel yourself, the checker runs your function with that kernel (and the
course's own implementation of it) patched to raise, and refuses an answer
that calls it: a wrapper around ``torch.quantize_per_tensor`` does not pass.
Reference solutions live in :mod:`qhelpers.solutions`, outside the notebooks.
"""

from __future__ import annotations

import contextlib
import copy
from dataclasses import dataclass
from typing import Callable, Iterator, Sequence
from unittest import mock

import torch
from torch import nn

from . import ptq, quant, qat
from .checks import check_float_model

__all__ = ["Feedback", "check_quantize", "check_skip_last_linear", "check_fake_quant_ste", "check_ptq_eager",
           "check_keep_float", "check_pack_int4", "KERNELS"]

# The PyTorch kernels the exercises of chapters 01 and 03 ask the learner to write: a solution may not call them.
KERNELS = ("quantize_per_tensor", "quantize_per_channel", "quantize_per_tensor_dynamic",
           "fake_quantize_per_tensor_affine", "fake_quantize_per_channel_affine",
           "_fake_quantize_learnable_per_tensor_affine", "_fake_quantize_learnable_per_channel_affine",
           "fused_moving_avg_obs_fake_quant")


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


class _Forbidden(Exception):
    """Raised by a kernel the exercise forbids, while the learner's function runs."""


def _refuse(*args, **kwargs):  # swapped in as the code of a forbidden Python function (no closure: any function takes it)
    # runs with the globals of the function it replaces: reach _Forbidden through the import system
    # (``__name__`` is that function's module, e.g. qhelpers.packing)
    raise __import__("qhelpers.exercises", fromlist=["_Forbidden"])._Forbidden(
        f"a function of {__name__} that does the exercise for you")


@contextlib.contextmanager
def _forbid(kernels: Sequence[str] = (), functions: Sequence[Callable] = (), observers: bool = False) -> Iterator[None]:
    """While inside, calling ``torch.<kernel>`` for each name in ``kernels``, any of ``functions`` (however imported),
    or creating an observer / FakeQuantize module raises :class:`_Forbidden` naming what was called."""
    def refuse(name: str) -> Callable:
        def raiser(*args, **kwargs):
            raise _Forbidden(name)
        return raiser

    with contextlib.ExitStack() as stack:
        for name in kernels:
            if hasattr(torch, name):
                stack.enter_context(mock.patch.object(torch, name, refuse(f"torch.{name}")))
        if observers:
            from torch.ao.quantization.fake_quantize import FakeQuantizeBase
            from torch.ao.quantization.observer import ObserverBase

            stack.enter_context(mock.patch.object(ObserverBase, "__init__", refuse("an observer (torch.ao.quantization)")))
            stack.enter_context(mock.patch.object(FakeQuantizeBase, "__init__", refuse("a FakeQuantize module")))
        saved = [(f, f.__code__) for f in functions]
        try:
            for f, _ in saved:
                f.__code__ = _refuse.__code__
            yield
        finally:
            for f, code in saved:
                f.__code__ = code


def _call(fn: Callable, *args, forbidden: str = "") -> tuple[object, str | None]:
    """``fn(*args)``: its result, or what went wrong as a message (a stub, a forbidden call, any exception)."""
    try:
        return fn(*args), None
    except NotImplementedError:
        return None, "not done yet: your function still raises NotImplementedError; write it and run the check again"
    except _Forbidden as exc:
        return None, f"your function calls {exc}, which is what this exercise asks you to write yourself{forbidden}"
    except Exception as exc:  # the learner's code: report it, do not crash the notebook
        return None, f"calling it raised {type(exc).__name__}: {exc}"


def _is_kernel(fn: object, kernels: Sequence[str], functions: Sequence[Callable] = ()) -> str | None:
    """The name of the forbidden kernel ``fn`` is (itself, or a functools.partial of it), or None."""
    base = getattr(fn, "func", fn)  # functools.partial
    for name in kernels:
        if hasattr(torch, name) and base is getattr(torch, name):
            return f"torch.{name}"
    for f in functions:
        if base is f:
            return f"{f.__module__}.{f.__name__}"
    return None


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
    ``fn`` runs with PyTorch's quantize/fake-quantize kernels, observers and
    ``qhelpers.quant``'s quantize patched to raise: an answer calling them fails.
    """
    _require_callable(fn, "quantize function")
    own = (quant.quantize, quant.fake_quantize, quant.grid_codes)
    kernel = _is_kernel(fn, KERNELS, own)
    if kernel:
        return Feedback(False, f"you passed {kernel} itself: write your own function, using only torch.round, "
                               "torch.clamp and arithmetic")
    x = _quantize_inputs()
    for name, qmin, qmax, dtype, scale, zp in _QUANTIZE_CASES:
        expected = torch.quantize_per_tensor(x, scale, zp, dtype).int_repr().to(torch.int64)
        with _forbid(KERNELS, own, observers=True):
            got, err = _call(fn, x.clone(), scale, zp, qmin, qmax,
                             forbidden=": use only torch.round, torch.clamp and arithmetic")
        if err:
            return Feedback(False, err if err.startswith("not done yet") else f"[{name}] {err}")
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
    clipping range and 0 where it was clipped, as PyTorch's. ``fn`` runs with
    PyTorch's fake-quantize and quantize kernels, observers and
    ``qhelpers.quant.fake_quantize`` patched to raise: an answer calling them fails.
    """
    _require_callable(fn, "fake-quantize function")
    own = (quant.quantize, quant.fake_quantize, quant.grid_codes)
    kernel = _is_kernel(fn, KERNELS, own)
    if kernel:
        return Feedback(False, f"you passed {kernel} itself: write your own function (torch.round, torch.clamp, "
                               "arithmetic and .detach())")
    g = torch.Generator().manual_seed(7)
    x0 = torch.cat([torch.randn(3000, generator=g) * 3.0, torch.tensor([0.0, 100.0, -100.0])])
    scale, zp, qmin, qmax = 0.05, 3, -128, 127
    xr = x0.clone().requires_grad_(True)
    ref = torch.fake_quantize_per_tensor_affine(xr, scale, zp, qmin, qmax)
    ref.sum().backward()
    x = x0.clone().requires_grad_(True)
    with _forbid(KERNELS, own, observers=True):
        got, err = _call(fn, x, scale, zp, qmin, qmax,
                         forbidden=": use torch.round, torch.clamp, arithmetic and .detach()")
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


# --- chapter 06: bit packing ------------------------------------------------------------------------


def _packers() -> list[Callable]:
    """The packers a solution must not call: the course's own, and torchao's."""
    from . import packing

    functions: list[Callable] = [packing.pack, packing.unpack]
    try:
        from torchao.prototype.dtypes.uintx import bitpacking
    except ImportError:  # pragma: no cover - torchao is pinned
        return functions
    return functions + [getattr(bitpacking, n) for n in ("pack", "unpack", "pack_cpu", "unpack_cpu")
                        if callable(getattr(bitpacking, n, None))]


_SHIFTS = ": write the packing yourself with shifts (<<, >>) and masks (&, |)"


def _pack_int4_cases() -> list[tuple[str, torch.Tensor]]:
    g = torch.Generator().manual_seed(2024)
    return [
        ("the example [1, 2, 15, 0]", torch.tensor([1, 2, 15, 0], dtype=torch.uint8)),
        ("random codes of shape (3, 64)", torch.randint(0, 16, (3, 64), generator=g, dtype=torch.int64).to(torch.uint8)),
        ("all 15 (every bit set)", torch.full((2, 8), 15, dtype=torch.uint8)),
        ("alternating 0 and 15", torch.tensor([0, 15] * 8, dtype=torch.uint8)),
        ("all zeros, shape (4, 2, 6)", torch.zeros(4, 2, 6, dtype=torch.uint8)),
    ]


def check_pack_int4(pack_fn: Callable[[torch.Tensor], torch.Tensor], unpack_fn: Callable[[torch.Tensor], torch.Tensor]) -> Feedback:
    """Check ``pack_fn(codes) -> packed`` and ``unpack_fn(packed) -> codes`` for 4-bit codes.

    ``codes`` is a ``uint8`` tensor of values 0..15 whose last dimension is
    even; ``pack_fn`` must return ``uint8`` with half that last dimension,
    code ``2k`` in the low nibble (bits 0-3) of byte ``k`` and code ``2k + 1``
    in the high nibble (bits 4-7), the layout of :func:`qhelpers.packing.pack`;
    ``unpack_fn`` must give the codes back exactly.
    """
    _require_callable(pack_fn, "pack function")
    _require_callable(unpack_fn, "unpack function")
    from . import packing

    forbidden = _packers()
    for name, codes in _pack_int4_cases():
        expected = packing.pack(codes, 4)
        with _forbid(functions=forbidden):
            got, err = _call(pack_fn, codes.clone(), forbidden=_SHIFTS)
        if err:
            return Feedback(False, f"pack: {err}")
        if not isinstance(got, torch.Tensor):
            return Feedback(False, f"[{name}] pack must return a torch.Tensor, not {type(got).__name__}")
        if got.shape != expected.shape:
            return Feedback(False, f"[{name}] pack returned shape {tuple(got.shape)} for codes of shape {tuple(codes.shape)}; "
                                   f"expected {tuple(expected.shape)}: two codes per byte along the last dimension")
        if got.dtype != torch.uint8:
            return Feedback(False, f"[{name}] pack returned {got.dtype}; a byte is torch.uint8 (int8 would make bytes above 127 "
                                   "negative): convert with .to(torch.uint8)")
        if not torch.equal(got, expected):
            swapped = packing.pack(torch.stack([codes[..., 1::2], codes[..., 0::2]], -1).reshape(codes.shape), 4)
            halves = None
            n = codes.shape[-1]
            if n % 2 == 0:
                halves = packing.pack(torch.stack([codes[..., : n // 2], codes[..., n // 2 :]], -1).reshape(codes.shape), 4)
            if torch.equal(got, swapped):
                return Feedback(False, f"[{name}] the nibbles are swapped: code 2k goes in the LOW nibble (bits 0-3), "
                                       "code 2k+1 in the high nibble (shift it left by 4)")
            if halves is not None and torch.equal(got, halves):
                return Feedback(False, f"[{name}] you pair code k with code k + n/2 (the first half with the second); "
                                       "pair neighbours instead: codes 2k and 2k+1 share byte k")
            i = int(torch.nonzero(got.flatten() != expected.flatten())[0])
            return Feedback(False, f"[{name}] byte {i} is {int(got.flatten()[i])}, expected {int(expected.flatten()[i])} "
                                   f"(= low | high << 4); e.g. codes [1, 2] pack to 1 | 2 << 4 = 33")
        with _forbid(functions=forbidden):
            back, err = _call(unpack_fn, expected.clone(), forbidden=_SHIFTS)
        if err:
            return Feedback(False, f"unpack: {err}")
        if not isinstance(back, torch.Tensor):
            return Feedback(False, f"[{name}] unpack must return a torch.Tensor, not {type(back).__name__}")
        if back.shape != codes.shape:
            return Feedback(False, f"[{name}] unpack returned shape {tuple(back.shape)}; expected {tuple(codes.shape)} "
                                   "(twice the bytes in the last dimension, interleaved: low nibble first)")
        back = back.to(torch.int64)
        if int(back.max()) > 15 or int(back.min()) < 0:
            return Feedback(False, f"[{name}] unpack returned values up to {int(back.max())}: keep only 4 bits of the low "
                                   "nibble with a mask (& 0x0F)")
        if not torch.equal(back, codes.to(torch.int64)):
            order = torch.stack([codes[..., 1::2], codes[..., 0::2]], -1).reshape(codes.shape).to(torch.int64)
            if torch.equal(back, order):
                return Feedback(False, f"[{name}] unpack swaps each pair: the low nibble is the FIRST code of the pair")
            return Feedback(False, f"[{name}] unpack(pack(codes)) differs from codes: put each byte's low nibble first, "
                                   "then its high nibble (torch.stack([low, high], dim=-1), then reshape)")
    return Feedback(True, f"pack and unpack agree with qhelpers.packing on {len(_pack_int4_cases())} cases, edge codes included")
def _is_converted(model: nn.Module) -> bool:
    return any(type(m).__module__.startswith("torch.ao.nn.quantized") or type(m).__module__.startswith("torch.ao.nn.intrinsic.quantized")
               for m in model.modules())


def check_ptq_eager(fn: Callable, model: nn.Module, calibration: Sequence[torch.Tensor],
                    fuse: Sequence[Sequence[str]]) -> Feedback:
    """Exercise 04: ``fn(model, calibration, fuse)`` returns an INT8 *copy* of ``model`` made with torch.ao's eager
    calls: fuse the groups ``fuse``, set the ``x86`` qconfig, ``prepare``, run ``calibration`` through it, ``convert``.

    Compared with :func:`qhelpers.ptq.ptq_eager` on the same model and calibration: same quantized modules, outputs
    equal to within one step of the output grid on every element. ``fn`` runs with the course's own flows
    (``qhelpers.ptq.ptq_eager``/``ptq_fx``/``ptq_pt2e``, ``qhelpers.qat`` helpers) patched to raise.
    """
    _require_callable(fn, "quantization function")
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be an nn.Module, got {type(model).__name__}")
    helpers = (ptq.ptq_eager, ptq.ptq_fx, ptq.ptq_pt2e, qat.ptq_lowbit)
    if _is_kernel(fn, (), helpers):
        return Feedback(False, "you passed the course's own ptq_eager: write the steps yourself with torch.ao.quantization")
    reference = ptq.ptq_eager(model, list(calibration), fuse=[list(g) for g in fuse])  # checks model, calibration, fuse
    before = copy.deepcopy(model.state_dict())
    kinds_before = [type(m) for m in model.modules()]
    example = torch.cat(list(calibration))
    with _forbid((), helpers):
        result, err = _call(fn, model, list(calibration), [list(g) for g in fuse],
                            forbidden=": call fuse_modules, prepare and convert (torch.ao.quantization) yourself")
    if err:
        return Feedback(False, err)
    if not isinstance(result, nn.Module):
        return Feedback(False, f"return the converted model (an nn.Module), not {type(result).__name__}")
    if [type(m) for m in model.modules()] != kinds_before or list(model.state_dict()) != list(before) or any(
            not torch.equal(a, b) for a, b in zip(model.state_dict().values(), before.values())):
        return Feedback(False, "your function changed the model it was given: quantize a copy (copy.deepcopy(model))")
    kinds = {type(m).__name__ for m in result.modules()}
    if any("Observer" in k or "FakeQuantize" in k for k in kinds) and not _is_converted(result):
        return Feedback(False, "the model still holds observers: after calibrating, call convert (torch.ao.quantization.convert)")
    if not _is_converted(result):
        return Feedback(False, "no layer of the result is quantized: set model.qconfig = get_default_qconfig('x86'), then "
                               "prepare, calibrate and convert")
    expected_kinds = {type(m).__name__ for m in reference.modules()}
    if "ConvReLU2d" in expected_kinds and "ConvReLU2d" not in kinds:
        return Feedback(False, f"the layers were not fused (found {sorted(k for k in kinds if 'Conv' in k or 'Linear' in k)}): "
                               "call torch.ao.quantization.fuse_modules(m, fuse, inplace=True) before prepare")
    with torch.inference_mode():
        want = reference(example)
        try:
            got = result.eval()(example)
        except Exception as exc:  # the learner's model: report it
            return Feedback(False, f"running the result raised {type(exc).__name__}: {str(exc).splitlines()[0]}")
    if not isinstance(got, torch.Tensor) or got.shape != want.shape:
        return Feedback(False, "the result does not return the model's outputs (a tensor of the same shape)")
    # one step of the output grid: the scale of the last quantized module (its output is the model's)
    out_scale = [float(m.scale) for m in reference.modules() if hasattr(m, "scale") and hasattr(m, "zero_point")][-1]
    diff = float((got - want).abs().max())
    if diff > out_scale * 1.01:
        weights_right = all(torch.equal(a.int_repr(), b.int_repr()) for a, b in zip(
            (m.weight() for m in reference.modules() if hasattr(m, "weight") and callable(m.weight)),
            (m.weight() for m in result.modules() if hasattr(m, "weight") and callable(m.weight))))
        hint = ("the weights agree, so the activation ranges differ: calibrate with every batch of calibration, "
                "in inference mode, before convert" if weights_right else
                "use get_default_qconfig('x86') (per-channel weights, histogram activations)")
        return Feedback(False, f"outputs differ from the reference by up to {diff:.3g} (one output step is "
                               f"{out_scale:.3g}): {hint}")
    return Feedback(True, f"fused, calibrated and converted: outputs match qhelpers.ptq.ptq_eager within one output step "
                          f"(max difference {diff:.2g}) on {len(example)} inputs")


def check_keep_float(keep: object, model: nn.Module, calibration: Sequence[torch.Tensor], example_inputs: tuple,
                     score: Callable[[nn.Module], float], *, goal: float, max_layers: int,
                     what: str = "accuracy") -> Feedback:
    """Exercise 05: ``keep`` (a list of conv/linear layer names) kept in FP32 by FX PTQ must bring the mixed model's
    ``score`` to at least ``goal``, keeping at most ``max_layers`` layers in float.

    ``score(model)`` measures the quantized model (e.g. its test accuracy, or the SQNR of its logits against
    FP32's, in dB); ``what`` names it in the messages. The model is quantized with
    ``qhelpers.ptq.ptq_fx(model, calibration, example_inputs, keep_float=keep)``. ``keep`` may also be a function
    of no argument returning the list (a stub that raises NotImplementedError is "not done yet").
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be an nn.Module, got {type(model).__name__}")
    if not callable(score):
        raise TypeError(f"score must be a function of the quantized model, not {type(score).__name__}")
    if callable(keep):
        keep, err = _call(keep)
        if err:
            return Feedback(False, err)
    if isinstance(keep, (str, bytes)) or not isinstance(keep, (list, tuple, set)):
        return Feedback(False, f"give a list of layer names, e.g. ['fc'], not {type(keep).__name__} {keep!r}")
    keep = list(keep)
    layers = ptq.quantizable_layers(model)
    unknown = [n for n in keep if n not in layers]
    if unknown:
        return Feedback(False, f"{unknown} are not conv/linear layers of the model; choose from its "
                               f"{len(layers)} layers, e.g. {layers[:3]} ... {layers[-2:]}")
    if len(set(keep)) > max_layers:
        return Feedback(False, f"you keep {len(set(keep))} layers in FP32; the exercise allows at most {max_layers}: "
                               "keep only the most sensitive ones (the sensitivity ranking above)")
    mixed = ptq.ptq_fx(model, list(calibration), example_inputs, keep_float=keep, desc="calibrating (your choice)")
    value = float(score(mixed))
    if value < goal:
        return Feedback(False, f"with {keep or 'no layer'} in FP32 the {what} is {value:.4g}, below the goal {goal:.4g}: "
                               "keep a more sensitive layer in float instead, or add one")
    return Feedback(True, f"with {keep} in FP32 the {what} is {value:.4g} (goal {goal:.4g}), "
                          f"{len(layers) - len(set(keep))} of {len(layers)} layers in INT8")
