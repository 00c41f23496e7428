"""Fake quantization, low-bit simulation and quantization-aware training (QAT) in eager mode.

:class:`FakeQuantizedModel` is the smallest fake-quantized network: one
``nn.Linear`` whose input, weight and output pass through
``torch.ao.quantization.FakeQuantize`` (an observer that learns the range,
plus ``torch.fake_quantize_per_tensor_affine``, which quantizes *and*
dequantizes in one call); :meth:`FakeQuantizedModel.to_int8` builds the truly
INT8 layer (:class:`Int8Linear`) with the same scales and zero-points, so the
two can be compared output for output. The rest of this module does the
same for whole models:

fbgemm's kernels compute in 8-bit containers, so a ``bits``-bit model is
*simulated*: every weight and activation is fake-quantized (quantized, then
dequantized, in float) onto a grid restricted to ``bits`` bits through the
observers' ``quant_min``/``quant_max``:

- activations: unsigned affine, ``[0, 2**bits - 1]``, per tensor, ranges from
  ``MovingAverageMinMaxObserver``;
- weights: signed symmetric, ``[-(2**(bits-1) - 1), 2**(bits-1) - 1]`` (zero
  exactly in the middle; 2 bits gives ternary weights), per output channel
  (``MovingAveragePerChannelMinMaxObserver``, ``granularity=PerChannel(0)``) or per tensor (``PerTensor()``).

Those min/max ranges are the simplest choice (``clipping="minmax"``). For PTQ,
``clipping="mse"`` picks each range by the smallest quantization error on the
grid in use (:class:`qhelpers.ranges.MSEObserver` for activations,
:class:`~qhelpers.ranges.PerChannelMSEObserver` for weights, chapter 01's MSE
rule), and ``clipping="histogram"`` uses torch.ao's ``HistogramObserver`` for
activations (the x86 recipe's; its search assumes 256 levels) with min/max weights.
QAT always starts from the min/max model (its observers then follow the weights).

The same fake-quantized model serves both methods, so they are compared on
the same grid: PTQ calibrates its observers on a few batches and stops;
QAT starts from there and fine-tunes the weights through the fake
quantization (straight-through gradients), the observers following along.

Bit-widths from 2 to 8 are supported (the grids live in 8-bit containers).
Every argument is checked before anything is built or trained: the model must
be a float model with quant/dequant stubs, ``keep_8bit`` a list of its module
names, ``fuse`` groups it can fuse; a cached fine-tune (``cache=``, see
:func:`qat_lowbit`) is only loaded for arguments that would also have trained.
"""

from __future__ import annotations

import copy
import hashlib
import math
import numbers
from typing import Callable, Iterable, Literal, Sequence, get_args

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.ao.quantization import (
    FakeQuantize,
    FusedMovingAvgObsFakeQuantize,
    HistogramObserver,
    MinMaxObserver,
    MovingAverageMinMaxObserver,
    MovingAveragePerChannelMinMaxObserver,
    QConfig,
    disable_fake_quant,
    disable_observer,
    enable_fake_quant,
    enable_observer,
    prepare_qat,
)

from .checks import SEED_MAX, check_float_model, check_function, check_int, check_module
from .data import Loaders, check_loaders, shuffled
from .ptq import Fuse, calibrate, check_calibration, check_granularity, fuse as fuse_model
from .quant import PerChannel, PerTensor, quant_range
from .ranges import MSEObserver, PerChannelMSEObserver
from .train import History, TrainConfig, fit, validation_loader

__all__ = [
    "FakeQuantizedModel", "Int8Linear", "lowbit_qconfig", "fake_quant_model", "ptq_lowbit", "qat_lowbit", "freeze",
    "weights_key", "compare_bits", "Clipping", "CLIPPINGS", "Cache",
]

