"""Prototype for chapter 08: when does weight-only quantization make batch-1 decoding faster, and which kernel does it?

    PYTHONPATH=. python proto/speed_proto.py                 # full sweep
    PYTHONPATH=. python proto/speed_proto.py --smoke         # the smoke-profile sizes
    env $(python -m qhelpers.hardware --caps) PYTHONPATH=. python proto/speed_proto.py --widths 4096   # AVX2 class
    PYTHONPATH=. python proto/speed_proto.py --profile       # which aten ops run, threads

A decoder's Linear layers at batch 1 multiply one row by each weight: every weight is read once per token for one
multiply-add, so once the weights no longer fit in the caches the step time is bytes / memory bandwidth (the
roofline). Here: the read bandwidth of this machine, then a stack of ``depth`` square Linear layers (``width`` x
``width``), one token per step, for every weight-only path PyTorch, torchao and ONNX Runtime offer on a CPU, each with
its bytes read per step, its effective GB/s and its share of the roofline.

What it found (AVX-512 + BF16 CPU, torch 2.14.1, torchao 0.18, onnxruntime 1.32; 1 thread; width 4096, 403 MB FP32):
ATen's weight-only kernels (``_weight_int8pack_mm``, ``_weight_int4pack_mm_for_cpu``) are vectorized for BF16
activations only; FP32 activations run their scalar loop (4096: 92 and 177 ms vs FP32's 25 ms; in BF16 10.0 and 6.0
ms). torchao's ``Int8WeightOnlyConfig`` converts the whole weight to float on every eager call (``aten::copy_``); with
BF16 activations ``torch.compile`` rewrites it into ``_weight_int8pack_mm``, with FP32 activations and freezing it
folds the weight back into FP32 (``mkl::_mkl_linear``). ``PrototypeInt4WeightOnlyConfig`` is fast only on a BF16
model. ONNX Runtime's MatMulNBits with ``accuracy_level=4`` (INT8 activations) is the fastest (3.4-3.8 ms, 4-bit).
"""

from __future__ import annotations

import argparse
import copy
import os
import statistics
import time
from pathlib import Path
from typing import Callable

import numpy as np
import pandas as pd
import torch
import torch._inductor.config as inductor_config
from torch import nn

from qhelpers import bench, hardware

# The variants proposed for the chapter (exact labels).
CHAPTER = ["FP32 eager", "BF16 eager", "torchao Int8WeightOnly eager", "torchao Int8WeightOnly bf16 compiled",
           "torchao Int4 CPU g64 eager", "torchao Int4 CPU g64 bf16 eager", "_weight_int8pack_mm bf16",
           "_weight_int4pack_mm_for_cpu g64 bf16", "fused GEMV int8 (compiled)", "ORT FP32 MatMul",
           "ORT MatMulNBits 4-bit acc4", "ORT MatMulNBits 8-bit acc4"]
_FILTER: dict[str, object] = {"labels": None, "exact": False}


def wanted(label: str, prefix: bool = False) -> bool:
    """Whether a variant (or, with ``prefix``, any variant whose label starts with ``label``) is to be built."""
    labels, exact = _FILTER["labels"], _FILTER["exact"]
    if not labels:
        return True
    if prefix:  # (substring filters cannot tell which configs they need: build them all)
        return not exact or any(o.startswith(label) for o in labels)
    return any(o == label if exact else o in label for o in labels)


GROUP = 64  # weights per scale of the 4-bit paths (torchao's CPU INT4 takes 32, 64 or 128)


# --- the machine: caches and read bandwidth ------------------------------------------------------------------

def caches() -> dict[str, str]:
    """Data and unified caches of cpu0 from Linux sysfs (``{'L1': '32K', 'L2': '1024K', 'L3': '32768K'}``)."""
    out = {}
    for index in sorted(Path("/sys/devices/system/cpu/cpu0/cache").glob("index*")):
        if (index / "type").read_text().strip() != "Instruction":
            out[f"L{(index / 'level').read_text().strip()}"] = (index / "size").read_text().strip()
    return out


