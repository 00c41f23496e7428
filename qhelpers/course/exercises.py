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
- chapter 05: :func:`check_fp32_search` (a greedy search for the layers to keep in FP32);
- chapter 06: :func:`check_pack_int4` (two 4-bit codes per byte, and back);
- chapter 08: :func:`check_gptq_column` (one column of GPTQ: round it, push its error onto the later columns).

A stub that still raises ``NotImplementedError`` gets a "not done yet" verdict,
so a notebook shipping stubs runs clean. Where an exercise asks you to write a
kernel yourself (01, 03, 06), the checker runs your function under guards
that refuse the kernel under any name: ``torch.quantize_per_tensor`` and its
kin, any quantize/fake-quantize/dequantize op however reached
(``torch.ops.aten.*``, ``getattr``, ``torch._C``, ``quantized_decomposed``,
``quantized``, ``torchao`` ops), any quantized or sub-byte tensor (quint8,
qint8, qint32, quint4x2, quint2x4, uint1-7, int1-7, float4), any Python code
of ``torch.ao.quantization`` (observers, FakeQuantize), torchao or the course's
own quantize/pack modules, and starting a thread or process or switching the
guards off. Each refusal says what was called and why.
Reference solutions live in :mod:`qhelpers.course.solutions`, outside the notebooks.
"""

from __future__ import annotations

import _thread
import contextlib
import copy
import functools
import inspect
import math
import os
import sys
from dataclasses import dataclass
from typing import Callable, Iterator, Sequence
from unittest import mock

import torch
from torch import nn
from torch.utils._python_dispatch import TorchDispatchMode

from .. import ptq, quant, qat, sensitivity
from ..checks import check_float_model, check_module

__all__ = ["Feedback", "check_quantize", "check_skip_last_linear", "check_fake_quant_ste", "check_ptq_eager",
           "check_fp32_search", "check_pack_int4", "check_gptq_column", "KERNELS"]

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
    """Raised, while the learner's function runs, by something the exercise forbids: ``str`` says what and why."""

    def __init__(self, what: str, why: str = "which does what this exercise asks you to write yourself") -> None:
        super().__init__(f"{what}, {why}")


# --- what a kernel exercise may not run ---------------------------------------------------------------------------
# Three guards, each closing a way of reaching the kernel under another name:
# 1. torch.<kernel> attributes patched to raise (the usual spelling, named in the message as written);
# 2. a TorchDispatchMode that sees every ATen/custom op however it was reached (torch.ops.aten.*, getattr,
#    torch._C, a Tensor method, a module's forward) and every tensor an op takes or returns: quantize/dequantize/
#    fake-quantize ops, the quantized_decomposed, quantized, torchao and onednn namespaces, and quantized or sub-byte
#    dtypes (quint8, qint8, qint32, quint4x2, quint2x4, uint1-7, int1-7, float4) are refused;
# 3. a profile hook that refuses any Python code from the packages that implement quantization in Python
#    (torch.ao.quantization's observers and FakeQuantize modules, torchao's quantize_affine, the course's own
#    qhelpers.quant, ...), whatever name the function was imported under, and (with 2.) starting a thread or a
#    process, or switching the hook off, which would hide a call from the guards.

_QUANT_OPS = ("quantize", "quantized", "fake_quant", "_fq_", "int_repr", "qparams", "q_scale", "q_zero_point",
              "q_per_channel", "qscheme", "int4pack", "int8pack", "_dyn_quant", "fbgemm")
_QUANT_NAMESPACES = ("quantized", "_quantized", "quantized_decomposed", "torchao", "onednn")
_QUANT_DTYPES = tuple(getattr(torch, n) for n in (
    "quint8", "qint8", "qint32", "quint4x2", "quint2x4", *(f"uint{b}" for b in range(1, 8)),
    *(f"int{b}" for b in range(1, 8)), "float4_e2m1fn_x2") if isinstance(getattr(torch, n, None), torch.dtype))


def _quant_op(name: str) -> str | None:
    """Why the op ``namespace.name[.overload]`` (``str`` of a torch.ops object) is a quantization kernel, or None."""
    namespace, _, rest = name.partition(".")
    op = rest.split(".")[0]
    if namespace in _QUANT_NAMESPACES:
        return f"{namespace}::{op} (an op of the {namespace} library)"
    if namespace == "aten" and any(part in op for part in _QUANT_OPS):
        return f"aten::{op} (PyTorch's {op.strip('_').replace('_', ' ')} kernel)"
    return None