Clipping = Literal["minmax", "mse", "histogram"]  # how a low-bit PTQ model chooses its ranges (lowbit_qconfig)
CLIPPINGS: tuple[str, ...] = get_args(Clipping)
# What keeps a fine-tune (qat_lowbit's ``cache``): ``cache(build, config, train_fn) -> (model, history, loaded)``, e.g.
# the course's qhelpers.course.cache.cached, which builds (seeded), loads or trains, and stores.
Cache = Callable[[Callable[[], nn.Module], TrainConfig, Callable[[nn.Module], History]], tuple[nn.Module, History, bool]]

# QAT clips the gradients' global norm: at 2 bits the straight-through gradients can grow until the activations
# overflow (measured: MNIST SimpleCNN, seed 2, NaN loss at step 457 of 860 without clipping).
QAT_MAX_GRAD_NORM = 1.0
MIN_BITS, MAX_BITS = 2, 8  # fbgemm's observers and fake-quantize modules hold codes in 8-bit containers


# --- argument checks ------------------------------------------------------------------------------

def _check_bits(name: str, value: object) -> int:
    return check_int(name, value, MIN_BITS, MAX_BITS, hint=": the simulated grids live in 8-bit containers")


def check_clipping(clipping: object) -> str:
    """``clipping`` is one of :data:`CLIPPINGS`; returns it."""
    if not isinstance(clipping, str) or clipping not in CLIPPINGS:
        raise ValueError(f"clipping={clipping!r} is not a range rule; use one of {list(CLIPPINGS)}")
    return clipping


def _check_names(model: nn.Module, names: object, what: str, example: str) -> list[str]:
    """``names`` is a list (or another iterable) of names of ``model``'s modules."""
    if isinstance(names, (str, bytes)) or not isinstance(names, Iterable):
        raise TypeError(f"{what} must be a list of module names, e.g. {example}, not {type(names).__name__} {names!r}")
    names = list(names)
    if not all(isinstance(n, str) for n in names):
        raise TypeError(f"{what} must be a list of module names (strings), e.g. {example}, not {names!r}")
    modules = dict(model.named_modules())
    for name in names:
        if name not in modules:
            raise ValueError(f"{what} names a module the model does not have: {name!r}; its modules are {sorted(modules)[1:]}")
    return list(names)


def _check_model_setup(model: object, bits: object, fuse: object, granularity: object,
                       keep_8bit: object) -> tuple[str, ...]:
    """The arguments :func:`fake_quant_model` takes, checked before anything is built or trained.

    Returns ``keep_8bit`` as a tuple (it may be any iterable of names).
    """
    check_float_model(model)
    if not any(isinstance(m, torch.ao.quantization.QuantStub) for m in model.modules()):
        raise ValueError("fake quantization in eager mode needs a QuantStub (and DeQuantStub) in the model to mark "
                         "where tensors are quantized; use a quantization-ready model (e.g. QuantReadyCNN.from_simple_cnn)")
    _check_bits("bits", bits)
    check_granularity(granularity)
    keep_8bit = tuple(_check_names(model, keep_8bit, "keep_8bit", "('quant', 'fc2')"))
    if fuse is not None and not callable(fuse):
        if not isinstance(fuse, (list, tuple)) or not all(isinstance(g, (list, tuple)) and len(g) >= 2 for g in fuse):
            raise TypeError(f"fuse must be a list of groups of module names, e.g. [['conv1', 'relu1']], or a function "
                            f"that fuses the model in place; got {type(fuse).__name__} {fuse!r}")
        _check_names(model, [n for group in fuse for n in group], "fuse", "[['conv1', 'relu1']]")
    return keep_8bit


def _check_training(epochs: object, lr: object, seed: object) -> None:
    """The fine-tuning settings, checked before any model is calibrated or trained."""
    if isinstance(epochs, bool) or not isinstance(epochs, numbers.Integral):
        raise TypeError(f"epochs={epochs!r} must be an int, not {type(epochs).__name__}")
    if epochs < 1:
        raise ValueError(f"epochs={epochs}: QAT needs at least one epoch of fine-tuning")
    if isinstance(lr, bool) or not isinstance(lr, numbers.Real):
        raise TypeError(f"lr={lr!r} must be a number, not {type(lr).__name__}")
    if not (math.isfinite(lr) and lr > 0):
        raise ValueError(f"lr={lr} must be a finite number > 0, e.g. 0.01")
    check_int("seed", seed, 0, SEED_MAX)


