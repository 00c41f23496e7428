"""When batch-1 decoding is memory-bound: bandwidth, caches, bytes per token and the roofline (taught in chapter 08).

A decoder generating one token multiplies one activation row by every weight
matrix: each weight is read once and used for one multiply-add. Once the
weights no longer fit in the CPU's caches, a step cannot be faster than the
time memory takes to deliver them, the **roofline**::

    roofline ms per token = bytes read per token / bandwidth
    share of the roofline  = roofline ms / measured ms       (1.0: memory runs flat out)

Worked example: 6 square Linear layers of width 4096 hold 6 * 4096² weights,
403 MB in FP32. At 20 GB/s one token needs at least 403 / 20 = 20 ms; the same
weights in 4 bits (plus a scale and zero-point per group of 64) are 55 MB, at
least 2.8 ms. Whether a quantized model gets near its own roofline depends on
its kernel: the bytes saved are only a speed-up if unpacking the codes costs
less than reading them.

This module measures the two sides and builds the variants the chapter times:

- :func:`cache_sizes` (Linux sysfs) and :func:`read_bandwidth` (the GB/s of a
  large tensor's ``sum``);
- :func:`linear_stack`, the decoder's weights without the rest (a stack of
  square Linear layers with seeded random weights);
- :func:`roofline_ms` and :func:`roofline_share`;
- :class:`Step` (one decoding step as a function of the activation row, the
  bytes it reads, its activation dtype) and the builders of PyTorch's CPU
  weight-only paths: :func:`aten_int8_step` (``torch._weight_int8pack_mm``),
  :func:`aten_int4_step` (``torch._weight_int4pack_mm_for_cpu``, tinygemm's
  grid) and :func:`torchao_stack` (torchao's configs applied to a copy);
- :func:`int8_per_row` and :func:`int4_tinygemm` (the grids those kernels take);
- :func:`top_ops`: which ATen ops a step runs and their time, from ``torch.profiler``.

ONNX Runtime's ``MatMulNBits`` on the same weights is in :mod:`qhelpers.runtimes`.
"""

from __future__ import annotations

import copy
import statistics
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import torch
from torch import nn

from .bench import native_logs_silenced, payload_bytes
from .checks import check_int, check_module, check_positive, check_tensor, describe

__all__ = ["cache_sizes", "read_bandwidth", "linear_stack", "stack_weights", "roofline_ms", "roofline_share", "Step",
           "int8_per_row", "int4_tinygemm", "aten_int8_step", "aten_int4_step", "TORCHAO_CONFIGS", "torchao_stack",
           "module_step", "top_ops"]

_SYSFS = Path("/sys/devices/system/cpu/cpu0/cache")
ACTIVATION_DTYPES = (torch.float32, torch.bfloat16)


# --- the machine: caches and read bandwidth -------------------------------------------------------------------

def cache_sizes(root: str | Path = _SYSFS) -> dict[str, int]:
    """Bytes of the data (and unified) caches one core sees, ``{'L1': 32768, 'L2': ..., 'L3': ...}``.

    Read from Linux sysfs (``root``: cpu0's ``cache`` folder); empty where it
    is not reported (another OS, a container hiding it).
    """
    root = Path(root)
    out: dict[str, int] = {}
    for index in sorted(root.glob("index*")):
        try:
            kind = (index / "type").read_text().strip()
            level = (index / "level").read_text().strip()
            size = (index / "size").read_text().strip()
        except OSError:
            continue
        if kind != "Instruction":
            out[f"L{level}"] = _size_bytes(size)
    return out


def _size_bytes(size: str) -> int:
    """``'32K'`` -> 32768, ``'32M'`` -> 33554432, ``'512'`` -> 512."""
    units = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30}
    size = size.strip().upper()
    if size and size[-1] in units:
        return int(size[:-1]) * units[size[-1]]
    if size.isdigit():
        return int(size)
    raise ValueError(f"cannot read the cache size {size!r}: expected e.g. '32K', '1024K' or '32M'")


def read_bandwidth(megabytes: float = 1000.0, *, repeats: int = 7, threads: int = 1) -> float:
    """GB/s of reading memory: ``x.sum()`` of an FP32 tensor of ``megabytes`` MB, the median of ``repeats`` passes.

    Size it well above the last-level cache (a tensor that fits there measures
    the cache, not memory). ``threads``: torch's thread count during the
    passes (time the decoding steps with the same count); restored afterwards.
    """
    check_positive("megabytes", megabytes)
    repeats = check_int("repeats", repeats, 1)
    threads = check_int("threads", threads, 1)
    old = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        x = torch.ones(max(1, int(megabytes * 1e6 / 4)))
        x.sum()  # first touch: the pages are mapped here, not in a timed pass
        times = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            x.sum()
            times.append(time.perf_counter() - t0)
    finally:
        torch.set_num_threads(old)
    return x.numel() * 4 / statistics.median(times) / 1e9


# --- the decoder's weights, and the roofline -------------------------------------------------------------------

