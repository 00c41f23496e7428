import pytest
import torch

from qhelpers.ranges import (
    ClipRange,
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
    with pytest.raises(TypeError, match="floating-point"):
        minmax_range(torch.arange(10))
    with pytest.raises(ValueError, match="NaN"):
        mse_range(torch.tensor([1.0, float("nan")]))
    with pytest.raises(ValueError, match="fractions"):
        clip_sweep(torch.randn(10), [])


def test_methods_and_str():
    x = torch.randn(100)
    r = percentile_range(x, 99.0)
    assert isinstance(r, ClipRange) and "percentile 99" in str(r)
    assert minmax_range(x).method == "minmax"
    assert mse_range(x, bits=4).method == "mse"


@pytest.mark.parametrize("seed", [0, 7, 18, 22])  # 7, 18, 22: float rounding put max|x| just past the half step
def test_full_range_never_counts_as_clipping(seed):
    # The largest value sits exactly half a step past the symmetric grid's positive end: rounding, not clipping.
    x = torch.randn(1000, generator=torch.Generator().manual_seed(seed))
    s = clip_sweep(x, [1.0], bits=4)
    assert s["clipping"] == [0.0]


# --- bad input: every mistake gets a ValueError/TypeError from qhelpers that says what to do ---------

_X = torch.randn(64, 33, generator=torch.Generator().manual_seed(3))
_QP = choose_qparams(_X[0])
_QPC = choose_qparams(_X, granularity=PerChannel(0))
_NAN = torch.tensor([0.5, float("nan")])

BAD_CALLS = [
    ("minmax-list", lambda: minmax_range([1.0, 2.0]), TypeError, r"x must be a torch.Tensor, got list"),
    ("minmax-empty", lambda: minmax_range(torch.empty(0)), ValueError, r"x is empty"),
    ("minmax-axis-out-of-range", lambda: minmax_range(_X, PerChannel(5)), ValueError, r"PerChannel\(axis=5\) does not fit x of shape \(64, 33\)"),
    ("minmax-granularity-str", lambda: minmax_range(_X, "per_channel"), TypeError, r"granularity must be PerTensor\(\), PerChannel\(axis\) or PerGroup\(size\)"),
    ("minmax-0d-per-channel", lambda: minmax_range(torch.tensor(1.0), PerChannel(0)), ValueError, r"at least one dimension, but x is 0-d"),
    ("percentile-str", lambda: percentile_range(_X, "99"), TypeError, r"percentile must be a number, got str '99'"),
    ("percentile-none", lambda: percentile_range(_X, None), TypeError, r"percentile must be a number, got NoneType"),
    ("percentile-bool", lambda: percentile_range(_X, True), TypeError, r"percentile must be a number, got bool"),
    ("percentile-granularity-in-its-place", lambda: percentile_range(_X, PerChannel(0)), TypeError, r"percentile must be a number, got PerChannel"),
    ("percentile-nan", lambda: percentile_range(_X, float("nan")), ValueError, r"percentile=nan must be in \(50, 100\]"),
    ("percentile-101", lambda: percentile_range(_X, 101), ValueError, r"percentile=101 must be in \(50, 100\]"),
    ("mse-candidates-float", lambda: mse_range(_X, num_candidates=1.5), TypeError, r"num_candidates=1.5 must be an int, not float"),
    ("mse-candidates-bool", lambda: mse_range(_X, num_candidates=True), TypeError, r"num_candidates=True must be an int, not bool"),
    ("mse-candidates-zero", lambda: mse_range(_X, num_candidates=0), ValueError, r"num_candidates=0 must be at least 1"),
    ("mse-fraction-str", lambda: mse_range(_X, min_fraction="0.1"), TypeError, r"min_fraction must be a number, got str"),
    ("mse-fraction-nan", lambda: mse_range(_X, min_fraction=float("nan")), ValueError, r"min_fraction=nan must be in \(0, 1\]"),
    ("mse-bits-bool", lambda: mse_range(_X, bits=True), TypeError, r"bits=True must be an int, not bool"),
    ("mse-bits-1", lambda: mse_range(_X, bits=1), ValueError, r"bits=1 is outside the supported range 2-16"),
    ("mse-mapping-str", lambda: mse_range(_X, mapping="sym"), TypeError, r"mapping must be MappingType"),
    ("mse-signed-str", lambda: mse_range(_X, signed="yes"), TypeError, r"signed must be True or False"),
    ("mse-range-too-wide", lambda: mse_range(torch.tensor([3e38, -3e38, 1.0])), ValueError, r"too wide for float32"),
    ("breakdown-qparams-none", lambda: error_breakdown(_X[0], None), TypeError, r"qparams must be a QParams"),
    ("breakdown-list", lambda: error_breakdown([1.0], _QP), TypeError, r"x must be a torch.Tensor"),
    ("breakdown-nan", lambda: error_breakdown(_NAN, _QP), ValueError, r"x holds 1 NaN/inf value\(s\)"),
    ("breakdown-int", lambda: error_breakdown(torch.arange(5), _QP), TypeError, r"x must be a floating-point tensor"),
    ("breakdown-empty", lambda: error_breakdown(torch.empty(0), _QP), ValueError, r"x is empty"),
    ("breakdown-other-shape", lambda: error_breakdown(_X[:10], _QPC), ValueError, r"qparams hold scales of shape \(64,\) but PerChannel\(axis=0\) on x of shape \(10, 33\)"),
    ("sweep-negative", lambda: clip_sweep(_X, [0.5, -1]), ValueError, r"fractions\[1\]=-1 must be a positive finite number"),
    ("sweep-nan", lambda: clip_sweep(_X, [0.5, float("nan")]), ValueError, r"fractions\[1\]=nan must be a positive finite number"),
    ("sweep-inf", lambda: clip_sweep(_X, [float("inf")]), ValueError, r"fractions\[0\]=inf"),
    ("sweep-str-item", lambda: clip_sweep(_X, [0.5, "1"]), TypeError, r"fractions\[1\] must be a number, got str"),
    ("sweep-str", lambda: clip_sweep(_X, "0.5"), TypeError, r"fractions must be a list of numbers, e\.g\. torch\.linspace\(0\.05, 1, 40\)\.tolist\(\); got str"),
    ("sweep-number", lambda: clip_sweep(_X, 0.5), TypeError, r"fractions must be a list of numbers.*got float"),
    ("sweep-generator", lambda: clip_sweep(_X, (f for f in [0.5])), TypeError, r"fractions must be a list of numbers.*got generator"),
    ("sweep-tensor", lambda: clip_sweep(_X, torch.linspace(0.1, 1, 3)), TypeError, r"fractions must be a list of numbers.*\.tolist\(\).*got a torch.float32 tensor"),
    ("sweep-x-list", lambda: clip_sweep([1.0], [0.5]), TypeError, r"x must be a torch.Tensor"),
    ("sweep-x-empty", lambda: clip_sweep(torch.empty(0), [0.5]), ValueError, r"x is empty"),
    ("sweep-x-nan", lambda: clip_sweep(_NAN, [0.5]), ValueError, r"NaN/inf"),
    ("sweep-mapping-str", lambda: clip_sweep(_X, [0.5], mapping="sym"), TypeError, r"mapping must be MappingType"),
    ("cliprange-float", lambda: ClipRange(1.0, 2.0, "x"), TypeError, r"ClipRange.min_val must be a torch.Tensor, got float 1.0"),
    ("cliprange-nan", lambda: ClipRange(torch.tensor(float("nan")), torch.tensor(1.0), "x"), ValueError, r"ClipRange.min_val holds nan"),
    ("cliprange-reversed", lambda: ClipRange(torch.tensor(2.0), torch.tensor(1.0), "x"), ValueError, r"min_val \(2\) exceeds max_val \(1\)"),
    ("cliprange-shapes", lambda: ClipRange(torch.zeros(2), torch.tensor(1.0), "x"), ValueError, r"ClipRange.min_val \(shape \(2,\)\) and max_val \(shape \(\)\) must have the same shape"),
    ("cliprange-method", lambda: ClipRange(torch.tensor(0.0), torch.tensor(1.0), 5), TypeError, r"ClipRange.method must be a str"),
    ("per-channel-range-under-per-tensor", lambda: choose_qparams(_X, **minmax_range(_X, PerChannel(0)).as_kwargs()), ValueError, r"min_val has shape \(64,\) but PerTensor\(\) takes one range"),
]


@pytest.mark.parametrize("call,exc,match", [c[1:] for c in BAD_CALLS], ids=[c[0] for c in BAD_CALLS])
def test_bad_input_gives_a_clear_error(call, exc, match):
    with pytest.raises(exc, match=match) as info:
        call()
    assert type(info.value) is exc
    assert "/qhelpers/" in info.traceback[-1].path.as_posix()  # raised by qhelpers itself, not inside torch


def test_other_float_dtypes_calibrate_like_float32():
    """float16/bfloat16/float64 input: ranges taken in float32, as choose_qparams does (float16/bfloat16 widen exactly)."""
    for dtype in (torch.float16, torch.bfloat16, torch.float64):
        x = _X.to(dtype)
        for method in (minmax_range, percentile_range, mse_range):
            r, ref = method(x), method(x.float())
            assert torch.equal(r.min_val, ref.min_val) and torch.equal(r.max_val, ref.max_val)
        assert error_breakdown(x, choose_qparams(x, 4)) == error_breakdown(x.float(), choose_qparams(x, 4))


# --- the MSE rule as torch.ao observers ---------------------------------------------------------------

from torch.ao.quantization.observer import MinMaxObserver, PerChannelMinMaxObserver  # noqa: E402

from qhelpers.ranges import MSEObserver, PerChannelMSEObserver  # noqa: E402


def _fq_mse(x, scale, zp, qmin, qmax):
    return float(((torch.fake_quantize_per_tensor_affine(x, float(scale), int(zp), qmin, qmax) - x) ** 2).mean())


@pytest.mark.parametrize("bits", [2, 3, 4, 8])
def test_mse_observer_beats_minmax_on_its_own_grid(outliers, bits):
    kw = dict(quant_min=0, quant_max=2**bits - 1, dtype=torch.quint8, qscheme=torch.per_tensor_affine)
    mse_obs, mm_obs = MSEObserver(**kw), MinMaxObserver(**kw)
    for chunk in outliers.split(5000):  # several calibration batches
        mse_obs(chunk)
        mm_obs(chunk)
    (s, z), (s0, z0) = mse_obs.calculate_qparams(), mm_obs.calculate_qparams()
    assert _fq_mse(outliers, s, z, 0, 2**bits - 1) < _fq_mse(outliers, s0, z0, 0, 2**bits - 1)
    assert float(s) < float(s0)  # it clipped the outliers: a finer step
    assert 0 <= int(z) <= 2**bits - 1


def test_mse_observer_matches_mse_range(outliers):
    """The observer and chapter 01's mse_range try the same shrinkings on the same 3-bit grid: same range."""
    obs = MSEObserver(quant_min=0, quant_max=7, dtype=torch.quint8, qscheme=torch.per_tensor_affine)
    obs(outliers[:20000])  # fewer values than its sample size: the observer sees them all
    scale, _ = obs.calculate_qparams()
    r = mse_range(outliers, bits=3)
    assert float(scale) == pytest.approx((float(r.max_val) - float(r.min_val)) / 7, rel=1e-4)


def test_mse_observer_keeps_minmax_when_nothing_to_clip():
    x = torch.arange(8.0) / 4  # exactly the 3-bit grid of [0, 1.75] (scale 0.25, zero-point 0): min/max has no error
    obs = MSEObserver(quant_min=0, quant_max=7, dtype=torch.quint8, qscheme=torch.per_tensor_affine)
    obs(x)
    scale, zero_point = obs.calculate_qparams()
    assert float(scale) == pytest.approx(0.25) and int(zero_point) == 0


def test_per_channel_mse_observer_one_range_per_channel():
    g = torch.Generator().manual_seed(1)
    w = torch.randn(6, 3, 5, 5, generator=g) * torch.arange(1, 7).view(6, 1, 1, 1)
    w[0, 0, 0, 0] = 6.0  # a mild outlier in channel 0
    kw = dict(quant_min=-3, quant_max=3, dtype=torch.qint8, qscheme=torch.per_channel_symmetric, ch_axis=0)
    obs, mm = PerChannelMSEObserver(**kw), PerChannelMinMaxObserver(**kw)
    obs(w)
    mm(w)
    (s, z), (s0, _) = obs.calculate_qparams(), mm.calculate_qparams()
    assert s.shape == (6,) and torch.all(z == 0)
    assert torch.all(s <= s0) and bool((s < s0).any())
    err = lambda sc: ((torch.fake_quantize_per_channel_affine(w, sc.float(), z.int(), 0, -3, 3) - w) ** 2).mean()  # noqa: E731
    assert err(s) < err(s0)
