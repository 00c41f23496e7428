"""Which layers suffer from INT8? Quantize one layer at a time, rank them, keep the worst in FP32.

All of it runs through FX graph mode: a ``QConfigMapping`` whose global
qconfig is ``None`` and which names one module quantizes that module alone
(its weights, and the activations entering and leaving it); one that
names a few modules with ``None`` quantizes everything *but* them, which is
the mixed-precision model.

The score of a layer is the signal-to-quantization-noise ratio (SQNR, dB)
of the network's output logits against the FP32 model's on a fixed batch:
it sees small differences that top-1 accuracy, flipping a few images, does not.

Arguments are checked as in :mod:`qhelpers.flows` (a float model, a list of
finite calibration batches, example inputs the model runs on), and layer names
must be a list of the model's conv/linear layers, before any layer is quantized.
"""

from __future__ import annotations

import copy
import numbers
from dataclasses import dataclass
from typing import Iterable, Sequence

import torch
from torch import Tensor, nn

from .flows import Fuse, _check_calibration, _default_qconfig, _fuse, calibrate, check_float_model, views_as_reshapes
from .quant import sqnr_db

__all__ = [
    "quantizable_layers", "ptq_fx_layers", "LayerSensitivity", "layer_sensitivity", "sensitivity_table", "calibration_sweep",
]

_QUANTIZABLE = (nn.Conv2d, nn.Linear)


# --- argument checks ------------------------------------------------------------------------------

def _check_flag(name: str, value: object) -> bool:
    if not isinstance(value, bool):
        raise TypeError(f"{name}={value!r} must be True or False, not {type(value).__name__}")
    return value


def _check_inputs(x: object, what: str = "inputs") -> Tensor:
    """A non-empty batch of finite float inputs."""
    if not isinstance(x, Tensor):
        raise TypeError(f"{what} must be a batch of inputs as a torch.Tensor, not {type(x).__name__}")
    if not x.is_floating_point() or x.dim() == 0 or x.shape[0] == 0:
        raise ValueError(f"{what} must be a non-empty batch of float inputs, got a {x.dtype} tensor of shape {tuple(x.shape)}")
    if not torch.isfinite(x).all():
        raise ValueError(f"{what} holds {int((~torch.isfinite(x)).sum())} NaN/inf value(s): the SQNR of the logits "
                         "needs finite inputs")
    return x


@torch.inference_mode()
def _run(model: nn.Module, args: tuple, what: str) -> Tensor:
    """``model(*args)`` in inference mode, a failure (wrong shape or dtype) said in one line."""
    try:
        return model(*args)
    except (RuntimeError, TypeError, ValueError, IndexError) as exc:
        shapes = ", ".join(str(tuple(t.shape)) if isinstance(t, Tensor) else type(t).__name__ for t in args)
        raise ValueError(f"the model fails on {what} ({shapes}): {str(exc).splitlines()[0]}. Pass inputs shaped "
                         "like a batch of its data") from None


def _check_example(model: nn.Module, example_inputs: object) -> tuple:
    if not isinstance(example_inputs, tuple):
        raise TypeError("example_inputs must be a tuple of the model's inputs, e.g. (x[:1],)")
    if not example_inputs:
        raise ValueError("example_inputs is an empty tuple: give the model's inputs, e.g. (x[:1],)")
    for i, t in enumerate(example_inputs):
        if isinstance(t, Tensor):
            _check_inputs(t, f"example_inputs[{i}]")
    _run(model, example_inputs, "example_inputs")
    return example_inputs


def quantizable_layers(model: nn.Module) -> list[str]:
    """Names of the convolution and linear layers, in definition order: the layers INT8 computes."""
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, not {type(model).__name__}")
    return [name for name, m in model.named_modules() if isinstance(m, _QUANTIZABLE)]


def _check_layers(model: nn.Module, names: Iterable[str], what: str) -> list[str]:
    if isinstance(names, (str, bytes)) or not isinstance(names, Iterable):
        raise TypeError(f"{what} must be a list of layer names, e.g. ['fc1'], not {type(names).__name__} {names!r}")
    names = list(names)
    if not all(isinstance(n, str) for n in names):
        raise TypeError(f"{what} must be a list of layer names (strings), e.g. ['fc1'], not {names!r}")
    known = quantizable_layers(model)
    unknown = [n for n in names if n not in known]
    if unknown:
        raise ValueError(f"{what} names {unknown}, which are not conv/linear layers of the model; choose from {known}")
    return names


