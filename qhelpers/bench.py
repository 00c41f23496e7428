"""Measuring and inspecting models: serialized size, tensor payload, what is stored, CPU latency.

- size: :func:`state_dict_bytes` (the ``torch.save`` file), :func:`payload_bytes`
  (the tensor data alone, looking inside torchao's tensor subclasses),
  :func:`file_breakdown`, :func:`count_by_dtype`, :func:`storage`;
- structure: :func:`module_types`, :func:`inserted_modules` (what a prepare or
  convert step did), :func:`linear_kinds`, :func:`work_by_layer_type`;
- speed: :func:`latency`, :func:`latency_grid`, :func:`compare` (one table of
  size, latency and accuracy), :func:`matmul_latency`, :func:`compile_for_cpu`.

Bad arguments (something that is not a model, counts that are not positive
ints, an example input the model cannot run on, accuracies that are not
fractions of known models) raise a ValueError or TypeError before anything is
measured.
"""

from __future__ import annotations

import contextlib
import io
import math
import numbers
import os
import statistics
import sys
import time
from collections import Counter
from dataclasses import dataclass
from typing import Any, Callable, Iterator, Mapping

import torch
from torch import nn

from .checks import check_int, check_module
from .formats import VALUES_PER_ELEMENT

__all__ = [
    "interleaved_latency",
    "state_dict_bytes", "file_breakdown", "element_bytes", "payload_bytes", "count_by_dtype",
    "storage", "module_types", "inserted_modules", "linear_kinds", "work_by_layer_type", "latency",
    "latency_grid", "compare", "matmul_latency", "compile_for_cpu", "native_logs_silenced",
]


# --- argument checks ------------------------------------------------------------------------------

def _check_timing(repeats: object, warmup: object, threads: object, min_time_s: object) -> None:
    """The settings of :func:`latency`: counts are ints (repeats and threads at least 1), the time a finite number >= 0."""
    check_int("repeats", repeats, 1)
    check_int("warmup", warmup, 0)
    check_int("threads", threads, 1)
    if isinstance(min_time_s, bool) or not isinstance(min_time_s, numbers.Real):
        raise TypeError(f"min_time_s={min_time_s!r} must be a number of seconds, not {type(min_time_s).__name__}")
    if not (math.isfinite(min_time_s) and min_time_s >= 0):
        raise ValueError(f"min_time_s={min_time_s} must be a finite number of seconds >= 0 (0: just run repeats)")


def _check_example(example: object, what: str = "example") -> torch.Tensor:
    if not isinstance(example, torch.Tensor):
        raise TypeError(f"{what} must be an input batch as a torch.Tensor, not {type(example).__name__}")
    return example


def _check_mapping(value: object, what: str, example: str) -> Mapping:
    if not isinstance(value, Mapping):
        raise TypeError(f"{what} must be a dict, e.g. {example}, not {type(value).__name__}")
    return value


def state_dict_bytes(model: nn.Module) -> int:
    """Bytes of ``torch.save(model.state_dict())``: what the model costs on disk."""
    check_module(model)
    buf = io.BytesIO()
    torch.save(model.state_dict(), buf)
    return buf.getbuffer().nbytes


def is_tensor_subclass(t: torch.Tensor) -> bool:
    """True for a tensor subclass that stores its data in inner tensors (torchao's quantized weights)."""
    return type(t) not in (torch.Tensor, nn.Parameter) and hasattr(t, "__tensor_flatten__")


def stored_tensors(t: Any, prefix: str = "") -> Iterator[tuple[str, torch.Tensor]]:
    """The plain tensors that actually hold the data of a state-dict value, with their names.

    A plain tensor yields itself; a torchao ``Int8Tensor`` (whose ``numel`` and
    ``dtype`` are those of the float weight it replaces) yields its inner
    ``qdata`` (int8), ``scale`` and ``zero_point``; tuples and lists
    (torch.ao's packed params) are walked into.
    """
    if isinstance(t, torch.Tensor):
        if is_tensor_subclass(t):
            names, _ = t.__tensor_flatten__()
            for name in names:
                inner = getattr(t, name)
                if inner is not None:
                    yield from stored_tensors(inner, f"{prefix}.{name}" if prefix else name)
            return
        yield prefix, t
    elif isinstance(t, (tuple, list)):
        for i, item in enumerate(t):
            yield from stored_tensors(item, f"{prefix}.{i}" if prefix else str(i))


