"""qhelpers.bench: sizes, dtype counts and latency on float and quantized models."""

from __future__ import annotations

import pytest
import torch
from torch import nn
from torch.ao.quantization import quantize_dynamic

from qhelpers.bench import compare, count_by_dtype, latency, payload_bytes, state_dict_bytes


def _model() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(256, 256), nn.ReLU(), nn.Linear(256, 10)).eval()


def test_payload_counts_every_tensor_byte():
    m = _model()
    n = sum(p.numel() for p in m.parameters())
    assert payload_bytes(m) == 4 * n
    assert count_by_dtype(m) == {"torch.float32": n}
    assert state_dict_bytes(m) > payload_bytes(m)  # the file adds pickling overhead


def test_quantized_model_payload_is_about_a_quarter():
    m = _model()
    q = quantize_dynamic(m, {nn.Linear}, dtype=torch.qint8)
    counts = count_by_dtype(q)
    assert counts["torch.qint8"] == 256 * 256 + 10 * 256
    assert counts["torch.float32"] == 256 + 10 + 2  # biases stay float; each layer also stores a scale
    assert counts["torch.int64"] == 2  # ... and a zero-point
    assert 3.9 < payload_bytes(m) / payload_bytes(q) < 4.0


def test_latency_reports_ordered_statistics_and_restores_threads():
    torch.set_num_threads(1)
    lat = latency(_model(), torch.randn(8, 256), repeats=20, warmup=2, threads=2)
    assert torch.get_num_threads() == 1
    assert len(lat.samples_ms) == 20 and lat.threads == 2
    assert 0 < lat.p10_ms <= lat.median_ms <= lat.p90_ms
    with pytest.raises(ValueError, match="repeats"):
        latency(_model(), torch.randn(1, 256), repeats=0)


def test_compare_table():
    m = _model()
    q = quantize_dynamic(m, {nn.Linear}, dtype=torch.qint8)
    table = compare({"fp32": m, "int8": q}, torch.randn(4, 256), {"fp32": 0.9, "int8": 0.89}, repeats=5)
    assert list(table.index) == ["fp32", "int8"]
    assert table.loc["fp32", "size ratio"] == 1.0 and table.loc["int8", "size ratio"] > 3.0
    assert table.loc["int8", "accuracy (%)"] == pytest.approx(89.0)
    assert {"latency (ms)", "speedup", "payload (KB)"} <= set(table.columns)


def test_latency_grid_one_row_per_model_and_input():
    from qhelpers.bench import latency_grid

    m = _model()
    grid = latency_grid({"a": m, "b": m}, {"bs1": torch.randn(1, 256), "bs8": torch.randn(8, 256)}, repeats=3, warmup=1)
    assert list(zip(grid.model, grid.input)) == [("a", "bs1"), ("a", "bs8"), ("b", "bs1"), ("b", "bs8")]
    assert ((grid.p10_ms <= grid.median_ms) & (grid.median_ms <= grid.p90_ms)).all()
    with pytest.raises(ValueError, match="at least one model"):
        latency_grid({}, {"bs1": torch.randn(1, 256)})


def test_compile_for_cpu_freezes_and_matches_eager():  # one inductor compilation: ~10 s on 2 cores
    import torch._inductor.config as inductor_config

    from qhelpers.bench import compile_for_cpu

    m = _model()
    compiled = compile_for_cpu(m)
    assert inductor_config.freezing
    x = torch.randn(2, 256)
    with torch.inference_mode():
        assert torch.allclose(compiled(x), m(x), atol=1e-5)
