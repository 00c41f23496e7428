"""Post-training quantization (PTQ): the three ways PyTorch quantizes a trained model, one function each.

- :func:`ptq_eager`: ``torch.ao.quantization`` eager mode. The model must be
  written for it (``QuantStub``/``DeQuantStub``, ReLUs as modules), fused by
  hand, then ``prepare`` -> calibrate -> ``convert``. Output: a model of
  quantized modules running fbgemm's INT8 kernels for Linear and, under the
  ``x86`` engine, oneDNN's for convolutions where the CPU has AVX-512 VNNI
  (fbgemm's otherwise).
- :func:`ptq_fx`: FX graph mode (``prepare_fx``/``convert_fx``). The model is
  traced symbolically, so no stubs and no manual fusion are needed.
- :func:`ptq_pt2e`: PT2E, the path torchao carries forward: ``torch.export``,
  then ``prepare_pt2e``/``convert_pt2e`` with ``X86InductorQuantizer``. The
  result is a graph of quantize/dequantize (Q/DQ) ops around FP32 operators,
  weights still FP32; ``torch.compile`` lowers it to INT8 kernels.

All three deep-copy the input model, leave it untouched, and calibrate the
activation observers with :func:`calibrate`.

Every argument is checked before any work starts: a model that is not a float
``nn.Module`` (or is already prepared or quantized), calibration that is not a
list of finite float batches, example inputs that are not a tuple the model
runs on, unknown fusion groups or flags that are not bools raise a ValueError
or TypeError saying what to pass instead, not an error from deep inside
tracing, export or convert (the first of those checks is
:func:`qhelpers.checks.check_float_model`).

The pieces are public because :mod:`qhelpers.qat` and :mod:`qhelpers.sensitivity`
build on them: :func:`fuse`, :func:`default_qconfig`, :func:`check_calibration`,
:func:`calibrate`, and :func:`ptq_fx`'s ``keep_float``/``only`` layer choice.
Weight granularity is ``qhelpers.quant.PerChannel(0)`` (the default) or ``PerTensor()``.
"""

from __future__ import annotations

import copy
from typing import Callable, Iterable, Mapping, Sequence

import torch
from torch import Tensor, nn
from torch.ao.quantization import QConfig

from .checks import check_flag, check_float_model, check_module, describe
from .quant import PerChannel, PerTensor
from .train import progress

__all__ = [
    "fuse", "default_qconfig", "per_tensor_qconfig", "check_calibration", "calibrate", "quantizable_layers", "ptq_eager", "ptq_fx", "ptq_pt2e", "views_as_reshapes", "graph_tensors",
]

# How to fuse a model for eager mode: groups of module names, or a callable that fuses in place.
Fuse = list[list[str]] | Callable[[nn.Module], None] | None

ENGINES = ("x86", "fbgemm", "qnnpack", "onednn")  # the engines torch.ao.quantization has default qconfigs for
_CALIBRATION = "qhelpers.data.calibration_batches(data, 10)"  # how to make a calibration set


# --- argument checks -----------------------------------------------------------------------------

def _batch_input(batch: object, where: str) -> Tensor:
    """The input tensor of one calibration batch (a tensor, or the images of an (images, labels) pair), checked."""
    x = batch[0] if isinstance(batch, (tuple, list)) and len(batch) > 0 else batch  # (images, labels) from a DataLoader
    if not isinstance(x, Tensor):
        raise TypeError(f"{where} is {describe(batch)}; calibration batches must be input tensors (or (inputs, labels) "
                        f"pairs), e.g. {_CALIBRATION}")
    if not x.is_floating_point():
        raise TypeError(f"{where} is {describe(x)}; models take float inputs: convert it with .float() (and normalize "
                        "it as in training)")
    if x.numel() == 0:
        raise ValueError(f"{where} is empty (shape {tuple(x.shape)}): give every batch at least one input")
    if not torch.isfinite(x).all():
        raise ValueError(f"{where} holds {int((~torch.isfinite(x)).sum())} NaN/inf value(s); observers need finite "
                         "inputs to record a range: find where they come from first")
    return x


