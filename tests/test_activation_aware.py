"""qhelpers.activation_aware: the scale search never does worse than RTN on its inputs, and helps when inputs are uneven."""

from __future__ import annotations

import pytest
import torch

from qhelpers.activation_aware import activation_aware_weight, awq_search
from qhelpers.quant import PerChannel, PerGroup
from qhelpers.weight_only import fake_quantize_affine


def _layer(seed=0):
    g = torch.Generator().manual_seed(seed)
    w = torch.randn(64, 128, generator=g) * 0.05
    x = torch.randn(512, 128, generator=g)
    x[:, :4] *= 20  # four channels with large inputs, as in real activations
    return w, x


@pytest.mark.parametrize("bits, granularity", [(3, PerGroup(64)), (4, PerGroup(32)), (4, PerChannel(0))], ids=str)
def test_search_beats_rtn_on_uneven_inputs(bits, granularity):
    w, x = _layer()
    res = awq_search(w, x, bits, granularity, grid=10)
    rtn = fake_quantize_affine(w, bits, granularity)
    rtn_err = float(((x @ rtn.T - x @ w.T) ** 2).mean())
    assert res.rtn_error == pytest.approx(rtn_err, rel=1e-5)  # alpha = 0 is RTN itself
    assert res.errors[res.alpha] == min(res.errors.values()) <= rtn_err
    assert res.alpha > 0 and res.errors[res.alpha] < 0.9 * rtn_err
    assert torch.equal(activation_aware_weight(w, x, bits, granularity, grid=10), res.weight)
    assert res.scale.shape == (128,)


def test_search_checks_its_inputs():
    w, x = _layer()
    with pytest.raises(ValueError, match=r"inputs must be \(tokens, 128\)"):
        awq_search(w, x[:, :64])
    with pytest.raises(ValueError, match="grid"):
        awq_search(w, x, grid=0)
    with pytest.raises(TypeError, match=r"pass quant.PerGroup\(64\), not 64"):
        awq_search(w, x, 4, 64)