def element_bytes(t: torch.Tensor) -> float:
    """Bytes one value of ``t`` takes (a fraction for packed sub-byte dtypes)."""
    if not isinstance(t, torch.Tensor):
        raise TypeError(f"t must be a torch.Tensor, not {type(t).__name__}")
    return t.element_size() / VALUES_PER_ELEMENT.get(t.dtype, 1)


def _state_tensors(model: nn.Module) -> Iterator[torch.Tensor]:
    check_module(model)
    for value in model.state_dict().values():
        for _, t in stored_tensors(value):
            yield t


def payload_bytes(model: nn.Module) -> int:
    """Bytes of the stored tensor data alone, without the file's overhead.

    Looks inside tensor subclasses, so a torchao-quantized weight counts at
    its INT8 size, not at the FP32 size its ``numel * element_size`` suggests.
    """
    return int(sum(t.numel() * element_bytes(t) for t in _state_tensors(model)))


def count_by_dtype(model: nn.Module) -> dict[str, int]:
    """Number of stored values per dtype, e.g. ``{'torch.qint8': 21840, 'torch.float32': 80}``."""
    counts: Counter[str] = Counter()
    for t in _state_tensors(model):
        counts[str(t.dtype)] += t.numel()
    return dict(counts)


@dataclass(frozen=True)
class Latency:
    """Wall time of one forward pass, in milliseconds, over repeated runs."""

    median_ms: float
    p10_ms: float
    p90_ms: float
    samples_ms: tuple[float, ...]
    threads: int

    def __str__(self) -> str:
        return f"{self.median_ms:.3f} ms (p10 {self.p10_ms:.3f}, p90 {self.p90_ms:.3f}, n={len(self.samples_ms)})"


def latency(
    model: nn.Module | Callable[[torch.Tensor], Any],
    example: torch.Tensor,
    *,
    repeats: int = 50,
    warmup: int = 10,
    threads: int = 2,
    min_time_s: float = 0.0,
) -> Latency:
    """Median CPU latency of ``model(example)`` in inference mode, with a fixed thread count.

    ``warmup`` calls are run and discarded first (lazy packing, compilation,
    caches); then ``repeats`` timed calls, continued until ``min_time_s`` has
    passed if that is set. The previous thread count is restored afterwards.
    A first call that fails (e.g. ``example`` shaped for another model) raises
    a ValueError saying so.
    """
    if not callable(model):
        raise TypeError(f"model must be a torch.nn.Module or a function of one tensor, not {type(model).__name__}")
    _check_example(example)
    _check_timing(repeats, warmup, threads, min_time_s)
    repeats, warmup, threads = int(repeats), int(warmup), int(threads)  # (NumPy ints too)
    if isinstance(model, nn.Module):
        model.eval()
    old_threads = torch.get_num_threads()
    torch.set_num_threads(threads)
    samples: list[float] = []
    warmed = 0
    try:
        with torch.inference_mode():
            for _ in range(warmup):
                model(example)
                warmed += 1
            start = time.perf_counter()
            while len(samples) < repeats or time.perf_counter() - start < min_time_s:
                t0 = time.perf_counter()
                model(example)
                samples.append((time.perf_counter() - t0) * 1e3)
    except (RuntimeError, TypeError, ValueError, IndexError) as exc:
        if warmed or samples:  # it ran before: not a matter of the input
            raise
        raise ValueError(f"the model fails on example (a {example.dtype} tensor of shape {tuple(example.shape)}): "
                         f"{str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__}. Pass an "
                         "input shaped like a batch of its data; call model(example) directly for the full error") from None
    finally:
        torch.set_num_threads(old_threads)
    q = statistics.quantiles(samples, n=10) if len(samples) > 1 else [samples[0]] * 9
    return Latency(statistics.median(samples), q[0], q[-1], tuple(samples), threads)


