"""Which layers suffer from INT8? Quantize one layer at a time, rank them, keep the worst in FP32.

All of it runs through FX graph mode, :func:`qhelpers.ptq.ptq_fx`:
``only=[name]`` (a ``QConfigMapping`` whose global qconfig is ``None`` and
which names one module) quantizes that module alone (its weights, and the
activations entering and leaving it); ``keep_float=[...]`` (a few modules
named with ``None``) quantizes everything *but* them, which is the
mixed-precision model.

The score of a layer is the signal-to-quantization-noise ratio (SQNR, dB)
of the network's output logits against the FP32 model's on a fixed batch:
it sees small differences that top-1 accuracy, flipping a few images, does not.

Arguments are checked as in :mod:`qhelpers.ptq` (a float model, a list of
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

from .checks import check_float_model, describe
from .ptq import (
    Fuse, calibrate, check_calibration, check_granularity, check_layers, default_qconfig, fuse, ptq_fx, quantizable_layers,
)
from .quant import PerChannel, PerTensor, sqnr_db

__all__ = [
    "layer_sensitivity", "sensitivity_table", "calibration_sweep",
]

_fuse_in_place = fuse  # (calibration_sweep's argument is also called fuse)


# --- argument checks ------------------------------------------------------------------------------

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
    granularity: PerTensor | PerChannel = PerChannel(0),
) -> list[LayerSensitivity]:
    """Quantize each layer alone (FX), run ``inputs``, compare with FP32: most sensitive first.

    ``layers`` defaults to every conv/linear layer. Cost: one prepare,
    calibration and forward pass of ``inputs`` per layer, so keep ``inputs``
    to a few hundred images.
    """
    from .train import progress

    check_float_model(model)
    check_calibration(calibration)
    _check_inputs(inputs)
    if labels is not None:
        if not isinstance(labels, Tensor) or labels.dim() != 1 or labels.is_floating_point() \
                or labels.is_complex() or labels.dtype == torch.bool:
            kind = f"a {labels.dtype} tensor of shape {tuple(labels.shape)}" if isinstance(labels, Tensor) else type(labels).__name__
            raise TypeError(f"labels must be a 1-D tensor of integer class indices (or None), not {kind}")
        if len(labels) != len(inputs):
            raise ValueError(f"labels has {len(labels)} entries for {len(inputs)} inputs: give one label per input")
    check_granularity(granularity)
    if layers is None:
        layers = quantizable_layers(model)
        if not layers:
            raise ValueError("the model has no conv/linear layers to quantize")
    else:
        layers = check_layers(model, layers, "layers")
        if not layers:
            raise ValueError("layers=[] is empty: name at least one layer, or leave layers=None for all of them")
    model = model.eval()
    example = (inputs[:2],)
    reference = _run(model, (inputs,), "inputs")
    if not isinstance(reference, Tensor) or reference.dim() != 2 or reference.shape[0] != len(inputs) \
            or not reference.is_floating_point():
        got = describe(reference)
        raise ValueError(f"the model returned {got} for {len(inputs)} inputs; layer_sensitivity compares logits of "
                         f"shape ({len(inputs)}, number of classes): pass a classifier")
    reference = reference.float()
    if labels is not None and len(labels):
        low, high, classes = int(labels.min()), int(labels.max()), reference.shape[1]
        if low < 0 or high >= classes:
            raise ValueError(f"labels hold {low if low < 0 else high}, which is not a class of this model: it outputs "
                             f"{classes} classes (labels 0..{classes - 1}); pass the inputs' true class indices")
    ref_top1 = reference.argmax(1)
    results = []
    for name in progress(layers, desc="one layer at a time", unit="layer"):
        q = ptq_fx(model, calibration, example, only=[name], granularity=granularity, desc=None)  # one bar: the layers
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
    granularity: PerTensor | PerChannel = PerChannel(0),
) -> dict[int, float]:
    """Accuracy on ``loader`` of eager-mode INT8 models calibrated on the first ``n`` batches, for each ``n`` in ``sizes``.

    The same models as ``ptq.ptq_eager(model, batches[:n], ...)``, but each
    batch is observed once: one prepared model keeps calibrating, and at each
    size a copy of it is converted and evaluated.
    """
    from torch.ao.quantization import convert, prepare

    from .train import evaluate

    check_float_model(model)
    if not any(isinstance(m, torch.ao.quantization.QuantStub) for m in model.modules()):
        raise ValueError("calibration_sweep quantizes in eager mode, which needs a QuantStub (and DeQuantStub) in the "
                         "model; use a quantization-ready model (e.g. QuantReadyCNN.from_simple_cnn)")
    check_calibration(batches)
    if isinstance(sizes, (str, bytes, Tensor)) or not isinstance(sizes, Iterable):
        raise TypeError(f"sizes must be a list of batch counts, e.g. [1, 2, 4], not {type(sizes).__name__} {sizes!r}")
    sizes = list(sizes)
    bad = [n for n in sizes if isinstance(n, bool) or not isinstance(n, numbers.Integral)]
    if bad:
        raise TypeError(f"sizes must hold whole numbers of batches, but {bad[0]!r} is a {type(bad[0]).__name__}")
    if not hasattr(loader, "__iter__"):
        raise TypeError(f"loader must yield (inputs, labels) batches, e.g. a DataLoader; got {type(loader).__name__}")
    qconfig = default_qconfig(granularity)
    sizes = sorted(set(sizes))
    if not sizes or sizes[0] < 1 or sizes[-1] > len(batches):
        raise ValueError(f"sizes={sizes} must lie between 1 and the number of batches ({len(batches)})")
    prepared = copy.deepcopy(model).eval()
    _fuse_in_place(prepared, fuse)
    prepared.qconfig = qconfig
    prepare(prepared, inplace=True)
    results: dict[int, float] = {}
    seen = 0
    for n in sizes:
        if n > seen:
            calibrate(prepared, batches[seen:n], desc=f"calibrating (up to {n} batches)")
            seen = n
        results[n] = evaluate(convert(copy.deepcopy(prepared)).eval(), loader).accuracy
    return results