def _quant_tensors(values: object) -> str | None:
    """The dtype of the first quantized (or sub-byte) tensor among ``values`` (nested lists/tuples/dicts), or None."""
    stack = [values]
    while stack:
        v = stack.pop()
        if isinstance(v, torch.Tensor):
            if v.is_quantized or v.dtype in _QUANT_DTYPES:
                return str(v.dtype)
        elif isinstance(v, (list, tuple)):
            stack.extend(v)
        elif isinstance(v, dict):
            stack.extend(v.values())
    return None


class _OpGuard(TorchDispatchMode):
    """Refuses quantization ops and quantized tensors, whatever Python name reached them (guard 2 above)."""

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        why = _quant_op(str(func))
        if why:
            raise _Forbidden(f"calls {why}")
        dtype = _quant_tensors((args, kwargs))
        out = func(*args, **kwargs)
        dtype = dtype or _quant_tensors(out)
        if dtype:
            raise _Forbidden(f"makes a {dtype} tensor ({str(func).split('.')[1]} on a quantized or packed dtype)",
                             "whose kernels quantize or pack for you: work on plain integer or float tensors")
        return out


def _package_files(*names: str) -> tuple[str, ...]:
    """Source paths (a package's folder, or a module's file) of the importable ones among ``names``."""
    import importlib

    paths = []
    for name in names:
        try:
            module = importlib.import_module(name)
        except ImportError:  # pragma: no cover - an optional package
            continue
        file = getattr(module, "__file__", None)
        if file:
            paths.append(os.path.dirname(file) + os.sep if file.endswith("__init__.py") else file)
    return tuple(paths)


@functools.lru_cache(maxsize=None)
def _kernel_code() -> tuple[str, ...]:
    """The Python code a kernel exercise (01, 03, 06) may not run: every library that quantizes or packs."""
    return _package_files(
        "torch.ao.quantization", "torch.ao.nn", "torch.quantization", "torch.nn.quantized", "torch.nn.intrinsic",
        "torch.nn.qat", "torchao", "qhelpers.quant", "qhelpers.ranges", "qhelpers.qat", "qhelpers.packing",
        "qhelpers.weight_only", "qhelpers.codebook", "qhelpers.smoothing", "qhelpers.activation_aware")


def _escapes() -> tuple[frozenset, tuple]:
    """Python code objects and builtins that start a thread or process or switch the guards off."""
    import concurrent.futures.process
    import concurrent.futures.thread
    import multiprocessing.process
    import subprocess
    import threading

    from torch.utils import _python_dispatch

    codes = [threading.Thread.start, threading.setprofile, threading.settrace, subprocess.Popen.__init__,
             multiprocessing.process.BaseProcess.start, concurrent.futures.thread.ThreadPoolExecutor.submit,
             concurrent.futures.process.ProcessPoolExecutor.submit, _python_dispatch._disable_current_modes,
             _python_dispatch._pop_mode]
    builtins = (sys.setprofile, sys.settrace, _thread.start_new_thread, *(getattr(os, n) for n in (
        "fork", "system", "posix_spawn", "execv", "execve") if hasattr(os, n)),
                *(getattr(torch._C, n) for n in ("_unset_dispatch_mode", "_set_dispatch_mode", "_DisableTorchDispatch")
                  if hasattr(torch._C, n)))
    return frozenset(inspect.unwrap(f).__code__ for f in codes if hasattr(inspect.unwrap(f), "__code__")), builtins


class _Hook:
    """The profile hook of guard 3: ``on`` is cleared before the checker itself restores the previous hook."""

    def __init__(self, files: tuple[str, ...], codes: frozenset, escapes: bool) -> None:
        self.files, self.codes, self.on = files, codes, True
        self.escape_codes, self.escape_builtins = _escapes() if escapes else (frozenset(), ())

    def __call__(self, frame, event: str, arg: object) -> None:
        if not self.on:
            return
        if event == "call":
            code = frame.f_code
            if code in self.codes or code.co_filename.startswith(self.files):
                module = frame.f_globals.get("__name__", "?")
                raise _Forbidden(f"imports {module}" if code.co_name == "<module>"
                                 else f"calls a function of {module} ({code.co_qualname})")
            if code in self.escape_codes:
                raise _Forbidden(f"calls {frame.f_globals.get('__name__', '?')}.{code.co_qualname}",
                                 "which would run code where the check cannot see it: call everything directly")
        elif event == "c_call" and any(arg is b for b in self.escape_builtins):
            raise _Forbidden(f"calls {getattr(arg, '__module__', None) or 'builtins'}.{getattr(arg, '__name__', arg)}",
                             "which would run code where the check cannot see it: call everything directly")


