"""What this CPU, and the kernels PyTorch picked for it, can do: what decides INT8's and 16-bit's speed and numerics.

Taught in chapter 01 (the class table) and chapter 02 (which kernel a 16-bit ``nn.Linear`` runs).

**INT8 dot products.** With VNNI (AVX-512 VNNI, AVX-VNNI) one instruction
(``vpdpbusd``) multiplies unsigned 8-bit activations by signed 8-bit weights and
adds four products straight into a 32-bit sum. Without it the same work takes
three instructions per vector of pairs (``vpmaddubsw`` multiplies and adds
*pairs* of products into a **16-bit** sum, ``vpmaddwd`` widens to 32 bits,
``vpaddd`` accumulates). The 16-bit pair sum **saturates** when both products
are large (255 x 127 x 2 = 64,770 > 32,767): that is what ``reduce_range``
(7-bit activations) avoids. A CPU can have VNNI and a library still not use it:
fbgemm (eager/FX INT8) has AVX2 and AVX-512 (+VNNI) code paths but **no AVX-VNNI
path**, so on an AVX2 + AVX-VNNI CPU (Alder/Raptor Lake) it saturates while
oneDNN (PT2E, ``torch._int_mm``) is exact.

**16-bit dot products.** ``vdpbf16ps`` (AVX-512 BF16) multiplies pairs of BF16
values into FP32 sums; AVX-512 FP16 computes in FP16 itself; AMX tiles do both
(and INT8) a tile at a time.

Hence the CPU classes of :data:`CPU_CLASSES` (:func:`classify` from the CPU's
flags, :func:`onednn_isa_class` from the ISA oneDNN names). Each library chooses
its code path when it loads, and each can be capped to an older instruction set
by an environment variable (:data:`ISA_CAPS`); that is how the course tests the
AVX2 class on a newer CPU (``make test-avx2``). What the kernels really use is
*measured* here, and where a measurement and the flags disagree, the
measurement wins (:func:`dispatch` says so):

- ATen (PyTorch's own vectorized kernels): ``torch.backends.cpu.get_cpu_capability()``;
- fbgemm (eager/FX INT8 kernels): :func:`fbgemm_saturates` runs one INT8 matmul
  whose exact result needs 32-bit pair sums;
- oneDNN (PT2E/inductor INT8 kernels, FP32 convolutions, 16-bit matmuls): its
  verbose mode names the ISA it dispatched to (:func:`onednn_isa`, in a child process);
- which library a 16-bit ``nn.Linear`` or matmul runs: :func:`matmul_kernels`.
"""

from __future__ import annotations

import copy
import dataclasses
import enum
import functools
import json
import os
import re
import statistics
import subprocess
import sys
import time
import warnings
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING

import torch

from qhelpers.checks import check_int

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["ISA_CAPS", "CpuClass", "CPU_CLASSES", "classify", "onednn_isa_class", "cpu_flags", "cpu_class",
           "cpu_features", "fbgemm_saturates", "onednn_isa", "onednn_int8_dot", "onednn_bf16_dot", "Dispatch", "dispatch",
           "kernel_isa", "describe", "class_table", "MatmulKernel", "matmul_kernels", "matmul_timings",
           "separate_inductor_cache"]

# The environment variables that cap each library at AVX2 (no VNNI): the "AVX2 class" of `make test-avx2`.
ISA_CAPS: dict[str, str] = {
    "FBGEMM_ENABLE_INSTRUCTIONS": "AVX2",
    "ONEDNN_MAX_CPU_ISA": "AVX2",
    "ATEN_CPU_CAPABILITY": "avx2",
    "MKL_ENABLE_INSTRUCTIONS": "AVX2",
}


