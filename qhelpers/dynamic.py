"""Lower-precision copies of a trained model: FP16/BF16 casts and dynamic INT8, and what they store.

Chapter 02's toolbox. Every converter returns a *new* model and leaves its
input untouched:

- :func:`to_dtype` casts all weights to FP16 or BF16 (``.half()`` /
  ``.to(torch.bfloat16)``) and wraps the model so it still takes and returns
  float32 tensors; :class:`Autocast` keeps FP32 weights and runs the forward
  pass under ``torch.autocast("cpu", ...)``.
- :func:`dynamic_int8` quantizes the ``nn.Linear`` layers to INT8 with either
  ``torch.ao.quantization.quantize_dynamic`` (deprecated) or torchao's
  ``quantize_`` with ``Int8DynamicActivationInt8WeightConfig`` /
  ``Int8WeightOnlyConfig``.

torchao stores a quantized weight as a tensor *subclass* (``Int8Tensor``)
whose ``numel``/``dtype`` are those of the original float weight, so counting
``numel * element_size`` over the state dict overstates it fourfold.
``bench.payload_bytes`` and :func:`storage` look inside
such tensors (``__tensor_flatten__``) and count what is really stored;
``bench.state_dict_bytes`` (the ``torch.save`` file) is right for all of them.

Also here: the number formats themselves (:func:`format_table`,
:func:`bytes_per_value`) and the small MLP the chapter uses (:class:`MLP`,
:func:`trained_mlp`).

Converters take a float model (not one already quantized: that would
quantize twice or fail inside torchao) and known dtype/backend names; bad
arguments raise a ValueError or TypeError saying what to pass.
"""

from __future__ import annotations

import copy
import numbers
from typing import Any, Callable, Iterable, Iterator, Literal, Mapping

import torch
from torch import nn

from . import bench
from .bench import _is_subclass, element_bytes, stored_tensors
from . import data as qdata
from .flows import check_float_model
from .train import History, TrainConfig, train_or_load
from .checks import check_int

__all__ = [
    "FORMATS",
    "bytes_per_value",
    "format_table",
    "model_size_table",
    "relative_cast_error",
    "matmul_latency",
    "MLP",
    "trained_mlp",
    "CastInputs",
    "to_dtype",
    "Autocast",
    "DYNAMIC_BACKENDS",
    "dynamic_int8",
    "variants",
    "storage",
    "linear_kinds",
    "size_latency_table",
    "work_by_layer_type",
]

# name -> dtype used to measure it; int4 is measured as torch.quint4x2 (two values per byte).
FORMATS: dict[str, torch.dtype] = {
    "FP32": torch.float32,
    "FP16": torch.float16,
    "BF16": torch.bfloat16,
    "INT8": torch.int8,
    "INT4": torch.quint4x2,
}
_VALUES_PER_ELEMENT = {torch.quint4x2: 2, torch.quint2x4: 4}


# --- argument checks ------------------------------------------------------------------------------

def _check_module(model: object, what: str = "model") -> nn.Module:
    if not isinstance(model, nn.Module):
        raise TypeError(f"{what} must be an nn.Module, got {type(model).__name__}")
    return model


def _check_models(models: object) -> Mapping[str, nn.Module]:
    """A dict of float models: their parameter counts are what each format would store."""
    if not isinstance(models, Mapping):
        raise TypeError(f"models must be a dict of models by name, e.g. {{'MLP': mlp}}, not {type(models).__name__}")
    for name, model in models.items():
        _check_module(model, f"models[{name!r}]")
        check_float_model(model, f"models[{name!r}]")
    return models


def _check_float_dtype(dtype: object, what: str = "dtype") -> torch.dtype:
    if not isinstance(dtype, torch.dtype):
        raise TypeError(f"{what} must be a torch.dtype such as torch.float16, not {type(dtype).__name__} {dtype!r}")
    if not dtype.is_floating_point:
        raise ValueError(f"{what}={dtype} is not a floating-point format: pass e.g. torch.float16 or torch.bfloat16")
    return dtype


def _check_callable(name: str, fn: object, example: str) -> None:
    if fn is not None and not callable(fn):
        raise TypeError(f"{name} must be a function, e.g. {example}, or None; got {type(fn).__name__} {fn!r}")