@contextlib.contextmanager
def _forbid(kernels: Sequence[str] = (), functions: Sequence[Callable] = (), *, code: Sequence[str] = (),
            ops: bool = False) -> Iterator[None]:
    """While inside (this thread): ``torch.<kernel>`` for each name in ``kernels``, any of ``functions`` (however
    imported), any Python code from the files/folders ``code``, and with ``ops`` any quantization op or quantized
    tensor (and starting threads/processes) raise :class:`_Forbidden` saying what was called and why."""
    def refuse(name: str) -> Callable:
        def raiser(*args, **kwargs):
            raise _Forbidden(f"calls {name}")
        return raiser

    codes = frozenset(inspect.unwrap(f).__code__ for f in functions if hasattr(inspect.unwrap(f), "__code__"))
    hook = _Hook(tuple(code), codes, escapes=ops)
    with contextlib.ExitStack() as stack:
        for name in kernels:
            if hasattr(torch, name):
                stack.enter_context(mock.patch.object(torch, name, refuse(f"torch.{name}")))
        if ops:
            stack.enter_context(_OpGuard())
        previous = sys.getprofile()
        sys.setprofile(hook)
        try:
            yield
        finally:
            hook.on = False
            sys.setprofile(previous)


@contextlib.contextmanager
def _unguarded() -> Iterator[None]:
    """Inside a guarded call, run the course's own code (e.g. a ``measure`` the checker hands out) unguarded."""
    hook = sys.getprofile()
    paused = isinstance(hook, _Hook) and hook.on
    if paused:
        hook.on = False
    sys.setprofile(None)
    try:
        yield
    finally:
        sys.setprofile(hook)
        if paused:
            hook.on = True


def _call(fn: Callable, *args, forbidden: str = "") -> tuple[object, str | None]:
    """``fn(*args)``: its result, or what went wrong as a message (a stub, a forbidden call, any exception)."""
    try:
        return fn(*args), None
    except NotImplementedError:
        return None, "not done yet: your function still raises NotImplementedError; write it and run the check again"
    except _Forbidden as exc:
        return None, f"your function {exc}{forbidden}"
    except Exception as exc:  # the learner's code: report it, do not crash the notebook
        return None, f"calling it raised {type(exc).__name__}: {exc}"


def _is_kernel(fn: object, kernels: Sequence[str], functions: Sequence[Callable] = (),
               code: Sequence[str] = ()) -> str | None:
    """The name of the forbidden kernel ``fn`` is (itself, or a functools.partial of it), or None: a torch.<kernel>,
    one of ``functions``, a quantization op of torch.ops, or a function defined in the files/folders ``code``."""
    base = getattr(fn, "func", fn)  # functools.partial
    for name in kernels:
        if hasattr(torch, name) and base is getattr(torch, name):
            return f"torch.{name}"
    for f in functions:
        if base is f:
            return f"{f.__module__}.{f.__name__}"
    if type(base).__module__ == "torch._ops" and _quant_op(str(base)):  # torch.ops.<namespace>.<op>[.<overload>]
        return f"torch.ops.{base}"
    inner = inspect.unwrap(base) if callable(base) else base
    file = getattr(getattr(inner, "__code__", None), "co_filename", "")
    if file and code and file.startswith(tuple(code)):
        return f"{inner.__module__}.{inner.__qualname__}"
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
    kernel = _is_kernel(fn, KERNELS, code=_kernel_code())
    if kernel:
        return Feedback(False, f"you passed {kernel} itself: write your own function, using only torch.round, "
                               "torch.clamp and arithmetic")
    x = _quantize_inputs()
    for name, qmin, qmax, dtype, scale, zp in _QUANTIZE_CASES:
        expected = torch.quantize_per_tensor(x, scale, zp, dtype).int_repr().to(torch.int64)
        with _forbid(KERNELS, code=_kernel_code(), ops=True):
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
    """Exercise 02: ``fn(model)`` returns a *copy* with every Linear quantized by torchao's dynamic INT8 config
    (``Int8DynamicActivationInt8WeightConfig``) except the last one.

    Checks that ``model`` itself is unchanged, that the last Linear is still a
    float ``nn.Linear``, that every other one holds the weight that config makes
    (an ``Int8Tensor`` whose activations are quantized per row, symmetric: its
    ``act_quant_kwargs``), not any quantized weight: weight-only INT8/INT4 or
    torch.ao's ``quantize_dynamic`` are refused, naming what was found. The copy
    must compute what the config computes on ``example`` (the checker quantizes
    a copy of ``model`` itself to compare).
    """
    _require_callable(fn, "conversion function")
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
    asked_model = _int8_dynamic(reference, last)
    asked = dict(asked_model.named_modules())
    for n in names[:-1]:
        found, want = _linear_config(modules[n]), _linear_config(asked[n])
        if found != want:
            return Feedback(False, f"{n!r} holds {found[0]}; the exercise asks for torchao's dynamic INT8 config, "
                                   f"Int8DynamicActivationInt8WeightConfig(), which makes {want[0]}: "
                                   "quantize_(copy, Int8DynamicActivationInt8WeightConfig(), filter_fn=...)")
    with torch.inference_mode():
        got = result.eval()(example)
        want_out = asked_model(example)
    if got.shape != expected.shape:
        return Feedback(False, f"the converted model returns shape {tuple(got.shape)}, the original {tuple(expected.shape)}")
    # Compared with the model quantized by the config itself: on a CPU without INT8 dot products torchao's dynamic
    # INT8 can saturate a few products (chapter 01), and then both saturate alike.
    if not torch.allclose(got, want_out, rtol=1e-4, atol=1e-4 * float(want_out.abs().max())):
        agree = float((got.argmax(-1) == expected.argmax(-1)).float().mean())
        return Feedback(False, f"the converted model computes something else than the given model quantized with "
                               f"Int8DynamicActivationInt8WeightConfig (max difference {float((got - want_out).abs().max()):.3g}; "
                               f"it predicts the original's class on {agree:.0%} of the example): is the right model converted?")
    return Feedback(True, f"{len(names) - 1} Linear layer(s) with dynamic INT8 (INT8 weights, activations quantized per "
                          f"row at run time), {last!r} kept in float, the original untouched")


