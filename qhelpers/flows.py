"""The three ways PyTorch quantizes a trained model after training (PTQ), one function each.

- :func:`ptq_eager`: ``torch.ao.quantization`` eager mode. The model must be
  written for it (``QuantStub``/``DeQuantStub``, ReLUs as modules), fused by
  hand, then ``prepare`` -> calibrate -> ``convert``. Output: a model of
  quantized modules running fbgemm's INT8 kernels.
- :func:`ptq_fx`: FX graph mode (``prepare_fx``/``convert_fx``). The model is
  traced symbolically, so no stubs and no manual fusion are needed.
- :func:`ptq_pt2e`: PT2E, the path torchao carries forward: ``torch.export``,
  then ``prepare_pt2e``/``convert_pt2e`` with ``X86InductorQuantizer``. The
  result is a graph of quantize/dequantize (Q/DQ) ops around FP32 operators,
  weights still FP32; ``torch.compile`` lowers it to INT8 kernels.

All three deep-copy the input model, leave it untouched, and calibrate the
activation observers with :func:`calibrate`.
"""

from __future__ import annotations

import copy
from typing import Callable, Iterable, Sequence

import torch
from torch import Tensor, nn
from torch.ao.quantization import QConfig

from .train import progress

__all__ = ["calibrate", "per_tensor_qconfig", "ptq_eager", "ptq_fx", "ptq_pt2e", "views_as_reshapes", "graph_tensors", "calibration_set", "Fuse"]

# How to fuse a model for eager mode: groups of module names, or a callable that fuses in place.
Fuse = list[list[str]] | Callable[[nn.Module], None] | None


@torch.inference_mode()
def calibrate(model: nn.Module, batches: Iterable[Tensor], desc: str = "calibrating") -> None:
    """Run ``batches`` through ``model`` in inference mode so that its observers record ranges.

    ``model`` is used as it is (put it in eval mode first); the outputs are discarded.
    """
    n = 0
    for x in progress(batches, desc=desc, unit="batch", leave=False):
        if isinstance(x, (tuple, list)):  # (images, labels) from a DataLoader
            x = x[0]
        model(x)
        n += 1
    if n == 0:
        raise ValueError("calibrate() got no batches: pass e.g. qhelpers.data.calibration_loader(loader, 10)")


def _check_calibration(calibration: Sequence[Tensor]) -> None:
    if isinstance(calibration, Tensor):
        raise TypeError("calibration must be a sequence of batches (a list of tensors), not one tensor; wrap it: [x]")
    if len(calibration) == 0:
        raise ValueError("calibration is empty: pass e.g. qhelpers.data.calibration_loader(loader, 10)")


def per_tensor_qconfig(engine: str = "x86") -> QConfig:
    """The engine's default QConfig with one weight scale per tensor instead of per output channel."""
    from torch.ao.quantization import get_default_qconfig
    from torch.ao.quantization.observer import default_weight_observer

    return QConfig(activation=get_default_qconfig(engine).activation, weight=default_weight_observer)


def _default_qconfig(per_channel: bool) -> QConfig:
    from torch.ao.quantization import get_default_qconfig

    return get_default_qconfig("x86") if per_channel else per_tensor_qconfig("x86")


def _fuse(model: nn.Module, fuse: Fuse) -> None:
    if fuse is None:
        return
    if callable(fuse):
        fuse(model)
        return
    from torch.ao.quantization import fuse_modules

    names = dict(model.named_modules())
    missing = [n for group in fuse for n in group if n not in names]
    if missing:
        raise ValueError(f"fuse names modules the model does not have: {missing}; its modules are {sorted(names)[1:]}")
    fuse_modules(model, fuse, inplace=True)


