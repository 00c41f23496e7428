"""qhelpers.serialization and qhelpers.runtimes: each format round-trips bit for bit, each runtime runs, bad input is refused."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from qhelpers import bench, models, ptq, runtimes, serialization
from qhelpers.serialization import Builder

X = torch.randn(6, 1, 28, 28, generator=torch.Generator().manual_seed(0))
CALIBRATION = [torch.randn(8, 1, 28, 28, generator=torch.Generator().manual_seed(1)) for _ in range(2)]
EXAMPLE = (CALIBRATION[0][:2],)


@pytest.fixture(scope="module")
def cnn():
    torch.manual_seed(0)
    return models.SimpleCNN().eval()


@pytest.fixture(scope="module")
def q_pt2e(cnn):
    return ptq.ptq_pt2e(cnn, CALIBRATION, EXAMPLE, desc=None)


def _out(model, x=X):
    with torch.inference_mode():
        return model(x)


# --- Builder -------------------------------------------------------------------------------------------------------

def test_builder_round_trips_through_json():
    b = Builder("qhelpers.models:resnet18_mnist", {"stem": "small_pool"}, "eager", fuse="fuse_model")
    assert Builder.from_json(b.to_json()) == b
    f = Builder("qhelpers.models:SimpleCNN", flow="fx", example_shape=(1, 1, 28, 28))
    assert Builder.from_json(f.to_json()) == f


@pytest.mark.parametrize("kwargs, error, match", [
    ({"function": "qhelpers.models.SimpleCNN"}, ValueError, "package.module:function"),
    ({"function": "qhelpers.models:SimpleCNN", "kwargs": {"x": object()}}, TypeError, "JSON values"),
    ({"function": "qhelpers.models:SimpleCNN", "kwargs": [1]}, TypeError, "dict of keyword arguments"),
    ({"function": "qhelpers.models:SimpleCNN", "flow": "pt2e"}, ValueError, "unknown flow"),
    ({"function": "qhelpers.models:SimpleCNN", "flow": "fx"}, ValueError, "example_shape"),
    ({"function": "qhelpers.models:SimpleCNN", "flow": "fx", "example_shape": (1, 0)}, ValueError, "example_shape"),
    ({"function": "qhelpers.models:SimpleCNN", "flow": "float", "fuse": "fuse_model"}, ValueError, "fuse is for flow='eager'"),
    ({"function": "qhelpers.models:QuantReadyCNN", "flow": "eager", "fuse": 3}, TypeError, "method name"),
])
def test_builder_refuses_bad_arguments(kwargs, error, match):
    with pytest.raises(error, match=match):
        Builder(**kwargs)


def test_builder_that_cannot_be_imported_says_so():
    with pytest.raises(ValueError, match="cannot import 'qhelpers.models:NoSuchModel'"):
        Builder("qhelpers.models:NoSuchModel").build_float()


def test_torchao_flow_builds_on_the_meta_device():
    m = Builder("qhelpers.models:SimpleCNN", flow="torchao").build()
    assert m.conv1.weight.device.type == "meta"


# --- skeletons and in-process round trips ----------------------------------------------------------------------------

def test_eager_skeleton_loads_a_saved_eager_model_bit_for_bit(cnn, tmp_path):
    ready = models.QuantReadyCNN.from_simple_cnn(cnn)
    q = ptq.ptq_eager(ready, CALIBRATION, fuse=models.FUSE_PATTERNS, desc=None)
    path = tmp_path / "eager.pt"
    assert serialization.save_state_dict(q, path) == path.stat().st_size
    builder = Builder("qhelpers.models:QuantReadyCNN", flow="eager", fuse=models.FUSE_PATTERNS)
    assert serialization.bit_identical(_out(q), _out(serialization.load("state_dict", path, builder)))


def test_fx_skeleton_loads_a_saved_fx_model_bit_for_bit(cnn, tmp_path):
    q = ptq.ptq_fx(cnn, CALIBRATION, EXAMPLE, desc=None)
    serialization.save_state_dict(q, tmp_path / "fx.pt")
    builder = Builder("qhelpers.models:SimpleCNN", flow="fx", example_shape=(1, 1, 28, 28))
    assert serialization.bit_identical(_out(q), _out(serialization.load("state_dict", tmp_path / "fx.pt", builder)))


def test_an_uncalibrated_skeleton_differs_until_the_state_dict_is_loaded(cnn):
    q = ptq.ptq_fx(cnn, CALIBRATION, EXAMPLE, desc=None)
    skeleton = serialization.quantized_skeleton(cnn, "fx", example_inputs=EXAMPLE)
    assert not serialization.bit_identical(_out(q), _out(skeleton))  # placeholder scales
    skeleton.load_state_dict(q.state_dict())
    assert serialization.bit_identical(_out(q), _out(skeleton))


@pytest.mark.parametrize("fmt", ["state_dict", "safetensors"])
def test_torchao_weights_round_trip_through_a_meta_model(cnn, tmp_path, fmt):
    from torchao.quantization import Int8DynamicActivationInt8WeightConfig, quantize_

    m = models.SimpleCNN()
    m.load_state_dict(cnn.state_dict())
    quantize_(m.eval(), Int8DynamicActivationInt8WeightConfig())
    path = tmp_path / f"w8a8.{fmt}"
    (serialization.save_state_dict if fmt == "state_dict" else serialization.save_safetensors)(m, path)
    loaded = serialization.load(fmt, path, Builder("qhelpers.models:SimpleCNN", flow="torchao"))
    assert type(loaded.fc1.weight).__name__ == "Int8Tensor" and loaded.conv1.weight.device.type == "cpu"
    assert serialization.bit_identical(_out(m), _out(loaded))


def test_safetensors_refuses_torch_ao_quantized_tensors(cnn, tmp_path):
    q = ptq.ptq_fx(cnn, CALIBRATION, EXAMPLE, desc=None)
    with pytest.raises(ValueError, match="use save_state_dict"):
        serialization.save_safetensors(q, tmp_path / "q.safetensors")


def test_exported_pt2e_program_drops_the_unused_fp32_weights(q_pt2e, tmp_path):
    stripped = serialization.without_unused_tensors(q_pt2e)
    assert "conv1.weight" in dict(q_pt2e.named_parameters()) and "conv1.weight" not in dict(stripped.named_parameters())
    n = serialization.save_exported(q_pt2e, EXAMPLE, tmp_path / "pt2e.pt2")
    full = tmp_path / "full.pt2"
    torch.export.save(torch.export.export(q_pt2e, EXAMPLE, dynamic_shapes=({0: torch.export.Dim.AUTO},)), full)
    assert n < full.stat().st_size
    loaded = serialization.load("export", tmp_path / "pt2e.pt2")
    assert serialization.bit_identical(_out(q_pt2e), _out(loaded))


def test_load_refuses_bad_arguments(cnn, tmp_path):
    path = tmp_path / "float.pt"
    serialization.save_state_dict(cnn, path)
    with pytest.raises(ValueError, match="unknown format"):
        serialization.load("onnx", path)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        serialization.load("state_dict", tmp_path / "missing.pt", Builder("qhelpers.models:SimpleCNN"))
    with pytest.raises(TypeError, match="pass builder=Builder"):
        serialization.load("state_dict", path)
    with pytest.raises(ValueError, match="pass no builder"):
        serialization.load("export", path, Builder("qhelpers.models:SimpleCNN"))
    with pytest.raises(ValueError, match="does not fit the model qhelpers.models:MLP"):
        serialization.load("state_dict", path, Builder("qhelpers.models:MLP"))


def test_save_refuses_bad_arguments(cnn, q_pt2e, tmp_path):
    with pytest.raises(TypeError, match="torch.nn.Module"):
        serialization.save_state_dict({"w": torch.zeros(1)}, tmp_path / "x.pt")
    with pytest.raises(FileNotFoundError, match="does not exist: create it first"):
        serialization.save_state_dict(cnn, tmp_path / "no" / "x.pt")
    with pytest.raises(TypeError, match="file path"):
        serialization.save_state_dict(cnn, 3)
    with pytest.raises(ValueError, match="batch of at least 2"):
        serialization.save_exported(q_pt2e, (X[:1],), tmp_path / "x.pt2")
    with pytest.raises(TypeError, match="tuple of input tensors"):
        serialization.save_exported(q_pt2e, X[:2], tmp_path / "x.pt2")
    with pytest.raises(TypeError, match="GraphModule"):
        serialization.without_unused_tensors(cnn)
    with pytest.raises(ValueError, match="'eager' or 'fx'"):
        serialization.quantized_skeleton(cnn, "pt2e")
    with pytest.raises(TypeError, match="example_inputs"):
        serialization.quantized_skeleton(cnn, "fx")


def test_bit_identical():
    a = torch.randn(3)
    assert serialization.bit_identical(a, a.clone())
    assert not serialization.bit_identical(a, a.double())
    assert not serialization.bit_identical(a, a + 1e-7 * a.abs().max())
    with pytest.raises(TypeError, match="torch.Tensor"):
        serialization.bit_identical(a, a.tolist())


# --- fresh processes ---------------------------------------------------------------------------------------------------

def test_a_fresh_process_reloads_the_pt2e_program_bit_for_bit(q_pt2e, tmp_path):
    path = tmp_path / "pt2e.pt2"
    serialization.save_exported(q_pt2e, EXAMPLE, path)
    r = serialization.reload_in_fresh_process("export", path, X, threads=torch.get_num_threads())
    assert serialization.bit_identical(_out(q_pt2e), r.outputs)
    assert 0 < r.warm_load_s <= r.load_s < r.process_s


def test_one_fresh_process_reloads_several_files_in_order(q_pt2e, tmp_path):
    torch.manual_seed(1)
    cnn = models.SimpleCNN().eval()  # (its own: other tests may change the module's fixture)
    serialization.save_exported(q_pt2e, EXAMPLE, tmp_path / "pt2e.pt2")
    serialization.save_state_dict(cnn, tmp_path / "float.pt")
    both = serialization.reload_all_in_fresh_process(
        [("export", tmp_path / "pt2e.pt2", None), ("state_dict", tmp_path / "float.pt", Builder("qhelpers.models:SimpleCNN"))], X,
        threads=torch.get_num_threads())
    assert [serialization.bit_identical(_out(m), r.outputs) for m, r in zip((q_pt2e, cnn), both)] == [True, True]
    assert both[0].process_s == both[1].process_s and all(0 < r.warm_load_s <= r.process_s for r in both)


def test_reload_all_names_the_file_that_failed_and_checks_first(cnn, tmp_path):
    serialization.save_state_dict(cnn, tmp_path / "float.pt")
    good = ("state_dict", tmp_path / "float.pt", Builder("qhelpers.models:SimpleCNN"))
    with pytest.raises(RuntimeError, match="could not load float.pt as 'state_dict': .*does not fit"):
        serialization.reload_all_in_fresh_process([good, ("state_dict", tmp_path / "float.pt", Builder("qhelpers.models:MLP"))], X)
    with pytest.raises(TypeError, match="non-empty list"):
        serialization.reload_all_in_fresh_process([], X)
    with pytest.raises(TypeError, match="tuple \\(format, path, builder or None\\)"):
        serialization.reload_all_in_fresh_process([("state_dict", tmp_path / "float.pt")], X)
    with pytest.raises(FileNotFoundError, match="missing.pt"):
        serialization.reload_all_in_fresh_process([good, ("export", tmp_path / "missing.pt", None)], X)
    with pytest.raises(TypeError, match="a list of 2 tensors"):
        serialization.reload_all_in_fresh_process([good, good], [X])


def test_reload_all_takes_one_input_batch_per_file(tmp_path):
    """A CNN on images and a GPT with torchao weights on token ids, in one fresh process."""
    from torchao.quantization import Int8WeightOnlyConfig, quantize_

    torch.manual_seed(2)
    cnn = models.SimpleCNN().eval()
    from qhelpers import transformer

    fields = {"vocab_size": 11, "n_layer": 1, "n_head": 2, "n_embd": 16, "block_size": 8}
    gpt = transformer.build_gpt(**fields).eval()
    quantize_(gpt, Int8WeightOnlyConfig())
    serialization.save_state_dict(gpt, tmp_path / "gpt.pt")
    serialization.save_state_dict(cnn, tmp_path / "float.pt")
    ids = torch.randint(11, (2, 8), generator=torch.Generator().manual_seed(0))
    both = serialization.reload_all_in_fresh_process(
        [("state_dict", tmp_path / "float.pt", Builder("qhelpers.models:SimpleCNN")),
         ("state_dict", tmp_path / "gpt.pt", Builder("qhelpers.transformer:build_gpt", fields, flow="torchao"))], [X, ids],
        threads=torch.get_num_threads())  # (FP32 convolutions may round differently with another thread count)
    with torch.inference_mode():
        assert serialization.bit_identical(_out(cnn), both[0].outputs) and serialization.bit_identical(gpt(ids), both[1].outputs)


def test_a_fresh_process_that_fails_says_why(cnn, tmp_path):
    path = tmp_path / "float.pt"
    serialization.save_state_dict(cnn, path)
    with pytest.raises(RuntimeError, match="could not load float.pt as 'state_dict': .*does not fit"):
        serialization.reload_in_fresh_process("state_dict", path, X, Builder("qhelpers.models:MLP"))


def test_reload_refuses_bad_arguments(cnn, tmp_path):
    path = tmp_path / "float.pt"
    serialization.save_state_dict(cnn, path)
    with pytest.raises(TypeError, match="torch.Tensor"):
        serialization.reload_in_fresh_process("state_dict", path, X.numpy(), Builder("qhelpers.models:SimpleCNN"))
    with pytest.raises(ValueError, match="unknown format"):
        serialization.reload_in_fresh_process("pickle", path, X)
    with pytest.raises(TypeError, match="Builder or None"):
        serialization.reload_in_fresh_process("state_dict", path, X, "qhelpers.models:SimpleCNN")
    with pytest.raises(ValueError, match="threads=0"):
        serialization.reload_in_fresh_process("state_dict", path, X, threads=0)


def test_aoti_package_runs_int8_kernels_and_reloads(tmp_path):
    """A tiny PT2E model: under no_grad the package calls oneDNN's INT8 linear, and loads bit for bit."""
    import zipfile

    torch.manual_seed(0)
    tiny = nn.Sequential(nn.Flatten(), nn.Linear(784, 16), nn.ReLU(), nn.Linear(16, 10)).eval()
    q = ptq.ptq_pt2e(tiny, CALIBRATION, EXAMPLE, desc=None)
    path = tmp_path / "tiny.pt2"
    assert serialization.save_aoti(q, (X,), path) == path.stat().st_size  # specialised to batch 6
    with zipfile.ZipFile(path) as z:
        code = "".join(z.read(n).decode(errors="ignore") for n in z.namelist() if n.endswith(".wrapper.cpp"))
    assert "qlinear_pointwise" in code
    package = serialization.load("aoti", path)
    assert serialization.bit_identical(_out(package), serialization.reload_in_fresh_process("aoti", path, X, threads=torch.get_num_threads()).outputs)