class CpuClass(enum.Enum):
    """One class of x86 CPU: what its instructions mean for INT8 and 16-bit kernels, as facts of the libraries' code.

    Each member carries ``label``, ``examples`` and the facts: ``fbgemm_int8_exact``
    (fbgemm's INT8 GEMM sums in 32 bits: only its AVX-512 VNNI path does),
    ``onednn_int8_dot`` (oneDNN has INT8 dot products: VNNI, AVX-VNNI or AMX),
    ``onednn_bf16_dot`` (BF16 dot products: ``vdpbf16ps`` or AMX-BF16), ``fp16_arithmetic``
    (native FP16 arithmetic, AVX-512 FP16), ``amx`` (AMX tiles), and ``course``: what
    follows for this course's kernels (from torch 2.14's and oneDNN 3.12's dispatch code).
    """

    AVX2 = ("AVX2", "Haswell to Comet Lake; AMD Zen 1-3", False, False, False, False, False,
            "eager/FX INT8 needs reduce_range; oneDNN INT8 saturates too; BF16/FP16 matmuls run ATen's own kernel")
    AVX2_VNNI = ("AVX2 + AVX-VNNI", "Alder Lake, Raptor Lake, Meteor Lake", False, True, False, False, False,
                 "fbgemm (no AVX-VNNI path) needs reduce_range; oneDNN INT8 exact; BF16/FP16 matmuls run ATen's own "
                 "kernel (oneDNN only with AVX-NE-CONVERT)")
    AVX512 = ("AVX-512 without VNNI", "Skylake-SP/X", False, False, False, False, False,
              "INT8 saturates in fbgemm and oneDNN (reduce_range); BF16 matmuls on oneDNN widened to FP32; FP16 on "
              "ATen's own kernel")
    AVX512_VNNI = ("AVX-512 VNNI", "Cascade Lake, Ice Lake, Tiger Lake", True, True, False, False, False,
                   "INT8 exact everywhere; BF16 matmuls on oneDNN widened to FP32; FP16 on ATen's own kernel")
    AVX512_BF16 = ("AVX-512 VNNI + BF16", "Cooper Lake; AMD Zen 4, Zen 5", True, True, True, False, False,
                   "INT8 exact everywhere; BF16 matmuls on oneDNN's BF16 dot products; FP16 on ATen's own kernel")
    AVX10_1 = ("AVX10.1 (AVX-512 FP16), no AMX", "Sapphire/Emerald Rapids with AMX hidden (cloud VMs)", True, True, True,
               True, False, "INT8 exact everywhere; BF16 and FP16 matmuls on oneDNN (BF16 dot products, FP16 arithmetic)")
    AMX = ("AMX", "Sapphire, Emerald, Granite Rapids", True, True, True, True, True,
           "INT8 and BF16 matmuls on oneDNN's AMX tiles; FP16 on AVX-512 FP16 (AMX-FP16 from Granite Rapids)")

    def __init__(self, label: str, examples: str, fbgemm_int8_exact: bool, onednn_int8_dot: bool, onednn_bf16_dot: bool,
                 fp16_arithmetic: bool, amx: bool, course: str) -> None:
        self.label = label
        self.examples = examples
        self.fbgemm_int8_exact = fbgemm_int8_exact
        self.onednn_int8_dot = onednn_int8_dot
        self.onednn_bf16_dot = onednn_bf16_dot
        self.fp16_arithmetic = fp16_arithmetic
        self.amx = amx
        self.course = course


CPU_CLASSES: tuple[CpuClass, ...] = tuple(CpuClass)

# torch.cpu.get_capabilities() (cpuinfo) spells some flags differently from Linux's /proc/cpuinfo.
_CPUINFO_TO_LINUX = {"avx512_f": "avx512f", "avx512_bw": "avx512bw", "avx512_dq": "avx512dq", "avx512_vl": "avx512vl",
                     "avx512_cd": "avx512cd"}


def _flag_set(flags: object) -> frozenset[str]:
    if isinstance(flags, (str, bytes)) or not isinstance(flags, Iterable):
        raise TypeError(f"flags must be a collection of flag names such as {{'avx2', 'avx512f'}} (e.g. the words of "
                        f"/proc/cpuinfo's flags line, split), not {type(flags).__name__}")
    names = list(flags)
    if not all(isinstance(n, str) for n in names):
        raise TypeError("flags must be flag names (strings), e.g. 'avx2', 'avx512_vnni'")
    return frozenset(_CPUINFO_TO_LINUX.get(n.lower(), n.lower()) for n in names)


def classify(flags: Iterable[str]) -> CpuClass | None:
    """The class of a CPU with these feature flags (Linux's names, as in ``/proc/cpuinfo``); ``None`` without AVX2.

    Follows the libraries' own detection: fbgemm takes its VNNI path on
    ``avx512_vnni`` only; oneDNN's "AVX 10.1" level needs ``avx512_fp16`` with
    BF16 and AVX-VNNI, its AMX level ``amx_int8`` and ``amx_bf16``.

    >>> classify({"avx2", "avx_vnni"}).label
    'AVX2 + AVX-VNNI'
    """
    f = _flag_set(flags)
    if "avx2" not in f:
        return None
    if {"amx_tile", "amx_int8", "amx_bf16"} <= f:
        return CpuClass.AMX
    avx512 = "avx512f" in f
    if avx512 and {"avx512_fp16", "avx512_bf16", "avx512_vnni", "avx_vnni"} <= f:
        return CpuClass.AVX10_1
    if avx512 and {"avx512_vnni", "avx512_bf16"} <= f:
        return CpuClass.AVX512_BF16
    if avx512 and "avx512_vnni" in f:
        return CpuClass.AVX512_VNNI
    if avx512:
        return CpuClass.AVX512
    if "avx_vnni" in f:
        return CpuClass.AVX2_VNNI
    return CpuClass.AVX2