def _check_calibration_tensors(calibration: object) -> None:
    check_calibration(calibration)
    bad = [i for i, x in enumerate(calibration) if not isinstance(x, Tensor)]
    if bad:
        raise TypeError(f"calibration[{bad[0]}] is a {type(calibration[bad[0]]).__name__}; QAT needs the input tensors "
                        "alone (no labels), e.g. qhelpers.data.calibration_batches(data, 10)")


def lowbit_qconfig(bits: int, *, act_bits: int | None = None,
                   granularity: PerTensor | PerChannel = PerChannel(0), clipping: Clipping = "minmax") -> QConfig:
    """A QAT QConfig (fake quantization on activations and weights) restricted to ``bits`` bits.

    ``FusedMovingAvgObsFakeQuantize`` is ``FakeQuantize`` with the observer
    and the fake quantization done in one kernel (about 20 % faster here).

    ``bits=8`` gives the usual INT8 grid: activations ``[0, 255]``, weights ``[-127, 127]``.
    ``act_bits`` (default: ``bits``) sets the activations' bit-width separately.
    Both lie between 2 and 8. ``clipping`` chooses the ranges (see the module's
    docstring): ``"minmax"`` (moving-average min/max, for QAT and the simplest
    PTQ), ``"mse"`` or ``"histogram"`` (for PTQ: ``FakeQuantize`` around
    observers that search a range over all calibration batches).
    """
    _check_bits("bits", bits)
    if act_bits is not None:
        _check_bits("act_bits", act_bits)
    per_channel = check_granularity(granularity)
    check_clipping(clipping)
    act_min, act_max = quant_range(bits if act_bits is None else act_bits, signed=False)
    w_max = quant_range(bits, signed=True)[1]
    if clipping != "minmax":
        activation = FakeQuantize.with_args(
            observer=MSEObserver if clipping == "mse" else HistogramObserver,
            quant_min=act_min, quant_max=act_max, dtype=torch.quint8, qscheme=torch.per_tensor_affine)
        minmax = lowbit_qconfig(bits, act_bits=act_bits, granularity=granularity)
        if clipping == "histogram":
            return QConfig(activation=activation, weight=minmax.weight)
        if per_channel:
            weight = FakeQuantize.with_args(observer=PerChannelMSEObserver, quant_min=-w_max, quant_max=w_max,
                                            dtype=torch.qint8, qscheme=torch.per_channel_symmetric, ch_axis=0)
        else:
            weight = FakeQuantize.with_args(observer=MSEObserver, quant_min=-w_max, quant_max=w_max,
                                            dtype=torch.qint8, qscheme=torch.per_tensor_symmetric)
        return QConfig(activation=activation, weight=weight)
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
    granularity: PerTensor | PerChannel = PerChannel(0),
    keep_8bit: Sequence[str] = (),
    clipping: Clipping = "minmax",
) -> nn.Module:
    """A fused, fake-quantized copy of ``model`` (``prepare_qat``), in train mode, observers and fake quant on.

    ``model`` needs quant/dequant stubs (e.g. ``QuantReadyCNN``); ``fuse`` as
    in :func:`qhelpers.ptq.ptq_eager` (QAT fusion keeps conv and ReLU as one module).
    ``keep_8bit`` names modules whose *output* stays on an 8-bit grid (their
    weights still use ``bits``): usually the input stub and the last layer, as
    8 levels of input pixels or of logits (3 bits) would throw away
    information no training can win back. ``clipping`` as in :func:`lowbit_qconfig`.
    """
    keep_8bit = _check_model_setup(model, bits, fuse, granularity, keep_8bit)
    check_clipping(clipping)
    m = copy.deepcopy(model).train()
    fuse_model(m, fuse or None, qat=True)
    m.qconfig = lowbit_qconfig(bits, granularity=granularity, clipping=clipping)
    modules = dict(m.named_modules())
    for name in keep_8bit:
        if name not in modules:
            raise ValueError(f"keep_8bit names a module the model does not have: {name!r}; its modules are {sorted(modules)[1:]}")
        modules[name].qconfig = lowbit_qconfig(bits, act_bits=8, granularity=granularity, clipping=clipping)
    prepare_qat(m, inplace=True)
    return m