def ptq_eager(
    model: nn.Module,
    calibration: Sequence[Tensor],
    *,
    fuse: Fuse = None,
    qconfig: QConfig | None = None,
    per_channel: bool = True,
    desc: str = "calibrating (eager)",
) -> nn.Module:
    """Static INT8 post-training quantization in eager mode: fuse, prepare, calibrate, convert.

    ``model`` needs ``QuantStub``/``DeQuantStub`` where tensors enter and leave
    the quantized region. ``fuse``: module-name groups for ``fuse_modules``
    (e.g. ``models.FUSE_PATTERNS``) or a callable fusing in place (e.g.
    ``lambda m: m.fuse_model(is_qat=False)``). ``qconfig`` defaults to
    ``get_default_qconfig("x86")`` (HistogramObserver activations, per-channel
    symmetric INT8 weights), or its per-tensor variant with ``per_channel=False``.
    """
    from torch.ao.quantization import convert, prepare

    _check_calibration(calibration)
    if not any(isinstance(m, torch.ao.quantization.QuantStub) for m in model.modules()):
        raise ValueError(
            "eager-mode quantization needs a QuantStub (and DeQuantStub) in the model to mark where "
            "tensors are quantized; use a quantization-ready model (e.g. QuantReadyCNN.from_simple_cnn) "
            "or ptq_fx/ptq_pt2e, which need no stubs"
        )
    m = copy.deepcopy(model).eval()
    _fuse(m, fuse)
    m.qconfig = qconfig if qconfig is not None else _default_qconfig(per_channel)
    prepare(m, inplace=True)
    calibrate(m, calibration, desc=desc)
    convert(m, inplace=True)
    return m.eval()


def views_as_reshapes(model: nn.Module) -> torch.fx.GraphModule:
    """``model`` traced with ``torch.fx``, every ``tensor.view(...)`` call replaced by ``.reshape(...)``.

    Same function in float (``reshape`` returns a view whenever one exists);
    unlike ``view``, it also works on the non-contiguous (channels-last)
    tensors that quantized kernels return.
    """
    gm = torch.fx.symbolic_trace(model)
    for node in gm.graph.nodes:
        if node.op == "call_method" and node.target == "view":
            node.target = "reshape"
    gm.recompile()
    return gm


def ptq_fx(
    model: nn.Module,
    calibration: Sequence[Tensor],
    example_inputs: tuple,
    *,
    per_channel: bool = True,
    views_to_reshape: bool = True,
    desc: str = "calibrating (FX)",
) -> torch.fx.GraphModule:
    """Static INT8 post-training quantization in FX graph mode (``prepare_fx``/``convert_fx``).

    The model is traced symbolically, so a plain model (functional ReLUs, no
    stubs) works; fusion is automatic. Uses ``get_default_qconfig_mapping("x86")``
    (per-tensor weights for all modules with ``per_channel=False``).

    ``views_to_reshape`` first rewrites ``x.view(...)`` calls as
    ``x.reshape(...)`` (see :func:`views_as_reshapes`): fbgemm's quantized
    convolutions return channels-last tensors, on which the ``view`` of a
    flatten fails once the graph runs quantized.
    """
    from torch.ao.quantization import get_default_qconfig_mapping
    from torch.ao.quantization.quantize_fx import convert_fx, prepare_fx

    _check_calibration(calibration)
    if not isinstance(example_inputs, tuple):
        raise TypeError("example_inputs must be a tuple of the model's inputs, e.g. (x[:1],)")
    mapping = get_default_qconfig_mapping("x86")
    if not per_channel:
        mapping.set_global(per_tensor_qconfig("x86"))
    m = copy.deepcopy(model).eval()
    if views_to_reshape:
        m = views_as_reshapes(m)
    prepared = prepare_fx(m, mapping, example_inputs)
    calibrate(prepared, calibration, desc=desc)
    return convert_fx(prepared).eval()


