"""Running a model outside PyTorch: ONNX Runtime and ExecuTorch, each with its own INT8 quantizer (chapter 07).

A deployment runtime loads a file, not Python code, and brings its own kernels, so it quantizes the
model its own way:

- ONNX Runtime (ORT): :func:`export_onnx` writes the FP32 model as ONNX (``torch.onnx.export(...,
  dynamo=True)``: torch.export, then translation by onnxscript), :func:`preprocess_onnx` runs ORT's
  ``quant_pre_process`` (shape inference, graph optimizations), then ORT's quantizer rewrites the file:
  :func:`quantize_onnx_static` inserts QuantizeLinear/DequantizeLinear (QDQ) pairs with ranges calibrated
  on batches (:class:`CalibrationReader`; ``"minmax"``, ``"entropy"`` or ``"percentile"``), and
  :func:`quantize_onnx_dynamic` quantizes weights ahead and activations at run time. When a session
  loads a QDQ file, ORT fuses each ``DQ -> Conv -> Q`` into one INT8 ``QLinearConv``;
  :func:`ort_op_counts` shows what it actually fused (a convolution left as ``Conv`` runs in FP32).
  :func:`ort_session` fixes the threads; :func:`ort_module` wraps a session as an ``nn.Module``.
- ExecuTorch: :func:`quantize_xnnpack` (PT2E with XNNPACK's quantizer), :func:`save_executorch`
  (``to_edge_transform_and_lower`` with the ``XnnpackPartitioner``, then a ``.pte`` file),
  :func:`executorch_module` (its Python runtime).

ORT's own advice for x86 CPUs (``quantize_static``'s docstring, ORT 1.32): activations ``QUInt8``,
weights ``QInt8``; without VNNI also ``reduce_range=True`` (7-bit weights, so that the u8 x s8 pair sums
of ``vpmaddubsw`` cannot saturate 16 bits). ``QUInt8`` weights (U8U8) are the other way around the
saturation, on kernels that then cannot use the u8 x s8 instructions.

Bad arguments (a file that does not exist, an unknown calibration method or type, calibration that is
not a list of float batches) raise a TypeError, ValueError or FileNotFoundError before ORT or
ExecuTorch is called.
"""

from __future__ import annotations

import contextlib
import io
import os
import tempfile
import warnings
from collections import Counter
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from torch import Tensor, nn

from .bench import native_logs_silenced
from .checks import check_file, check_flag, check_int, check_module, describe
from .ptq import check_calibration
from .serialization import FunctionModule

__all__ = [
    "INPUT_NAME", "CALIBRATION_METHODS", "QUANT_TYPES", "export_onnx", "preprocess_onnx", "CalibrationReader",
    "quantize_onnx_static", "quantize_onnx_dynamic", "ort_session", "ort_module", "ort_op_counts",
    "executorch_version", "quantize_xnnpack", "save_executorch", "executorch_module",
    "onnx_linear_stack", "MATMUL_NBITS_BITS", "quantize_matmul_nbits", "initializer_bytes",
]

INPUT_NAME = "input"  # the ONNX input name export_onnx gives the model's one input
CALIBRATION_METHODS = ("minmax", "entropy", "percentile")
QUANT_TYPES = ("uint8", "int8")


def _check_example(example_inputs: object) -> tuple[Tensor]:
    if not (isinstance(example_inputs, tuple) and len(example_inputs) == 1 and isinstance(example_inputs[0], Tensor)):
        raise TypeError(f"example_inputs must be a tuple of the model's one input batch, e.g. (x[:2],), not "
                        f"{describe(example_inputs)}")
    if example_inputs[0].dim() == 0 or example_inputs[0].shape[0] < 2:
        raise ValueError("the example batch must hold at least 2 inputs: torch.export fixes a batch of 1 as a constant, "
                         "and the file should take any batch size")
    return example_inputs


# --- ONNX and ONNX Runtime ----------------------------------------------------------------------------------------

