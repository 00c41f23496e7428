"""Low-bit simulation and quantization-aware training (QAT) in eager mode.

fbgemm's kernels compute in 8-bit containers, so a ``bits``-bit model is
*simulated*: every weight and activation is fake-quantized (quantized, then
dequantized, in float) onto a grid restricted to ``bits`` bits through the
observers' ``quant_min``/``quant_max``:

- activations: unsigned affine, ``[0, 2**bits - 1]``, per tensor, ranges from
  ``MovingAverageMinMaxObserver``;
- weights: signed symmetric, ``[-(2**(bits-1) - 1), 2**(bits-1) - 1]`` (zero
  exactly in the middle; 2 bits gives ternary weights), per output channel
  (``MovingAveragePerChannelMinMaxObserver``) or per tensor.

The same fake-quantized model serves both methods, so they are compared on
the same grid: PTQ calibrates its observers on a few batches and stops;
QAT starts from there and fine-tunes the weights through the fake
quantization (straight-through gradients), the observers following along.
"""

from __future__ import annotations

import copy
import dataclasses
import hashlib
from typing import Sequence

import torch
from torch import Tensor, nn
from torch.utils.data import DataLoader
from torch.ao.quantization import (
    FusedMovingAvgObsFakeQuantize,
    MovingAverageMinMaxObserver,
    MovingAveragePerChannelMinMaxObserver,
    QConfig,
    disable_fake_quant,
    disable_observer,
    enable_fake_quant,
    enable_observer,
    prepare_qat,
)

from .data import Loaders
from .flows import Fuse, _check_calibration, calibrate
from .quant import quant_range
from .train import History, TrainConfig, train_or_load

__all__ = ["lowbit_qconfig", "fake_quant_model", "ptq_lowbit", "qat_lowbit", "freeze", "weights_key", "compare_bits"]


def lowbit_qconfig(bits: int, *, act_bits: int | None = None, per_channel: bool = True) -> QConfig:
    """A QAT QConfig (fake quantization on activations and weights) restricted to ``bits`` bits.

    ``FusedMovingAvgObsFakeQuantize`` is ``FakeQuantize`` with the observer
    and the fake quantization done in one kernel (about 20 % faster here).

    ``bits=8`` gives the usual INT8 grid: activations ``[0, 255]``, weights ``[-127, 127]``.
    ``act_bits`` (default: ``bits``) sets the activations' bit-width separately.
    """
    act_min, act_max = quant_range(bits if act_bits is None else act_bits, signed=False)
    w_max = quant_range(bits, signed=True)[1]
    activation = FusedMovingAvgObsFakeQuantize.with_args(
        observer=MovingAverageMinMaxObserver,
        quant_min=act_min,
        quant_max=act_max,
        dtype=torch.quint8,
        qscheme=torch.per_tensor_affine,
    )
    if per_channel:
        weight = FusedMovingAvgObsFakeQuantize.with_args(
            observer=MovingAveragePerChannelMinMaxObserver,
            quant_min=-w_max,
            quant_max=w_max,
            dtype=torch.qint8,
            qscheme=torch.per_channel_symmetric,
            ch_axis=0,
        )
    else:
        weight = FusedMovingAvgObsFakeQuantize.with_args(
            observer=MovingAverageMinMaxObserver,
            quant_min=-w_max,
            quant_max=w_max,
            dtype=torch.qint8,
            qscheme=torch.per_tensor_symmetric,
        )
    return QConfig(activation=activation, weight=weight)


def fake_quant_model(
    model: nn.Module,
    *,
    bits: int,
    fuse: Fuse = None,
    per_channel: bool = True,
    keep_8bit: Sequence[str] = (),
) -> nn.Module:
    """A fused, fake-quantized copy of ``model`` (``prepare_qat``), in train mode, observers and fake quant on.

    ``model`` needs quant/dequant stubs (e.g. ``QuantReadyCNN``); ``fuse`` as
    in :func:`qhelpers.flows.ptq_eager` (QAT fusion keeps conv and ReLU as one module).
    ``keep_8bit`` names modules whose *output* stays on an 8-bit grid (their
    weights still use ``bits``): usually the input stub and the last layer, as
    8 levels of input pixels or of logits (3 bits) would throw away
    information no training can win back.
    """
    from torch.ao.quantization import fuse_modules_qat

    m = copy.deepcopy(model).train()
    if callable(fuse):
        fuse(m)
    elif fuse:
        fuse_modules_qat(m, fuse, inplace=True)
    m.qconfig = lowbit_qconfig(bits, per_channel=per_channel)
    modules = dict(m.named_modules())
    for name in keep_8bit:
        if name not in modules:
            raise ValueError(f"keep_8bit names a module the model does not have: {name!r}; its modules are {sorted(modules)[1:]}")
        modules[name].qconfig = lowbit_qconfig(bits, act_bits=8, per_channel=per_channel)
    prepare_qat(m, inplace=True)
    return m


