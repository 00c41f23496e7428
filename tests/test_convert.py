import copy

import pytest
import torch

from torch import nn

from qhelpers import bench, convert, formats, hardware, models
from qhelpers.convert import DynamicBackend


@pytest.fixture(scope="module")
def mlp() -> nn.Module:
    torch.manual_seed(0)
    return models.MLP(hidden=(64, 32)).eval()


@pytest.fixture(scope="module")
def example() -> torch.Tensor:
    return torch.randn(8, 1, 28, 28, generator=torch.Generator().manual_seed(0))


def test_bytes_per_value_measured():
    assert [formats.bytes_per_value(f) for f in formats.FORMATS] == [4, 2, 2, 1, 0.5]
    with pytest.raises(ValueError, match="unknown format"):
        formats.bytes_per_value("FP8")


def test_format_table_matches_finfo():
    t = formats.format_table()
    assert t.loc["FP16", "max"] == 65504.0
    assert t.loc["BF16", "eps"] == 2**-7 and t.loc["FP16", "eps"] == 2**-10
    assert t.loc["INT8", "min"] == -128 and t.loc["INT4", "max"] == 7


def test_model_size_table(mlp):
    t = formats.model_size_table({"mlp": mlp})
    n = 784 * 64 + 64 + 64 * 32 + 32 + 32 * 10 + 10
    assert t.loc["mlp", "parameters"] == n
    assert t.loc["mlp", "INT4 (MB)"] == pytest.approx(n * 0.5 / 1e6)


def test_relative_cast_error():
    x = torch.tensor([1.0, 70000.0, 1e-9, 1.0 + 2**-9], dtype=torch.float64)
    e16 = formats.relative_cast_error(x, torch.float16)
    assert e16[0] == 0 and torch.isinf(e16[1]) and e16[2] == 1.0
    ebf = formats.relative_cast_error(x, torch.bfloat16)
    assert torch.isfinite(ebf).all() and ebf[3] > 0
    with pytest.raises(ValueError, match="non-zero"):
        formats.relative_cast_error(torch.zeros(2), torch.float16)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_to_dtype_halves_the_payload_and_keeps_the_original(mlp, example, dtype):
    half = convert.to_dtype(mlp, dtype)
    assert all(p.dtype == dtype for p in half.model.parameters())
    assert all(p.dtype == torch.float32 for p in mlp.parameters())
    assert bench.payload_bytes(half.model) * 2 == bench.payload_bytes(mlp)
    out = half(example)
    assert out.dtype == torch.float32
    assert torch.allclose(out, mlp(example), atol=0.05)


def test_autocast_keeps_fp32_weights(mlp, example):
    m = convert.Autocast(mlp, "bf16")
    assert m(example).dtype == torch.float32
    assert bench.payload_bytes(m) == bench.payload_bytes(mlp)
    with pytest.raises(ValueError, match="float16 or torch.bfloat16"):
        convert.Autocast(mlp, torch.int8)


@pytest.mark.parametrize("backend", tuple(DynamicBackend))
def test_dynamic_int8_quantizes_linear_only(mlp, example, backend):
    before = copy.deepcopy(mlp.state_dict())
    q = convert.dynamic_int8(mlp, backend)
    kinds = bench.linear_kinds(q)
    assert len(kinds) == 3
    assert all("float32" not in k for k in kinds.values()), kinds
    # The original is untouched.
    assert all(torch.equal(a, b) for a, b in zip(before.values(), mlp.state_dict().values()))
    # About 4x smaller; outputs close.
    assert bench.payload_bytes(mlp) / bench.payload_bytes(q) > 3.5
    assert bench.state_dict_bytes(mlp) / bench.state_dict_bytes(q) > 3.0
    out = q(example)
    assert out.shape == mlp(example).shape and torch.isfinite(out).all()
    if backend is DynamicBackend.TORCHAO_DYNAMIC and not hardware.onednn_int8_dot():
        return  # torch._int_mm saturates without INT8 dot products (tests/test_hardware.py): outputs may move
    assert torch.allclose(out, mlp(example), atol=0.05)