def export_onnx(model: nn.Module, example_inputs: tuple, path: str | os.PathLike) -> int:
    """``torch.onnx.export(model, example_inputs, dynamo=True)`` with a free batch dimension; returns the file's bytes.

    The weights are stored inside the file (no external data). The input is named ``INPUT_NAME``. A PT2E
    model (``ptq.ptq_pt2e``) exports too: its Q/DQ ops become ONNX QuantizeLinear/DequantizeLinear.
    """
    check_module(model)
    _check_example(example_inputs)
    p = check_file(path, exists=False)
    batch = torch.export.Dim("batch", min=1, max=1024)
    with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
        # A PT2E module reports training=True (its eval() cannot change the graph); there is nothing to switch off.
        warnings.filterwarnings("ignore", message="Exporting a model while it is in training mode")
        program = torch.onnx.export(model, example_inputs, dynamo=True, input_names=[INPUT_NAME], output_names=["output"],
                                    dynamic_shapes=({0: batch},), external_data=False, verbose=False)
        program.save(str(p))
    return p.stat().st_size


def preprocess_onnx(src: str | os.PathLike, dst: str | os.PathLike) -> int:
    """ORT's ``quant_pre_process``: shape inference and graph optimization (batch norms folded) before quantizing; bytes."""
    from onnxruntime.quantization.shape_inference import quant_pre_process

    s, d = check_file(src, "src", exists=True), check_file(dst, "dst", exists=False)
    quant_pre_process(str(s), str(d))
    return d.stat().st_size


class CalibrationReader:
    """ORT's ``CalibrationDataReader`` over calibration batches: ``get_next()`` gives ``{input name: batch}``, then None.

    ORT recognises any class with ``get_next`` as a reader (``CalibrationDataReader.__subclasshook__``).
    """

    def __init__(self, batches: Sequence[Tensor], input_name: str = INPUT_NAME) -> None:
        check_calibration(batches)
        if not isinstance(input_name, str) or not input_name:
            raise TypeError(f"input_name must be the ONNX input's name, e.g. {INPUT_NAME!r}, not {describe(input_name)}")
        self.batches = [(b[0] if isinstance(b, (tuple, list)) else b).detach().float().contiguous().numpy() for b in batches]
        self.input_name = input_name
        self.rewind()

    def get_next(self) -> dict[str, np.ndarray] | None:
        """The next batch as ``{input name: array}``, or None after the last one."""
        if self._i >= len(self.batches):
            return None
        self._i += 1
        return {self.input_name: self.batches[self._i - 1]}

    def rewind(self) -> None:
        """Start again from the first batch."""
        self._i = 0

    def __len__(self) -> int:
        return len(self.batches)


def _quant_type(name: object, what: str):
    from onnxruntime.quantization import QuantType

    if name not in QUANT_TYPES:
        raise ValueError(f"{what}={name!r}: choose one of {list(QUANT_TYPES)} (ORT's QuantType.QUInt8, QuantType.QInt8)")
    return QuantType.QUInt8 if name == "uint8" else QuantType.QInt8


def quantize_onnx_static(
    src: str | os.PathLike,
    dst: str | os.PathLike,
    calibration: Sequence[Tensor],
    *,
    method: str = "minmax",
    per_channel: bool = True,
    reduce_range: bool = False,
    activations: str = "uint8",
    weights: str = "int8",
) -> int:
    """Static INT8 quantization of an ONNX file with ORT: QDQ format, ranges calibrated on ``calibration``; bytes.

    ``method``: ``"minmax"`` (the observed minimum and maximum), ``"entropy"`` (the clipping that keeps the
    KL divergence of the histogram smallest) or ``"percentile"`` (99.999 % of the values). Weights are
    per output channel with ``per_channel``, symmetric INT8; ``reduce_range`` quantizes weights to 7 bits.
    ``activations``/``weights`` are ``"uint8"`` or ``"int8"`` (ORT's default for activations is int8;
    ``"uint8"`` is its advice for x86). ``src`` should come from :func:`preprocess_onnx`.
    """
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, quantize_static

    s, d = check_file(src, "src", exists=True), check_file(dst, "dst", exists=False)
    if method not in CALIBRATION_METHODS:
        raise ValueError(f"unknown calibration method {method!r}; choose one of {list(CALIBRATION_METHODS)}")
    check_flag("per_channel", per_channel)
    check_flag("reduce_range", reduce_range, " (True: 7-bit weights, ORT's advice for CPUs without VNNI)")
    a_type, w_type = _quant_type(activations, "activations"), _quant_type(weights, "weights")
    reader = CalibrationReader(calibration)
    calibrate_method = {"minmax": CalibrationMethod.MinMax, "entropy": CalibrationMethod.Entropy,
                        "percentile": CalibrationMethod.Percentile}[method]
    with contextlib.redirect_stdout(io.StringIO()):  # the histogram methods print their progress
        quantize_static(str(s), str(d), reader, quant_format=QuantFormat.QDQ, per_channel=per_channel,
                        reduce_range=reduce_range, activation_type=a_type, weight_type=w_type,
                        calibrate_method=calibrate_method)
    return d.stat().st_size