# --- ONNX Runtime --------------------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def onnx_files(cnn, tmp_path_factory):
    d = tmp_path_factory.mktemp("onnx")
    runtimes.export_onnx(cnn, EXAMPLE, d / "fp32.onnx")
    runtimes.preprocess_onnx(d / "fp32.onnx", d / "pre.onnx")
    return d


def test_onnx_export_runs_in_ort_like_torch_at_any_batch(cnn, onnx_files):
    ort = runtimes.ort_module(onnx_files / "fp32.onnx")
    for x in (X[:1], X):
        torch.testing.assert_close(_out(ort, x), _out(cnn, x), atol=1e-4, rtol=1e-4)
    assert runtimes.ort_op_counts(onnx_files / "fp32.onnx")["Conv"] == 2


@pytest.mark.parametrize("method", runtimes.CALIBRATION_METHODS)
def test_static_quantization_fuses_int8_convolutions(cnn, onnx_files, method):
    dst = onnx_files / f"{method}.onnx"
    n = runtimes.quantize_onnx_static(onnx_files / "pre.onnx", dst, CALIBRATION, method=method)
    assert n == dst.stat().st_size < (onnx_files / "fp32.onnx").stat().st_size / 2
    ops = runtimes.ort_op_counts(dst)
    assert ops.get("QLinearConv") == 2 and "Conv" not in ops
    assert (_out(runtimes.ort_module(dst)).argmax(1) == _out(cnn).argmax(1)).float().mean() >= 0.8