def onednn_isa_class(isa: str) -> CpuClass | None:
    """The class of the instruction set oneDNN names in its verbose ``isa:`` line; ``None`` below AVX2.

    Knows every name oneDNN 2.5-3.13 uses (``cpu_isa_traits.cpp``), e.g. "Intel AVX2
    with Intel DL Boost" (AVX-VNNI), "Intel AVX-512 with Intel DL Boost and bfloat16
    support", "Intel AVX 10.1" (oneDNN 3.12's name for AVX-512 FP16 + BF16 + VNNI +
    AVX-VNNI: it implies all four), "Intel AVX-512 with float16, Intel DL Boost and
    bfloat16 support" (the same level in oneDNN 2.7-3.9), "Intel AVX10.2", and any
    "... Intel AMX ...". Raises ``ValueError`` for a name that is not an Intel x86 ISA
    (e.g. oneDNN on Arm says "AArch64 ...").

    >>> onednn_isa_class("Intel AVX 10.1").onednn_int8_dot
    True
    """
    if not isinstance(isa, str):
        raise TypeError(f"isa must be oneDNN's ISA name (a string such as 'Intel AVX2'), not {type(isa).__name__}")
    name = " ".join(isa.split())
    if not name.startswith("Intel "):
        raise ValueError(f"isa={isa!r} is not an x86 ISA name of oneDNN's (they start with 'Intel ', e.g. "
                         "'Intel AVX2 with Intel DL Boost'); pass the text after 'isa:' in ONEDNN_VERBOSE's output")
    if "AMX" in name:
        return CpuClass.AMX
    if re.search(r"AVX ?10\.\d", name) or (re.search(r"(?<!b)float16", name) and "AVX-512" in name):
        return CpuClass.AVX10_1
    if "AVX-512" in name or "AVX512" in name:
        if "bfloat16" in name:
            return CpuClass.AVX512_BF16
        if "DL Boost" in name:
            return CpuClass.AVX512_VNNI
        return CpuClass.AVX512
    if "AVX2" in name:
        return CpuClass.AVX2_VNNI if "DL Boost" in name else CpuClass.AVX2
    return None  # "Intel AVX", "Intel SSE4.1", "Intel 64": below every class of the table