def test_dynamic_int8_filter_and_convs():
    torch.manual_seed(0)
    m = nn.Sequential(nn.Conv2d(1, 2, 3), nn.Flatten(), nn.Linear(2 * 26 * 26, 8), nn.Linear(8, 4))
    q = convert.dynamic_int8(m, DynamicBackend.TORCHAO_DYNAMIC, filter_fn=lambda mod, fqn: fqn != "3")
    assert type(q[0]) is nn.Conv2d and q[0].weight.dtype == torch.float32
    kinds = bench.linear_kinds(q)
    assert kinds["2"] == "Linear[Int8Tensor]" and kinds["3"] == "Linear[float32]"
    q2 = convert.dynamic_int8(m, DynamicBackend.TORCH_AO, filter_fn=lambda mod, fqn: fqn != "3")
    assert bench.linear_kinds(q2)["2"] == "DynamicQuantizedLinear[qint8]"
    with pytest.raises(TypeError, match="backend must be a DynamicBackend"):
        convert.dynamic_int8(m, "tensorrt")
    with pytest.raises(ValueError, match="unknown backend 'tensorrt'; choose one of DynamicBackend.TORCH_AO"):
        DynamicBackend("tensorrt")
    assert DynamicBackend("torch.ao") is DynamicBackend.TORCH_AO


def test_payload_bytes_looks_inside_torchao_tensors(mlp):
    q = convert.dynamic_int8(mlp, DynamicBackend.TORCHAO_WEIGHT_ONLY)
    # numel * element_size gives the logical float32 size of the subclass: why payload_bytes looks inside.
    naive = sum(v.numel() * v.element_size() for v in q.state_dict().values())
    assert naive == bench.payload_bytes(mlp)
    expected = sum(l.weight.numel() * 1 + l.out_features * (4 + 1) + l.out_features * 4
                   for l in mlp.modules() if isinstance(l, nn.Linear))
    assert bench.payload_bytes(q) == expected
    s = bench.storage(q, only=lambda k: k.startswith("net.1."))
    assert list(s["part"]) == ["qdata", "scale", "zero_point", "-"]
    assert list(s["dtype"]) == ["int8", "float32", "int8", "float32"]


def test_variants_and_table(mlp, example):
    vs = convert.variants(mlp, autocast=True)
    assert list(vs) == ["FP32", "FP16", "BF16", "BF16 autocast", "INT8 dynamic (torch.ao)",
                        "INT8 dynamic (torchao)", "INT8 weight-only (torchao)"]
    t = bench.compare(vs, example, repeats=2)
    assert t.loc["FP32", "size ratio"] == 1.0
    assert t.loc["FP16", "payload (KB)"] * 2 == pytest.approx(t.loc["FP32", "payload (KB)"])
    assert (t["latency (ms)"] > 0).all()
    with pytest.raises(ValueError, match="baseline"):
        bench.compare(vs, example, baseline="FP64")


def test_matmul_latency_runs():
    r = bench.matmul_latency(32, repeats=2)
    assert set(r) == {"FP32", "BF16", "INT8 -> INT32"}
    with pytest.raises(ValueError, match="multiple of 8"):
        bench.matmul_latency(30)


def test_work_by_layer_type_counts_simplecnn():
    from qhelpers.models import SimpleCNN

    w = bench.work_by_layer_type(SimpleCNN(), torch.randn(3, 1, 28, 28))
    assert w["Linear"] == {"parameters": 320 * 50 + 50 + 50 * 10 + 10, "MACs": 320 * 50 + 50 * 10}
    assert w["Conv2d"]["MACs"] == 24 * 24 * 10 * 25 + 8 * 8 * 20 * 250