def test_dynamic_quantization_uses_conv_integer(onnx_files):
    dst = onnx_files / "dynamic.onnx"
    runtimes.quantize_onnx_dynamic(onnx_files / "pre.onnx", dst)
    assert runtimes.ort_op_counts(dst).get("ConvInteger") == 2


def test_the_pt2e_model_exports_to_qdq_onnx(q_pt2e, tmp_path):
    runtimes.export_onnx(q_pt2e, EXAMPLE, tmp_path / "pt2e.onnx")
    assert runtimes.ort_op_counts(tmp_path / "pt2e.onnx").get("QLinearConv") == 2
    torch.testing.assert_close(_out(runtimes.ort_module(tmp_path / "pt2e.onnx")), _out(q_pt2e), atol=0.05, rtol=0)


def test_calibration_reader_gives_each_batch_once_then_none():
    from onnxruntime.quantization import CalibrationDataReader

    reader = runtimes.CalibrationReader(CALIBRATION)
    assert isinstance(reader, CalibrationDataReader) and len(reader) == 2
    got = [reader.get_next() for _ in range(3)]
    assert got[2] is None and got[0][runtimes.INPUT_NAME].shape == (8, 1, 28, 28)
    reader.rewind()
    assert reader.get_next() is not None


def test_onnx_functions_refuse_bad_arguments(cnn, onnx_files, tmp_path):
    pre = onnx_files / "pre.onnx"
    with pytest.raises(ValueError, match="unknown calibration method"):
        runtimes.quantize_onnx_static(pre, tmp_path / "q.onnx", CALIBRATION, method="mse")
    with pytest.raises(ValueError, match="activations='u8'"):
        runtimes.quantize_onnx_static(pre, tmp_path / "q.onnx", CALIBRATION, activations="u8")
    with pytest.raises(TypeError, match="reduce_range=1"):
        runtimes.quantize_onnx_static(pre, tmp_path / "q.onnx", CALIBRATION, reduce_range=1)
    with pytest.raises(TypeError, match="sequence of batches"):
        runtimes.quantize_onnx_static(pre, tmp_path / "q.onnx", CALIBRATION[0])
    with pytest.raises(FileNotFoundError, match="does not exist"):
        runtimes.quantize_onnx_dynamic(tmp_path / "missing.onnx", tmp_path / "q.onnx")
    with pytest.raises(ValueError, match="at least 2"):
        runtimes.export_onnx(cnn, (X[:1],), tmp_path / "x.onnx")
    with pytest.raises(TypeError, match="one input batch"):
        runtimes.export_onnx(cnn, X, tmp_path / "x.onnx")
    with pytest.raises(ValueError, match="threads=0"):
        runtimes.ort_session(onnx_files / "fp32.onnx", threads=0)
    with pytest.raises(TypeError, match="input_name"):
        runtimes.CalibrationReader(CALIBRATION, input_name="")