@functools.lru_cache(maxsize=1)
def cpu_flags() -> frozenset[str] | None:
    """The CPU's feature flags, Linux's names: from ``/proc/cpuinfo``, else from ``torch.cpu.get_capabilities()``
    (cpuinfo, which reads CPUID); ``None`` where neither can be read."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("flags"):
                    return frozenset(line.split(":", 1)[1].split())
    except OSError:
        pass
    try:
        caps = torch.cpu.get_capabilities()
    except (AttributeError, RuntimeError):
        return None
    return _flag_set(name for name, value in caps.items() if value is True)


def cpu_class() -> CpuClass | None:
    """The class of this CPU from its flags (what it offers, whatever the libraries were told to use)."""
    flags = cpu_flags()
    return None if flags is None else classify(flags)


def cpu_features() -> dict[str, object]:
    """What the CPU itself offers (whatever the libraries were told to use), and PyTorch's thread count.

    ``vnni`` is True when the CPU has AVX-512 VNNI or AVX-VNNI (fbgemm uses only the
    first); ``amx`` when it has AMX INT8 tiles; ``bf16`` when it has BF16 dot products
    (AVX-512 BF16's ``vdpbf16ps`` or AMX BF16 tiles); ``fp16`` when it has native FP16
    arithmetic (AVX-512 FP16). ``None`` where the flags cannot be read.
    """
    flags = cpu_flags()

    def has(*names: str) -> bool | None:
        return None if flags is None else any(n in flags for n in names)

    return {
        "avx2": has("avx2"),
        "avx512": has("avx512f"),
        "vnni": has("avx512_vnni", "avx_vnni"),
        "amx": has("amx_int8"),
        "bf16": has("avx512_bf16", "amx_bf16"),
        "fp16": has("avx512_fp16"),
        "threads": torch.get_num_threads(),
    }


@functools.lru_cache(maxsize=1)
def fbgemm_saturates() -> bool:
    """True if fbgemm's INT8 linear kernel saturates 16-bit pair sums here (its AVX2 or AVX-512 path without VNNI),
    False if it is exact (its AVX-512 VNNI path).

    The probe multiplies 64 activations of 255 by 64 weights of 127 on the
    ``x86`` engine: the exact sum is 2,072,640; the saturating paths give 32 pairs of
    32,767 = 1,048,544. The result is requantized with scale 20,000, so the two
    answers (104 and 52 steps) cannot be confused.
    """
    from torch.ao.nn.quantized import Linear as QLinear

    k, out_scale = 64, 20000.0
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # quantized-tensor creation is deprecated in torch 2.14: this probe needs it
        engine = torch.backends.quantized.engine
        try:
            torch.backends.quantized.engine = "x86"
            x = torch.quantize_per_tensor(torch.full((1, k), 255.0), 1.0, 0, torch.quint8)
            w = torch.quantize_per_tensor(torch.full((1, k), 127.0), 1.0, 0, torch.qint8)
            layer = QLinear(k, 1, dtype=torch.qint8)
            layer.set_weight_bias(w, None)
            layer.scale, layer.zero_point = out_scale, 0
            got = float(layer(x).dequantize())
        finally:
            torch.backends.quantized.engine = engine
    exact = 255 * 127 * k
    return abs(got - exact) > out_scale  # more than one output step away


_ONEDNN_PROBE = (
    "import torch\n"
    "torch.ops.aten.mkldnn_convolution(torch.ones(1, 1, 4, 4), torch.ones(1, 1, 3, 3), None, [0, 0], [1, 1], [1, 1], 1)\n"
)


@functools.lru_cache(maxsize=1)
def onednn_isa() -> str | None:
    """The instruction set oneDNN dispatches to in this environment, as its verbose mode names it.

    Runs one oneDNN convolution in a child Python (same interpreter, same
    environment, so the same ``ONEDNN_MAX_CPU_ISA``) with ``ONEDNN_VERBOSE=1``
    and reads the ``isa:`` line. ``None`` if oneDNN is not available or says nothing.
    """
    if not torch.backends.mkldnn.is_available():
        return None
    env = {**os.environ, "ONEDNN_VERBOSE": "1"}
    try:
        run = subprocess.run([sys.executable, "-c", _ONEDNN_PROBE], env=env, capture_output=True, text=True, timeout=120)
    except (OSError, subprocess.TimeoutExpired):
        return None
    for line in run.stdout.splitlines():
        if ",isa:" in line:
            return line.split(",isa:", 1)[1].strip()
    return None


def _onednn_class() -> tuple[bool, CpuClass | None]:
    """(known, class) of the ISA oneDNN dispatches to here; known is False when oneDNN said nothing we can read."""
    isa = onednn_isa()
    if isa is None:
        return False, None
    try:
        return True, onednn_isa_class(isa)
    except ValueError:
        return False, None


def onednn_int8_dot() -> bool | None:
    """True if oneDNN dispatches to an ISA with INT8 dot products (VNNI, AVX-VNNI, AVX10, or AMX); ``None`` if unknown.

    Read from oneDNN's own ISA name (:func:`onednn_isa_class`), so a cap
    (``ONEDNN_MAX_CPU_ISA``) counts. Without them oneDNN's INT8 GEMMs go through
    ``vpmaddubsw``'s 16-bit pair sums too; its signed x signed GEMM
    (``torch._int_mm``) first shifts one operand to unsigned, so even 7-bit inputs
    can saturate there.
    """
    known, klass = _onednn_class()
    if not known:
        return None
    return klass is not None and klass.onednn_int8_dot


def onednn_bf16_dot() -> bool | None:
    """True if oneDNN dispatches to an ISA with BF16 dot products (AVX-512 BF16, AVX10, AMX); ``None`` if unknown.
    Without them a BF16 matmul widens its inputs to FP32 and computes in FP32."""
    known, klass = _onednn_class()
    if not known:
        return None
    return klass is not None and klass.onednn_bf16_dot


@dataclasses.dataclass(frozen=True)
class Dispatch:
    """What this CPU offers and what the kernels measured here use.

    ``cpu`` is the class from the CPU's flags; ``kernels`` the class of the ISA
    oneDNN dispatched to (measured); ``fbgemm_saturates`` the fbgemm probe; ``notes``
    says where the measurements and the flags disagree (the measurement wins).
    """

    cpu: CpuClass | None
    kernels: CpuClass | None
    onednn_isa: str | None
    fbgemm_saturates: bool
    aten: str
    notes: tuple[str, ...]


def dispatch() -> Dispatch:
    """Measure what the kernels use here and compare it with the CPU's class (see :class:`Dispatch`)."""
    cpu = cpu_class()
    known, kernels = _onednn_class()
    saturates = fbgemm_saturates()
    notes = []
    caps = [f"{k}={os.environ[k]}" for k in ISA_CAPS if k in os.environ]
    if not known:
        kernels = cpu
        notes.append("oneDNN did not name its ISA: the kernels' class is the CPU's")
    elif kernels != cpu:
        had = cpu.label if cpu else "below AVX2"
        got = kernels.label if kernels else "below AVX2"
        why = f" (caps set: {', '.join(caps)})" if caps else ""
        notes.append(f"the CPU is of the {had} class but oneDNN uses {got}{why}: the measured class is shown")
    if kernels is not None and saturates == kernels.fbgemm_int8_exact:
        notes.append(f"fbgemm was measured {'saturating' if saturates else 'exact'} although the {kernels.label} class "
                     f"says {'exact' if kernels.fbgemm_int8_exact else 'saturating'}: the measurement holds")
    return Dispatch(cpu, kernels, onednn_isa(), saturates, torch.backends.cpu.get_cpu_capability(), tuple(notes))


def kernel_isa() -> dict[str, str]:
    """What each library's kernels use in this process, measured (see the module docstring).

    Keys: ``class``: ``"AVX2"`` when fbgemm saturates 16-bit pair sums (AVX2,
    AVX2 + AVX-VNNI, or AVX-512 without VNNI), ``"VNNI"`` when it accumulates in 32
    bits on a CPU with AVX-512 VNNI, ``"other"`` otherwise (e.g. reference kernels);
    ``cpu class``: the measured :class:`CpuClass` label; ``ATen``, ``fbgemm``,
    ``oneDNN``, ``MKL``. MKL does not report its code path on every CPU, so only its
    cap (if any) is shown.
    """
    d = dispatch()
    f = cpu_features()
    klass = "AVX2" if d.fbgemm_saturates else ("VNNI" if f["vnni"] or f["amx"] else "other")
    onednn = d.onednn_isa
    known, oclass = _onednn_class()
    if known:
        facts = oclass or CpuClass.AVX2  # below AVX2: no dot products of any kind, like AVX2
        onednn = (f"{onednn}: " + ("INT8 dot products" if facts.onednn_int8_dot else "no INT8 dot products (16-bit pair "
                  "sums)") + (", BF16 dot products" if facts.onednn_bf16_dot else ", no BF16 dot products")
                  + (", FP16 arithmetic" if facts.fp16_arithmetic else ""))
    mkl_cap = os.environ.get("MKL_ENABLE_INSTRUCTIONS")
    return {
        "class": klass,
        "cpu class": d.kernels.label if d.kernels else "below AVX2",
        "ATen": d.aten,
        "fbgemm": "16-bit pair sums (saturate)" if d.fbgemm_saturates else "32-bit sums (exact)",
        "oneDNN": onednn or "not reported",
        "MKL": f"capped at {mkl_cap}" if mkl_cap else "not capped",
    }


def describe() -> str:
    """Two lines for a notebook: what the CPU offers (its class, VNNI, BF16, FP16, AMX), and what the kernels measured
    here use (their class, each library's path, and where the two disagree)."""
    f = cpu_features()
    cpu = cpu_class()
    k = kernel_isa()
    d = dispatch()
    yes = {True: "yes", False: "no", None: "unknown"}
    cpu_line = (f"CPU: {cpu.label if cpu else 'below AVX2'} class; AVX2 {yes[f['avx2']]}, AVX-512 {yes[f['avx512']]}, "
                f"VNNI {yes[f['vnni']]}, BF16 {yes[f['bf16']]}, FP16 {yes[f['fp16']]}, AMX {yes[f['amx']]}; "
                f"{f['threads']} threads")
    notes = "".join(f"; {n}" for n in d.notes)
    kernels = (f"kernels: {k['cpu class']} class (ATen {k['ATen']}; fbgemm INT8 {k['fbgemm']}; "
               f"oneDNN {k['oneDNN']}; MKL {k['MKL']}{notes})")
    return cpu_line + "\n" + kernels


def class_table() -> pd.DataFrame:
    """The CPU classes, one row each, with this machine's rows marked in the column ``you``.

    Columns: example CPUs, fbgemm INT8 (eager/FX), oneDNN INT8 dot products, BF16 dot
    products, FP16 arithmetic, AMX, and what follows for the course. ``you`` says
    "CPU" on the row of this CPU's flags and "kernels" on the row of what the
    kernels were measured to use (both on one row unless a cap is set).
    """
    import pandas as pd

    d = dispatch()
    yes = {True: "yes", False: "no"}
    rows = []
    for c in CPU_CLASSES:
        mark = [m for m, hit in (("CPU", c is d.cpu), ("kernels", c is d.kernels)) if hit]
        rows.append({"class": c.label, "example CPUs": c.examples,
                     "fbgemm INT8": "exact (32-bit sums)" if c.fbgemm_int8_exact else "saturates (16-bit pair sums)",
                     "oneDNN INT8 dot": yes[c.onednn_int8_dot], "BF16 dot": yes[c.onednn_bf16_dot],
                     "FP16 arithmetic": yes[c.fp16_arithmetic], "AMX": yes[c.amx], "for the course": c.course,
                     "you": " + ".join(mark)})
    return pd.DataFrame(rows).set_index("class")


_DTYPES = ("float32", "bfloat16", "float16")
_OPS = ("linear", "matmul")

_KERNEL_PROBE = r"""
import ctypes, json, sys, torch
from torch.profiler import profile, ProfilerActivity
libc = ctypes.CDLL(None)
spec = json.loads(sys.argv[1])
torch.manual_seed(0)
for name in spec["dtypes"]:
    layer = torch.nn.Linear(spec["in_features"], spec["out_features"]).to(getattr(torch, name))
    x = torch.randn(spec["batch"], spec["in_features"]).to(getattr(torch, name))
    calls = {"linear": lambda: layer(x), "matmul": lambda: torch.matmul(x, layer.weight.t())}
    for op in spec["ops"]:
        with torch.no_grad():
            calls[op]()  # the first call creates oneDNN's primitive: not the one we read
            sys.stdout.flush(); libc.fflush(None)
            print(f"@@begin {name} {op}", flush=True)
            with profile(activities=[ProfilerActivity.CPU]) as prof:
                calls[op]()
            libc.fflush(None)
        events = sorted((e for e in prof.events() if e.name.startswith("aten::")), key=lambda e: e.time_range.start)
        print("@@ops " + json.dumps([e.name for e in events]), flush=True)
"""

_GEMM_OPS = ("aten::addmm", "aten::mm", "aten::bmm", "aten::baddbmm", "aten::addmv", "aten::mv", "aten::dot")


@dataclasses.dataclass(frozen=True)
class MatmulKernel:
    """Which kernel one matrix product ran: the ATen op (from ``torch.profiler``) and the library that computed it.

    ``library`` is "oneDNN" (it printed a verbose ``exec`` line: ``kernel`` is its
    implementation, e.g. ``brg_matmul:avx512_core_bf16``), "MKL" (``MKL_VERBOSE``:
    ``kernel`` is the routine, e.g. ``SGEMM``), or "ATen" (neither library said
    anything: ATen's own fallback GEMM ran).
    """

    dtype: str
    op: str
    aten_ops: tuple[str, ...]
    gemm_op: str
    library: str
    kernel: str


def _parse_kernel_probe(stdout: str) -> list[tuple[str, str, list[str], list[str]]]:
    """(dtype, op, aten ops, library lines) for each ``@@begin`` block of the probe's output."""
    blocks: list[tuple[str, str, list[str], list[str]]] = []
    for line in stdout.splitlines():
        if line.startswith("@@begin "):
            _, dtype, op = line.split()
            blocks.append((dtype, op, [], []))
        elif line.startswith("@@ops ") and blocks:
            blocks[-1][2].extend(json.loads(line[len("@@ops "):]))
        elif blocks and not blocks[-1][2] and (",exec," in line or line.startswith("MKL_VERBOSE")):
            blocks[-1][3].append(line)
    return blocks


def _library(lines: list[str]) -> tuple[str, str]:
    for line in lines:  # oneDNN: onednn_verbose,v1,primitive,exec,cpu,<kind>,<implementation>,...
        fields = line.split(",")
        if "exec" in fields:
            i = fields.index("exec")
            kind, impl = fields[i + 2], fields[i + 3]
            if kind != "reorder":
                return "oneDNN", f"{kind} {impl}"
    for line in lines:
        m = re.match(r"MKL_VERBOSE\s+(\w+)\(", line)
        if m:
            return "MKL", m.group(1)
    return "ATen", "ATen's own GEMM (no library reported)"


def _check_choice(name: str, values: object, allowed: tuple[str, ...]) -> tuple[str, ...]:
    if isinstance(values, str) or not isinstance(values, Iterable):
        raise TypeError(f"{name} must be a tuple of names from {allowed}, e.g. {allowed[:2]}, not {values!r}")
    values = tuple(values)
    bad = [v for v in values if v not in allowed]
    if bad or not values:
        raise ValueError(f"{name}={values!r}: each must be one of {allowed} (and at least one given)")
    return values


def matmul_kernels(dtypes: Iterable[str] = _DTYPES, ops: Iterable[str] = _OPS, batch: int = 64,
                   in_features: int = 784, out_features: int = 512, timeout: float = 300) -> list[MatmulKernel]:
    """Which kernel an eager ``nn.Linear`` (``op="linear"``) and a bare ``torch.matmul`` (``"matmul"``) run here,
    for each dtype (``"float32"``, ``"bfloat16"``, ``"float16"``). Default shape: chapter 02's MLP layer,
    batch 64, 784 -> 512.

    Runs in a child Python of the same environment (so the same caps) with
    ``ONEDNN_VERBOSE=1`` and ``MKL_VERBOSE=1``: each op runs once to create its
    primitives, then once under ``torch.profiler``, whose ATen ops (``aten::linear``
    -> ``aten::addmm``) and the library lines printed meanwhile name the kernel (see
    :class:`MatmulKernel`).
    """
    dtypes = _check_choice("dtypes", dtypes, _DTYPES)
    ops = _check_choice("ops", ops, _OPS)
    spec = {"dtypes": dtypes, "ops": ops, "batch": check_int("batch", batch, 1),
            "in_features": check_int("in_features", in_features, 1),
            "out_features": check_int("out_features", out_features, 1)}
    env = {**os.environ, "ONEDNN_VERBOSE": "1", "MKL_VERBOSE": "1"}
    run = subprocess.run([sys.executable, "-c", _KERNEL_PROBE, json.dumps(spec)], env=env, capture_output=True, text=True,
                         timeout=timeout)
    if run.returncode != 0:
        last = (run.stderr.strip().splitlines() or ["no output"])[-1]
        raise RuntimeError(f"the kernel probe failed in its child process: {last}")
    kernels = []
    for dtype, op, aten_ops, lines in _parse_kernel_probe(run.stdout):
        library, kernel = _library(lines)
        gemm = next((o for o in aten_ops if o in _GEMM_OPS), aten_ops[-1] if aten_ops else "none")
        kernels.append(MatmulKernel(dtype, op, tuple(dict.fromkeys(aten_ops)), gemm, library, kernel))
    return kernels


_MODES = ("eager", "autocast", "compiled")


def _median_ms(fn, repeats: int) -> float:
    for _ in range(3):
        fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times) * 1e3