def quantize_onnx_dynamic(src: str | os.PathLike, dst: str | os.PathLike, *, per_channel: bool = False,
                          reduce_range: bool = False, weights: str = "int8") -> int:
    """Dynamic quantization with ORT: INT8 weights stored, activations quantized at run time; bytes.

    Convolutions become ``ConvInteger`` (plus casts and scaling), linears ``DynamicQuantizeMatMul``.
    """
    from onnxruntime.quantization import quantize_dynamic

    s, d = check_file(src, "src", exists=True), check_file(dst, "dst", exists=False)
    check_flag("per_channel", per_channel)
    check_flag("reduce_range", reduce_range)
    quantize_dynamic(str(s), str(d), per_channel=per_channel, reduce_range=reduce_range,
                     weight_type=_quant_type(weights, "weights"))
    return d.stat().st_size


def ort_session(path, *, threads: int = 2, optimized_path: str | os.PathLike | None = None):
    """An ORT ``InferenceSession`` on the CPU with ``threads`` intra-op threads, one inter-op thread, all graph optimizations.

    ``path`` is an ONNX file, or an ``onnx.ModelProto`` held in memory (e.g. from :func:`quantize_matmul_nbits`).
    ``optimized_path``, if given, is where ORT writes the graph it will actually run (after its fusions).
    """
    import onnxruntime as ort

    p = path.SerializeToString() if _is_model_proto(path) else str(check_file(path, exists=True))
    check_int("threads", threads, 1)
    options = ort.SessionOptions()
    options.intra_op_num_threads = int(threads)
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.log_severity_level = 3  # errors only (not the warning that an optimized graph is CPU-specific)
    if optimized_path is not None:
        options.optimized_model_filepath = str(check_file(optimized_path, "optimized_path", exists=False))
    return ort.InferenceSession(p, options, providers=["CPUExecutionProvider"])


def ort_module(path: str | os.PathLike, *, threads: int = 2) -> FunctionModule:
    """An ``nn.Module`` running the ONNX file with ORT (:func:`ort_session`): tensors in, tensors out."""
    session = ort_session(path, threads=threads)
    name = session.get_inputs()[0].name

    def run(x: Tensor) -> Tensor:
        return torch.from_numpy(session.run(None, {name: x.detach().float().contiguous().numpy()})[0])

    return FunctionModule(run, f"ONNX Runtime {Path(path).name}")


def ort_op_counts(path: str | os.PathLike) -> dict[str, int]:
    """How many of each operator ORT runs for the file once its graph optimizations have fused what they can.

    ``QLinearConv`` is an INT8 convolution; a ``Conv`` left beside ``DequantizeLinear`` runs in FP32 on
    dequantized inputs.
    """
    import onnx

    with tempfile.TemporaryDirectory(prefix="ort-") as tmp:
        optimized = Path(tmp) / "optimized.onnx"
        ort_session(path, threads=1, optimized_path=optimized)
        graph = onnx.load(str(optimized)).graph
    return dict(sorted(Counter(node.op_type for node in graph.node).items()))


# --- ORT's weight-only 4/8-bit MatMul: MatMulNBits (chapter 08) ----------------------------------------------------

MATMUL_NBITS_BITS = (2, 4, 8)


def _is_model_proto(obj: object) -> bool:
    return type(obj).__name__ == "ModelProto" and hasattr(obj, "SerializeToString")


def _check_model_proto(model: object) -> None:
    if not _is_model_proto(model):
        raise TypeError(f"model must be an onnx.ModelProto (e.g. from onnx_linear_stack), not {describe(model)}")