def interleaved_latency(
    calls: Mapping[str, Callable[[], object]],
    *,
    repeats: int = 50,
    warmup: int = 5,
    threads: int = 2,
    progress: Any = None,
) -> dict[str, Latency]:
    """:func:`latency` of several zero-argument callables timed round-robin: one call of each in turn, per round.

    Interleaving spreads a burst of other work on the machine over every
    variant instead of one. The starting variant rotates each round.
    ``progress``, if given, is a progress bar (e.g. ``train.progress(total=repeats)``)
    updated once per round. The previous thread count is restored afterwards.
    """
    _check_mapping(calls, "calls", "{'FP32': lambda: model(x), 'INT8': lambda: qmodel(x)}")
    if not calls:
        raise ValueError("interleaved_latency needs at least one callable")
    for name, fn in calls.items():
        if not callable(fn):
            raise TypeError(f"calls[{name!r}] must be a function of no arguments, not {type(fn).__name__}")
    _check_timing(repeats, warmup, threads, 0.0)
    repeats, warmup, threads = int(repeats), int(warmup), int(threads)
    names = list(calls)
    samples: dict[str, list[float]] = {n: [] for n in names}
    old_threads = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        with torch.inference_mode():
            for name in names:
                for _ in range(warmup):
                    calls[name]()
            for r in range(repeats):
                k = r % len(names)
                for name in names[k:] + names[:k]:
                    t0 = time.perf_counter()
                    calls[name]()
                    samples[name].append((time.perf_counter() - t0) * 1e3)
                if progress is not None:
                    progress.update(1)
    finally:
        torch.set_num_threads(old_threads)
    out = {}
    for name, s in samples.items():
        q = statistics.quantiles(s, n=10) if len(s) > 1 else [s[0]] * 9
        out[name] = Latency(statistics.median(s), q[0], q[-1], tuple(s), threads)
    return out


def compare(
    models: Mapping[str, nn.Module],
    example: torch.Tensor | None = None,
    accuracy: Mapping[str, float] | None = None,
    *,
    repeats: int = 50,
    threads: int = 2,
    min_time_s: float = 0.0,
    baseline: str | None = None,
):
    """One table (a pandas DataFrame) comparing model variants: size, payload, latency, accuracy.

    ``baseline`` (default: the first model) is the row the ratios are taken against.
    Latency is measured only when ``example`` is given.
    """
    import pandas as pd

    _check_mapping(models, "models", "{'FP32': model, 'INT8': qmodel}")
    if not models:
        raise ValueError("compare() needs at least one model")
    for name, model in models.items():
        check_module(model, f"models[{name!r}]")
    if example is not None:
        _check_example(example)
    if accuracy is not None:
        if not isinstance(accuracy, Mapping):
            raise TypeError(f"accuracy must be a dict of accuracies by model name, e.g. {{'FP32': 0.99}}, "
                            f"not {type(accuracy).__name__}")
        for name, value in accuracy.items():
            if name not in models:
                raise ValueError(f"accuracy names {name!r}, which is not one of the models {list(models)}")
            if isinstance(value, bool) or not isinstance(value, numbers.Real):
                raise TypeError(f"accuracy[{name!r}]={value!r} must be a number, not {type(value).__name__}")
            if not 0 <= value <= 1:
                raise ValueError(f"accuracy[{name!r}]={value} must be a fraction in [0, 1] (e.g. evaluate(...).accuracy), "
                                 "not a percentage")
    _check_timing(repeats, 0, threads, min_time_s)
    if baseline is not None and not isinstance(baseline, str):
        raise TypeError(f"baseline={baseline!r} must be the name of one of the models, not {type(baseline).__name__}")
    baseline = baseline or next(iter(models))
    if baseline not in models:
        raise ValueError(f"baseline {baseline!r} is not one of {list(models)}")
    rows = {}
    for name, model in models.items():
        row: dict[str, Any] = {
            "file size (KB)": state_dict_bytes(model) / 1e3,
            "payload (KB)": payload_bytes(model) / 1e3,
        }
        if example is not None:
            row["latency (ms)"] = latency(model, example, repeats=repeats, threads=threads, min_time_s=min_time_s).median_ms
        if accuracy is not None and name in accuracy:
            row["accuracy (%)"] = 100 * accuracy[name]
        rows[name] = row
    table = pd.DataFrame.from_dict(rows, orient="index")
    table["size ratio"] = table.loc[baseline, "file size (KB)"] / table["file size (KB)"]
    if "latency (ms)" in table:
        table["speedup"] = table.loc[baseline, "latency (ms)"] / table["latency (ms)"]
    return table