def matmul_timings(batch_sizes: Iterable[int] = (1, 64, 1024), dtypes: Iterable[str] = _DTYPES,
                   modes: Iterable[str] = _MODES, ops: Iterable[str] = _OPS, in_features: int = 784,
                   out_features: int = 512, repeats: int = 30) -> pd.DataFrame:
    """Median milliseconds of one ``nn.Linear`` (``op="linear"``) or bare ``torch.matmul`` (``"matmul"``) in each
    dtype, run ``"eager"``, under ``torch.autocast("cpu", dtype)`` (FP32 weights and inputs, the product cast to the
    16-bit dtype; no FP32 row), or ``"compiled"`` (``torch.compile`` of the cast layer). Rows: (op, mode, batch);
    columns: the dtypes. Measured in this process, under ``torch.no_grad()``, with PyTorch's thread count; each compiled
    case is compiled afresh (``torch.compiler.reset()``), so call it before compiling models of your own.
    """
    import pandas as pd

    given = batch_sizes if isinstance(batch_sizes, Iterable) else [batch_sizes]
    sizes = tuple(check_int("batch size", b, 1) for b in given)
    if not sizes:
        raise ValueError("batch_sizes must name at least one batch size, e.g. (1, 64)")
    dtypes = _check_choice("dtypes", dtypes, _DTYPES)
    modes = _check_choice("modes", modes, _MODES)
    ops = _check_choice("ops", ops, _OPS)
    check_int("in_features", in_features, 1), check_int("out_features", out_features, 1), check_int("repeats", repeats, 1)
    torch.manual_seed(0)
    base = torch.nn.Linear(in_features, out_features).eval()
    rows = []
    with torch.no_grad():
        for op in ops:
            for mode in modes:
                for batch in sizes:
                    row = {"op": op, "mode": mode, "batch": batch}
                    x32 = torch.randn(batch, in_features)
                    for name in dtypes:
                        dtype = getattr(torch, name)
                        if mode == "autocast":
                            if dtype == torch.float32:
                                row[name] = float("nan")
                                continue
                            layer, x = base, x32
                        else:
                            layer, x = copy.deepcopy(base).to(dtype), x32.to(dtype)  # Module.to casts in place
                        call = layer if op == "linear" else (lambda t, w=layer.weight: torch.matmul(t, w.t()))
                        if mode == "compiled":
                            torch.compiler.reset()  # one compilation per case, never dynamo's recompile limit
                            call = torch.compile(call, dynamic=False)
                        if mode == "autocast":
                            def run(call=call, x=x, dtype=dtype):
                                with torch.autocast("cpu", dtype=dtype):
                                    return call(x)
                        else:
                            def run(call=call, x=x):
                                return call(x)
                        row[name] = _median_ms(run, repeats)
                    rows.append(row)
    return pd.DataFrame(rows).set_index(["op", "mode", "batch"])