def check_calibration(calibration: object) -> None:
    """``calibration`` is a non-empty list of batches; in a list or tuple, every batch is checked up front.

    Raises a TypeError or ValueError naming the first bad batch (not a tensor,
    not float, empty, NaN/inf) and how to make a calibration set.
    """
    if isinstance(calibration, Tensor):
        raise TypeError("calibration must be a sequence of batches (a list of tensors), not one tensor; wrap it: [x]")
    if isinstance(calibration, (str, bytes, Mapping)) or not (hasattr(calibration, "__len__")
                                                              and hasattr(calibration, "__iter__")):
        raise TypeError(f"calibration must be a sequence of batches (a list of tensors), not {describe(calibration)}; "
                        f"e.g. {_CALIBRATION}")
    if len(calibration) == 0:
        raise ValueError(f"calibration is empty: pass e.g. {_CALIBRATION}")
    if isinstance(calibration, (list, tuple)):
        for i, batch in enumerate(calibration):
            _batch_input(batch, f"calibration[{i}]")


def _check_example_inputs(model: nn.Module, example_inputs: object) -> tuple:
    """``example_inputs`` is a non-empty tuple that ``model`` (a float model in eval mode) runs on."""
    if not isinstance(example_inputs, tuple):
        raise TypeError(f"example_inputs must be a tuple of the model's inputs, e.g. (x[:1],), not {describe(example_inputs)}")
    if not example_inputs:
        raise ValueError("example_inputs is an empty tuple: give the model's inputs, e.g. (x[:1],)")
    for i, t in enumerate(example_inputs):
        if isinstance(t, Tensor):
            _batch_input(t, f"example_inputs[{i}]")
    try:
        with torch.inference_mode():
            model(*example_inputs)
    except (RuntimeError, TypeError, ValueError, IndexError) as exc:
        shapes = ", ".join(str(tuple(t.shape)) if isinstance(t, Tensor) else type(t).__name__ for t in example_inputs)
        raise ValueError(f"the model fails on example_inputs ({shapes}): {str(exc).splitlines()[0]}. Pass inputs "
                         "shaped like a batch of its data, e.g. (calibration[0][:2],)") from None
    return example_inputs


def _check_fuse(fuse: object) -> None:
    if fuse is None or callable(fuse):
        return
    if not (isinstance(fuse, (list, tuple)) and all(
        isinstance(group, (list, tuple)) and len(group) >= 2 and all(isinstance(n, str) for n in group) for group in fuse
    )):
        raise TypeError(f"fuse must be a list of groups of module names, e.g. [['conv1', 'relu1']], or a function "
                        f"that fuses the model in place; got {describe(fuse)}")


def _check_qconfig(qconfig: object) -> None:
    if qconfig is not None and not isinstance(qconfig, QConfig):
        raise TypeError(f"qconfig must be a torch.ao.quantization.QConfig (e.g. per_tensor_qconfig()) or None, "
                        f"not {describe(qconfig)}")


def _check_stubs(model: nn.Module, what: str = "eager-mode quantization") -> None:
    if not any(isinstance(m, torch.ao.quantization.QuantStub) for m in model.modules()):
        raise ValueError(
            f"{what} needs a QuantStub (and DeQuantStub) in the model to mark where "
            "tensors are quantized; use a quantization-ready model (e.g. QuantReadyCNN.from_simple_cnn) "
            "or ptq_fx/ptq_pt2e, which need no stubs"
        )


def _traced(fn: Callable, *args):
    """``fn(*args)``, a step that traces the model with torch.fx, with a tracing failure explained."""
    try:
        return fn(*args)
    except torch.fx.proxy.TraceError as exc:
        raise ValueError(f"torch.fx cannot trace the model: {str(exc).splitlines()[0]}. Symbolic tracing needs control "
                         "flow that does not depend on tensor values; use ptq_eager, or ptq_pt2e (torch.export)") from None