def linear_stack(width: int, depth: int, *, seed: int = 0) -> nn.Sequential:
    """``depth`` square ``nn.Linear(width, width, bias=False)`` layers, weights ``N(0, 1/width)`` seeded, in eval mode.

    One token through it is one decoding step of a model whose Linear layers
    hold ``depth * width²`` weights (the attention and the rest left out).
    """
    width = check_int("width", width, 8, hint=", the layers' in and out features, e.g. 4096")
    depth = check_int("depth", depth, 1, hint=", the number of Linear layers, e.g. 6")
    gen = torch.Generator().manual_seed(check_int("seed", seed, 0))
    layers = [nn.Linear(width, width, bias=False) for _ in range(depth)]
    with torch.no_grad():
        for layer in layers:
            layer.weight.copy_(torch.randn(width, width, generator=gen) * width**-0.5)
    return nn.Sequential(*layers).eval().requires_grad_(False)


def stack_weights(stack: nn.Module) -> list[torch.Tensor]:
    """The FP32 weights of the stack's Linear layers, in order (checked: a stack of plain ``nn.Linear``)."""
    check_module(stack, "stack")
    weights = [m.weight.detach().float() for m in stack.modules() if isinstance(m, nn.Linear)]
    if not weights or any(type(m) is not nn.Linear for m in stack.children()):
        raise TypeError("stack must be a sequence of plain nn.Linear layers, e.g. linear_stack(width, depth); "
                        f"got {type(stack).__name__} of {[type(m).__name__ for m in stack.children()]}")
    if any(w.shape[1] % 64 for w in weights):
        raise ValueError(f"in_features {[w.shape[1] for w in weights]} must be multiples of 64 (the 4-bit groups)")
    return weights


def roofline_ms(nbytes: float, bandwidth_gb_s: float) -> float:
    """The fastest a step reading ``nbytes`` can be at ``bandwidth_gb_s``: ``nbytes / bandwidth``, in ms."""
    check_positive("nbytes", nbytes)
    check_positive("bandwidth_gb_s", bandwidth_gb_s)
    return nbytes / bandwidth_gb_s / 1e6


def roofline_share(nbytes: float, ms: float, bandwidth_gb_s: float) -> float:
    """How close a step of ``ms`` reading ``nbytes`` comes to the roofline: ``roofline_ms / ms`` (its GB/s over the
    bandwidth). Above 1: the bytes came (partly) from a cache, not from memory."""
    check_positive("ms", ms)
    return roofline_ms(nbytes, bandwidth_gb_s) / ms


# --- one decoding step of each PyTorch path ------------------------------------------------------------------

@dataclass(frozen=True)
class Step:
    """One decoding step: ``fn(x)`` for an activation row ``x`` ``(1, width)`` of ``dtype``; ``nbytes`` of weights,
    scales and zero-points it reads."""

    fn: Callable[[torch.Tensor], torch.Tensor]
    nbytes: int
    dtype: torch.dtype


def _check_dtype(dtype: object) -> torch.dtype:
    if dtype not in ACTIVATION_DTYPES:
        raise TypeError(f"dtype must be torch.float32 or torch.bfloat16 (the activations' dtype), not {describe(dtype)}")
    return dtype