def latency_grid(
    models: Mapping[str, nn.Module | Callable[[torch.Tensor], Any]],
    examples: Mapping[str, torch.Tensor],
    *,
    repeats: int = 20,
    warmup: int = 3,
    threads: int = 2,
):
    """:func:`latency` of every model on every example input: a long pandas DataFrame.

    One row per (model, input) with the median and the 10th/90th percentiles
    in ms; ``examples`` maps a label (e.g. ``"bs8"``) to an input batch.
    """
    import pandas as pd

    _check_mapping(models, "models", "{'FP32': model, 'INT8': qmodel}")
    _check_mapping(examples, "examples", "{'bs1': x[:1], 'bs8': x[:8]}")
    if not models or not examples:
        raise ValueError("latency_grid() needs at least one model and one example input")
    for name, model in models.items():
        if not callable(model):
            raise TypeError(f"models[{name!r}] must be a torch.nn.Module or a function of one tensor, not {type(model).__name__}")
    for label, x in examples.items():
        _check_example(x, f"examples[{label!r}]")
    _check_timing(repeats, warmup, threads, 0.0)
    rows = []
    for name, model in models.items():
        for label, x in examples.items():
            lat = latency(model, x, repeats=repeats, warmup=warmup, threads=threads)
            rows.append({"model": name, "input": label, "median_ms": lat.median_ms, "p10_ms": lat.p10_ms, "p90_ms": lat.p90_ms})
    return pd.DataFrame(rows)


def compile_for_cpu(model: nn.Module, *, dynamic: bool = False) -> Callable[[torch.Tensor], Any]:
    """``torch.compile`` (inductor) for CPU inference, with weight freezing switched on.

    Freezing treats the weights as constants: inductor folds batch norms,
    pre-packs weights for oneDNN and, for a PT2E model, folds the Q/DQ pairs
    around each weight into INT8 weights and fuses INT8 convolutions; without
    it a PT2E model keeps running FP32 operators. The flag is global
    (``torch._inductor.config.freezing``) and read when the first call compiles.
    ``dynamic=False`` compiles one specialised graph per input shape.
    """
    import torch._inductor.config as inductor_config

    check_module(model)
    if not isinstance(dynamic, bool):
        raise TypeError(f"dynamic={dynamic!r} must be True or False, not {type(dynamic).__name__}")
    inductor_config.freezing = True
    model.eval()  # (not chained: a PT2E module's patched eval() does not return the module)
    return torch.compile(model, dynamic=dynamic)


def _quantized_tensors(obj):
    if isinstance(obj, torch.Tensor):
        if obj.is_quantized:
            yield obj
    elif isinstance(obj, (tuple, list)):
        for item in obj:
            yield from _quantized_tensors(item)