@torch.inference_mode()
def calibrate(model: nn.Module, batches: Iterable[Tensor], desc: str | None = "calibrating") -> None:
    """Run ``batches`` through ``model`` in inference mode so that its observers record ranges.

    ``model`` is used as it is (put it in eval mode first); the outputs are discarded.
    Each batch must be a finite float tensor (or an ``(inputs, labels)`` pair);
    one the model cannot run on raises a ValueError naming it.
    """
    if not callable(model):
        raise TypeError(f"model must be a torch.nn.Module (a prepared model), not {describe(model)}")
    if isinstance(batches, (Tensor, str, bytes, Mapping)) or not hasattr(batches, "__iter__"):
        raise TypeError(f"batches must be an iterable of input batches (a list of tensors or a DataLoader), not "
                        f"{describe(batches)}; wrap one tensor in a list: [x]")
    n = 0
    quiet = {"disable": True} if desc is None else {}  # None: no bar (e.g. inside another progress bar)
    for x in progress(batches, desc=desc, unit="batch", leave=False, **quiet):
        x = _batch_input(x, f"calibration batch {n}")
        try:
            model(x)
        except RuntimeError as exc:
            raise ValueError(f"the model fails on calibration batch {n} ({describe(x)}): {str(exc).splitlines()[0]}. "
                             "Calibrate with batches shaped like the model's input") from None
        n += 1
    if n == 0:
        raise ValueError(f"calibrate() got no batches: pass e.g. {_CALIBRATION}")


def per_tensor_qconfig(engine: str = "x86") -> QConfig:
    """The engine's default QConfig with one weight scale per tensor instead of per output channel."""
    from torch.ao.quantization import get_default_qconfig
    from torch.ao.quantization.observer import default_weight_observer

    if engine not in ENGINES:
        raise ValueError(f"unknown engine {engine!r}; choose one of {list(ENGINES)} ('x86' on these CPUs)")

    return QConfig(activation=get_default_qconfig(engine).activation, weight=default_weight_observer)


def check_granularity(granularity: object) -> bool:
    """Whether ``granularity`` (``PerChannel(0)`` or ``PerTensor()``, the weight granularities of torch.ao's INT8
    kernels) is per channel; anything else raises a TypeError or ValueError saying what to pass."""
    if isinstance(granularity, PerTensor):
        return False
    if isinstance(granularity, PerChannel):
        if granularity.axis != 0:
            raise ValueError(f"granularity={granularity}: weights are quantized per output channel, axis 0; "
                             "pass PerChannel(0)")
        return True
    hint = f" (a class: call it, {granularity.__name__}())" if isinstance(granularity, type) else ""
    raise TypeError(f"granularity must be qhelpers.quant.PerChannel(0) or PerTensor() (torch.ao's INT8 weights have "
                    f"no groups), not {describe(granularity)}{hint}")


def default_qconfig(granularity: PerTensor | PerChannel = PerChannel(0)) -> QConfig:
    """``get_default_qconfig("x86")`` (HistogramObserver activations, per-channel symmetric INT8 weights), or with
    ``PerTensor()`` its per-tensor variant (:func:`per_tensor_qconfig`)."""
    from torch.ao.quantization import get_default_qconfig

    return get_default_qconfig("x86") if check_granularity(granularity) else per_tensor_qconfig("x86")


def _check_fuse_names(model: nn.Module, fuse: Fuse) -> None:
    """``fuse`` is well formed and, if it is a list of groups, names modules ``model`` has."""
    _check_fuse(fuse)
    if fuse is None or callable(fuse):
        return
    names = dict(model.named_modules())
    missing = [n for group in fuse for n in group if n not in names]
    if missing:
        raise ValueError(f"fuse names modules the model does not have: {missing}; its modules are {sorted(names)[1:]}")


def fuse(model: nn.Module, groups: Fuse, *, qat: bool = False) -> None:
    """Fuse ``model`` in place: call ``groups`` if it is a function, else torch.ao's ``fuse_modules`` on its groups.

    ``groups`` is a list of groups of module names (e.g. ``models.FUSE_PATTERNS``),
    a function fusing in place (e.g. ``lambda m: m.fuse_model(is_qat=False)``),
    or None (nothing to fuse). ``qat=True`` uses ``fuse_modules_qat``, which
    keeps conv and ReLU trainable as one module.
    """
    _check_fuse_names(model, groups)
    if groups is None:
        return
    if callable(groups):
        groups(model)
        return
    from torch.ao.quantization import fuse_modules, fuse_modules_qat

    try:
        (fuse_modules_qat if qat else fuse_modules)(model, groups, inplace=True)
    except AssertionError as exc:  # "did not find fuser method for: (Conv2d, Linear)"
        raise ValueError(f"fuse: PyTorch cannot fuse one of the groups {groups} ({exc}); it fuses conv(+bn)(+relu) "
                         "and linear(+bn)(+relu), listed in the order the model runs them") from None