def ptq_fx_layers(
    model: nn.Module,
    calibration: Sequence[Tensor],
    example_inputs: tuple,
    *,
    only: Sequence[str] | None = None,
    keep_fp32: Sequence[str] = (),
    per_channel: bool = True,
    desc: str = "calibrating (FX, selected layers)",
) -> torch.fx.GraphModule:
    """FX post-training quantization of selected layers: ``only`` these, or all but ``keep_fp32``.

    ``only=["layer1.0.conv1"]`` quantizes that layer alone (after fusion with
    its batch norm and ReLU, which FX does for the whole graph); ``keep_fp32``
    leaves the named layers in FP32, with dequantize/quantize around them.
    Otherwise the same recipe as :func:`qhelpers.flows.ptq_fx` (x86 qconfig).
    """
    from torch.ao.quantization import QConfigMapping, get_default_qconfig_mapping
    from torch.ao.quantization.quantize_fx import convert_fx, prepare_fx

    check_float_model(model)
    _check_calibration(calibration)
    if not isinstance(example_inputs, tuple):
        raise TypeError("example_inputs must be a tuple of the model's inputs, e.g. (x[:1],)")
    if only is not None and keep_fp32:
        raise ValueError("give either only= (quantize just these) or keep_fp32= (quantize all but these), not both")
    _check_flag("per_channel", per_channel)
    qconfig = _default_qconfig(per_channel)
    if only is not None:
        layers = _check_layers(model, only, "only")
        if not layers:
            raise ValueError("only=[] quantizes no layer: name at least one, or use keep_fp32= to quantize all but some")
        mapping = QConfigMapping().set_global(None)
        for name in layers:
            mapping.set_module_name(name, qconfig)
    else:
        layers = _check_layers(model, keep_fp32, "keep_fp32")
        mapping = get_default_qconfig_mapping("x86").set_global(qconfig)
        for name in layers:
            mapping.set_module_name(name, None)
    m = copy.deepcopy(model).eval()
    _check_example(m, example_inputs)
    m = views_as_reshapes(m)
    prepared = prepare_fx(m, mapping, example_inputs)
    calibrate(prepared, calibration, desc=desc)
    return convert_fx(prepared).eval()


@dataclass(frozen=True)
class LayerSensitivity:
    """How much quantizing one layer alone changes the network's output."""

    layer: str
    sqnr_db: float  # SQNR of the logits against FP32's: lower = more sensitive
    agreement: float  # fraction of inputs whose top-1 class is unchanged
    accuracy: float | None  # top-1 accuracy with this layer quantized (if labels were given)


def layer_sensitivity(
    model: nn.Module,
    calibration: Sequence[Tensor],
    inputs: Tensor,
    labels: Tensor | None = None,
    *,
    layers: Sequence[str] | None = None,
    per_channel: bool = True,
) -> list[LayerSensitivity]:
    """Quantize each layer alone (FX), run ``inputs``, compare with FP32: most sensitive first.

    ``layers`` defaults to every conv/linear layer. Cost: one prepare,
    calibration and forward pass of ``inputs`` per layer, so keep ``inputs``
    to a few hundred images.
    """
    from .train import progress

    check_float_model(model)
    _check_calibration(calibration)
    _check_inputs(inputs)
    if labels is not None:
        if not isinstance(labels, Tensor) or labels.dim() != 1 or labels.is_floating_point() or labels.dtype == torch.bool:
            kind = f"a {labels.dtype} tensor of shape {tuple(labels.shape)}" if isinstance(labels, Tensor) else type(labels).__name__
            raise TypeError(f"labels must be a 1-D tensor of integer class indices (or None), not {kind}")
        if len(labels) != len(inputs):
            raise ValueError(f"labels has {len(labels)} entries for {len(inputs)} inputs: give one label per input")
    _check_flag("per_channel", per_channel)
    if layers is None:
        layers = quantizable_layers(model)
        if not layers:
            raise ValueError("the model has no conv/linear layers to quantize")
    else:
        layers = _check_layers(model, layers, "layers")
        if not layers:
            raise ValueError("layers=[] is empty: name at least one layer, or leave layers=None for all of them")
    model = model.eval()
    example = (inputs[:2],)
    reference = _run(model, (inputs,), "inputs").float()
    ref_top1 = reference.argmax(1)
    results = []
    for name in progress(layers, desc="one layer at a time", unit="layer"):
        q = ptq_fx_layers(model, calibration, example, only=[name], per_channel=per_channel, desc=f"calibrating {name}")
        with torch.inference_mode():
            out = q(inputs).float()
        top1 = out.argmax(1)
        acc = float((top1 == labels).float().mean()) if labels is not None else None
        results.append(LayerSensitivity(name, sqnr_db(reference, out), float((top1 == ref_top1).float().mean()), acc))
    return sorted(results, key=lambda r: r.sqnr_db)