def cache_bytes(size: str) -> int:
    return int(size[:-1]) * {"K": 1 << 10, "M": 1 << 20}[size[-1]] if size[-1] in "KM" else int(size)


def read_bandwidth(gigabytes: float = 1.0, repeats: int = 7) -> float:
    """GB/s of ``x.sum()`` over an FP32 tensor of ``gigabytes`` (the median of ``repeats`` passes)."""
    x = torch.ones(int(gigabytes * 1e9 / 4))
    x.sum()
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        x.sum()
        times.append(time.perf_counter() - t)
    return x.numel() * 4 / statistics.median(times) / 1e9


# --- the variants: one decoding step of a stack of Linear layers ---------------------------------------------

def stack(width: int, depth: int, seed: int = 0) -> nn.Sequential:
    gen = torch.Generator().manual_seed(seed)
    layers = [nn.Linear(width, width, bias=False) for _ in range(depth)]
    with torch.no_grad():
        for layer in layers:
            layer.weight.copy_(torch.randn(width, width, generator=gen) * width**-0.5)
    return nn.Sequential(*layers).eval().requires_grad_(False)


def torchao_variants(fp32: nn.Sequential) -> dict[str, tuple[nn.Module, torch.dtype]]:
    """torchao's CPU weight-only (and W8A8) configs, applied to copies of the stack: (model, activation dtype)."""
    from torchao.prototype.quantization.int4 import PrototypeInt4WeightOnlyConfig
    from torchao.quantization import Int8DynamicActivationInt8WeightConfig, Int8WeightOnlyConfig, quantize_

    out = {}
    for label, cfg, dtype in [
        ("torchao Int8WeightOnly", Int8WeightOnlyConfig(set_inductor_config=False), torch.float32),
        ("torchao Int8WeightOnly bf16", Int8WeightOnlyConfig(set_inductor_config=False), torch.bfloat16),
        (f"torchao Int4 CPU g{GROUP}", PrototypeInt4WeightOnlyConfig(group_size=GROUP, set_inductor_config=False), torch.float32),
        (f"torchao Int4 CPU g{GROUP} bf16", PrototypeInt4WeightOnlyConfig(group_size=GROUP, set_inductor_config=False), torch.bfloat16),
        ("torchao W8A8 dynamic", Int8DynamicActivationInt8WeightConfig(set_inductor_config=False), torch.float32),
    ]:
        if not wanted(label + " ", prefix=True):
            continue
        m = copy.deepcopy(fp32).to(dtype)
        quantize_(m, cfg)
        out[label] = (m, dtype)
    return out