_fuse_in_place = fuse  # (ptq_eager's argument is also called fuse)


def ptq_eager(
    model: nn.Module,
    calibration: Sequence[Tensor],
    *,
    fuse: Fuse = None,
    qconfig: QConfig | None = None,
    granularity: PerTensor | PerChannel = PerChannel(0),
    desc: str = "calibrating (eager)",
) -> nn.Module:
    """Static INT8 post-training quantization in eager mode: fuse, prepare, calibrate, convert.

    ``model`` needs ``QuantStub``/``DeQuantStub`` where tensors enter and leave
    the quantized region. ``fuse``: module-name groups for ``fuse_modules``
    (e.g. ``models.FUSE_PATTERNS``) or a callable fusing in place (e.g.
    ``lambda m: m.fuse_model(is_qat=False)``). ``qconfig`` defaults to
    ``get_default_qconfig("x86")`` (HistogramObserver activations, per-channel
    symmetric INT8 weights), or its per-tensor variant with ``granularity=PerTensor()``.
    """
    from torch.ao.quantization import convert, prepare

    check_float_model(model)
    check_calibration(calibration)
    _check_stubs(model)
    _check_fuse_names(model, fuse)
    _check_qconfig(qconfig)
    default = default_qconfig(granularity)
    m = copy.deepcopy(model).eval()
    _fuse_in_place(m, fuse)
    m.qconfig = qconfig if qconfig is not None else default
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
    check_module(model)
    gm = _traced(torch.fx.symbolic_trace, model)
    for node in gm.graph.nodes:
        if node.op == "call_method" and node.target == "view":
            node.target = "reshape"
    gm.recompile()
    return gm


def check_layers(model: nn.Module, names: object, what: str) -> list[str]:
    """``names`` is a list of names of the model's conv/linear layers (what INT8 computes)."""
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


def quantizable_layers(model: nn.Module) -> list[str]:
    """Names of the convolution and linear layers, in definition order: the layers INT8 computes."""
    check_module(model)
    return [name for name, m in model.named_modules() if isinstance(m, (nn.Conv2d, nn.Linear))]


def ptq_fx(
    model: nn.Module,
    calibration: Sequence[Tensor],
    example_inputs: tuple,
    *,
    granularity: PerTensor | PerChannel = PerChannel(0),
    keep_float: Sequence[str] = (),
    only: Sequence[str] | None = None,
    views_to_reshape: bool = True,
    desc: str | None = "calibrating (FX)",
) -> torch.fx.GraphModule:
    """Static INT8 post-training quantization in FX graph mode (``prepare_fx``/``convert_fx``).

    The model is traced symbolically, so a plain model (functional ReLUs, no
    stubs) works; fusion is automatic. Uses ``get_default_qconfig_mapping("x86")``
    (per-tensor weights for all modules with ``granularity=PerTensor()``).

    ``keep_float=["fc"]`` (also in :func:`ptq_pt2e`) leaves the named conv/linear layers in float, with
    dequantize/quantize around them (mixed precision); ``only=["layer1.0.conv1"]``
    quantizes those layers alone (the global qconfig is ``None``).

    ``views_to_reshape`` first rewrites ``x.view(...)`` calls as
    ``x.reshape(...)`` (see :func:`views_as_reshapes`): fbgemm's quantized
    convolutions return channels-last tensors, on which the ``view`` of a
    flatten fails once the graph runs quantized.
    """
    from torch.ao.quantization import QConfigMapping, get_default_qconfig_mapping
    from torch.ao.quantization.quantize_fx import convert_fx, prepare_fx

    check_float_model(model)
    check_calibration(calibration)
    if not isinstance(example_inputs, tuple):
        raise TypeError("example_inputs must be a tuple of the model's inputs, e.g. (x[:1],)")
    qconfig = default_qconfig(granularity)
    check_flag("views_to_reshape", views_to_reshape)
    if only is not None and keep_float:
        raise ValueError("give either only= (quantize just these) or keep_float= (quantize all but these), not both")
    if only is not None:
        layers = check_layers(model, only, "only")
        if not layers:
            raise ValueError("only=[] quantizes no layer: name at least one, or use keep_float= to quantize all but some")
        mapping = QConfigMapping().set_global(None)
        for name in layers:
            mapping.set_module_name(name, qconfig)
    else:
        layers = check_layers(model, keep_float, "keep_float")
        mapping = get_default_qconfig_mapping("x86")
        if not check_granularity(granularity):
            mapping.set_global(qconfig)
        for name in layers:
            mapping.set_module_name(name, None)
    m = copy.deepcopy(model).eval()
    _check_example_inputs(m, example_inputs)
    if views_to_reshape:
        m = views_as_reshapes(m)
    prepared = _traced(prepare_fx, m, mapping, example_inputs)
    calibrate(prepared, calibration, desc=desc)
    return convert_fx(prepared).eval()