def _int8_dynamic(model: nn.Module, last: str) -> nn.Module:
    """A copy of ``model`` with every Linear but ``last`` quantized by the config exercise 02 asks for."""
    from torchao.quantization import Int8DynamicActivationInt8WeightConfig, quantize_

    copied = copy.deepcopy(model).eval()
    quantize_(copied, Int8DynamicActivationInt8WeightConfig(),
              filter_fn=lambda mod, fqn: isinstance(mod, nn.Linear) and fqn != last)
    return copied


def _linear_config(mod: nn.Module) -> tuple[str, tuple]:
    """What a Linear was quantized with: (in words, a key to compare: weight type, activation quantization, block)."""
    name = mod._get_name()
    if name.startswith(("DynamicQuantized", "Quantized")) or type(mod).__module__.startswith("torch.ao.nn"):
        return (f"torch.ao's {name} (quantize_dynamic / convert: one activation scale per tensor, not per row)",
                (type(mod).__qualname__,))
    w = getattr(mod, "weight", None)
    if not isinstance(w, torch.Tensor) or type(w) in (torch.Tensor, nn.Parameter):
        return f"a float weight ({name})", ("float",)
    kind = type(w).__name__
    act = getattr(w, "act_quant_kwargs", None) or getattr(w, "activation_quantization", None)  # (Int8Tensor, Intx...)
    block = tuple(getattr(w, "block_size", ()) or ())
    bits = getattr(w, "target_dtype", None) or getattr(getattr(w, "qdata", None), "dtype", None)
    detail = f", {bits}" if bits is not None else ""
    if act is None:
        return (f"a weight-only {kind}{detail} (activations stay float: a weight-only config such as "
                "Int8WeightOnlyConfig or an INT4 one)", (kind, None, block))
    if isinstance(act, str):  # e.g. "int8_asym_per_token"
        how = act.replace("_", " ")
    else:
        how = f"{type(getattr(act, 'granularity', act)).__name__} {getattr(getattr(act, 'mapping_type', None), 'name', '').lower()}"
    return f"an {kind}{detail} whose activations are quantized {how.strip()}", (kind, repr(act), block)


def check_fake_quant_ste(fn: Callable) -> Feedback:
    """Exercise 03: ``fn(x, scale, zero_point, quant_min, quant_max)`` fake-quantizes ``x`` with a clipped STE.

    The forward values must equal ``torch.fake_quantize_per_tensor_affine``
    (up to a rare tie); the gradient must be 1 where ``x`` is inside the
    clipping range and 0 where it was clipped, as PyTorch's. ``fn`` runs with
    PyTorch's fake-quantize and quantize kernels, observers and
    ``qhelpers.quant.fake_quantize`` patched to raise: an answer calling them fails.
    """
    _require_callable(fn, "fake-quantize function")
    kernel = _is_kernel(fn, KERNELS, code=_kernel_code())
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
    with _forbid(KERNELS, code=_kernel_code(), ops=True):
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
    from .. import packing

    for name, codes in _pack_int4_cases():
        expected = packing.pack(codes, 4)
        with _forbid(code=_kernel_code(), ops=True):
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
        with _forbid(code=_kernel_code(), ops=True):
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
    check_module(model)
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


