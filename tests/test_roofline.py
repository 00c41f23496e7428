"""qhelpers.roofline and runtimes' MatMulNBits helpers (chapter 08): small widths, every path against the FP32 stack."""

from __future__ import annotations

import pytest
import torch

from qhelpers import roofline, runtimes


@pytest.fixture(scope="module")
def stack():
    return roofline.linear_stack(128, 2, seed=1)


def test_cache_sizes_read_sysfs(tmp_path):
    for i, (level, kind, size) in enumerate([("1", "Data", "32K"), ("1", "Instruction", "32K"), ("2", "Unified", "1024K"),
                                             ("3", "Unified", "32M")]):
        d = tmp_path / f"index{i}"
        d.mkdir()
        (d / "level").write_text(level)
        (d / "type").write_text(kind)
        (d / "size").write_text(size)
    assert roofline.cache_sizes(tmp_path) == {"L1": 32768, "L2": 1 << 20, "L3": 32 << 20}
    assert roofline.cache_sizes(tmp_path / "missing") == {}


def test_bandwidth_and_roofline():
    bw = roofline.read_bandwidth(8, repeats=3)
    assert bw > 0.1
    assert roofline.roofline_ms(20e6, 20.0) == pytest.approx(1.0)
    assert roofline.roofline_share(20e6, 2.0, 20.0) == pytest.approx(0.5)


def test_stack_is_seeded_and_checked(stack):
    assert torch.equal(stack[0].weight, roofline.linear_stack(128, 2, seed=1)[0].weight)
    assert len(roofline.stack_weights(stack)) == 2
    with pytest.raises(TypeError, match="width"):
        roofline.linear_stack("128", 2)
    with pytest.raises(ValueError, match="depth"):
        roofline.linear_stack(128, 0)
    with pytest.raises(TypeError, match="plain nn.Linear"):
        roofline.stack_weights(torch.nn.Sequential(torch.nn.ReLU()))


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_aten_steps_follow_the_fp32_stack(stack, dtype):
    x = torch.randn(1, 128, generator=torch.Generator().manual_seed(0))
    ref = stack(x)
    for step, bytes_per_weight, tol in ((roofline.aten_int8_step(stack, dtype), 1.0, 0.05),
                                        (roofline.aten_int4_step(stack, 64, dtype), 0.5, 0.3)):
        assert step.dtype is dtype
        out = step.fn(x.to(dtype)).float()
        assert float((out - ref).norm() / ref.norm()) < tol
        assert step.nbytes >= bytes_per_weight * 2 * 128 * 128


def test_int_grids():
    w = torch.randn(16, 128)
    q, s = roofline.int8_per_row(w)
    assert q.dtype == torch.int8 and s.shape == (16,)
    assert (q.float() * s[:, None] - w).abs().max() <= s.max() / 2 + 1e-6
    q4, sz = roofline.int4_tinygemm(w, 64)
    assert q4.min() >= 0 and q4.max() <= 15 and sz.shape == (2, 16, 2)
    deq = ((q4.reshape(16, 2, 64).float() - 8) * sz[..., 0].T[..., None] + sz[..., 1].T[..., None]).reshape(16, 128)
    assert (deq - w).abs().max() <= sz[..., 0].max() / 2 + 1e-5
    with pytest.raises(ValueError, match="32, 64, 128 or 256"):
        roofline.int4_tinygemm(w, 48)
    with pytest.raises(TypeError, match="float32 or torch.bfloat16"):
        roofline.aten_int8_step(roofline.linear_stack(64, 1), torch.float16)


def test_torchao_stack(stack):
    x = torch.randn(1, 128)
    m = roofline.torchao_stack(stack, "int8-weight-only")
    assert float((m(x) - stack(x)).norm() / stack(x).norm()) < 0.05
    step = roofline.module_step(m)
    assert step.nbytes < 4 * 2 * 128 * 128 / 3
    with pytest.raises(ValueError, match="choose one of"):
        roofline.torchao_stack(stack, "int3")


@pytest.mark.parametrize("bits, level", [(4, 0), (4, 4), (8, 0), (8, 4)])
def test_matmul_nbits(stack, bits, level):
    model = runtimes.onnx_linear_stack(roofline.stack_weights(stack))
    q = runtimes.quantize_matmul_nbits(model, bits=bits, block_size=64 if bits == 4 else 128, accuracy_level=level)
    assert sum(n.op_type == "MatMulNBits" for n in q.graph.node) == 2
    assert runtimes.initializer_bytes(q) < runtimes.initializer_bytes(model) * (bits + 2) / 32
    x = torch.randn(1, 128)
    out = torch.from_numpy(runtimes.ort_session(q, threads=1).run(None, {"x": x.numpy()})[0])
    assert float((out - stack(x)).norm() / stack(x).norm()) < (0.3 if bits == 4 else 0.05)


def test_matmul_nbits_bad_input(stack):
    model = runtimes.onnx_linear_stack(roofline.stack_weights(stack))
    with pytest.raises(ValueError, match="bits=3"):
        runtimes.quantize_matmul_nbits(model, bits=3)
    with pytest.raises(ValueError, match="power of 2"):
        runtimes.quantize_matmul_nbits(model, block_size=48)
    with pytest.raises(ValueError, match="accuracy_level"):
        runtimes.quantize_matmul_nbits(model, accuracy_level=5)
    with pytest.raises(TypeError, match="onnx.ModelProto"):
        runtimes.quantize_matmul_nbits("model.onnx")
    with pytest.raises(ValueError, match="takes 64 inputs"):
        runtimes.onnx_linear_stack([torch.randn(32, 16), torch.randn(16, 64)])
    with pytest.raises(TypeError, match="non-empty list"):
        runtimes.onnx_linear_stack([])


def test_top_ops_names_the_kernel(stack):
    step = roofline.aten_int4_step(stack, 64)
    rows = roofline.top_ops(step.fn, torch.randn(1, 128).bfloat16(), steps=2, top=2)
    assert rows[0]["op"] == "aten::_weight_int4pack_mm_for_cpu" and rows[0]["calls per step"] == 2
    assert 0 < rows[0]["share"] <= 1
    with pytest.raises(TypeError, match="function of one tensor"):
        roofline.top_ops("model", torch.randn(1, 128))