def _pt2e_config(per_channel: bool):  # torchao's default x86 config, per-channel weights, or per tensor
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
    granularity: PerTensor | PerChannel = PerChannel(0),
    keep_float: Sequence[str] = (),
    dynamic_batch: bool = True,
    desc: str = "calibrating (PT2E)",
) -> torch.fx.GraphModule:
    """Static INT8 post-training quantization with PT2E: ``torch.export`` + torchao's X86InductorQuantizer.

    Returns the converted module: quantize/dequantize ops around FP32
    operators, weights stored as FP32 (folded Q/DQ of constant weights is
    kept as INT8 only after lowering). Call ``torch.compile`` on it to get INT8
    kernels. ``dynamic_batch`` exports the batch dimension as dynamic so that
    calibration and evaluation can use different batch sizes. ``keep_float``
    names conv/linear layers to leave in float (``set_module_name_qconfig(name, None)``).
    """
    from torchao.quantization.pt2e import allow_exported_model_train_eval
    from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e, prepare_pt2e
    from torchao.quantization.pt2e.quantizer.x86_inductor_quantizer import X86InductorQuantizer

    check_float_model(model)
    check_calibration(calibration)
    if not isinstance(example_inputs, tuple):
        raise TypeError("example_inputs must be a tuple of the model's inputs, e.g. (x[:2],)")
    check_flag("strict", strict)
    per_channel = check_granularity(granularity)
    layers = check_layers(model, keep_float, "keep_float")
    check_flag("dynamic_batch", dynamic_batch)
    m = copy.deepcopy(model).eval()
    _check_example_inputs(m, example_inputs)
    dynamic_shapes = None
    if dynamic_batch:
        if any(isinstance(t, Tensor) and t.dim() > 0 and t.shape[0] == 1 for t in example_inputs):
            raise ValueError("dynamic_batch=True needs example inputs with a batch of at least 2 (torch.export fixes a "
                             "batch of 1 as a constant): pass e.g. (x[:2],), or dynamic_batch=False")
        batch = torch.export.Dim.AUTO
        dynamic_shapes = tuple({0: batch} if isinstance(t, Tensor) else None for t in example_inputs)
    try:
        exported = torch.export.export(m, example_inputs, dynamic_shapes=dynamic_shapes, strict=strict).module()
    except Exception as exc:  # torch.export has many error types (UserError, Unsupported, ...): one answer for all
        hint = "try strict=False, or ptq_eager" if strict else "use ptq_eager, or rewrite the branch with torch.cond"
        raise ValueError(f"torch.export cannot capture the model ({type(exc).__name__}: {str(exc).strip().splitlines()[0]}). "
                         f"It needs control flow that does not depend on tensor values; {hint}") from None
    quantizer = X86InductorQuantizer().set_global(_pt2e_config(per_channel))
    for name in layers:
        quantizer.set_module_name_qconfig(name, None)
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
    if not isinstance(gm, torch.fx.GraphModule):
        raise TypeError(f"graph_tensors needs a torch.fx.GraphModule (what ptq_fx or ptq_pt2e return), not {describe(gm)}")
    out: dict[str, Tensor] = {}
    for node in gm.graph.nodes:
        if node.op == "get_attr":
            obj = gm
            for part in str(node.target).split("."):
                obj = getattr(obj, part)
            if isinstance(obj, Tensor):
                out[str(node.target)] = obj
    return out
