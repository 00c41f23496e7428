"""Bad input to qhelpers.quant: every mistake gets a ValueError/TypeError that names it and says what to do.

One row per check: (id, call, exception, message pattern). The calibration module's checks are in
test_calibration.py.
"""

from __future__ import annotations

import math

import pytest
import torch
from torch.ao.quantization import MinMaxObserver

from qhelpers.quant import (
    EPS,
    MappingType,
    PerChannel,
    PerGroup,
    PerTensor,
    QParams,
    choose_qparams,
    dequantize,
    fake_quantize,
    max_abs_error,
    mse,
    quant_range,
    quantize,
    sqnr_db,
)

SYM, ASYM = MappingType.SYMMETRIC, MappingType.ASYMMETRIC
T = torch.tensor
X = torch.randn(64, 33, generator=torch.Generator().manual_seed(0))
X1 = X[0]
QP = choose_qparams(X1)
QPC = choose_qparams(X, granularity=PerChannel(0))
QPG = choose_qparams(X[:, :32], 4, SYM, True, PerGroup(8))
NAN, INF = float("nan"), float("inf")


def qparams(scale=T(0.1), zero_point=T(0), quant_min=0, quant_max=255, granularity=PerTensor()):
    return lambda: QParams(scale, zero_point, quant_min, quant_max, granularity)