def onnx_linear_stack(weights: Sequence[Tensor]) -> "onnx.ModelProto":  # noqa: F821
    """An ONNX graph of one ``MatMul`` per weight, ``y = x @ W^T`` in turn, input ``x`` of shape ``(1, in_features)``.

    The weights (``(out, in)`` tensors, each layer's ``in`` the previous one's ``out``) are stored as initializers,
    transposed to ONNX's ``(in, out)``; built with ``onnx.helper`` (no export needed for a plain stack).
    """
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    if not isinstance(weights, (list, tuple)) or not weights or not all(isinstance(w, Tensor) for w in weights):
        raise TypeError(f"weights must be a non-empty list of 2-D tensors (out_features, in_features), not {describe(weights)}")
    for i, w in enumerate(weights):
        if w.dim() != 2 or not w.is_floating_point():
            raise ValueError(f"weights[{i}] has shape {tuple(w.shape)} and dtype {w.dtype}: each must be a 2-D float "
                             "tensor (out_features, in_features)")
        if i and w.shape[1] != weights[i - 1].shape[0]:
            raise ValueError(f"weights[{i}] takes {w.shape[1]} inputs but weights[{i - 1}] gives {weights[i - 1].shape[0]}")
    nodes, inits, prev = [], [], "x"
    for i, w in enumerate(weights):
        inits.append(numpy_helper.from_array(w.detach().float().T.contiguous().numpy(), f"w{i}"))
        nodes.append(helper.make_node("MatMul", [prev, f"w{i}"], [f"y{i}"], name=f"matmul{i}"))
        prev = f"y{i}"
    graph = helper.make_graph(nodes, "linear_stack",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, weights[0].shape[1]])],
                              [helper.make_tensor_value_info(prev, TensorProto.FLOAT, [1, weights[-1].shape[0]])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 21), helper.make_opsetid("com.microsoft", 1)])
    model.ir_version = min(model.ir_version, onnx.IR_VERSION)
    return model


def quantize_matmul_nbits(model: "onnx.ModelProto", *, bits: int = 4, block_size: int = 64,  # noqa: F821
                          accuracy_level: int = 0, symmetric: bool = False) -> "onnx.ModelProto":  # noqa: F821
    """A copy of ``model`` whose ``MatMul`` weights ORT's ``MatMulNBitsQuantizer`` stored in ``bits`` bits.

    Each weight becomes a ``com.microsoft.MatMulNBits`` node: codes in blocks of ``block_size`` inputs with a scale
    (and, asymmetric, a zero-point) each. ``accuracy_level`` is the precision of the activations in the kernel:
    0 (unset: the kernel's default, FP32 here), 1 FP32, 2 FP16, 3 BF16, 4 INT8 (the activation row quantized per
    block, integer dot products).
    """
    _check_model_proto(model)
    if bits not in MATMUL_NBITS_BITS:
        raise ValueError(f"bits={bits!r}: MatMulNBits stores {MATMUL_NBITS_BITS} bits")
    block_size = check_int("block_size", block_size, 16, hint=", a power of 2 >= 16, e.g. 32, 64 or 128")
    if block_size & (block_size - 1):
        raise ValueError(f"block_size={block_size} must be a power of 2 >= 16 (e.g. 32, 64 or 128)")
    accuracy_level = check_int("accuracy_level", accuracy_level, 0, 4,
                               hint=" (0 unset, 1 FP32, 2 FP16, 3 BF16, 4 INT8 activations)")
    check_flag("symmetric", symmetric)
    import copy
    import logging

    from onnxruntime.quantization.matmul_nbits_quantizer import MatMulNBitsQuantizer

    logger = logging.getLogger("onnxruntime.quantization.matmul_nbits_quantizer")
    level = logger.level
    logger.setLevel(logging.WARNING)  # (it logs every node it quantizes)
    try:
        quantizer = MatMulNBitsQuantizer(copy.deepcopy(model), bits=bits, block_size=block_size,
                                         is_symmetric=symmetric, accuracy_level=accuracy_level)
        quantizer.process()
    finally:
        logger.setLevel(level)
    return quantizer.model.model


def initializer_bytes(model: "onnx.ModelProto") -> int:  # noqa: F821
    """Bytes of the graph's stored tensors (weights, codes, scales, zero-points): what a step reads."""
    from onnx import numpy_helper

    _check_model_proto(model)
    return int(sum(numpy_helper.to_array(t).nbytes for t in model.graph.initializer))