def freeze(model: nn.Module) -> nn.Module:
    """Observers off, fake quantization on, eval mode: the model now runs on a fixed grid."""
    check_module(model)
    if not any(isinstance(m, torch.ao.quantization.FakeQuantizeBase) for m in model.modules()):
        raise ValueError("the model has no fake-quantize modules, so there is nothing to freeze: pass a model from "
                         "fake_quant_model(...) or prepare_qat(...)")
    model.apply(disable_observer)
    model.apply(enable_fake_quant)
    return model.eval()


def ptq_lowbit(
    model: nn.Module,
    calibration: Sequence[Tensor],
    *,
    bits: int,
    fuse: Fuse = None,
    granularity: PerTensor | PerChannel = PerChannel(0),
    keep_8bit: Sequence[str] = (),
    clipping: Clipping = "minmax",
) -> nn.Module:
    """Post-training quantization simulated at ``bits`` bits: calibrate the observers, then freeze.

    As in ordinary PTQ, the observers see the float activations (fake
    quantization is off while calibrating), and the weights are untouched.
    ``clipping`` chooses how the ranges are found (:func:`lowbit_qconfig`).
    """
    check_calibration(calibration)
    m = fake_quant_model(model, bits=bits, fuse=fuse, granularity=granularity, keep_8bit=keep_8bit, clipping=clipping)
    m.apply(disable_fake_quant)
    m.apply(enable_observer)
    calibrate(m, calibration, desc=f"calibrating ({bits}-bit, {clipping})")
    return freeze(m)


def weights_key(model: nn.Module) -> str:
    """A short hash of a model's state dict: names a cached fine-tune of exactly these weights."""
    check_module(model)
    h = hashlib.sha256()
    for name, t in sorted(model.state_dict().items()):
        if type(t) not in (Tensor, nn.Parameter) or t.is_quantized:
            kind = f"a quantized tensor ({t.dtype})" if isinstance(t, Tensor) and t.is_quantized else f"a {type(t).__name__}"
            raise ValueError(f"weights_key hashes float weights, but the state dict entry {name!r} is {kind}: "
                             "pass the float model (before convert or dynamic quantization)")
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
    granularity: PerTensor | PerChannel = PerChannel(0),
    keep_8bit: Sequence[str] = (),
    epochs: int = 1,
    lr: float = 0.01,
    seed: int = 0,
    name: str = "qat",
    cache: Cache | None = None,
) -> tuple[nn.Module, History, bool]:
    """Quantization-aware training at ``bits`` bits, starting from the PTQ-calibrated model.

    Fine-tunes on ``data.train`` (SGD, one-cycle schedule, as ``train.fit``).
    ``cache`` keeps the result: a function ``cache(build, config, train_fn) ->
    (model, history, loaded_from_cache)`` such as the course's
    ``qhelpers.course.cache.cached``, given a :class:`~qhelpers.train.TrainConfig`
    keyed by the starting weights and every setting; None trains every time.
    Returns ``(frozen fake-quantized model, history, loaded_from_cache)``.
    """
    _check_training(epochs, lr, seed)
    keep_8bit = _check_model_setup(model, bits, fuse, granularity, keep_8bit)
    _check_calibration_tensors(calibration)
    check_loaders(data)
    if not isinstance(name, str):
        raise TypeError(f"name={name!r} must be a string (it names the cached fine-tune)")
    if cache is not None:
        check_function("cache", cache, "(build, config, train_fn) -> (model, history, loaded_from_cache), e.g. "
                       "qhelpers.course.cache.cached, or None")

    def build() -> nn.Module:
        m = ptq_lowbit(model, calibration, bits=bits, fuse=fuse, granularity=granularity, keep_8bit=keep_8bit)
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
            ("per_channel", isinstance(granularity, PerChannel)),  # (the key's name predates granularity)
            ("keep_8bit", tuple(keep_8bit)),
            ("fuse", repr(fuse) if not callable(fuse) else getattr(fuse, "__qualname__", "callable")),
            ("max_grad_norm", QAT_MAX_GRAD_NORM),
        ),
    )
    # A fresh, seeded shuffle: the batches must not depend on how often data.train was iterated before.
    train = shuffled(data.train.dataset, data.train.batch_size, seed)

    def train_fn(m: nn.Module) -> History:
        return fit(m, train, validation_loader(data), epochs=epochs, lr=lr, momentum=config.momentum, weight_decay=config.weight_decay,
                   seed=seed, desc=f"training {config.model} on {config.dataset}", max_grad_norm=QAT_MAX_GRAD_NORM)

    if cache is None:
        torch.manual_seed(config.seed)  # as the cache does before it builds the model
        trained = build()
        history, was_cached = train_fn(trained), False
    else:
        trained, history, was_cached = cache(build, config, train_fn)
    return freeze(trained), history, was_cached  # type: ignore[return-value]