_CACHE_PREFIX = "isa-"


def separate_inductor_cache() -> Path:
    """Give ``torch.compile`` one on-disk cache per instruction set: ``<cache>/isa-<capability>``; returns that folder.

    On a CPU, inductor generates C++ kernels for the vector instruction set
    ``ATEN_CPU_CAPABILITY`` allows (AVX-512 by default on a CPU that has it,
    AVX2 under :data:`ISA_CAPS`) and caches the compiled graphs on disk
    (``TORCHINDUCTOR_CACHE_DIR``). In torch 2.14 the cache key does not include
    that choice: on one machine, a run capped at AVX2 after an uncapped run (or
    the other way round) was handed the other set's kernels and computed NaN
    (seen with this course's GPT decoder). ``<cache>`` is the folder
    ``TORCHINDUCTOR_CACHE_DIR`` names (or inductor's default); a second call
    replaces the ``isa-`` part rather than nesting. Call it before the first
    ``torch.compile`` of a process (:func:`qhelpers.course.repro.setup` does).
    """
    from torch._inductor.runtime.cache_dir_utils import default_cache_dir

    base = Path(os.environ.get("TORCHINDUCTOR_CACHE_DIR") or default_cache_dir())
    if base.name.startswith(_CACHE_PREFIX):
        base = base.parent
    folder = base / f"{_CACHE_PREFIX}{torch.backends.cpu.get_cpu_capability().lower()}"
    folder.mkdir(parents=True, exist_ok=True)
    os.environ["TORCHINDUCTOR_CACHE_DIR"] = str(folder)
    return folder