# --- ExecuTorch -------------------------------------------------------------------------------------------------------

def executorch_version() -> str | None:
    """The installed ExecuTorch's version, or None when it is not installed."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("executorch")
    except PackageNotFoundError:
        return None


def _require_executorch() -> None:
    if executorch_version() is None:
        raise ModuleNotFoundError("ExecuTorch is not installed: pip install executorch (a version built for this torch)")


def quantize_xnnpack(model: nn.Module, calibration: Sequence[Tensor], example_inputs: tuple) -> torch.fx.GraphModule:
    """PT2E post-training INT8 quantization for XNNPACK: ``XNNPACKQuantizer`` (symmetric per-channel weights).

    The same steps as ``ptq.ptq_pt2e`` with ExecuTorch's quantizer instead of the x86 inductor one:
    export, ``prepare_pt2e``, run the calibration batches, ``convert_pt2e``.
    """
    _require_executorch()
    from executorch.backends.xnnpack.quantizer.xnnpack_quantizer import (
        XNNPACKQuantizer,
        get_symmetric_quantization_config,
    )
    from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e, prepare_pt2e

    from .ptq import calibrate

    check_module(model)
    check_calibration(calibration)
    _check_example(example_inputs)
    exported = torch.export.export(model.eval(), example_inputs, dynamic_shapes=({0: torch.export.Dim.AUTO},)).module()
    quantizer = XNNPACKQuantizer().set_global(get_symmetric_quantization_config(is_per_channel=True))
    prepared = prepare_pt2e(exported, quantizer)
    calibrate(prepared, calibration, desc=None)
    return convert_pt2e(prepared)


def save_executorch(model: nn.Module, example_inputs: tuple, path: str | os.PathLike, *, max_batch: int = 64) -> int:
    """Lower ``model`` to ExecuTorch with XNNPACK and write the ``.pte`` program; returns its bytes.

    ``torch.export`` (batch dimension free up to ``max_batch``), ``to_edge_transform_and_lower`` with the
    ``XnnpackPartitioner`` (the subgraphs XNNPACK can run become its delegate: INT8 kernels for a model
    from :func:`quantize_xnnpack`), then ``to_executorch`` serializes the program. Measured with
    ExecuTorch 1.5.1 on the 28x28 ResNet-18: the program refused batches above 15 whatever ``max_batch``
    above 15 ("Attempted to resize a bounded tensor ..."); run it on batches of 8.
    """
    _require_executorch()
    from executorch.backends.xnnpack.partition.xnnpack_partitioner import XnnpackPartitioner
    from executorch.exir import to_edge_transform_and_lower

    check_module(model)
    _check_example(example_inputs)
    check_int("max_batch", max_batch, 2)
    p = check_file(path, exists=False)
    batch = torch.export.Dim("batch", min=1, max=int(max_batch))
    program = torch.export.export(model, example_inputs, dynamic_shapes=({0: batch},))
    lowered = to_edge_transform_and_lower(program, partitioner=[XnnpackPartitioner()]).to_executorch()
    p.write_bytes(lowered.buffer)
    return p.stat().st_size


def executorch_module(path: str | os.PathLike, *, threads: int = 2) -> FunctionModule:
    """An ``nn.Module`` running the ``.pte`` file with ExecuTorch's Python runtime (``executorch.runtime``).

    XNNPACK's thread pool is process-wide: it is reset to ``threads`` when it holds another number.
    """
    _require_executorch()
    from executorch.extension.pybindings import portable_lib
    from executorch.runtime import Runtime

    p = check_file(path, exists=True)
    check_int("threads", threads, 1)
    with native_logs_silenced():  # (the thread pool's first use logs the CPU it probes)
        if portable_lib._threadpool_get_thread_count() != threads:
            portable_lib._unsafe_reset_threadpool(int(threads))
    with native_logs_silenced():  # (and the XNNPACK delegate's, when it starts)
        method = Runtime.get().load_program(p).load_method("forward")

    def run(x: Tensor) -> Tensor:
        return method.execute([x.detach().float().contiguous()])[0]

    return FunctionModule(run, f"ExecuTorch {p.name}")