def int8_per_row(weight: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Symmetric INT8, one FP32 scale per output row: codes ``(N, K)`` int8 and scales ``(N,)``, ``w ≈ q * s``."""
    check_tensor("weight", weight, dims=(2,), shape_text="2-D (out_features, in_features)")
    w = weight.detach().float()
    scale = w.abs().amax(1).clamp(min=1e-8) / 127
    return torch.clamp(torch.round(w / scale[:, None]), -128, 127).to(torch.int8), scale


def int4_tinygemm(weight: torch.Tensor, group_size: int = 64) -> tuple[torch.Tensor, torch.Tensor]:
    """tinygemm's 4-bit grid: codes ``(N, K)`` int32 in 0..15 and ``scales_and_zeros`` ``(K/g, N, 2)`` FP32.

    The levels of a group are ``(q - 8) * scale + zero`` with ``zero = min + 8 scale``: asymmetric, with a
    floating-point zero (0 itself is usually not a level). ``_weight_int4pack_mm_for_cpu`` takes exactly this.
    """
    check_tensor("weight", weight, dims=(2,), shape_text="2-D (out_features, in_features)")
    group_size = check_int("group_size", group_size, 1)
    if group_size not in (32, 64, 128, 256) or weight.shape[1] % group_size:
        raise ValueError(f"group_size={group_size}: the CPU kernel takes 32, 64, 128 or 256, dividing in_features="
                         f"{weight.shape[1]}")
    n, k = weight.shape
    groups = weight.detach().float().reshape(n, k // group_size, group_size)
    lo, hi = groups.amin(-1), groups.amax(-1)
    scale = ((hi - lo) / 15).clamp(min=1e-6)
    q = torch.clamp(torch.round((groups - lo[..., None]) / scale[..., None]), 0, 15).to(torch.int32).reshape(n, k)
    return q, torch.stack([scale, lo + 8 * scale], -1).transpose(0, 1).contiguous()


def aten_int8_step(stack: nn.Module, dtype: torch.dtype = torch.bfloat16) -> Step:
    """The stack through ``torch._weight_int8pack_mm(x, codes, scales)``, INT8 per row, activations in ``dtype``."""
    dtype = _check_dtype(dtype)
    coded = [int8_per_row(w) for w in stack_weights(stack)]
    params = [(q, s.to(dtype)) for q, s in coded]

    def fn(x: torch.Tensor) -> torch.Tensor:
        for q, s in params:
            x = torch._weight_int8pack_mm(x, q, s)
        return x
    return Step(fn, sum(q.numel() + s.numel() * s.element_size() for q, s in params), dtype)


def aten_int4_step(stack: nn.Module, group_size: int = 64, dtype: torch.dtype = torch.bfloat16) -> Step:
    """The stack through ``torch._weight_int4pack_mm_for_cpu``: codes packed by ATen
    (``_convert_weight_to_int4pack_for_cpu``), tinygemm's scales and zeros in ``dtype``."""
    dtype = _check_dtype(dtype)
    params = []
    for w in stack_weights(stack):
        q, sz = int4_tinygemm(w, group_size)
        params.append((torch.ops.aten._convert_weight_to_int4pack_for_cpu(q, 1), sz.to(dtype)))

    def fn(x: torch.Tensor) -> torch.Tensor:
        for packed, sz in params:
            x = torch.ops.aten._weight_int4pack_mm_for_cpu(x, packed, group_size, sz)
        return x
    return Step(fn, sum(p.numel() * p.element_size() + s.numel() * s.element_size() for p, s in params), dtype)


def _torchao_configs() -> dict[str, Callable[[], object]]:
    from torchao.prototype.quantization.int4 import PrototypeInt4WeightOnlyConfig
    from torchao.quantization import Int8DynamicActivationInt8WeightConfig, Int8WeightOnlyConfig

    return {
        "int8-weight-only": lambda: Int8WeightOnlyConfig(set_inductor_config=False),
        "int4-cpu": lambda: PrototypeInt4WeightOnlyConfig(group_size=64, set_inductor_config=False),
        "int4-cpu-hqq": lambda: PrototypeInt4WeightOnlyConfig(group_size=64, int4_choose_qparams_algorithm="hqq",
                                                              set_inductor_config=False),
        "w8a8-dynamic": lambda: Int8DynamicActivationInt8WeightConfig(set_inductor_config=False),
    }


TORCHAO_CONFIGS = ("int8-weight-only", "int4-cpu", "int4-cpu-hqq", "w8a8-dynamic")


def torchao_stack(stack: nn.Module, config: str, dtype: torch.dtype = torch.float32) -> nn.Module:
    """A copy of ``stack`` in ``dtype`` with torchao's ``config`` applied (``quantize_``): one of
    :data:`TORCHAO_CONFIGS` (``int4-cpu``: ``PrototypeInt4WeightOnlyConfig(group_size=64)``, the packed CPU layout)."""
    check_module(stack, "stack")
    dtype = _check_dtype(dtype)
    if config not in TORCHAO_CONFIGS:
        raise ValueError(f"config={config!r}: choose one of {TORCHAO_CONFIGS}")
    from torchao.quantization import quantize_

    model = copy.deepcopy(stack).to(dtype)
    quantize_(model, _torchao_configs()[config]())
    return model.eval()


def module_step(model: nn.Module, dtype: torch.dtype = torch.float32) -> Step:
    """A module as a :class:`Step`: ``model(x)``, reading its stored bytes (``bench.payload_bytes``)."""
    check_module(model)
    return Step(model, payload_bytes(model), _check_dtype(dtype))


def top_ops(fn: Callable[[torch.Tensor], object], x: torch.Tensor, *, steps: int = 3, top: int = 3) -> list[dict]:
    """The ``top`` ATen ops by self CPU time over ``steps`` calls of ``fn(x)`` (after one warm-up call), recorded with
    ``torch.profiler``: ``{"op", "calls per step", "ms per step", "share"}`` each (share: of all ATen ops' self
    time; the profiler's other entries, such as a compiled region's, are left out).

    The profiler's own start/stop messages (printed by its C++ side on stderr) are silenced while it runs.
    """
    from torch.profiler import ProfilerActivity, profile

    if not callable(fn):
        raise TypeError(f"fn must be a function of one tensor (e.g. a model, or Step.fn), not {describe(fn)}")
    check_tensor("x", x, dims=(2,), shape_text="2-D (1, width): one activation row")
    steps = check_int("steps", steps, 1)
    top = check_int("top", top, 1)
    with torch.inference_mode():
        fn(x)
        with native_logs_silenced(), profile(activities=[ProfilerActivity.CPU]) as prof:
            for _ in range(steps):
                fn(x)
    events = sorted((e for e in prof.key_averages() if e.key.startswith("aten::")), key=lambda e: -e.self_cpu_time_total)
    total = sum(e.self_cpu_time_total for e in events) or 1.0
    return [{"op": e.key, "calls per step": e.count / steps, "ms per step": e.self_cpu_time_total / steps / 1e3,
             "share": e.self_cpu_time_total / total} for e in events[:top]]
