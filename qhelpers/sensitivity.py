"""Which layers suffer from INT8? Quantize one layer at a time, rank them, keep the worst in FP32.

All of it runs through FX graph mode: a ``QConfigMapping`` whose global
qconfig is ``None`` and which names one module quantizes that module alone
(its weights, and the activations entering and leaving it); one that
names a few modules with ``None`` quantizes everything *but* them, which is
the mixed-precision model.

The score of a layer is the signal-to-quantization-noise ratio (SQNR, dB)
of the network's output logits against the FP32 model's on a fixed batch:
it sees small differences that top-1 accuracy, flipping a few images, does not.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Iterable, Sequence

import torch
from torch import Tensor, nn

from .flows import Fuse, _check_calibration, _default_qconfig, _fuse, calibrate, views_as_reshapes
from .quant import sqnr_db

__all__ = [
    "quantizable_layers", "ptq_fx_layers", "LayerSensitivity", "layer_sensitivity", "sensitivity_table", "calibration_sweep",
]

_QUANTIZABLE = (nn.Conv2d, nn.Linear)


def quantizable_layers(model: nn.Module) -> list[str]:
    """Names of the convolution and linear layers, in definition order: the layers INT8 computes."""
    return [name for name, m in model.named_modules() if isinstance(m, _QUANTIZABLE)]


def _check_layers(model: nn.Module, names: Iterable[str], what: str) -> list[str]:
    names = list(names)
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

    _check_calibration(calibration)
    if not isinstance(example_inputs, tuple):
        raise TypeError("example_inputs must be a tuple of the model's inputs, e.g. (x[:1],)")
    if only is not None and keep_fp32:
        raise ValueError("give either only= (quantize just these) or keep_fp32= (quantize all but these), not both")
    qconfig = _default_qconfig(per_channel)
    if only is not None:
        layers = _check_layers(model, only, "only")
        mapping = QConfigMapping().set_global(None)
        for name in layers:
            mapping.set_module_name(name, qconfig)
    else:
        layers = _check_layers(model, keep_fp32, "keep_fp32")
        mapping = get_default_qconfig_mapping("x86").set_global(qconfig)
        for name in layers:
            mapping.set_module_name(name, None)
    m = views_as_reshapes(copy.deepcopy(model).eval())
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

    layers = _check_layers(model, layers if layers is not None else quantizable_layers(model), "layers")
    if not layers:
        raise ValueError("the model has no conv/linear layers to quantize")
    model = model.eval()
    example = (inputs[:2],)
    with torch.inference_mode():
        reference = model(inputs).float()
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

    _check_calibration(batches)
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