# --- chapter 05: a greedy search for the layers to keep in FP32 ----------------------------------------------------


def _greedy(measure: Callable[[list[str]], float], layers: Sequence[str], *, goal: float = float("inf"),
            steps: int | None = None) -> list[tuple[list[str], float]]:
    """The checker's own greedy search: [(keep, measure(keep))] from [] on, one layer more per step (the one that
    measures best), until ``goal`` is reached or ``steps`` layers are kept."""
    keep: list[str] = []
    path = [(list(keep), measure(keep))]
    while path[-1][1] < goal and len(keep) < min(len(layers), steps if steps is not None else len(layers)):
        scores = {name: measure(keep + [name]) for name in layers if name not in keep}
        best = max(scores, key=lambda n: scores[n])  # ties: the first in `layers`
        keep.append(best)
        path.append((list(keep), scores[best]))
    return path


def _made_up_problem() -> tuple[Callable[[list[str]], float], list[str], float]:
    """Six made-up layers whose quantization noise overlaps: ``head`` and ``shortcut`` share a noise source that
    keeping either one removes. Ranking single layers says [head, shortcut]; greedy finds [head, stem]."""
    own = {"stem": 2.5e-4, "block1": 1e-4, "block2": 1e-4, "block3": 5e-5, "head": 3e-4, "shortcut": 2e-4}
    shared, floor = 6e-4, 1e-5

    def measure(keep: list[str]) -> float:
        noise = floor + sum(v for k, v in own.items() if k not in keep)
        noise += shared if "head" not in keep and "shortcut" not in keep else 0.0
        return 10 * math.log10(1.0 / noise)  # SQNR (dB) of a unit signal

    return measure, list(own), measure(["head", "stem"])


class _Measure:
    """The ``measure`` handed to the learner: checks its argument, caches by set of layers, counts distinct lists,
    refuses past a budget, and runs the real measurement outside the guards."""

    def __init__(self, measure: Callable, layers: Sequence[str], cache: dict, budget: int) -> None:
        self.measure, self.layers, self.cache, self.budget = measure, list(layers), cache, budget
        self.asked: set[frozenset] = set()

    def value(self, keep: Sequence[str]) -> float:
        key = frozenset(keep)
        if key not in self.cache:
            with _unguarded():
                value = self.measure(list(keep))
            if isinstance(value, torch.Tensor) and value.numel() == 1:
                value = value.item()
            if isinstance(value, bool) or not isinstance(value, (int, float)) or math.isnan(value):
                raise ValueError(f"measure({list(keep)}) returned {value!r}: it must return the SQNR in dB as a number")
            self.cache[key] = float(value)
        return self.cache[key]

    def __call__(self, keep_float: Sequence[str]) -> float:
        if isinstance(keep_float, (str, bytes)) or not isinstance(keep_float, (list, tuple, set, frozenset)):
            raise TypeError(f"measure takes a list of layer names, e.g. {self.layers[:1]}, not {type(keep_float).__name__} "
                            f"{keep_float!r}")
        unknown = [n for n in keep_float if n not in self.layers]
        if unknown:
            raise ValueError(f"measure: {unknown} are not among the candidate layers {self.layers}")
        self.asked.add(frozenset(keep_float))
        if len(self.asked) > self.budget:
            raise _Forbidden(f"measured more than {self.budget} different lists",
                             f"more than twice what a greedy search needs: add one layer per step, measuring each "
                             "remaining candidate once with the layers already kept")
        return self.value(keep_float)