def compare_bits(
    model: nn.Module,
    calibration: Sequence[Tensor],
    data: Loaders,
    bit_widths: Sequence[int],
    *,
    fuse: Fuse = None,
    granularity: PerTensor | PerChannel = PerChannel(0),
    keep_8bit: Sequence[str] = (),
    epochs: int = 1,
    lr: float = 0.01,
    seed: int = 0,
    clippings: Sequence[Clipping] = ("minmax",),
    cache: Cache | None = None,
):
    """Test accuracy of PTQ and QAT at each bit-width, both simulated on the same grid.

    PTQ is run once per range rule in ``clippings`` (e.g. ``("minmax", "mse", "histogram")``,
    see :func:`lowbit_qconfig`); QAT starts from the min/max PTQ model
    (:func:`qat_lowbit`, which keeps its fine-tunes with ``cache``).
    Returns a pandas DataFrame indexed by ``bits`` with a column ``PTQ <rule>``
    per rule, ``PTQ`` (the best of them), ``QAT`` (fractions in [0, 1]) and
    ``QAT cached`` (whether the fine-tune was loaded from the cache).
    """
    import pandas as pd

    from .train import evaluate

    if isinstance(bit_widths, (str, bytes)) or not isinstance(bit_widths, Iterable):
        raise TypeError(f"bit_widths must be a list of bit-widths, e.g. [8, 4, 3, 2], "
                        f"not {type(bit_widths).__name__} {bit_widths!r}")
    bit_widths = list(bit_widths)
    if not bit_widths:
        raise ValueError("bit_widths is empty: pass e.g. [8, 4, 3, 2]")
    for i, bits in enumerate(bit_widths):
        _check_bits(f"bit_widths[{i}]", bits)
    if len(set(bit_widths)) != len(bit_widths):
        raise ValueError(f"bit_widths={list(bit_widths)} repeats a bit-width: give each once")
    keep_8bit = _check_model_setup(model, bit_widths[0], fuse, granularity, keep_8bit)
    _check_calibration_tensors(calibration)
    check_loaders(data)
    _check_training(epochs, lr, seed)
    if isinstance(clippings, str) or not isinstance(clippings, Iterable):
        raise TypeError(f"clippings must be a list of range rules, e.g. ['minmax', 'mse'], not {clippings!r}")
    clippings = [check_clipping(c) for c in clippings]
    if not clippings or len(set(clippings)) != len(clippings):
        raise ValueError(f"clippings={clippings} must name each range rule once, e.g. ['minmax', 'mse']")
    if cache is not None:
        check_function("cache", cache, "(build, config, train_fn) -> (model, history, loaded_from_cache), e.g. "
                       "qhelpers.course.cache.cached, or None")
    rows = {}
    for bits in bit_widths:
        kw = dict(bits=bits, fuse=fuse, granularity=granularity, keep_8bit=keep_8bit)
        ptq = {f"PTQ {c}": evaluate(ptq_lowbit(model, calibration, clipping=c, **kw), data.test).accuracy
               for c in clippings}
        tuned, _, was_cached = qat_lowbit(model, calibration, data, epochs=epochs, lr=lr, seed=seed, cache=cache, **kw)
        rows[bits] = {
            **ptq,
            "PTQ": max(ptq.values()),
            "QAT": evaluate(tuned, data.test).accuracy,
            "QAT cached": was_cached,
        }
    table = pd.DataFrame.from_dict(rows, orient="index")
    table.index.name = "bits"
    return table