def main(argv: list[str] | None = None) -> int:
    """``python -m qhelpers.hardware [--expect avx2|vnni] [--caps] [--classes] [--kernels]``: print :func:`describe`;
    ``--expect`` fails unless the INT8 class matches; ``--classes`` prints the class table, ``--kernels`` the 16-bit
    matmul kernels."""
    import argparse

    parser = argparse.ArgumentParser(prog="python -m qhelpers.hardware", description=main.__doc__)
    parser.add_argument("--expect", choices=["avx2", "vnni"], help="exit 1 unless the INT8 kernels are of this class")
    parser.add_argument("--caps", action="store_true", help="only print the variables that cap the libraries at AVX2")
    parser.add_argument("--classes", action="store_true", help="also print the CPU class table, this machine marked")
    parser.add_argument("--kernels", action="store_true", help="also print which kernel FP32/BF16/FP16 matmuls run")
    args = parser.parse_args(argv)
    if args.caps:
        print(" ".join(f"{n}={v}" for n, v in ISA_CAPS.items()))
        return 0
    print(describe())
    if args.classes:
        import pandas as pd

        with pd.option_context("display.max_colwidth", 120, "display.width", 250):
            print(class_table().drop(columns=["for the course"]).to_string())
    if args.kernels:
        for k in matmul_kernels():
            entry = next((o for o in k.aten_ops if o in ("aten::linear", "aten::matmul")), k.gemm_op)
            path = k.gemm_op if entry == k.gemm_op else f"{entry} -> {k.gemm_op}"
            print(f"{k.dtype:9} {k.op:7} {path:28} {k.library:7} {k.kernel}")
    if args.expect:
        k = kernel_isa()
        want = args.expect.upper()
        problems = []
        if k["class"] != want:
            problems.append(f"fbgemm behaves as the {k['class']} class")
        if want == "AVX2" and k["ATen"] != "AVX2":
            problems.append(f"ATen uses {k['ATen']}")
        if want == "AVX2" and "AVX-512" in k["oneDNN"]:
            problems.append(f"oneDNN uses {k['oneDNN']}")
        if problems:
            caps = " ".join(f"{n}={v}" for n, v in ISA_CAPS.items())
            print(f"expected the {want} class, but {'; '.join(problems)}. "
                  f"To emulate AVX2 on a newer CPU set: {caps}", file=sys.stderr)
            return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