def _judge_search(fn: Callable, measure: _Measure, goal: float, reference: list[str], where: str) -> Feedback | None:
    """Run ``fn(measure, layers, goal)`` under the guard; a failing Feedback (prefixed by ``where``), or None."""
    code = _package_files("qhelpers.sensitivity")
    with _forbid(code=code):
        got, err = _call(fn, measure, list(measure.layers), goal,
                         forbidden=": search with the measure function you are given")
    if err:
        return Feedback(False, err if err.startswith("not done yet") else f"{where} {err}")
    if isinstance(got, (str, bytes)) or not isinstance(got, (list, tuple)):
        return Feedback(False, f"{where} return a list of layer names, e.g. {measure.layers[:2]}, not {type(got).__name__}")
    got = list(got)
    unknown = [n for n in got if n not in measure.layers]
    if unknown:
        return Feedback(False, f"{where} {unknown} are not among the candidate layers {measure.layers}")
    if len(set(got)) != len(got):
        return Feedback(False, f"{where} {got} names a layer twice: each layer is kept in FP32 once")
    value = measure.value(got)
    if value < goal:
        return Feedback(False, f"{where} keeping {got or 'no layer'} in FP32 measures {value:.2f} dB, below the goal "
                               f"{goal:.2f} dB: keep adding the layer that measures best until measure(keep) >= goal_db")
    if not reference and got:
        return Feedback(False, f"{where} the goal is already reached with no layer in FP32 (measure([]) = "
                               f"{measure.value([]):.2f} dB >= {goal:.2f} dB): return [] then")
    if len(got) > len(reference):
        return Feedback(False, f"{where} {got} reaches the goal with {len(got)} layers; the greedy search finds "
                               f"{reference} ({len(reference)}): after each choice, measure every remaining layer "
                               "again together with the ones already kept (their errors overlap, so a ranking of "
                               "single layers is not enough)")
    return None


def check_fp32_search(fn: Callable, measure: Callable[[list[str]], float], layers: Sequence[str], *,
                      steps: int = 3) -> Feedback:
    """Exercise 05: ``fn(measure, layers, goal_db)`` searches greedily for a short list of ``layers`` to keep in FP32
    such that ``measure(list) >= goal_db``.

    ``measure(keep_float)`` is the score (dB) of the model quantized with those layers in FP32, e.g. the logit SQNR
    of FX PTQ against FP32. The check runs ``fn`` twice: on a made-up problem of six layers whose errors overlap
    (where a ranking of single layers needs a longer list than a greedy search), then on ``measure`` and ``layers``
    with as goal what the checker's own greedy search reaches keeping ``steps`` layers (computed here, so it holds
    for any model, seed or weights). The answer must reach the goal with no more layers than greedy does, must not
    call :mod:`qhelpers.sensitivity`, and may ask for at most twice the distinct lists greedy measures (measurements
    are cached: greedy itself costs nothing more than the checker's own run).
    """
    _require_callable(fn, "search function")
    if not callable(measure):
        raise TypeError(f"measure must be a function of a list of layer names, not {type(measure).__name__}")
    if isinstance(layers, (str, bytes)) or not isinstance(layers, Sequence) or not all(isinstance(n, str) for n in layers):
        raise TypeError(f"layers must be a list of layer names, not {type(layers).__name__} {layers!r}")
    if len(layers) < 2 or len(set(layers)) != len(layers):
        raise ValueError(f"layers must name at least two different layers, got {list(layers)}")
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
        raise ValueError(f"steps must be a positive int (layers the reference search keeps), got {steps!r}")
    own = sensitivity.layer_sensitivity, sensitivity.sensitivity_table
    kernel = _is_kernel(fn, (), own)
    if kernel:
        return Feedback(False, f"you passed {kernel} itself: write the search, calling measure")

    made_up, fake_layers, fake_goal = _made_up_problem()
    for goal in (fake_goal, made_up([]) - 1.0):  # the goal of the lesson, then one reached with no layer in FP32
        reference = _greedy(made_up, fake_layers, goal=goal)[-1][0]
        fake = _Measure(made_up, fake_layers, {}, 2 * _greedy_cost(len(fake_layers), max(len(reference), 1)))
        failed = _judge_search(fn, fake, goal, reference, f"[a made-up problem, 6 layers, goal {goal:.2f} dB]")
        if failed is not None:  # (a failing Feedback is falsy)
            return failed

    steps = min(steps, len(layers))
    cache: dict[frozenset, float] = {}
    real = _Measure(measure, layers, cache, 0)
    path = _greedy(real.value, list(layers), steps=steps)
    greedy_calls = len(cache)
    values = [v for _, v in path[1:]]
    goal = max(values)
    reference = path[1 + values.index(goal)][0]
    real.budget = 2 * greedy_calls
    failed = _judge_search(fn, real, goal, reference, f"[your model, goal {goal:.2f} dB]")
    if failed is not None:  # (a failing Feedback is falsy)
        return failed
    return Feedback(True, f"a greedy search: the model with all layers INT8 measures {path[0][1]:.2f} dB; the goal "
                          f"{goal:.2f} dB is what greedy reaches keeping {len(reference)} of the {len(layers)} candidates "
                          f"in FP32; your search found a list as short, after {len(real.asked)} distinct measurements "
                          f"(and solved the made-up problem where ranking single layers is not enough)")


