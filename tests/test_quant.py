"""qhelpers.quant against PyTorch's own kernels, bit for bit, over a grid of cases.

bits x mapping x signedness x granularity x input tensor (random and awkward).
"""

from __future__ import annotations

import math

import pytest
import torch
from torch.ao.quantization import MinMaxObserver, PerChannelMinMaxObserver

from qhelpers.quant import (
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


def _tensor(kind: str) -> torch.Tensor:
    g = torch.Generator().manual_seed(sum(map(ord, kind)))
    if kind == "normal":
        return torch.randn(64, 33, generator=g) * 0.7 + 0.1
    if kind == "uniform-positive":
        return torch.rand(64, 33, generator=g) * 5 + 0.5
    if kind == "uniform-negative":
        return -torch.rand(64, 33, generator=g) * 3 - 0.25
    if kind == "outliers":
        x = torch.randn(64, 33, generator=g) * 0.05
        x[3, 7], x[40, 2] = 12.0, -7.5
        return x
    if kind == "constant":
        return torch.full((64, 33), 0.37)
    if kind == "all-zero":
        return torch.zeros(64, 33)
    if kind == "huge-range":
        return torch.randn(64, 33, generator=g) * 1e30
    if kind == "tiny":
        return torch.randn(64, 33, generator=g) * 1e-9
    if kind == "single":
        return torch.tensor([[-1.2345]])
    if kind == "ties":
        # values exactly halfway between grid points of scale 1/16 (exact in float32)
        k = torch.arange(-40, 40, dtype=torch.float32)
        return ((k + 0.5) / 16).reshape(80, 1).repeat(1, 3)
    raise ValueError(kind)


KINDS = ["normal", "uniform-positive", "uniform-negative", "outliers", "constant", "all-zero",
         "huge-range", "tiny", "single", "ties"]
MAPPINGS = [SYM, ASYM]


def _observer_qparams(x, bits, mapping, signed, axis=None):
    # 8 and 16 bits: the observers' own dtypes and default ranges; other widths: a customized quant_min/quant_max
    qmin, qmax = quant_range(bits, signed) if bits not in (8, 16) else (None, None)
    if bits == 16:
        dtype = torch.int16 if signed else torch.uint16
    else:  # qint8 refuses a custom range wider than 8 bits: use qint32 for signed 12 bits
        dtype = (torch.qint8 if bits <= 8 else torch.qint32) if signed else torch.quint8
    if axis is None:
        scheme = torch.per_tensor_symmetric if mapping is SYM else torch.per_tensor_affine
        obs = MinMaxObserver(dtype=dtype, qscheme=scheme, quant_min=qmin, quant_max=qmax)
    else:
        scheme = torch.per_channel_symmetric if mapping is SYM else torch.per_channel_affine
        obs = PerChannelMinMaxObserver(ch_axis=axis, dtype=dtype, qscheme=scheme, quant_min=qmin, quant_max=qmax)
    obs(x)
    return obs.calculate_qparams()


# --- qparams: MinMaxObserver / PerChannelMinMaxObserver -----------------------------------------

@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("mapping", MAPPINGS)
@pytest.mark.parametrize("signed", [False, True])
@pytest.mark.parametrize("bits", [2, 4, 8, 12, 16])
def test_qparams_match_minmax_observer(kind, mapping, signed, bits):
    x = _tensor(kind)
    scale, zp = _observer_qparams(x, bits, mapping, signed)
    qp = choose_qparams(x, bits, mapping, signed)
    assert torch.equal(qp.scale.reshape(1), scale)
    assert torch.equal(qp.zero_point.reshape(1), zp.long())


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("mapping", MAPPINGS)
@pytest.mark.parametrize("signed", [False, True])
@pytest.mark.parametrize("axis", [0, 1])
@pytest.mark.parametrize("bits", [8, 16])
def test_qparams_match_per_channel_observer(kind, mapping, signed, axis, bits):
    x = _tensor(kind)
    scale, zp = _observer_qparams(x, bits, mapping, signed, axis=axis)
    qp = choose_qparams(x, bits, mapping, signed, PerChannel(axis))
    assert torch.equal(qp.scale, scale)
    assert torch.equal(qp.zero_point, zp.long())


# --- quantize: torch.quantize_per_tensor / torch.quantize_per_channel (8-bit dtypes) -------------

@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("mapping", MAPPINGS)
@pytest.mark.parametrize("signed", [False, True])
def test_quantize_per_tensor_bit_exact(kind, mapping, signed):
    x = _tensor(kind)
    qp = choose_qparams(x, 8, mapping, signed)
    dtype = torch.qint8 if signed else torch.quint8
    ref = torch.quantize_per_tensor(x, float(qp.scale), int(qp.zero_point), dtype)
    assert torch.equal(quantize(x, qp), ref.int_repr().int())
    assert torch.equal(dequantize(quantize(x, qp), qp), ref.dequantize())


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("mapping", MAPPINGS)
@pytest.mark.parametrize("signed", [False, True])
@pytest.mark.parametrize("axis", [0, 1])
def test_quantize_per_channel_bit_exact(kind, mapping, signed, axis):
    x = _tensor(kind)
    qp = choose_qparams(x, 8, mapping, signed, PerChannel(axis))
    dtype = torch.qint8 if signed else torch.quint8
    ref = torch.quantize_per_channel(x, qp.scale.double(), qp.zero_point, axis, dtype)
    assert torch.equal(quantize(x, qp), ref.int_repr().int())
    assert torch.equal(dequantize(quantize(x, qp), qp), ref.dequantize())


def test_quantize_given_scale_exercises_clipping():
    """A fixed scale too small for the data: values clip at both ends, as in PyTorch."""
    x = _tensor("normal") * 10
    qp = choose_qparams(x, 8, ASYM, False, min_val=torch.tensor(-1.0), max_val=torch.tensor(1.0))
    ref = torch.quantize_per_tensor(x, float(qp.scale), int(qp.zero_point), torch.quint8)
    q = quantize(x, qp)
    assert int(q.min()) == 0 and int(q.max()) == 255
    assert torch.equal(q, ref.int_repr().int())


# --- fake quantization: torch.fake_quantize_per_{tensor,channel}_affine, any bit-width ----------

@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("mapping", MAPPINGS)
@pytest.mark.parametrize("signed", [False, True])
@pytest.mark.parametrize("bits", [2, 3, 4, 8, 12, 16])
def test_fake_quantize_per_tensor_bit_exact(kind, mapping, signed, bits):
    x = _tensor(kind).requires_grad_(True)
    qp = choose_qparams(x, bits, mapping, signed)
    ref = torch.fake_quantize_per_tensor_affine(x, float(qp.scale), int(qp.zero_point), qp.quant_min, qp.quant_max)
    mine = fake_quantize(x, qp)
    assert torch.equal(mine, ref)
    # the straight-through gradient matches PyTorch's too
    g = torch.randn_like(x)
    (ref_grad,) = torch.autograd.grad(ref, x, g)
    (my_grad,) = torch.autograd.grad(mine, x, g)
    assert torch.equal(my_grad, ref_grad)


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("mapping", MAPPINGS)
@pytest.mark.parametrize("signed", [False, True])
@pytest.mark.parametrize("bits", [2, 4, 8, 16])
@pytest.mark.parametrize("axis", [0, 1])
def test_fake_quantize_per_channel_bit_exact(kind, mapping, signed, bits, axis):
    x = _tensor(kind)
    qp = choose_qparams(x, bits, mapping, signed, PerChannel(axis))
    ref = torch.fake_quantize_per_channel_affine(
        x, qp.scale, qp.zero_point.int(), axis, qp.quant_min, qp.quant_max
    )
    assert torch.equal(fake_quantize(x, qp), ref)


# --- other input dtypes: PyTorch rounds float64 in double, widens float16/bfloat16 to float32 --------

@pytest.mark.parametrize("kind", ["normal", "outliers", "ties", "constant", "tiny"])
@pytest.mark.parametrize("mapping", MAPPINGS)
@pytest.mark.parametrize("signed", [False, True])
@pytest.mark.parametrize("bits", [4, 8, 16])
@pytest.mark.parametrize("dtype", [torch.float64, torch.float16, torch.bfloat16])
def test_fake_quantize_other_dtypes_bit_exact(kind, mapping, signed, bits, dtype):
    g = torch.Generator().manual_seed(bits)
    x = _tensor(kind).double()
    if kind in ("normal", "outliers"):  # float64 values between float32 numbers: rounding them to float32 first changes codes
        x = x + torch.randn(x.shape, generator=g, dtype=torch.float64) * 1e-9
    x = x.to(dtype).requires_grad_(True)
    grad = torch.randn(x.shape, generator=g).to(dtype)
    qp = choose_qparams(x, bits, mapping, signed)
    refs = [(qp, torch.fake_quantize_per_tensor_affine(x, float(qp.scale), int(qp.zero_point), qp.quant_min, qp.quant_max))]
    for axis in (0, 1):
        qc = choose_qparams(x, bits, mapping, signed, PerChannel(axis))
        refs.append((qc, torch.fake_quantize_per_channel_affine(x, qc.scale, qc.zero_point.int(), axis, qc.quant_min, qc.quant_max)))
    for q, ref in refs:
        mine = fake_quantize(x, q)
        assert mine.dtype == dtype and torch.equal(mine, ref)
        assert torch.equal(torch.autograd.grad(mine, x, grad)[0], torch.autograd.grad(ref, x, grad)[0])


def test_float64_codes_are_rounded_in_double():
    """quantize() rounds float64 as fake_quantize (and PyTorch's fake-quant kernels) do; rounding to float32 first differs."""
    x = torch.randn(100_000, generator=torch.Generator().manual_seed(0), dtype=torch.float64) * 3
    qp = choose_qparams(x, 16)
    fq = fake_quantize(x, qp)
    assert torch.equal(dequantize(quantize(x, qp), qp).double(), fq)  # per tensor: dequantized in float32, like PyTorch
    assert not torch.equal(quantize(x, qp), quantize(x.float(), qp))  # the double rounding matters at 16 bits


def test_huge_ratio_clamps_where_pytorch_per_channel_overflows():
    """|x / scale| >= 2**63: PyTorch's per-channel kernel casts to int64 first and returns quant_min; we clamp."""
    x = torch.tensor([[9e18, 1e19, -1e19, 1e30, -1e30, 0.5]])
    qp = QParams(torch.tensor(1.0), torch.tensor(3), 0, 255)
    qc = QParams(torch.ones(1), torch.full((1,), 3), 0, 255, PerChannel(0))
    expected = torch.tensor([[252.0, 252.0, -3.0, 252.0, -3.0, 0.0]])
    assert torch.equal(fake_quantize(x, qp), expected) and torch.equal(fake_quantize(x, qc), expected)
    assert torch.equal(torch.fake_quantize_per_tensor_affine(x, 1.0, 3, 0, 255), expected)
    theirs = torch.fake_quantize_per_channel_affine(x, torch.ones(1), torch.full((1,), 3, dtype=torch.int32), 0, 0, 255)
    assert theirs[0, 1] == -3.0 and theirs[0, 3] == -3.0  # the documented PyTorch overflow (1e19 > 2**63 -> quant_min)


@pytest.mark.parametrize("mapping,signed", [(ASYM, False), (SYM, True), (SYM, False)])
def test_range_too_wide_for_float32_refused(mapping, signed):
    """MinMaxObserver returns scale=inf (or a grid ending at inf) and NaN/inf outputs; choose_qparams refuses."""
    x = torch.tensor([3.4e38, -3.4e38, 1.0])
    scale, zp = _observer_qparams(x, 8, mapping, signed)
    ref = torch.fake_quantize_per_tensor_affine(x, float(scale), int(zp), *quant_range(8, signed))
    assert not torch.isfinite(ref).all()
    with pytest.raises(ValueError, match=r"too wide for float32.*x / 1e30"):
        choose_qparams(x, 8, mapping, signed)
    assert torch.isfinite(fake_quantize(x / 1e30, choose_qparams(x / 1e30, 8, mapping, signed))).all()


# --- properties of the math itself ---------------------------------------------------------------

@pytest.mark.parametrize("mapping", MAPPINGS)
def test_zero_is_exactly_representable(mapping):
    x = _tensor("uniform-positive")
    qp = choose_qparams(x, 8, mapping, signed=False)
    assert float(dequantize(quantize(torch.zeros(1), qp), qp)) == 0.0


def test_round_trip_error_at_most_half_a_step():
    x = _tensor("normal")
    qp = choose_qparams(x, 8, ASYM, False)
    assert max_abs_error(x, dequantize(quantize(x, qp), qp)) <= float(qp.scale) / 2 * (1 + 1e-6)


def test_per_group_matches_per_tensor_on_each_group():
    x = _tensor("normal")[:, :32]
    qp = choose_qparams(x, 4, SYM, True, PerGroup(8))
    assert qp.scale.shape == (64, 4)
    out = dequantize(quantize(x, qp), qp)
    for r, c in [(0, 0), (5, 3), (63, 1)]:
        block = x[r, 8 * c : 8 * (c + 1)]
        qb = choose_qparams(block, 4, SYM, True)
        assert torch.equal(out[r, 8 * c : 8 * (c + 1)], dequantize(quantize(block, qb), qb))


def test_per_channel_beats_per_tensor_on_uneven_channels():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(16, 50, generator=g) * torch.logspace(-2, 0, 16).reshape(16, 1)
    pt = choose_qparams(x, 8, SYM, True)
    pc = choose_qparams(x, 8, SYM, True, PerChannel(0))
    assert sqnr_db(x, dequantize(quantize(x, pc), pc)) > sqnr_db(x, dequantize(quantize(x, pt), pt)) + 5


def test_sqnr_grows_about_six_db_per_bit():
    x = torch.rand(100_000, generator=torch.Generator().manual_seed(0)) * 2 - 1
    sq = []
    for b in range(4, 11):
        qp = choose_qparams(x, b, SYM, True)
        sq.append(sqnr_db(x, fake_quantize(x, qp)))
    slope = (sq[-1] - sq[0]) / 6
    assert 5.8 < slope < 6.3


def test_metrics():
    x = torch.tensor([1.0, -2.0, 3.0])
    y = torch.tensor([1.0, -2.5, 3.0])
    assert mse(x, y) == pytest.approx(0.25 / 3)
    assert max_abs_error(x, y) == pytest.approx(0.5)
    assert sqnr_db(x, y) == pytest.approx(10 * math.log10(14 / 0.25))
    assert sqnr_db(x, x) == math.inf
    # no signal: exact is still inf; anything else is all noise, -inf dB (not a math domain error)
    assert sqnr_db(torch.zeros(3), torch.zeros(3)) == math.inf
    assert sqnr_db(torch.zeros(3), torch.ones(3)) == -math.inf


def test_quant_range():
    assert quant_range(8, True) == (-128, 127)
    assert quant_range(8, False) == (0, 255)
    assert quant_range(2, True) == (-2, 1)
    assert quant_range(16, False) == (0, 65535)


# --- bad input -----------------------------------------------------------------------------------

@pytest.mark.parametrize("bits", [0, 1, 17, 32, -8])
def test_bits_outside_range_rejected(bits):
    with pytest.raises(ValueError, match="outside the supported range 2-16"):
        choose_qparams(torch.randn(4), bits)


@pytest.mark.parametrize("bits", [8.0, "8", True])
def test_bits_wrong_type_rejected(bits):
    with pytest.raises(TypeError, match=r"bits=.* must be an int"):
        quant_range(bits, True)


@pytest.mark.parametrize("dtype", [torch.int8, torch.int64, torch.bool])
def test_integer_tensor_rejected(dtype):
    with pytest.raises(TypeError, match="floating-point tensor.*float\\(\\)"):
        choose_qparams(torch.ones(4, dtype=dtype))


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), float("-inf")])
def test_non_finite_rejected(bad):
    x = torch.tensor([0.5, bad, 1.0])
    with pytest.raises(ValueError, match="NaN/inf"):
        choose_qparams(x)
    qp = choose_qparams(torch.tensor([0.5, 1.0]))
    with pytest.raises(ValueError, match="NaN/inf"):
        quantize(x, qp)
    with pytest.raises(ValueError, match="NaN/inf"):
        fake_quantize(x, qp)