def file_breakdown(model: nn.Module) -> dict[str, int]:
    """Where the bytes of ``torch.save(model.state_dict())`` go, in bytes; the parts add up to ``file``.

    The file is a zip archive: one record per tensor storage, ``data.pkl``
    (the pickled structure: names, shapes, dtypes and the quantized modules'
    packed-parameter tuples), a few small metadata records, and the zip
    format's own headers plus the padding that aligns each storage to 64
    bytes. A per-channel quantized weight also stores its scales (float64)
    and zero-points (int64), 16 bytes per output channel, beside its values.
    """
    import zipfile

    check_module(model)
    buf = io.BytesIO()
    torch.save(model.state_dict(), buf)
    total = buf.getbuffer().nbytes
    data = pickled = meta = 0
    with zipfile.ZipFile(buf) as zf:
        for info in zf.infolist():
            name = info.filename.split("/", 1)[-1]
            if name.startswith("data/"):
                data += info.file_size
            elif name == "data.pkl":
                pickled += info.file_size
            else:
                meta += info.file_size
    qparams = 0
    for value in model.state_dict().values():
        for t in _quantized_tensors(value):
            if t.qscheme() in (torch.per_channel_affine, torch.per_channel_symmetric):
                qparams += t.q_per_channel_scales().numel() * 8 + t.q_per_channel_zero_points().numel() * 8
    payload = payload_bytes(model)
    out = {
        "tensor payload": payload,
        "per-channel scales and zero-points": qparams,
        "other tensor data": data - payload - qparams,
        "pickled structure (data.pkl)": pickled,
        "metadata records": meta,
        "zip headers and alignment": total - data - pickled - meta,
    }
    out["file"] = total
    return out


def storage(model: nn.Module, *, only: Callable[[str], bool] | None = None):
    """What each state-dict entry really stores: class, inner tensors' dtype and shape, bytes (a DataFrame)."""
    import pandas as pd

    check_module(model)
    if only is not None and not callable(only):
        raise TypeError(f"only must be a function, e.g. lambda key: key.startswith('net.1.'), or None; got {type(only).__name__} {only!r}")
    rows = []
    for key, value in model.state_dict().items():
        if only is not None and not only(key):
            continue
        for inner, t in stored_tensors(value):
            rows.append(
                {
                    "entry": key,
                    "stored as": type(value).__name__,
                    "part": inner or "-",
                    "dtype": str(t.dtype).replace("torch.", ""),
                    "shape": tuple(t.shape),
                    "bytes": int(t.numel() * element_bytes(t)),
                }
            )
    return pd.DataFrame(rows)


def linear_kinds(model: nn.Module) -> dict[str, str]:
    """For each Linear-like module: its class, and the class of its weight if that is not a plain tensor."""
    check_module(model)
    out = {}
    for name, mod in model.named_modules():
        cls = mod._get_name()  # torch.ao's dynamic Linear reports itself as DynamicQuantizedLinear
        if "Linear" not in cls or "PackedParams" in cls:
            continue
        w = getattr(mod, "weight", None)
        w = w() if callable(w) else w  # torch.ao's quantized Linear has weight() as a method
        kind = cls
        if isinstance(w, torch.Tensor):
            kind += f"[{type(w).__name__}]" if is_tensor_subclass(w) else f"[{str(w.dtype).replace('torch.', '')}]"
        out[name] = kind
    return out


def module_types(model: nn.Module) -> dict[str, str]:
    """``{qualified name: class name}`` for every submodule (the root is ``''``)."""
    check_module(model)
    return {name: mod._get_name() for name, mod in model.named_modules()}


def inserted_modules(before: nn.Module, after: nn.Module) -> dict[str, str]:
    """Submodules of ``after`` that are new or changed class compared with ``before``: what a prepare/convert step did."""
    check_module(before, "before")
    check_module(after, "after")
    old = module_types(before)
    return {name: cls for name, cls in module_types(after).items() if old.get(name) != cls and name}