def sensitivity_table(results: Sequence[LayerSensitivity]):
    """The ranking as a pandas DataFrame, one row per layer, most sensitive first."""
    import pandas as pd

    if isinstance(results, (str, bytes)) or not isinstance(results, Iterable):
        raise TypeError(f"results must be the list layer_sensitivity(...) returns, not {type(results).__name__}")
    results = list(results)
    if not all(isinstance(r, LayerSensitivity) for r in results):
        raise TypeError("results must be the list layer_sensitivity(...) returns, a list of LayerSensitivity")
    if not results:
        raise ValueError("results is empty: there is no layer to rank")
    table = pd.DataFrame([r.__dict__ for r in results]).set_index("layer")
    table.insert(0, "rank", range(1, len(table) + 1))
    if table["accuracy"].isna().all():
        table = table.drop(columns="accuracy")
    return table


def calibration_sweep(
    model: nn.Module,
    batches: Sequence[Tensor],
    sizes: Sequence[int],
    loader: Iterable,
    *,
    fuse: Fuse = None,
    per_channel: bool = True,
) -> dict[int, float]:
    """Accuracy on ``loader`` of eager-mode INT8 models calibrated on the first ``n`` batches, for each ``n`` in ``sizes``.

    The same models as ``flows.ptq_eager(model, batches[:n], ...)``, but each
    batch is observed once: one prepared model keeps calibrating, and at each
    size a copy of it is converted and evaluated.
    """
    from torch.ao.quantization import convert, prepare

    from .train import evaluate

    check_float_model(model)
    if not any(isinstance(m, torch.ao.quantization.QuantStub) for m in model.modules()):
        raise ValueError("calibration_sweep quantizes in eager mode, which needs a QuantStub (and DeQuantStub) in the "
                         "model; use a quantization-ready model (e.g. QuantReadyCNN.from_simple_cnn)")
    _check_calibration(batches)
    if isinstance(sizes, (str, bytes, Tensor)) or not isinstance(sizes, Iterable):
        raise TypeError(f"sizes must be a list of batch counts, e.g. [1, 2, 4], not {type(sizes).__name__} {sizes!r}")
    sizes = list(sizes)
    bad = [n for n in sizes if isinstance(n, bool) or not isinstance(n, numbers.Integral)]
    if bad:
        raise TypeError(f"sizes must hold whole numbers of batches, but {bad[0]!r} is a {type(bad[0]).__name__}")
    if not hasattr(loader, "__iter__"):
        raise TypeError(f"loader must yield (inputs, labels) batches, e.g. a DataLoader; got {type(loader).__name__}")
    _check_flag("per_channel", per_channel)
    sizes = sorted(set(sizes))
    if not sizes or sizes[0] < 1 or sizes[-1] > len(batches):
        raise ValueError(f"sizes={sizes} must lie between 1 and the number of batches ({len(batches)})")
    prepared = copy.deepcopy(model).eval()
    _fuse(prepared, fuse)
    prepared.qconfig = _default_qconfig(per_channel)
    prepare(prepared, inplace=True)
    results: dict[int, float] = {}
    seen = 0
    for n in sizes:
        if n > seen:
            calibrate(prepared, batches[seen:n], desc=f"calibrating (up to {n} batches)")
            seen = n
        results[n] = evaluate(convert(copy.deepcopy(prepared)).eval(), loader).accuracy
    return results
