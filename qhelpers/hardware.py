"""What this CPU, and the kernels PyTorch picked for it, can do: the facts that decide INT8's speed and numerics.

Two CPU classes behave differently, and a course that runs on both must say so:

- **VNNI** (AVX-512 VNNI, AVX-VNNI, or AMX): one instruction (``vpdpbusd``)
  multiplies unsigned 8-bit activations by signed 8-bit weights and adds four
  products straight into a 32-bit sum.
- **AVX2 without VNNI**: the same work takes three instructions
  (``vpmaddubsw`` multiplies and adds *pairs* of products into a **16-bit**
  sum, ``vpmaddwd`` widens to 32 bits, ``vpaddd`` accumulates). The 16-bit
  pair sum **saturates** when both products are large (255 x 127 x 2 =
  64,770 > 32,767): that is what ``reduce_range`` (7-bit activations) avoids.

Each library chooses its code path when it loads, and each can be capped to
an older instruction set by an environment variable (:data:`ISA_CAPS`); that
is how the course tests the AVX2 class on a newer CPU (``make test-avx2``).
What the kernels really use is *measured* here, not inferred from the caps:

- ATen (PyTorch's own vectorized kernels): ``torch.backends.cpu.get_cpu_capability()``;
- fbgemm (eager/FX INT8 kernels): :func:`fbgemm_saturates` runs one INT8 matmul
  whose exact result needs 32-bit pair sums;
- oneDNN (PT2E/inductor INT8 kernels, FP32 convolutions): its verbose mode names
  the ISA it dispatched to (:func:`onednn_isa`, in a child process).
"""

from __future__ import annotations

import functools
import os
import subprocess
import sys
import warnings
from pathlib import Path

import torch

__all__ = ["ISA_CAPS", "cpu_features", "fbgemm_saturates", "onednn_int8_dot", "onednn_bf16_dot", "kernel_isa", "describe",
           "separate_inductor_cache"]

# The environment variables that cap each library at AVX2 (no VNNI): the "AVX2 class" of `make test-avx2`.
ISA_CAPS: dict[str, str] = {
    "FBGEMM_ENABLE_INSTRUCTIONS": "AVX2",
    "ONEDNN_MAX_CPU_ISA": "AVX2",
    "ATEN_CPU_CAPABILITY": "avx2",
    "MKL_ENABLE_INSTRUCTIONS": "AVX2",
}


@functools.lru_cache(maxsize=1)
def cpu_flags() -> frozenset[str] | None:
    """The CPU's feature flags from ``/proc/cpuinfo`` (Linux); ``None`` where that cannot be read."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("flags"):
                    return frozenset(line.split(":", 1)[1].split())
    except OSError:
        pass
    return None


def cpu_features() -> dict[str, object]:
    """What the CPU itself offers (whatever the libraries were told to use), and PyTorch's thread count.

    ``vnni`` is True when the CPU has AVX-512 VNNI or AVX-VNNI; ``amx`` when it
    has AMX INT8 tiles; ``bf16`` when it has BF16 dot products (AVX-512 BF16's
    ``vdpbf16ps`` or AMX BF16 tiles). ``None`` where the flags cannot be read.
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
        "threads": torch.get_num_threads(),
    }


@functools.lru_cache(maxsize=1)
def fbgemm_saturates() -> bool:
    """True if fbgemm's INT8 linear kernel saturates 16-bit pair sums here (its AVX2 path), False if it is exact.

    The probe multiplies 64 activations of 255 by 64 weights of 127 on the
    ``x86`` engine: the exact sum is 2,072,640; the AVX2 path gives 32 pairs of
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


def onednn_int8_dot() -> bool | None:
    """True if oneDNN dispatches to an ISA with INT8 dot products (VNNI, "DL Boost", or AMX); ``None`` if unknown.

    Without them oneDNN's INT8 GEMMs go through ``vpmaddubsw``'s 16-bit pair
    sums too; its signed x signed GEMM (``torch._int_mm``) first shifts one
    operand to unsigned, so even 7-bit inputs can saturate there.
    """
    isa = onednn_isa()
    if isa is None:
        return None
    return "DL Boost" in isa or "VNNI" in isa or "AMX" in isa


def onednn_bf16_dot() -> bool | None:
    """True if oneDNN dispatches to an ISA with BF16 dot products (its ISA names bfloat16 support, or AMX);
    ``None`` if unknown. Without them a BF16 matmul widens its inputs to FP32 and computes in FP32."""
    isa = onednn_isa()
    if isa is None:
        return None
    return "bfloat16" in isa.lower() or "AMX" in isa


def kernel_isa() -> dict[str, str]:
    """What each library's kernels use in this process, measured (see the module docstring).

    Keys: ``ATen``, ``fbgemm``, ``oneDNN``, ``MKL``, and ``class``: ``"AVX2"``
    when fbgemm saturates 16-bit pair sums (AVX2, or AVX-512 without VNNI),
    ``"VNNI"`` when it accumulates in 32 bits on a CPU with VNNI or AMX,
    ``"other"`` otherwise (e.g. reference kernels). MKL does not report its
    code path on every CPU, so only its cap (if any) is shown.
    """
    saturates = fbgemm_saturates()
    f = cpu_features()
    klass = "AVX2" if saturates else ("VNNI" if f["vnni"] or f["amx"] else "other")
    onednn = onednn_isa()
    dot = onednn_int8_dot()
    if dot is not None:
        onednn = f"{onednn}, " + ("INT8 dot products" if dot else "no INT8 dot products: 16-bit pair sums")
    mkl_cap = os.environ.get("MKL_ENABLE_INSTRUCTIONS")
    return {
        "class": klass,
        "ATen": torch.backends.cpu.get_cpu_capability(),
        "fbgemm": "16-bit pair sums (saturate)" if saturates else "32-bit sums (exact)",
        "oneDNN": onednn or "not reported",
        "MKL": f"capped at {mkl_cap}" if mkl_cap else "not capped",
    }


def describe() -> str:
    """Two lines for a notebook: what the CPU offers, and what the kernels measured here use."""
    f = cpu_features()
    k = kernel_isa()
    yes = {True: "yes", False: "no", None: "unknown"}
    cpu = f"CPU: AVX2 {yes[f['avx2']]}, AVX-512 {yes[f['avx512']]}, VNNI {yes[f['vnni']]}, AMX {yes[f['amx']]}; {f['threads']} threads"
    kernels = (
        f"kernels: {k['class']} class (ATen {k['ATen']}; fbgemm INT8 {k['fbgemm']}; oneDNN {k['oneDNN']}; MKL {k['MKL']})"
    )
    return cpu + "\n" + kernels


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
    ``torch.compile`` of a process (:func:`qhelpers.repro.setup` does).
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
    """``python -m qhelpers.hardware [--expect avx2|vnni] [--caps]``: print :func:`describe`; ``--expect`` fails unless the class matches."""
    import argparse

    parser = argparse.ArgumentParser(prog="python -m qhelpers.hardware", description=main.__doc__)
    parser.add_argument("--expect", choices=["avx2", "vnni"], help="exit 1 unless the INT8 kernels are of this class")
    parser.add_argument("--caps", action="store_true", help="only print the variables that cap the libraries at AVX2")
    args = parser.parse_args(argv)
    if args.caps:
        print(" ".join(f"{n}={v}" for n, v in ISA_CAPS.items()))
        return 0
    print(describe())
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