def work_by_layer_type(model: nn.Module, example: torch.Tensor) -> dict[str, dict[str, int]]:
    """Parameters and multiply-accumulates of one forward pass on ``example``, per layer type (Conv2d, Linear).

    Counted with forward hooks on ``nn.Conv2d`` and ``nn.Linear``: what dynamic
    quantization of Linear layers can and cannot reach.
    """
    check_module(model)
    if not isinstance(example, torch.Tensor) or example.dim() == 0 or example.shape[0] == 0:
        kind = f"a tensor of shape {tuple(example.shape)}" if isinstance(example, torch.Tensor) else type(example).__name__
        raise TypeError(f"example must be a non-empty batch of inputs as a torch.Tensor, not {kind}")
    totals: dict[str, dict[str, int]] = {}
    hooks = []

    def hook(mod: nn.Module, inputs, output) -> None:
        kind = type(mod).__name__
        if isinstance(mod, nn.Conv2d):
            per_out = mod.in_channels // mod.groups * mod.kernel_size[0] * mod.kernel_size[1]
        else:
            per_out = mod.in_features
        t = totals.setdefault(kind, {"parameters": 0, "MACs": 0})
        t["parameters"] += sum(p.numel() for p in mod.parameters(recurse=False))
        t["MACs"] += output[:1].numel() * per_out  # per image

    for mod in model.modules():
        if isinstance(mod, (nn.Conv2d, nn.Linear)):
            hooks.append(mod.register_forward_hook(hook))
    try:
        with torch.inference_mode():
            model.eval()(example[:1])
    except (RuntimeError, TypeError, ValueError, IndexError) as exc:
        raise ValueError(f"the model fails on example (shape {tuple(example.shape)}): {str(exc).strip().splitlines()[0]}. "
                         "Pass an input batch shaped like its data") from None
    finally:
        for h in hooks:
            h.remove()
    return totals


def matmul_latency(n: int = 512, *, repeats: int = 30, threads: int = 2) -> dict[str, Latency]:
    """Time one ``n x n`` by ``n x n`` matrix multiply in FP32, BF16 and INT8 (``torch._int_mm``, INT32 result).

    The INT8 kernel adds up INT8 products into INT32 exactly; whether it beats
    FP32 depends on the CPU (VNNI / AMX instructions do INT8 dot products natively).
    """
    if isinstance(n, bool) or not isinstance(n, numbers.Integral):
        raise TypeError(f"n={n!r} must be an int, not {type(n).__name__}")
    if n < 16 or n % 8:
        raise ValueError(f"n={n}: use a multiple of 8, at least 16 (torch._int_mm needs it)")
    check_int("repeats", repeats, 1)
    check_int("threads", threads, 1)
    g = torch.Generator().manual_seed(0)
    a = torch.randn(n, n, generator=g)
    b = torch.randn(n, n, generator=g)
    a8 = torch.randint(-128, 128, (n, n), generator=g, dtype=torch.int8)
    b8 = torch.randint(-128, 128, (n, n), generator=g, dtype=torch.int8)
    ab, bb = a.bfloat16(), b.bfloat16()
    return {
        "FP32": latency(lambda _: torch.mm(a, b), a, repeats=repeats, threads=threads),
        "BF16": latency(lambda _: torch.mm(ab, bb), a, repeats=repeats, threads=threads),
        "INT8 -> INT32": latency(lambda _: torch._int_mm(a8, b8), a, repeats=repeats, threads=threads),
    }


def _flush_c_streams() -> None:
    import ctypes

    try:
        ctypes.CDLL(None).fflush(None)
    except (OSError, AttributeError):  # pragma: no cover - no C library to ask
        pass


@contextlib.contextmanager
def native_logs_silenced():
    """Discard what C++ code writes to the process's standard output and error inside the block.

    C++ libraries log straight to file descriptors 1 and 2, past Python's ``sys.stdout``/``sys.stderr``, so a
    notebook would show it: ExecuTorch's thread pool and XNNPACK delegate probing the CPU when they start
    (``[cpuinfo_utils.cpp:71] Reading file ...``, through Python's ``sys.stderr`` when it runs in a Jupyter kernel),
    the profiler's start and stop lines. Python's own output in the block is discarded too; what was printed
    before it is flushed first.
    """
    for stream in (sys.stdout, sys.stderr):
        stream.flush()
    saved = [os.dup(1), os.dup(2)]
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, 1)
        os.dup2(devnull, 2)
        with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
            yield  # (pybind11 code may log through Python's sys.stderr instead: a Jupyter kernel shows that one)
    finally:
        _flush_c_streams()  # (C's buffered stdout/stderr, e.g. in a Jupyter kernel, are emptied into the discard too)
        os.dup2(saved[0], 1)
        os.dup2(saved[1], 2)
        for fd in (*saved, devnull):
            os.close(fd)
