import pytest
import torch

from qhelpers import hardware
from qhelpers.bench import inserted_modules, module_types
from qhelpers.qat import FakeQuantizedModel
from qhelpers.quant import ste_curve


def test_ste_curve_is_identity_gradient_inside_zero_outside():
    x = torch.linspace(-2, 2, 401)
    y, g = ste_curve(x, 0.1, 0, -8, 7)
    inside = (x >= -0.8 - 0.05) & (x <= 0.7 + 0.05)
    assert torch.equal(g[inside.logical_and((x - 0.7).abs() > 0.06).logical_and((x + 0.8).abs() > 0.06)],
                       torch.ones_like(g[inside.logical_and((x - 0.7).abs() > 0.06).logical_and((x + 0.8).abs() > 0.06)]))
    assert torch.all(g[x.abs() > 1.0] == 0)
    assert float(y.max()) == pytest.approx(0.7) and float(y.min()) == pytest.approx(-0.8)
    with pytest.raises(ValueError):
        ste_curve(x, 0.1, 0, 7, -8)


def test_inserted_modules_lists_what_changed():
    before = torch.nn.Sequential(torch.nn.Linear(2, 2))
    after = torch.nn.Sequential(torch.nn.Linear(2, 2), torch.nn.ReLU())
    assert inserted_modules(before, after) == {"1": "ReLU"}
    assert module_types(before)["0"] == "Linear"


def _calibrated(seed=0, reduce_range=True):
    torch.manual_seed(seed)
    m = FakeQuantizedModel(32, 16, reduce_range=reduce_range)
    for _ in range(5):
        m(torch.randn(128, 32))
    return m.freeze().eval()


@pytest.mark.parametrize("reduce_range", [True, False])
def test_fake_and_int8_agree_unless_the_kernel_saturates(reduce_range):
    """The INT8 model matches its fake-quantized twin within one output step, wherever fbgemm cannot saturate.

    With 7-bit activations (reduce_range) no pair of u8*s8 products exceeds
    16 bits, so the result is exact on every CPU. With full-range (8-bit)
    activations fbgemm's AVX2 path (vpmaddubsw: pairs summed in 16 bits)
    saturates and the outputs drift by many steps; VNNI (vpdpbusd: 32-bit
    sums) stays exact. ``hardware.fbgemm_saturates`` tells which path runs here.
    """
    m = _calibrated(reduce_range=reduce_range)
    q = m.to_int8()
    x = torch.randn(500, 32, generator=torch.Generator().manual_seed(1)) * 1.5  # includes values outside the calibrated range
    with torch.no_grad():
        steps = float((m(x) - q(x)).abs().max()) / m.qparams()["output"][0]
    if reduce_range or not hardware.fbgemm_saturates():
        assert steps <= 1.0001, f"{steps:.2f} output steps apart where the kernel cannot saturate"
    else:
        assert steps > 5, f"full-range activations on a saturating kernel stayed within {steps:.2f} steps"


def test_qparams_follow_the_observed_range():
    m = _calibrated()
    s_in, zp_in = m.qparams()["input"]
    assert 0 < zp_in < 127
    assert m.qparams()["weight"][1] == 0


def test_to_int8_refuses_unfrozen_or_uncalibrated():
    m = FakeQuantizedModel(4, 4)
    with pytest.raises(ValueError, match="freeze"):
        m.to_int8()
    with pytest.raises(ValueError, match="calibrated"):
        m.freeze().to_int8()


def test_from_linear_copies_weights():
    lin = torch.nn.Linear(3, 2)
    m = FakeQuantizedModel.from_linear(lin)
    assert torch.equal(m.fc.weight, lin.weight)