def freeze(model: nn.Module) -> nn.Module:
    """Observers off, fake quantization on, eval mode: the model now runs on a fixed grid."""
    model.apply(disable_observer)
    model.apply(enable_fake_quant)
    return model.eval()


def ptq_lowbit(
    model: nn.Module,
    calibration: Sequence[Tensor],
    *,
    bits: int,
    fuse: Fuse = None,
    per_channel: bool = True,
    keep_8bit: Sequence[str] = (),
) -> nn.Module:
    """Post-training quantization simulated at ``bits`` bits: calibrate the observers, then freeze.

    As in ordinary PTQ, the observers see the float activations (fake
    quantization is off while calibrating), and the weights are untouched.
    """
    _check_calibration(calibration)
    m = fake_quant_model(model, bits=bits, fuse=fuse, per_channel=per_channel, keep_8bit=keep_8bit)
    m.apply(disable_fake_quant)
    m.apply(enable_observer)
    calibrate(m, calibration, desc=f"calibrating ({bits}-bit)")
    return freeze(m)


def weights_key(model: nn.Module) -> str:
    """A short hash of a model's state dict: names a cached fine-tune of exactly these weights."""
    h = hashlib.sha256()
    for name, t in sorted(model.state_dict().items()):
        h.update(name.encode())
        h.update(t.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()[:16]


def qat_lowbit(
    model: nn.Module,
    calibration: Sequence[Tensor],
    data: Loaders,
    *,
    bits: int,
    fuse: Fuse = None,
    per_channel: bool = True,
    keep_8bit: Sequence[str] = (),
    epochs: int = 1,
    lr: float = 0.01,
    seed: int = 0,
    name: str = "qat",
) -> tuple[nn.Module, History, bool]:
    """Quantization-aware training at ``bits`` bits, starting from the PTQ-calibrated model.

    Fine-tunes on ``data.train`` (SGD, one-cycle schedule, as ``train.fit``)
    and caches the result keyed by the starting weights and every setting.
    Returns ``(frozen fake-quantized model, history, loaded_from_cache)``.
    """
    if epochs < 1:
        raise ValueError(f"epochs={epochs}: QAT needs at least one epoch of fine-tuning")

    def build() -> nn.Module:
        m = ptq_lowbit(model, calibration, bits=bits, fuse=fuse, per_channel=per_channel, keep_8bit=keep_8bit)
        m.apply(enable_observer)
        return m.train()

    config = TrainConfig(
        model=f"{name}-{bits}bit",
        dataset=data.dataset,
        epochs=epochs,
        lr=lr,
        batch_size=data.train.batch_size or 0,
        subset=len(data.train.dataset),  # type: ignore[arg-type]
        seed=seed,
        extra=(
            ("base", weights_key(model)),
            ("calibration", hashlib.sha256(b"".join(x.numpy().tobytes() for x in calibration)).hexdigest()[:16]),
            ("per_channel", per_channel),
            ("keep_8bit", tuple(keep_8bit)),
            ("fuse", repr(fuse) if not callable(fuse) else getattr(fuse, "__qualname__", "callable")),
        ),
    )
    # A fresh, seeded shuffle: the batches must not depend on how often data.train was iterated before.
    train = DataLoader(
        data.train.dataset,
        batch_size=data.train.batch_size,
        shuffle=True,
        generator=torch.Generator().manual_seed(seed),
    )
    trained, history, cached = train_or_load(build, config, dataclasses.replace(data, train=train))
    return freeze(trained), history, cached


def compare_bits(
    model: nn.Module,
    calibration: Sequence[Tensor],
    data: Loaders,
    bit_widths: Sequence[int],
    *,
    fuse: Fuse = None,
    per_channel: bool = True,
    keep_8bit: Sequence[str] = (),
    epochs: int = 1,
    lr: float = 0.01,
    seed: int = 0,
):
    """Test accuracy of PTQ and QAT at each bit-width, both simulated on the same grid.

    Returns a pandas DataFrame indexed by ``bits`` with columns ``PTQ`` and
    ``QAT`` (fractions in [0, 1]) and ``QAT cached`` (whether the fine-tune
    was loaded from the cache).
    """
    import pandas as pd

    from .train import evaluate

    if not bit_widths:
        raise ValueError("bit_widths is empty: pass e.g. [8, 4, 3, 2]")
    rows = {}
    for bits in bit_widths:
        kw = dict(bits=bits, fuse=fuse, per_channel=per_channel, keep_8bit=keep_8bit)
        ptq = ptq_lowbit(model, calibration, **kw)
        tuned, _, cached = qat_lowbit(model, calibration, data, epochs=epochs, lr=lr, seed=seed, **kw)
        rows[bits] = {
            "PTQ": evaluate(ptq, data.test).accuracy,
            "QAT": evaluate(tuned, data.test).accuracy,
            "QAT cached": cached,
        }
    table = pd.DataFrame.from_dict(rows, orient="index")
    table.index.name = "bits"
    return table