def int8_codes(w: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Symmetric per-row INT8: codes (N, K) int8 and FP32 scales (N,)."""
    scale = w.abs().amax(1).clamp(min=1e-8) / 127
    return torch.clamp(torch.round(w / scale[:, None]), -128, 127).to(torch.int8), scale


def int4_codes(w: torch.Tensor, g: int = GROUP) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Asymmetric group-wise 4-bit: packed (N, K/g, g/2) uint8, FP16 scales and uint8 zero-points (N, K/g).

    The layout is the kernel's choice: byte j of a group holds code j (low nibble) and code j + g/2 (high nibble), so
    that each nibble meets a contiguous half of the group's inputs (pairing codes 2j, 2j+1 instead, as
    qhelpers.packing does, makes inductor gather every other input and runs about 3x slower).
    """
    n, k = w.shape
    groups = w.reshape(n, k // g, g)
    lo, hi = groups.amin(-1).clamp(max=0), groups.amax(-1).clamp(min=0)
    scale = ((hi - lo) / 15).clamp(min=1e-8).half()
    zero = torch.clamp(-torch.round(lo / scale.float()), 0, 15)
    q = torch.clamp(torch.round(groups / scale.float()[..., None]) + zero[..., None], 0, 15).to(torch.uint8)
    return (q[..., : g // 2] | (q[..., g // 2:] << 4)).contiguous(), scale, zero.to(torch.uint8)


def gemv_int8(x: torch.Tensor, w: torch.Tensor, s: torch.Tensor) -> torch.Tensor:
    """One row times an INT8 weight, dequantized inside the reduction: ``sum_k x_k w_nk`` then the row's scale."""
    return ((w.to(x.dtype) * x).sum(-1) * s).view(1, -1)


def gemv_int4(x: torch.Tensor, packed: torch.Tensor, s: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
    """One row times a packed 4-bit weight, unpacked inside the reduction: per group ``s (sum_j x_j q_j - z sum_j x_j)``."""
    n, groups, half = packed.shape
    xg = x.view(groups, 2, half)
    dot = ((packed & 15).to(x.dtype) * xg[:, 0] + (packed >> 4).to(x.dtype) * xg[:, 1]).sum(-1)
    return (s.to(x.dtype) * (dot - z.to(x.dtype) * xg.sum((-1, -2)))).sum(-1).view(1, -1)


def dequant_matmul_int8(x: torch.Tensor, w: torch.Tensor, s: torch.Tensor) -> torch.Tensor:
    """The same product written as a matmul with the weight dequantized first: ``x @ (w * s).T``."""
    return x @ (w.to(x.dtype) * s.to(x.dtype)[:, None]).T


def raw_variants(fp32: nn.Sequential, compiled: bool = True) -> dict[str, tuple[Callable[[torch.Tensor], torch.Tensor], int, torch.dtype]]:
    """PyTorch's CPU weight-only kernels called directly, and the fused-GEMV functions: (step, bytes, activation dtype)."""
    ws = [layer.weight.detach() for layer in fp32]
    i8 = [int8_codes(w) for w in ws]
    b8 = sum(w.numel() + s.numel() * 4 for w, s in i8)

    def int8pack(dtype):
        ss = [s.to(dtype) for _, s in i8]

        def step(x):
            for (w, _), s in zip(i8, ss):
                x = torch._weight_int8pack_mm(x, w, s)
            return x
        return step, b8

    def int4pack(dtype):
        # tinygemm's CPU format: int32 codes 0..15 packed by ATen, (K/g, N, 2) scales and zeros in the activation dtype
        packed, sz = [], []
        for w in ws:
            n, k = w.shape
            groups = w.reshape(n, k // GROUP, GROUP)
            lo, hi = groups.amin(-1), groups.amax(-1)
            scale = ((hi - lo) / 15).clamp(min=1e-6)
            q = torch.clamp(torch.round((groups - lo[..., None]) / scale[..., None]), 0, 15).to(torch.int32).reshape(n, k)
            zero = lo + scale * 8  # tinygemm: w = (q - 8) * scale + zero
            packed.append(torch.ops.aten._convert_weight_to_int4pack_for_cpu(q, 1))
            sz.append(torch.stack([scale, zero], -1).transpose(0, 1).contiguous().to(dtype))

        def step(x):
            for p, q in zip(packed, sz):
                x = torch.ops.aten._weight_int4pack_mm_for_cpu(x, p, GROUP, q)
            return x
        return step, sum(p.numel() for p in packed) + sum(q.numel() * q.element_size() for q in sz)

    def chain(fn, params):
        def step(x):
            for p in params:
                x = fn(x, *p)
            return x
        return step

    def fused_int4():
        i4 = [int4_codes(w) for w in ws]
        b4 = sum(p.numel() + s.numel() * 2 + z.numel() for p, s, z in i4)  # packed codes, FP16 scales, uint8 zeros
        return torch.compile(chain(gemv_int4, i4)), b4

    makers = {
        "_weight_int8pack_mm": (lambda: int8pack(torch.float32), torch.float32),
        "_weight_int8pack_mm bf16": (lambda: int8pack(torch.bfloat16), torch.bfloat16),
        f"_weight_int4pack_mm_for_cpu g{GROUP}": (lambda: int4pack(torch.float32), torch.float32),
        f"_weight_int4pack_mm_for_cpu g{GROUP} bf16": (lambda: int4pack(torch.bfloat16), torch.bfloat16),
    }
    if compiled:
        makers.update({
            "fused GEMV int8 (compiled)": (lambda: (torch.compile(chain(gemv_int8, i8)), b8), torch.float32),
            f"fused GEMV int4 g{GROUP} (compiled)": (fused_int4, torch.float32),
            "x @ (w_int8 * s).T (compiled)": (lambda: (torch.compile(chain(dequant_matmul_int8, i8)), b8), torch.float32),
            "x @ (w_int8 * s).T bf16 (compiled)": (lambda: (torch.compile(chain(dequant_matmul_int8, i8)), b8),
                                                   torch.bfloat16),
        })
    out = {}
    for label, (make, dtype) in makers.items():
        if wanted(label):
            fn, nbytes = make()
            out[label] = (fn, nbytes, dtype)
    return out


# --- ONNX Runtime: the same stack as an ONNX graph, MatMulNBits ----------------------------------------------

def onnx_stack(fp32: nn.Sequential):
    """The stack as an ONNX graph of MatMul nodes (``x @ W^T``, weights as initializers), built with onnx.helper."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    width = fp32[0].in_features
    nodes, inits, prev = [], [], "x"
    for i, layer in enumerate(fp32):
        inits.append(numpy_helper.from_array(layer.weight.detach().T.contiguous().numpy(), f"w{i}"))
        nodes.append(helper.make_node("MatMul", [prev, f"w{i}"], [f"y{i}"], name=f"matmul{i}"))
        prev = f"y{i}"
    graph = helper.make_graph(nodes, "stack", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, width])],
                              [helper.make_tensor_value_info(prev, TensorProto.FLOAT, [1, width])], inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 21), helper.make_opsetid("com.microsoft", 1)])


def ort_variants(fp32: nn.Sequential, threads: int) -> dict[str, tuple[Callable, int, torch.dtype]]:
    import logging

    import onnxruntime as ort
    from onnxruntime.quantization.matmul_nbits_quantizer import MatMulNBitsQuantizer

    logging.getLogger("onnxruntime.quantization.matmul_nbits_quantizer").setLevel(logging.WARNING)

    model = onnx_stack(fp32)
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    opts.add_session_config_entry("session.intra_op.allow_spinning", "0")  # idle threads must not spin: torch's share the cores
    out = {}

    def session(m, label):
        sess = ort.InferenceSession(m.SerializeToString(), opts, providers=["CPUExecutionProvider"])
        nbytes = sum(int(np.prod(t.dims)) * {1: 4, 2: 1, 10: 2, 3: 1}.get(t.data_type, 4) for t in m.graph.initializer)

        def step(x):
            return sess.run(None, {"x": x})[0]
        out[label] = (step, nbytes, "numpy")

    if wanted("ORT FP32 MatMul"):
        session(model, "ORT FP32 MatMul")
    for bits in (4, 8):
        for level in (0, 4):
            if not wanted(f"ORT MatMulNBits {bits}-bit acc{level}"):
                continue
            q = MatMulNBitsQuantizer(copy.deepcopy(model), bits=bits, block_size=GROUP if bits == 4 else 128,
                                     is_symmetric=False, accuracy_level=level)
            q.process()
            session(q.model.model, f"ORT MatMulNBits {bits}-bit acc{level}")
    return out


# --- timing ---------------------------------------------------------------------------------------------------

def make_calls(width: int, depth: int, threads: int, *, compile_modules: bool, ort: bool, raw: bool) -> tuple[dict[str, Callable[[], object]], dict[str, int], dict[str, float]]:
    """Zero-argument calls of every variant, their bytes read per step, and how long each took to set up (s).

    Modules run eager, compiled (inductor, no freezing) and, where it changes the kernel, compiled with freezing
    (inductor then treats the weights as constants: oneDNN-packed FP32/BF16 weights; for torchao's INT8 weights the
    pattern that calls ``_weight_int8pack_mm``, or a constant-folded FP32 copy of the weight).
    """
    fp32 = stack(width, depth)
    calls, nbytes, setup = {}, {}, {}
    x32, x16 = torch.randn(1, width), torch.randn(1, width).bfloat16()

    def add(label, make, x, b):
        if not wanted(label):
            return
        t0 = time.perf_counter()
        fn = make()
        with torch.inference_mode():
            fn(x)  # compiles, packs
        calls[label] = lambda: fn(x)
        nbytes[label] = b
        setup[label] = time.perf_counter() - t0

    def module(m, mode):
        if mode == "eager":
            return lambda: m
        return lambda: torch.compile(copy.deepcopy(m))  # compiled at add()'s first call, inside its freezing patch

    bf16 = copy.deepcopy(fp32).bfloat16()
    modules = {"FP32": (fp32, x32, ("eager", "compiled", "compiled+freezing")),
               "BF16": (bf16, x16, ("eager", "compiled", "compiled+freezing"))}
    for label, (m, dtype) in torchao_variants(fp32).items():
        modes = ("eager", "compiled")
        if "Int8WeightOnly" in label:
            modes += ("compiled+freezing",)
        modules[label] = (m, x32 if dtype == torch.float32 else x16, modes)
    for label, (m, x, modes) in modules.items():
        for mode in modes if compile_modules else ("eager",):
            with inductor_config.patch(freezing=mode == "compiled+freezing"):
                add(f"{label} {mode}", module(m, mode), x, bench.payload_bytes(m))
    if raw:
        for label, (fn, b, dtype) in raw_variants(fp32, compile_modules).items():
            add(label, lambda fn=fn: fn, x32 if dtype == torch.float32 else x16, b)
    if ort:
        for label, (fn, b, _) in ort_variants(fp32, threads).items():
            add(label, lambda fn=fn: fn, x32.numpy(), b)
    return calls, nbytes, setup


def run(widths: list[int], depth: int, threads: int, repeats: int, bandwidth: float, **kw) -> pd.DataFrame:
    rows = []
    for width in widths:
        t0 = time.perf_counter()
        calls, nbytes, setup = make_calls(width, depth, threads, **kw)
        t1 = time.perf_counter()
        timings = bench.interleaved_latency(calls, repeats=repeats, warmup=2, threads=threads)
        t2 = time.perf_counter()
        fp32_ms = timings["FP32 eager"].median_ms
        for label, lat in timings.items():
            gbs = nbytes[label] / lat.median_ms / 1e6
            rows.append({"width": width, "variant": label, "ms/step": lat.median_ms, "p90/median": lat.p90_ms / lat.median_ms,
                         "MB/step": nbytes[label] / 1e6, "GB/s": gbs, "roofline share": gbs / bandwidth,
                         "roofline ms": nbytes[label] / bandwidth / 1e6, "x FP32 eager": fp32_ms / lat.median_ms,
                         "setup s": setup[label]})
        print(f"width {width}: set-up {t1 - t0:.1f} s, timing {t2 - t1:.1f} s", flush=True)
    return pd.DataFrame(rows)


def profile(width: int, depth: int, threads: int) -> None:
    """Which aten ops each torchao path runs, their self CPU time, and the effect of the thread count."""
    from torch.profiler import ProfilerActivity, profile as tprofile

    fp32 = stack(width, depth)
    models = {"FP32": (fp32, torch.float32), "BF16": (copy.deepcopy(fp32).bfloat16(), torch.bfloat16), **torchao_variants(fp32)}
    torch.set_num_threads(threads)
    for label, (m, dtype) in models.items():
        x = torch.randn(1, width).to(dtype)
        with torch.inference_mode():
            for _ in range(3):
                m(x)
            with tprofile(activities=[ProfilerActivity.CPU]) as prof:
                for _ in range(5):
                    m(x)
        print(f"\n=== {label} (width {width}, {threads} threads): top aten ops by self CPU time over 5 steps")
        print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=6, max_name_column_width=40))
    print("\n=== threads: ms per step (median of 15)")
    for label, (m, dtype) in models.items():
        x = torch.randn(1, width).to(dtype)
        cells = []
        for t in (1, 2):
            cells.append(f"{t} thread(s) {bench.latency(m, x, repeats=15, warmup=3, threads=t).median_ms:.2f} ms")
        print(f"  {label:>32}: " + ", ".join(cells))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--widths", type=int, nargs="+", default=[128, 1024, 2048, 4096])
    ap.add_argument("--depth", type=int, default=6)
    ap.add_argument("--threads", type=int, default=1,
                    help="1 by default: with a second job on a 2-core machine, a 2-thread parallel region waits for "
                         "its descheduled thread and steps take 2-8x longer (measured)")
    ap.add_argument("--repeats", type=int, default=20)
    ap.add_argument("--no-compile", action="store_true")
    ap.add_argument("--no-ort", action="store_true")
    ap.add_argument("--no-raw", action="store_true")
    ap.add_argument("--only", nargs="*", help="keep only variants whose label contains one of these")
    ap.add_argument("--smoke", action="store_true")
    ap.add_argument("--profile", action="store_true")
    ap.add_argument("--csv", default="")
    ap.add_argument("--chapter", action="store_true", help="only the variants proposed for the chapter (see CHAPTER)")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    hardware.separate_inductor_cache()  # inductor's disk cache does not key on the ISA cap: one folder per ISA
    torch._dynamo.config.recompile_limit = 256  # one graph per compiled variant (they share nn.Sequential.forward)
    torch._dynamo.config.accumulated_recompile_limit = 4096
    start = time.perf_counter()
    caps = {k: v for k, v in os.environ.items() if k in ("ATEN_CPU_CAPABILITY", "ONEDNN_MAX_CPU_ISA", "FBGEMM_ENABLE_INSTRUCTIONS",
                                                         "MKL_ENABLE_INSTRUCTIONS")}
    print("caps:", caps or "none (native)", "| ATen", torch.backends.cpu.get_cpu_capability())
    print("caches:", caches())
    if args.profile:
        profile(args.widths[-1], args.depth, args.threads)
        return
    _FILTER["labels"], _FILTER["exact"] = (CHAPTER, True) if args.chapter else (args.only, False)
    if args.smoke:
        args.widths, args.depth, args.repeats = [128, 1024], 2, 5
    t = time.perf_counter()
    bw = read_bandwidth(0.25 if args.smoke else 1.0)
    print(f"read bandwidth (sum of a {'0.25' if args.smoke else '1'} GB FP32 tensor, {args.threads} threads): "
          f"{bw:.1f} GB/s ({time.perf_counter() - t:.1f} s)", flush=True)
    l3 = cache_bytes(caches().get("L3", "32768K"))
    for w in args.widths:
        print(f"width {w}: FP32 weights {args.depth * w * w * 4 / 1e6:.1f} MB = {args.depth * w * w * 4 / l3:.2f}x L3")
    df = run(args.widths, args.depth, args.threads, args.repeats, bw, compile_modules=not args.no_compile,
             ort=not args.no_ort, raw=not args.no_raw)
    pd.set_option("display.width", 250)
    pd.set_option("display.max_rows", 500)
    print(df.round(3).to_string(index=False))
    if args.csv:
        df.to_csv(args.csv, index=False)
    print(f"total {time.perf_counter() - start:.1f} s")


if __name__ == "__main__":
    main()