# --- one fake-quantized layer, and its INT8 twin ---------------------------------------------------

def _check_width(x: object, in_features: int) -> None:
    """``x`` is a float tensor whose last dimension is the layer's ``in_features``."""
    if not isinstance(x, torch.Tensor) or not x.is_floating_point():
        kind = f"a {x.dtype} tensor" if isinstance(x, torch.Tensor) else type(x).__name__
        raise TypeError(f"the input must be a float tensor, not {kind}")
    if x.dim() == 0 or x.shape[-1] != in_features:
        raise ValueError(f"the input has shape {tuple(x.shape)}; this layer takes {in_features} features in its last "
                         f"dimension, e.g. shape (batch, {in_features})")


def _check_ready(fake: object) -> None:
    """``fake`` is a calibrated, frozen FakeQuantizedModel whose qparams are finite: ready for :class:`Int8Linear`."""
    if not isinstance(fake, FakeQuantizedModel):
        raise TypeError(f"Int8Linear is built from a FakeQuantizedModel (calibrated and frozen), not {type(fake).__name__}")
    fqs = (fake.input_fq, fake.weight_fq, fake.output_fq)
    if any(bool(fq.observer_enabled[0]) for fq in fqs):
        raise ValueError("call .freeze() after calibration and before to_int8(), so the qparams stop moving")
    if float(fake.input_fq.scale) == 1.0 and int(fake.input_fq.zero_point) == 0:
        raise ValueError("the model has not been calibrated: run some batches through it before freeze()")
    for name, (scale, _) in fake.qparams().items():
        if not math.isfinite(scale):
            raise ValueError(f"the {name} scale is {scale}: the observers saw NaN/inf during calibration. Build a "
                             "new model and calibrate it on finite inputs")


def _fq(quant_min: int, quant_max: int, dtype: torch.dtype, qscheme: torch.qscheme) -> FakeQuantize:
    return FakeQuantize(observer=MinMaxObserver, quant_min=quant_min, quant_max=quant_max, dtype=dtype, qscheme=qscheme)