CASES = [
    # quant_range: bits and signed
    ("signed-str", lambda: quant_range(8, "yes"), TypeError, r"signed must be True or False, got str 'yes'"),
    ("signed-int", lambda: quant_range(8, 1), TypeError, r"signed must be True or False, got int 1"),
    ("signed-none", lambda: choose_qparams(X1, 8, SYM, None), TypeError, r"signed must be True or False"),
    ("bits-none", lambda: quant_range(None, True), TypeError, r"bits=None must be an int, not NoneType; pick one from 2 to 16"),
    # MappingType and mapping=
    ("mapping-name", lambda: MappingType("sym"), ValueError, r"unknown mapping 'sym': use MappingType.SYMMETRIC"),
    ("mapping-str", lambda: choose_qparams(X1, 8, "symmetric"), TypeError, r"mapping must be MappingType.SYMMETRIC or MappingType.ASYMMETRIC, got str"),
    # PerChannel / PerGroup / granularity
    ("axis-bool", lambda: PerChannel(True), TypeError, r"PerChannel axis=True must be an int, not bool; e.g. PerChannel\(0\)"),
    ("axis-float", lambda: PerChannel(1.0), TypeError, r"PerChannel axis=1.0 must be an int, not float"),
    ("axis-none", lambda: PerChannel(None), TypeError, r"PerChannel axis=None must be an int, not NoneType"),
    ("axis-too-big", lambda: choose_qparams(X, granularity=PerChannel(2)), ValueError, r"PerChannel\(axis=2\) does not fit x of shape \(64, 33\) \(2 dimension\(s\)\); use an axis from -2 to 1"),
    ("axis-too-negative", lambda: choose_qparams(X, granularity=PerChannel(-3)), ValueError, r"PerChannel\(axis=-3\) does not fit"),
    ("axis-0d", lambda: choose_qparams(T(1.5), granularity=PerChannel(0)), ValueError, r"needs a tensor with at least one dimension, but x is 0-d; use PerTensor\(\)"),
    ("group-float", lambda: PerGroup(4.0), TypeError, r"PerGroup group_size=4.0 must be an int, not float; e.g. PerGroup\(32\)"),
    ("group-bool", lambda: PerGroup(True), TypeError, r"PerGroup group_size=True must be an int, not bool"),
    ("group-zero", lambda: PerGroup(0), ValueError, r"PerGroup group_size must be at least 1, got 0"),
    ("group-negative", lambda: PerGroup(-8), ValueError, r"PerGroup group_size must be at least 1, got -8"),
    ("group-not-dividing", lambda: choose_qparams(X, granularity=PerGroup(5)), ValueError, r"PerGroup\(group_size=5\) needs the last dimension of x \(shape \(64, 33\)\) to be a multiple of 5; pick a group size that divides 33"),
    ("group-0d", lambda: choose_qparams(T(1.5), granularity=PerGroup(2)), ValueError, r"PerGroup\(group_size=2\) needs a tensor with at least one dimension"),
    ("granularity-class", lambda: choose_qparams(X, granularity=PerChannel), TypeError, r"granularity must be PerTensor\(\), PerChannel\(axis\) or PerGroup\(size\).*a class: call it, PerChannel\(...\)"),
    ("granularity-str", lambda: choose_qparams(X, granularity="per_channel"), TypeError, r"granularity must be .*got str 'per_channel'"),
    # x itself
    ("x-none", lambda: choose_qparams(None), TypeError, r"x must be a torch.Tensor, got NoneType None; wrap it"),
    ("x-complex", lambda: choose_qparams(torch.randn(4, dtype=torch.complex64)), TypeError, r"x is complex \(torch.complex64\).*x.real"),
    ("x-quantized", lambda: choose_qparams(torch.quantize_per_tensor(X1, 0.1, 128, torch.quint8)), TypeError, r"x is a PyTorch quantized tensor \(torch.quint8\); pass x.dequantize\(\)"),
    ("x-empty-2d", lambda: choose_qparams(torch.empty(3, 0)), ValueError, r"x is empty \(shape \(3, 0\)\)"),
    ("x-float64-beyond-float32", lambda: choose_qparams(T([1e39, 1.0], dtype=torch.float64)), ValueError, r"x holds values beyond float32's range \(largest \|value\| 1e\+39 > 3.4e38\)"),
    # min_val / max_val
    ("min-nan", lambda: choose_qparams(X1, min_val=T(NAN), max_val=T(1.0)), ValueError, r"min_val holds nan: a clipping range must be finite"),
    ("max-nan-alone", lambda: choose_qparams(X1, max_val=T(NAN)), ValueError, r"max_val holds nan"),
    ("min-minus-inf", lambda: choose_qparams(X1, min_val=-INF, max_val=1.0), ValueError, r"min_val holds -inf"),
    ("max-inf-in-channel", lambda: choose_qparams(X, granularity=PerChannel(0), min_val=-torch.ones(64), max_val=torch.ones(64).index_fill(0, T([7]), INF)), ValueError, r"max_val holds inf at index \(7,\)"),
    ("per-column-under-per-tensor", lambda: choose_qparams(X, min_val=X.amin(0), max_val=X.amax(0)), ValueError, r"min_val has shape \(33,\) but PerTensor\(\) takes one range.*granularity=PerChannel\(axis\)"),
    ("per-channel-wrong-length", lambda: choose_qparams(X, granularity=PerChannel(0), min_val=-torch.ones(5), max_val=torch.ones(5)), ValueError, r"min_val has 5 value\(s\) \(shape \(5,\)\) but PerChannel\(axis=0\) on x of shape \(64, 33\) takes 64"),
    ("per-channel-scalar", lambda: choose_qparams(X, granularity=PerChannel(1), min_val=-1.0, max_val=1.0), ValueError, r"min_val has 1 value\(s\) .* takes 33"),
    ("per-group-transposed", lambda: choose_qparams(X[:, :32], 4, SYM, True, PerGroup(8), min_val=-torch.ones(4, 64), max_val=torch.ones(4, 64)), ValueError, r"shape \(4, 64\)\) but PerGroup\(group_size=8\) .* \(shape \(64, 4\)\)"),
    ("min-above-max", lambda: choose_qparams(X1, min_val=T(2.0), max_val=T(1.0)), ValueError, r"min_val \(2\) exceeds max_val \(1\): a range needs min_val <= max_val"),
    ("min-above-max-in-channel", lambda: choose_qparams(X, granularity=PerChannel(0), min_val=torch.full((64,), -1.0).index_fill(0, T([5]), 3.0), max_val=torch.ones(64)), ValueError, r"min_val \(3\) exceeds max_val \(1\) at index \(5,\)"),
    ("min-str", lambda: choose_qparams(X1, min_val="0", max_val=1.0), TypeError, r"min_val must be a number or a real tensor, got str '0'"),
    ("min-list", lambda: choose_qparams(X1, min_val=[0.0], max_val=1.0), TypeError, r"min_val must be a number or a real tensor, got list"),
    ("min-bool-tensor", lambda: choose_qparams(X1, min_val=T(True), max_val=1.0), TypeError, r"got a torch.bool tensor of shape \(\)"),
    ("min-empty", lambda: choose_qparams(X1, min_val=torch.empty(0), max_val=1.0), ValueError, r"min_val is empty"),
    # a range whose scale or grid overflows float32
    ("overflow-asymmetric", lambda: choose_qparams(T([3e38, -3e38, 1.0])), ValueError, r"the range \[-3e\+38, 3e\+38\] is too wide for float32.*8-bit grid overflow 3.4e38.*x / 1e30"),
    ("overflow-symmetric-grid-end", lambda: choose_qparams(T([3.4e38, -3.4e38]), 8, SYM, True), ValueError, r"too wide for float32"),
    ("overflow-given-range", lambda: choose_qparams(X1, 4, min_val=-3e38, max_val=3e38), ValueError, r"4-bit grid"),
    ("overflow-one-channel", lambda: choose_qparams(X, granularity=PerChannel(0), min_val=-torch.ones(64).index_fill(0, T([9]), 3e38), max_val=torch.ones(64).index_fill(0, T([9]), 3e38)), ValueError, r"at index \(9,\) is too wide"),
    # QParams built by hand
    ("scale-zero", qparams(scale=T(0.0)), ValueError, r"QParams.scale must be finite and at least 1.19e-07 \(float32 eps.*got 0; get qparams from choose_qparams"),
    ("scale-nan", qparams(scale=T(NAN)), ValueError, r"QParams.scale must be finite .* got nan"),
    ("scale-inf", qparams(scale=T(INF)), ValueError, r"QParams.scale must be finite .* got inf"),
    ("scale-negative", qparams(scale=T(-0.1)), ValueError, r"got -0.1"),
    ("scale-subnormal", qparams(scale=T(1e-40)), ValueError, r"at least 1.19e-07.* got 1e-40|at least 1.19e-07.* got 9.9"),
    ("scale-below-eps", qparams(scale=T(EPS / 2)), ValueError, r"at least 1.19e-07"),
    ("scale-bad-channel", qparams(scale=torch.full((4,), 0.1).index_fill(0, T([2]), 0.0), zero_point=torch.zeros(4, dtype=torch.long), granularity=PerChannel(0)), ValueError, r"got 0 at index \(2,\)"),
    ("scale-grid-overflows", qparams(scale=T(1e38)), ValueError, r"QParams: scale 1e\+38 puts the grid's ends beyond float32's range"),
    ("scale-python-float", qparams(scale=0.1), TypeError, r"QParams.scale must be a torch.Tensor, got float 0.1; wrap it: torch.tensor\(0.1\)"),
    ("scale-int-tensor", qparams(scale=T(1)), TypeError, r"QParams.scale must be a floating-point tensor, got dtype torch.int64"),
    ("scale-empty", qparams(scale=torch.empty(0), zero_point=torch.empty(0, dtype=torch.long)), ValueError, r"must have the same, non-empty shape"),
    ("zero-point-python-int", qparams(zero_point=0), TypeError, r"QParams.zero_point must be a torch.Tensor, got int 0"),
    ("zero-point-float", qparams(zero_point=T(3.5)), TypeError, r"QParams.zero_point must be an integer tensor, got dtype torch.float32.*\.round\(\)\.long\(\)"),
    ("zero-point-bool", qparams(zero_point=T(True)), TypeError, r"QParams.zero_point must be an integer tensor, got dtype torch.bool"),
    ("zero-point-above", qparams(zero_point=T(300)), ValueError, r"QParams.zero_point=300 is outside \[quant_min, quant_max\] = \[0, 255\]"),
    ("zero-point-below", qparams(zero_point=T(-1)), ValueError, r"QParams.zero_point=-1 is outside"),
    ("zero-point-shape", qparams(scale=torch.full((4,), 0.1), zero_point=torch.zeros(3, dtype=torch.long), granularity=PerChannel(0)), ValueError, r"QParams.scale \(shape \(4,\)\) and zero_point \(shape \(3,\)\) must have the same"),
    ("min-above-max-ints", qparams(zero_point=T(7), quant_min=10, quant_max=5), ValueError, r"quant_min=10, quant_max=5 is not a grid of at most 16 bits: need quant_min < quant_max"),
    ("min-equals-max", qparams(zero_point=T(5), quant_min=5, quant_max=5), ValueError, r"quant_min=5, quant_max=5 is not a grid"),
    ("grid-of-20-bits", qparams(quant_max=2**20 - 1), ValueError, r"quant_max=1048575 is not a grid of at most 16 bits"),
    ("grid-of-17-bits-in-range", qparams(quant_min=-(2**15), quant_max=2**16 - 1), ValueError, r"is not a grid of at most 16 bits"),
    ("quant-min-float", qparams(quant_min=0.0), TypeError, r"QParams.quant_min=0.0 must be an int, not float"),
    ("quant-max-bool", qparams(quant_max=True), TypeError, r"QParams.quant_max=True must be an int, not bool"),
    ("per-tensor-three-scales", qparams(scale=torch.full((3,), 0.1), zero_point=torch.zeros(3, dtype=torch.long)), ValueError, r"PerTensor\(\) takes one scale, got shape \(3,\)"),
    ("per-channel-2d-scales", qparams(scale=torch.full((4, 1), 0.1), zero_point=torch.zeros(4, 1, dtype=torch.long), granularity=PerChannel(0)), ValueError, r"takes one scale per channel \(shape \(C,\)\), got shape \(4, 1\)"),
    ("granularity-str-in-qparams", qparams(granularity="per_tensor"), TypeError, r"granularity must be PerTensor\(\)"),
    # quantize / dequantize / fake_quantize
    ("qparams-none", lambda: quantize(X1, None), TypeError, r"qparams must be a QParams \(from choose_qparams\), got NoneType None"),
    ("qparams-tuple", lambda: fake_quantize(X1, (QP.scale, QP.zero_point)), TypeError, r"qparams must be a QParams .* got tuple"),
    ("quantize-complex", lambda: quantize(torch.randn(3, dtype=torch.complex64), QP), TypeError, r"x is complex"),
    ("quantize-empty", lambda: quantize(torch.empty(0), QP), ValueError, r"x is empty"),
    ("per-channel-qparams-other-shape", lambda: quantize(X[:10], QPC), ValueError, r"qparams hold scales of shape \(64,\) but PerChannel\(axis=0\) on x of shape \(10, 33\) needs shape \(10,\)"),
    ("per-channel-qparams-transposed", lambda: fake_quantize(X.T, QPC), ValueError, r"needs shape \(33,\)"),
    ("per-channel-axis-missing", lambda: quantize(torch.randn(33), choose_qparams(X, granularity=PerChannel(1))), ValueError, r"PerChannel\(axis=1\) does not fit x of shape \(33,\)"),
    ("per-group-qparams-other-shape", lambda: quantize(torch.randn(64, 64), QPG), ValueError, r"qparams hold scales of shape \(64, 4\) but PerGroup\(group_size=8\) on x of shape \(64, 64\) needs shape \(64, 8\)"),
    ("dequantize-floats", lambda: dequantize(X1, QP), TypeError, r"q must hold integer codes \(from quantize\), got dtype torch.float32; to snap float values to the grid use fake_quantize"),
    ("dequantize-bool", lambda: dequantize(torch.ones(3, dtype=torch.bool), QP), TypeError, r"got dtype torch.bool"),
    ("dequantize-list", lambda: dequantize([1, 2], QP), TypeError, r"q must be a tensor of integer codes"),
    ("dequantize-empty", lambda: dequantize(torch.empty(0, dtype=torch.int32), QP), ValueError, r"q is empty"),
    ("dequantize-quantized", lambda: dequantize(torch.quantize_per_tensor(X1, 0.1, 128, torch.quint8), QP), TypeError, r"q is a PyTorch quantized tensor.*q.int_repr\(\)"),
    ("dequantize-code-above", lambda: dequantize(T([0, 300]), QP), ValueError, r"q holds codes from 0 to 300, outside the grid \[0, 255\]: were they quantized with other qparams\?"),
    ("dequantize-code-below", lambda: dequantize(T([-5, 3]), QP), ValueError, r"codes from -5 to 3"),
    ("dequantize-qparams-other-shape", lambda: dequantize(quantize(X, QPC)[:10], QPC), ValueError, r"on q of shape \(10, 33\) needs shape \(10,\)"),
    # error metrics
    ("mse-broadcast", lambda: mse(torch.zeros(4, 1), torch.arange(4.0).reshape(1, 4)), ValueError, r"x has shape \(4, 1\) but x_hat has shape \(1, 4\): the metrics compare element by element and do not broadcast"),
    ("max-abs-broadcast", lambda: max_abs_error(torch.zeros(3), torch.ones(1)), ValueError, r"do not broadcast"),
    ("sqnr-broadcast", lambda: sqnr_db(torch.ones(3), torch.ones(1)), ValueError, r"do not broadcast"),
    ("mse-empty", lambda: mse(torch.empty(0), torch.empty(0)), ValueError, r"x is empty"),
    ("sqnr-empty", lambda: sqnr_db(torch.empty(0), torch.empty(0)), ValueError, r"x is empty"),
    ("max-abs-empty", lambda: max_abs_error(torch.empty(2, 0), torch.empty(2, 0)), ValueError, r"x is empty"),
    ("mse-list", lambda: mse([1.0], [1.0]), TypeError, r"x must be a torch.Tensor, got list"),
    ("mse-none", lambda: mse(X1, None), TypeError, r"x_hat must be a torch.Tensor, got NoneType"),
    ("sqnr-nan", lambda: sqnr_db(torch.ones(3), T([1.0, NAN, 1.0])), ValueError, r"x_hat holds 1 NaN/inf value\(s\)"),
    ("mse-inf", lambda: mse(T([1.0, INF]), torch.ones(2)), ValueError, r"x holds 1 NaN/inf value\(s\)"),
    ("mse-complex", lambda: mse(torch.ones(3, dtype=torch.complex64), torch.ones(3, dtype=torch.complex64)), TypeError, r"x is complex"),
    ("sqnr-int-codes", lambda: sqnr_db(X1, quantize(X1, QP)), TypeError, r"x_hat holds torch.int32 values, not floats: if they are codes from quantize\(\), compare dequantize\(q, qparams\)"),
    ("mse-bool", lambda: mse(torch.ones(3, dtype=torch.bool), torch.ones(3, dtype=torch.bool)), TypeError, r"x holds torch.bool values, not floats"),
]