def test_empty_tensor_rejected():
    with pytest.raises(ValueError, match="empty"):
        choose_qparams(torch.empty(0))


def test_not_a_tensor_rejected():
    with pytest.raises(TypeError, match="torch.Tensor"):
        choose_qparams([1.0, 2.0])  # type: ignore[arg-type]


def test_bad_group_size_rejected():
    with pytest.raises(ValueError, match="multiple"):
        choose_qparams(torch.randn(4, 10), 4, SYM, True, PerGroup(3))


@pytest.mark.parametrize("zero_point", [0, 3, 128])
def test_ties_round_half_to_even_like_pytorch(zero_point):
    """x / scale exactly halfway between integers: PyTorch rounds half to even (nearbyint)."""
    from qhelpers.quant import QParams

    x = (torch.arange(-100, 100, dtype=torch.float32) + 0.5) / 16
    qp = QParams(torch.tensor(1 / 16), torch.tensor(zero_point), 0, 255)
    ref = torch.quantize_per_tensor(x, 1 / 16, zero_point, torch.quint8).int_repr().int()
    assert torch.equal(quantize(x, qp), ref)
    assert torch.equal(fake_quantize(x, qp), torch.fake_quantize_per_tensor_affine(x, 1 / 16, zero_point, 0, 255))
    inside = (x * 16 + zero_point >= 0) & (x * 16 + zero_point <= 255)
    assert (quantize(x, qp)[inside] % 2 == zero_point % 2).all()  # halves went to the even neighbour