class FakeQuantizedModel(nn.Module):
    """The article's ``FakeQuantizedModel``, working: a Linear layer with fake-quantized input, weight and output.

    Each ``FakeQuantize`` holds a ``MinMaxObserver``: in calibration (observers
    enabled) it records the range it sees; :meth:`freeze` stops that, and from
    then on every forward pass uses fixed scales and zero-points.

    - input: UINT8 asymmetric, restricted to ``[0, 127]`` (``reduce_range``):
      fbgemm's INT8 kernels on CPUs without VNNI add pairs of u8*s8 products in
      16 bits, which can overflow with the full range;
    - weight: INT8 symmetric per tensor, ``[-128, 127]``, zero-point 0;
    - output: UINT8 asymmetric, ``[0, 255]``.
    """

    def __init__(self, in_features: int = 10, out_features: int = 10, reduce_range: bool = True) -> None:
        super().__init__()
        check_int("in_features", in_features, 1)
        check_int("out_features", out_features, 1)
        if not isinstance(reduce_range, bool):
            raise TypeError(f"reduce_range={reduce_range!r} must be True or False, not {type(reduce_range).__name__}")
        self.fc = nn.Linear(in_features, out_features)
        self.input_fq = _fq(0, 127 if reduce_range else 255, torch.quint8, torch.per_tensor_affine)
        self.weight_fq = _fq(-128, 127, torch.qint8, torch.per_tensor_symmetric)
        self.output_fq = _fq(0, 255, torch.quint8, torch.per_tensor_affine)

    @classmethod
    def from_linear(cls, linear: nn.Linear, reduce_range: bool = True) -> "FakeQuantizedModel":
        """Wrap a copy of a trained ``nn.Linear``."""
        if not isinstance(linear, nn.Linear):
            raise TypeError(f"linear must be a torch.nn.Linear (e.g. mlp.net[5]), not {type(linear).__name__}")
        if linear.bias is None:
            raise ValueError("linear has no bias; FakeQuantizedModel wraps an nn.Linear with a bias (bias=True)")
        model = cls(linear.in_features, linear.out_features, reduce_range)
        model.fc.load_state_dict(linear.state_dict())
        return model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        _check_width(x, self.fc.in_features)
        x = self.input_fq(x)
        w = self.weight_fq(self.fc.weight)
        return self.output_fq(F.linear(x, w, self.fc.bias))

    def freeze(self) -> "FakeQuantizedModel":
        """Stop the observers: the qparams seen so far are fixed. Returns ``self``."""
        for fq in (self.input_fq, self.weight_fq, self.output_fq):
            fq.disable_observer()
        return self

    def qparams(self) -> dict[str, tuple[float, int]]:
        """``{'input'|'weight'|'output': (scale, zero_point)}`` as calibrated so far."""
        out = {}
        for name, fq in (("input", self.input_fq), ("weight", self.weight_fq), ("output", self.output_fq)):
            scale, zp = fq.calculate_qparams()
            out[name] = (float(scale), int(zp))
        return out

    def to_int8(self) -> "Int8Linear":
        """The truly quantized model with exactly these qparams (INT8 weight, fbgemm integer kernel)."""
        _check_ready(self)
        return Int8Linear(self)


class Int8Linear(nn.Module):
    """A ``torch.ao.nn.quantized.Linear`` between an input quantize and an output dequantize.

    Inputs are first clamped to the grid the fake-quantized model used (its
    ``[0, 127]`` reduced range), then quantized to UINT8; the matmul runs on
    integers and its INT32 result is requantized to the output scale.
    """

    def __init__(self, fake: FakeQuantizedModel) -> None:
        super().__init__()
        from torch.ao.nn.quantized import Linear as QLinear

        _check_ready(fake)
        q = fake.qparams()
        self.in_scale, self.in_zero_point = q["input"]
        self.in_lo = (fake.input_fq.quant_min - self.in_zero_point) * self.in_scale
        self.in_hi = (fake.input_fq.quant_max - self.in_zero_point) * self.in_scale
        w_scale, w_zp = q["weight"]
        qweight = torch.quantize_per_tensor(fake.fc.weight.detach().float(), w_scale, w_zp, torch.qint8)
        self.linear = QLinear(fake.fc.in_features, fake.fc.out_features, dtype=torch.qint8)
        self.linear.set_weight_bias(qweight, fake.fc.bias.detach().float())
        self.linear.scale, self.linear.zero_point = q["output"]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        _check_width(x, self.linear.in_features)
        x = torch.clamp(x, self.in_lo, self.in_hi)
        xq = torch.quantize_per_tensor(x, self.in_scale, self.in_zero_point, torch.quint8)
        return self.linear(xq).dequantize()