def bytes_per_value(fmt: str) -> float:
    """Bytes one value takes in format ``fmt`` (one of :data:`FORMATS`), measured with ``element_size()``."""
    if fmt not in FORMATS:
        raise ValueError(f"unknown format {fmt!r}; choose one of {list(FORMATS)}")
    dtype = FORMATS[fmt]
    return torch.empty(0, dtype=dtype).element_size() / _VALUES_PER_ELEMENT.get(dtype, 1)


def format_table():
    """Range and resolution of the formats, from ``torch.finfo`` / ``torch.iinfo`` (a DataFrame).

    ``eps`` is the gap between 1.0 and the next value (relative resolution);
    integers have a resolution of exactly 1 over their whole range.
    """
    import pandas as pd

    rows = {}
    for name, dtype in [("FP32", torch.float32), ("FP16", torch.float16), ("BF16", torch.bfloat16)]:
        fi = torch.finfo(dtype)
        rows[name] = {
            "bits": fi.bits,
            "bytes/value": bytes_per_value(name),
            "min": float(fi.min),
            "max": float(fi.max),
            "smallest normal": float(fi.smallest_normal),
            "eps": float(fi.eps),
        }
    for name, dtype in [("INT8", torch.int8), ("UINT8", torch.uint8)]:
        ii = torch.iinfo(dtype)
        rows[name] = {"bits": ii.bits, "bytes/value": 1.0, "min": float(ii.min), "max": float(ii.max),
                      "smallest normal": 1.0, "eps": 1.0}
    rows["INT4"] = {"bits": 4, "bytes/value": bytes_per_value("INT4"), "min": -8.0, "max": 7.0,
                    "smallest normal": 1.0, "eps": 1.0}
    return pd.DataFrame.from_dict(rows, orient="index")


def model_size_table(models: Mapping[str, nn.Module]):
    """Parameter count of each model and its weight size in MB (10^6 bytes) in each format (a DataFrame)."""
    import pandas as pd

    _check_models(models)
    if not models:
        raise ValueError("model_size_table() needs at least one model")
    rows = {}
    for name, model in models.items():
        n = sum(p.numel() for p in model.parameters())
        row: dict[str, float] = {"parameters": n}
        for fmt in FORMATS:
            row[f"{fmt} (MB)"] = n * bytes_per_value(fmt) / 1e6
        rows[name] = row
    table = pd.DataFrame.from_dict(rows, orient="index")
    table["parameters"] = table["parameters"].astype(int)
    return table


def relative_cast_error(values: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """``|x - float(dtype(x))| / |x|`` for each value: inf where ``x`` overflows, 1 where it flushes to zero."""
    if not isinstance(values, torch.Tensor) or values.is_complex() or values.is_quantized:
        raise TypeError(f"values must be a real torch.Tensor, e.g. torch.logspace(-8, 6, 500), not {type(values).__name__}")
    _check_float_dtype(dtype)
    if values.numel() == 0:
        raise ValueError("values is empty: give the values to cast, e.g. torch.logspace(-8, 6, 500)")
    if not torch.isfinite(values).all():
        raise ValueError("values holds NaN/inf: the relative error is defined for finite values only")
    x = values.detach().double()
    if (x == 0).any():
        raise ValueError("relative error is undefined at 0: pass non-zero values (e.g. torch.logspace)")
    back = x.float().to(dtype).double()
    err = (x - back).abs() / x.abs()
    return torch.where(torch.isinf(back), torch.full_like(err, float("inf")), err)


def matmul_latency(n: int = 512, *, repeats: int = 30, threads: int = 2) -> dict[str, bench.Latency]:
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
        "FP32": bench.latency(lambda _: torch.mm(a, b), a, repeats=repeats, threads=threads),
        "BF16": bench.latency(lambda _: torch.mm(ab, bb), a, repeats=repeats, threads=threads),
        "INT8 -> INT32": bench.latency(lambda _: torch._int_mm(a8, b8), a, repeats=repeats, threads=threads),
    }


class MLP(nn.Module):
    """A Linear-heavy classifier for 1x28x28 images: 784 -> 512 -> 256 -> 10 with ReLUs (535,818 parameters).

    Dynamic quantization only touches ``nn.Linear``; in SimpleCNN those are
    2 % of the compute, here they are all of it.
    """

    def __init__(self, hidden: tuple[int, ...] = (512, 256), num_classes: int = 10) -> None:
        super().__init__()
        if isinstance(hidden, (str, bytes)) or not isinstance(hidden, Iterable):
            raise TypeError(f"hidden must be a tuple of layer widths, e.g. (512, 256), not {type(hidden).__name__} {hidden!r}")
        hidden = tuple(hidden)
        for i, h in enumerate(hidden):
            check_int(f"hidden[{i}]", h, 1)
        check_int("num_classes", num_classes, 1)
        layers: list[nn.Module] = [nn.Flatten()]
        width = 28 * 28
        for h in hidden:
            layers += [nn.Linear(width, h), nn.ReLU()]
            width = h
        layers.append(nn.Linear(width, num_classes))
        self.net = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