# --- ExecuTorch -------------------------------------------------------------------------------------------------------------

@pytest.mark.skipif(runtimes.executorch_version() is None, reason="ExecuTorch is not installed")
def test_executorch_runs_the_xnnpack_int8_program(cnn, tmp_path):
    q = runtimes.quantize_xnnpack(cnn, CALIBRATION, EXAMPLE)
    n = runtimes.save_executorch(q, EXAMPLE, tmp_path / "cnn.pte")
    assert n == (tmp_path / "cnn.pte").stat().st_size
    et = runtimes.executorch_module(tmp_path / "cnn.pte")
    torch.testing.assert_close(_out(et), _out(q), atol=0.05, rtol=0)
    with pytest.raises(ValueError, match="max_batch=1"):
        runtimes.save_executorch(q, EXAMPLE, tmp_path / "x.pte", max_batch=1)
    with pytest.raises(FileNotFoundError):
        runtimes.executorch_module(tmp_path / "missing.pte")


def test_native_logs_silenced_discards_file_descriptor_output_and_restores_it(capfd):
    import os

    import sys

    with bench.native_logs_silenced():
        os.write(2, b"[cpuinfo_utils.cpp:71] Reading file\n")
        os.write(1, b"native stdout\n")
        print("[cpuinfo_utils.cpp:87] through sys.stderr, as pybind11 code may", file=sys.stderr)
    os.write(2, b"after\n")
    print("python after", file=sys.stderr)
    out, err = capfd.readouterr()
    assert "cpuinfo" not in err and "native stdout" not in out and "after" in err and "python after" in err