def _greedy_cost(n: int, steps: int) -> int:
    """How many lists a greedy search of ``steps`` steps over ``n`` layers measures: [], then n, n - 1, ..."""
    return 1 + sum(n - i for i in range(steps))


# --- chapter 08: one GPTQ column ---------------------------------------------------------------------------------

_GPTQ_HINT = ": round the column and push its error with tensor operations (torch.round, torch.clamp, *, /, -)"


def _gptq_cases() -> list[tuple[str, dict]]:
    """Fixed GPTQ steps: (name, kwargs). Scales are powers of 2, so that ``w / s`` and ``w * (1 / s)`` round alike."""
    g = torch.Generator().manual_seed(808)
    cases = []
    for name, n_out, n_in, j, bits in (("a (6, 8) weight, column 2, 4 bits", 6, 8, 2, 4),
                                        ("a (5, 16) weight, column 0, 3 bits", 5, 16, 0, 3),
                                        ("a (4, 12) weight, the last column (11), 2 bits", 4, 12, 11, 2),
                                        ("a (8, 32) weight, column 17, 4 bits, with weights beyond the grid", 8, 32, 17, 4)):
        x = torch.randn(4 * n_in, n_in, generator=g) @ torch.randn(n_in, n_in, generator=g)  # correlated inputs
        H = 2 * x.T.double() @ x.double() / x.shape[0]
        H.diagonal().add_(0.01 * float(H.diagonal().mean()))
        Hinv = torch.linalg.cholesky(torch.cholesky_inverse(torch.linalg.cholesky(H)), upper=True).float()
        W = torch.randn(n_out, n_in, generator=g)
        if "beyond" in name:
            W[:, j] *= 8.0
        scale = 2.0 ** -torch.randint(1, 4, (n_out,), generator=g).float()
        zero_point = torch.randint(0, 2 ** bits, (n_out,), generator=g).float()
        cases.append((name, dict(W=W, Hinv=Hinv, j=j, scale=scale, zero_point=zero_point, bits=bits)))
    return cases


def _gptq_column_reference(W: torch.Tensor, Hinv: torch.Tensor, j: int, scale: torch.Tensor, zero_point: torch.Tensor,
                           bits: int) -> tuple[torch.Tensor, torch.Tensor]:
    q = torch.clamp(torch.round(W[:, j] / scale) + zero_point, 0, 2 ** bits - 1)
    w_hat = (q - zero_point) * scale
    err = (W[:, j] - w_hat) / Hinv[j, j]
    out = W.clone()
    out[:, j:] -= err[:, None] * Hinv[j, j:][None, :]
    return w_hat, out