def trained_mlp(
    dataset: str = "mnist", *, epochs: int = 1, lr: float = 0.05, seed: int = 0, batch_size: int = 64
) -> tuple[MLP, qdata.Loaders, History, bool]:
    """The :class:`MLP` trained on ``dataset``, cached like ``zoo.trained_simple_cnn``: (model, loaders, history, cached).

    One epoch takes about 20-40 s on 2 cores and reaches about 97 % on MNIST.
    """
    loaders = qdata.loaders(dataset, batch_size=batch_size, seed=seed)
    config = TrainConfig(model="mlp_512_256", dataset=dataset, epochs=epochs, lr=lr, batch_size=batch_size, seed=seed)
    model, history, cached = train_or_load(MLP, config, loaders)
    return model, loaders, history, cached  # type: ignore[return-value]


class CastInputs(nn.Module):
    """Runs ``model`` on inputs cast to ``dtype`` and returns float32: a drop-in for the FP32 model."""

    def __init__(self, model: nn.Module, dtype: torch.dtype) -> None:
        super().__init__()
        _check_module(model)
        _check_float_dtype(dtype)
        self.model = model
        self.dtype = dtype

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x.to(self.dtype)).float()


_HALF_DTYPES = {"fp16": torch.float16, "bf16": torch.bfloat16, torch.float16: torch.float16, torch.bfloat16: torch.bfloat16}


def _half_dtype(dtype: Any) -> torch.dtype:
    if dtype not in _HALF_DTYPES:
        raise ValueError(f"dtype must be torch.float16 or torch.bfloat16 (or 'fp16'/'bf16'), got {dtype!r}")
    return _HALF_DTYPES[dtype]


def to_dtype(model: nn.Module, dtype: torch.dtype | str) -> CastInputs:
    """A copy of ``model`` with every parameter and buffer in FP16 or BF16, taking float32 inputs.

    Same as ``copy.deepcopy(model).half()`` (or ``.to(torch.bfloat16)``) plus the
    input cast; ``.model`` is the converted network itself.
    """
    check_float_model(model)
    dt = _half_dtype(dtype)
    return CastInputs(copy.deepcopy(model).to(dt).eval(), dt)


class Autocast(nn.Module):
    """FP32 weights, forward pass under ``torch.autocast('cpu', dtype)``: matmuls and convs run in ``dtype``.

    Nothing is smaller on disk; autocast is about compute, and casts weights on the fly.
    The output is returned as float32.
    """

    def __init__(self, model: nn.Module, dtype: torch.dtype | str = torch.bfloat16) -> None:
        super().__init__()
        _check_module(model)
        self.model = model
        self.dtype = _half_dtype(dtype)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        with torch.autocast("cpu", dtype=self.dtype):
            return self.model(x).float()


DYNAMIC_BACKENDS = ("torch.ao", "torchao-dynamic", "torchao-weight-only")


def _is_linear(module: nn.Module, fqn: str) -> bool:
    return isinstance(module, nn.Linear)