def _pt2e_config(per_channel: bool):
    from torchao.quantization.pt2e import MinMaxObserver
    from torchao.quantization.pt2e.quantizer import QuantizationConfig, QuantizationSpec
    from torchao.quantization.pt2e.quantizer.x86_inductor_quantizer import (
        get_default_x86_inductor_quantization_config,
    )

    config = get_default_x86_inductor_quantization_config()
    if per_channel:
        return config
    weight = QuantizationSpec(
        dtype=torch.int8,
        quant_min=-128,
        quant_max=127,
        qscheme=torch.per_tensor_symmetric,
        is_dynamic=False,
        observer_or_fake_quant_ctr=MinMaxObserver.with_args(eps=2**-12),
    )
    return QuantizationConfig(config.input_activation, config.output_activation, weight, config.bias, config.is_qat)


def ptq_pt2e(
    model: nn.Module,
    calibration: Sequence[Tensor],
    example_inputs: tuple,
    *,
    strict: bool = True,
    per_channel: bool = True,
    dynamic_batch: bool = True,
    desc: str = "calibrating (PT2E)",
) -> torch.fx.GraphModule:
    """Static INT8 post-training quantization with PT2E: ``torch.export`` + torchao's X86InductorQuantizer.

    Returns the converted module: quantize/dequantize ops around FP32
    operators, weights stored as FP32 (folded Q/DQ of constant weights is
    kept as INT8 only after lowering). Call ``torch.compile`` on it to get INT8
    kernels. ``dynamic_batch`` exports the batch dimension as dynamic so that
    calibration and evaluation can use different batch sizes.
    """
    from torchao.quantization.pt2e import allow_exported_model_train_eval
    from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e, prepare_pt2e
    from torchao.quantization.pt2e.quantizer.x86_inductor_quantizer import X86InductorQuantizer

    _check_calibration(calibration)
    if not isinstance(example_inputs, tuple):
        raise TypeError("example_inputs must be a tuple of the model's inputs, e.g. (x[:2],)")
    m = copy.deepcopy(model).eval()
    dynamic_shapes = None
    if dynamic_batch:
        batch = torch.export.Dim.AUTO
        dynamic_shapes = tuple({0: batch} if isinstance(t, Tensor) else None for t in example_inputs)
    exported = torch.export.export(m, example_inputs, dynamic_shapes=dynamic_shapes, strict=strict).module()
    quantizer = X86InductorQuantizer().set_global(_pt2e_config(per_channel))
    prepared = prepare_pt2e(exported, quantizer)
    calibrate(prepared, calibration, desc=desc)
    converted = convert_pt2e(prepared)
    # Let .eval()/.train() work (no-ops here: no dropout or batch norm) so the module evaluates like any other.
    allow_exported_model_train_eval(converted)
    return converted


def graph_tensors(gm: torch.fx.GraphModule) -> dict[str, Tensor]:
    """The tensors a graph actually reads (its ``get_attr`` nodes), by name.

    After ``convert_pt2e`` the module still holds the original FP32 weights as
    attributes, unused: the graph reads the folded INT8 copies instead. Their
    bytes are what a lowered (compiled) model needs to keep.
    """
    out: dict[str, Tensor] = {}
    for node in gm.graph.nodes:
        if node.op == "get_attr":
            obj = gm
            for part in str(node.target).split("."):
                obj = getattr(obj, part)
            if isinstance(obj, Tensor):
                out[str(node.target)] = obj
    return out


def calibration_set(data, num_batches: int, *, seed: int = 0, batch_size: int | None = None) -> list[Tensor]:
    """``num_batches`` shuffled batches of training images, the same for a given seed.

    Drawn from a fresh, seeded loader over ``data.train``'s images, so the
    choice does not depend on how often the training loader was used before
    (e.g. whether the model was trained now or loaded from the cache).
    """
    from torch.utils.data import DataLoader

    from .data import calibration_loader

    loader = DataLoader(
        data.train.dataset,
        batch_size=batch_size or data.train.batch_size,
        shuffle=True,
        generator=torch.Generator().manual_seed(seed),
    )
    return calibration_loader(loader, num_batches)