def check_gptq_column(fn: Callable) -> Feedback:
    """Check ``fn(W, Hinv, j, scale, zero_point, bits) -> (w_hat, W_new)``, one column step of GPTQ.

    ``W`` ``(out, in)`` holds the weights as updated so far, ``Hinv`` the upper Cholesky factor of ``H⁻¹``
    ``(in, in)``, ``j`` the column to round, ``scale`` and ``zero_point`` ``(out,)`` the grid of each row
    (asymmetric, codes ``0 .. 2**bits - 1``). ``w_hat`` is the column rounded onto the grid,
    ``(clamp(round(w / s) + z, 0, 2**bits - 1) - z) * s``; ``W_new`` is ``W`` after the error feedback
    ``err = (W[:, j] - w_hat) / Hinv[j, j]``, ``W[:, j:] -= err ⊗ Hinv[j, j:]`` (columns before ``j`` untouched,
    column ``j`` becomes ``w_hat``). The answer may not call a library GPTQ or quantizer (torchao, ``qhelpers.gptq``,
    ``qhelpers.weight_only``, ...).
    """
    _require_callable(fn, "GPTQ column function")
    from .. import gptq

    kernel = _is_kernel(fn, (), (gptq.gptq_weight, gptq.gptq_quantize), _kernel_code() + _package_files("qhelpers.gptq"))
    if kernel:
        return Feedback(False, f"you passed {kernel} itself: write the column step{_GPTQ_HINT}")
    cases = _gptq_cases()
    for name, case in cases:
        W, Hinv, j, s, z, bits = (case[k] for k in ("W", "Hinv", "j", "scale", "zero_point", "bits"))
        want_hat, want_W = _gptq_column_reference(W, Hinv, j, s, z, bits)
        args = (W.clone(), Hinv.clone(), j, s.clone(), z.clone(), bits)
        with _forbid(code=_kernel_code() + _package_files("qhelpers.gptq"), ops=True):
            got, err = _call(fn, *args, forbidden=_GPTQ_HINT)
        if err:
            return Feedback(False, err)
        if not (isinstance(got, tuple) and len(got) == 2 and all(isinstance(t, torch.Tensor) for t in got)):
            return Feedback(False, f"[{name}] return a tuple (w_hat, W_new) of two tensors, not {type(got).__name__}")
        w_hat, new_W = (t.detach().float() for t in got)
        if w_hat.shape != want_hat.shape:
            return Feedback(False, f"[{name}] w_hat has shape {tuple(w_hat.shape)}; it is column j of W, shape "
                                   f"{tuple(want_hat.shape)} (one value per output row)")
        if new_W.shape != W.shape:
            return Feedback(False, f"[{name}] W_new has shape {tuple(new_W.shape)}; it is W after the update, {tuple(W.shape)}")
        if not torch.allclose(w_hat, want_hat, atol=1e-5):
            q = torch.round(W[:, j] / s) + z
            if torch.allclose(w_hat, torch.clamp(q, 0, 2 ** bits - 1), atol=1e-5):
                return Feedback(False, f"[{name}] w_hat holds the integer codes; return the value they stand for, "
                                       "(q - zero_point) * scale")
            if torch.allclose(w_hat, (q - z) * s, atol=1e-5):
                return Feedback(False, f"[{name}] some rounded weights lie beyond the grid: clamp the codes to "
                                       f"[0, {2 ** bits - 1}] before subtracting the zero-point")
            if torch.allclose(w_hat, torch.clamp(torch.round(W[:, j] / s), 0, 2 ** bits - 1) * s, atol=1e-5):
                return Feedback(False, f"[{name}] the zero-point is missing: codes are round(w / s) + z, values (q - z) * s")
            return Feedback(False, f"[{name}] w_hat differs from the column rounded onto the grid, "
                                   "(clamp(round(w / s) + z, 0, 2**bits - 1) - z) * s, e.g. row 0: "
                                   f"{float(w_hat[0]):.4f} instead of {float(want_hat[0]):.4f}")
        if not torch.allclose(new_W[:, :j], W[:, :j]):
            return Feedback(False, f"[{name}] columns before j changed: they are already rounded; push the error onto "
                                   "columns j and after only, with the row Hinv[j, j:]")
        later = slice(j + 1, None)
        if j + 1 < W.shape[1] and not torch.allclose(new_W[:, later], want_W[:, later], atol=1e-4, rtol=1e-4):
            diff = (W[:, j] - w_hat)
            guesses = {
                "the later columns did not move: subtract err[:, None] * Hinv[j, j+1:] from them (the row j of Hinv; "
                "its column j is 0 below the diagonal)": W[:, later],
                "the update has the wrong sign: err = (w - w_hat) / Hinv[j, j], then W[:, j+1:] -= err ⊗ Hinv[j, j+1:]":
                    W[:, later] + (diff / Hinv[j, j])[:, None] * Hinv[j, later][None, :],
                "the error is not divided by Hinv[j, j]: err = (w - w_hat) / Hinv[j, j]":
                    W[:, later] - diff[:, None] * Hinv[j, later][None, :],
                "the error is multiplied by Hinv[j, j] instead of divided by it":
                    W[:, later] - (diff * Hinv[j, j])[:, None] * Hinv[j, later][None, :],
            }
            for hint, wrong in guesses.items():
                if torch.allclose(new_W[:, later], wrong, atol=1e-4, rtol=1e-4):
                    return Feedback(False, f"[{name}] {hint}")
            return Feedback(False, f"[{name}] the columns after j differ from W[:, j+1:] - err ⊗ Hinv[j, j+1:] with "
                                   "err = (W[:, j] - w_hat) / Hinv[j, j]")
        if not (torch.allclose(new_W[:, j], want_hat, atol=1e-5) or torch.allclose(new_W[:, j], W[:, j])):
            return Feedback(False, f"[{name}] column j of W_new should be w_hat (the update W[:, j:] -= err ⊗ Hinv[j, j:] "
                                   "makes it so)")
    return Feedback(True, f"your column step matches GPTQ's on {len(cases)} cases (2 to 4 bits, first, middle and last "
                          "columns, weights beyond the grid)")