@pytest.mark.parametrize("call,exc,match", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_bad_input_gives_a_clear_error(call, exc, match):
    with pytest.raises(exc, match=match) as info:
        call()
    assert type(info.value) is exc  # not a subclass raised from deeper inside torch
    assert "/qhelpers/" in info.traceback[-1].path.as_posix()  # raised by qhelpers itself


# --- what is accepted, and how ----------------------------------------------------------------------

def test_bits_property_never_raises():
    assert QParams(T(0.1), T(0), -4, 3).bits == 3
    assert QParams(T(0.1), T(0), 0, 255).bits == 8
    assert QParams(T(0.1), T(0), 0, 9).bits == 4  # 10 levels need 4 bits
    assert QParams(T(0.1), T(0), 0, 1).bits == 1


def test_observer_qparams_can_be_used_as_they_come():
    """An observer's (1,)-shaped float32 scale and int32 zero-point, and int_repr's uint8 codes, are accepted."""
    obs = MinMaxObserver()
    obs(X1)
    scale, zp = obs.calculate_qparams()
    qp = QParams(scale, zp, 0, 255)
    codes = torch.quantize_per_tensor(X1, float(scale), int(zp), torch.quint8).int_repr()
    assert torch.equal(quantize(X1, qp), codes.int())
    assert torch.equal(dequantize(codes, qp), dequantize(quantize(X1, qp), qp))


def test_numbers_and_int_tensors_as_range_ends():
    ref = choose_qparams(X1, min_val=T(-1.0), max_val=T(2.0))
    for lo, hi in [(-1.0, 2.0), (-1, 2), (T(-1), T(2)), (T([-1.0]), T([2.0]))]:
        qp = choose_qparams(X1, min_val=lo, max_val=hi)
        assert torch.equal(qp.scale, ref.scale) and torch.equal(qp.zero_point, ref.zero_point)
        assert qp.scale.shape == ()


def test_negative_axis_counts_from_the_end():
    a, b = choose_qparams(X, granularity=PerChannel(-1)), choose_qparams(X, granularity=PerChannel(1))
    assert torch.equal(a.scale, b.scale)
    assert torch.equal(quantize(X, a), quantize(X, b))


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float64])
def test_other_float_dtypes_are_accepted(dtype):
    """The range is taken in float32 (float16/bfloat16 widen exactly); fake_quantize keeps x's dtype."""
    x = X.to(dtype)
    qp = choose_qparams(x, 4)
    assert torch.equal(qp.scale, choose_qparams(x.float(), 4).scale)
    assert fake_quantize(x, qp).dtype == dtype and quantize(x, qp).dtype == torch.int32
    assert math.isfinite(sqnr_db(x, fake_quantize(x, qp)))


def test_sqnr_of_no_signal():
    assert sqnr_db(torch.zeros(5), torch.full((5,), 0.1)) == -math.inf  # only noise
    assert sqnr_db(torch.zeros(5), torch.zeros(5)) == math.inf  # exact
