import pytest
import torch

from qhelpers.calibration import (
    ClipRange,
    calibrate_range,
    clip_sweep,
    error_breakdown,
    minmax_range,
    mse_range,
    percentile_range,
)
from qhelpers.quant import MappingType, PerChannel, PerTensor, choose_qparams, dequantize, mse, quantize


@pytest.fixture
def outliers() -> torch.Tensor:
    g = torch.Generator().manual_seed(0)
    x = torch.randn(20000, generator=g)
    x[:10] = torch.linspace(20, 40, 10)  # a few large outliers
    return x


def _mse(x, r, bits=8):
    qp = choose_qparams(x, bits, MappingType.ASYMMETRIC, False, **r.as_kwargs())
    return mse(x, dequantize(quantize(x, qp), qp))


def test_minmax_is_the_full_range(outliers):
    r = minmax_range(outliers)
    assert float(r.min_val) == float(outliers.min()) and float(r.max_val) == 40.0
    assert r.min_val.shape == ()


def test_percentile_clips_the_outliers(outliers):
    r = percentile_range(outliers, 99.9)
    assert float(r.max_val) < 5.0
    assert float(r.min_val) < -2.5
    assert percentile_range(outliers, 100).max_val == minmax_range(outliers).max_val


def test_mse_range_beats_minmax_and_percentile_on_outliers(outliers):
    e_mm = _mse(outliers, minmax_range(outliers), bits=4)
    e_opt = _mse(outliers, mse_range(outliers, bits=4), bits=4)
    assert e_opt < 0.5 * e_mm
    assert e_opt <= _mse(outliers, percentile_range(outliers, 99.0), bits=4) * 1.01


def test_mse_range_never_worse_than_minmax_on_gaussian():
    x = torch.randn(5000, generator=torch.Generator().manual_seed(1))
    assert _mse(x, mse_range(x, bits=4), bits=4) <= _mse(x, minmax_range(x), bits=4)


def test_per_channel_ranges_have_one_value_per_channel():
    w = torch.randn(6, 3, 2, 2)
    w[2] *= 10
    for r in (minmax_range(w, PerChannel(0)), percentile_range(w, 99, PerChannel(0)), mse_range(w, 4, granularity=PerChannel(0))):
        assert r.min_val.shape == (6,)
        qp = choose_qparams(w, 8, granularity=PerChannel(0), **r.as_kwargs())
        assert qp.scale.shape == (6,)
    r = minmax_range(w, PerChannel(0))
    assert torch.equal(r.max_val, w.reshape(6, -1).amax(1))


def test_error_breakdown_adds_up_and_separates(outliers):
    a = float(outliers.abs().max())
    narrow = choose_qparams(outliers, 8, MappingType.SYMMETRIC, True, min_val=torch.tensor(-3.0), max_val=torch.tensor(3.0))
    e = error_breakdown(outliers, narrow)
    assert e.clipping_mse > e.rounding_mse > 0
    assert e.total_mse == pytest.approx(mse(outliers, dequantize(quantize(outliers, narrow), narrow)), rel=1e-9)
    assert 0 < e.clipped_fraction < 0.01
    wide = choose_qparams(outliers, 8, MappingType.SYMMETRIC, True, min_val=torch.tensor(-a), max_val=torch.tensor(a))
    assert error_breakdown(outliers, wide).clipping_mse == 0.0
    # Rounding error inside the range is at most (step/2)^2 on average.
    assert e.rounding_mse <= float(narrow.scale) ** 2 / 4


def test_clip_sweep_has_an_interior_minimum(outliers):
    s = clip_sweep(outliers, [f / 40 for f in range(1, 41)], bits=4)
    best = min(range(40), key=lambda i: s["total"][i])
    assert 0 < best < 39
    assert s["clipping"][-1] == 0.0
    assert s["rounding"][0] < s["rounding"][-1]


def test_bad_inputs_give_clear_errors():
    with pytest.raises(ValueError, match="percentile"):
        percentile_range(torch.randn(10), 30)
    with pytest.raises(ValueError, match="unknown calibration method"):
        calibrate_range(torch.randn(10), "kl")
    with pytest.raises(TypeError, match="floating-point"):
        minmax_range(torch.arange(10))
    with pytest.raises(ValueError, match="NaN"):
        mse_range(torch.tensor([1.0, float("nan")]))
    with pytest.raises(ValueError, match="fractions"):
        clip_sweep(torch.randn(10), [])


def test_dispatch_and_str():
    x = torch.randn(100)
    r = calibrate_range(x, "percentile", percentile=99.0)
    assert isinstance(r, ClipRange) and "percentile 99" in str(r)
    assert calibrate_range(x, "minmax").method == "minmax"
    assert calibrate_range(x, "mse", bits=4).method == "mse"


@pytest.mark.parametrize("seed", [0, 7, 18, 22])  # 7, 18, 22: float rounding put max|x| just past the half step
def test_full_range_never_counts_as_clipping(seed):
    # The largest value sits exactly half a step past the symmetric grid's positive end: rounding, not clipping.
    x = torch.randn(1000, generator=torch.Generator().manual_seed(seed))
    s = clip_sweep(x, [1.0], bits=4)
    assert s["clipping"] == [0.0]