def dynamic_int8(
    model: nn.Module,
    backend: Literal["torch.ao", "torchao-dynamic", "torchao-weight-only"] = "torchao-dynamic",
    *,
    filter_fn: Callable[[nn.Module, str], bool] | None = None,
) -> nn.Module:
    """A copy of ``model`` whose ``nn.Linear`` layers hold INT8 weights.

    - ``'torch.ao'``: ``torch.ao.quantization.quantize_dynamic(m, {nn.Linear}, dtype=torch.qint8)``;
      Linear becomes ``DynamicQuantizedLinear`` (per-tensor INT8 weight, packed for fbgemm);
      activations are quantized to INT8 on the fly, per batch.
    - ``'torchao-dynamic'``: ``quantize_(m, Int8DynamicActivationInt8WeightConfig())``;
      the Linear stays, its weight becomes an ``Int8Tensor`` (per-row INT8 + scales),
      activations are quantized per token on the fly.
    - ``'torchao-weight-only'``: ``quantize_(m, Int8WeightOnlyConfig())``; INT8 weights,
      dequantized for a float matmul (saves memory, not arithmetic).

    ``filter_fn(module, fqn)`` chooses which Linear layers to convert (all by default).
    Convolutions are never touched: they need static quantization (chapters 04-05).
    """
    _check_module(model)
    if backend not in DYNAMIC_BACKENDS:
        raise ValueError(f"unknown backend {backend!r}; choose one of {DYNAMIC_BACKENDS}")
    _check_callable("filter_fn", filter_fn, "lambda module, fqn: fqn != 'fc2'")
    check_float_model(model)
    m = copy.deepcopy(model).eval()
    keep = filter_fn or _is_linear
    if backend == "torch.ao":
        from torch.ao.quantization import quantize_dynamic

        names = {name for name, mod in m.named_modules() if isinstance(mod, nn.Linear) and keep(mod, name)}
        if not names:
            return m
        return quantize_dynamic(m, names, dtype=torch.qint8)
    if backend in ("torchao-dynamic", "torchao-weight-only"):
        from torchao.quantization import Int8DynamicActivationInt8WeightConfig, Int8WeightOnlyConfig, quantize_

        config = Int8DynamicActivationInt8WeightConfig() if backend == "torchao-dynamic" else Int8WeightOnlyConfig()
        quantize_(m, config, filter_fn=lambda mod, fqn: isinstance(mod, nn.Linear) and keep(mod, fqn))
        return m
    raise ValueError(f"unknown backend {backend!r}; choose one of {DYNAMIC_BACKENDS}")


def variants(model: nn.Module, *, autocast: bool = False) -> dict[str, nn.Module]:
    """The chapter's lineup: FP32, FP16, BF16 (and BF16 autocast), INT8 via torch.ao and via torchao (two configs)."""
    check_float_model(model)
    if not isinstance(autocast, bool):
        raise TypeError(f"autocast={autocast!r} must be True or False, not {type(autocast).__name__}")
    out: dict[str, nn.Module] = {
        "FP32": copy.deepcopy(model).eval(),
        "FP16": to_dtype(model, torch.float16),
        "BF16": to_dtype(model, torch.bfloat16),
    }
    if autocast:
        out["BF16 autocast"] = Autocast(copy.deepcopy(model).eval(), torch.bfloat16)
    out["INT8 dynamic (torch.ao)"] = dynamic_int8(model, "torch.ao")
    out["INT8 dynamic (torchao)"] = dynamic_int8(model, "torchao-dynamic")
    out["INT8 weight-only (torchao)"] = dynamic_int8(model, "torchao-weight-only")
    return out


def storage(model: nn.Module, *, only: Callable[[str], bool] | None = None):
    """What each state-dict entry really stores: class, inner tensors' dtype and shape, bytes (a DataFrame)."""
    import pandas as pd

    _check_module(model)
    _check_callable("only", only, "lambda key: key.startswith('net.1.')")
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
    _check_module(model)
    out = {}
    for name, mod in model.named_modules():
        cls = mod._get_name()  # torch.ao's dynamic Linear reports itself as DynamicQuantizedLinear
        if "Linear" not in cls or "PackedParams" in cls:
            continue
        w = getattr(mod, "weight", None)
        w = w() if callable(w) else w  # torch.ao's quantized Linear has weight() as a method
        kind = cls
        if isinstance(w, torch.Tensor):
            kind += f"[{type(w).__name__}]" if _is_subclass(w) else f"[{str(w.dtype).replace('torch.', '')}]"
        out[name] = kind
    return out


def size_latency_table(
    models: Mapping[str, nn.Module],
    example: torch.Tensor,
    accuracy: Mapping[str, float] | None = None,
    *,
    repeats: int = 50,
    threads: int = 2,
    min_time_s: float = 0.0,
    baseline: str | None = None,
):
    """One row per variant: file size, real payload, median CPU latency on ``example``, accuracy (a DataFrame).

    Kept under this name for chapter 02; it is ``bench.compare`` with latency always measured.
    """
    return bench.compare(
        models, example, accuracy, repeats=repeats, threads=threads, min_time_s=min_time_s, baseline=baseline
    )


def work_by_layer_type(model: nn.Module, example: torch.Tensor) -> dict[str, dict[str, int]]:
    """Parameters and multiply-accumulates of one forward pass on ``example``, per layer type (Conv2d, Linear).

    Counted with forward hooks on ``nn.Conv2d`` and ``nn.Linear``: what dynamic
    quantization of Linear layers can and cannot reach.
    """
    _check_module(model)
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
