"""qhelpers.activations: capturing what flows into Linear layers, and per-channel ranges."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from qhelpers.activations import capture_inputs, channel_absmax, outlier_channels


def test_capture_inputs_sees_every_token_and_removes_its_hooks():
    model = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 2))
    xs = [torch.randn(3, 5, 4), torch.randn(2, 5, 4)]
    got = capture_inputs(model, xs, include=lambda n, m: isinstance(m, nn.Linear))
    assert set(got) == {"0", "2"}
    assert got["0"].shape == (25, 4) and torch.equal(got["0"], torch.cat([x.reshape(-1, 4) for x in xs]))
    assert got["2"].shape == (25, 8) and bool((got["2"] >= 0).all())
    assert all(not m._forward_pre_hooks for m in model.modules())
    with pytest.raises(ValueError, match="selected no layer"):
        capture_inputs(model, xs, include=lambda n, m: False)


def test_channel_absmax_and_outliers():
    x = torch.ones(10, 6)
    x[3, 4] = -20.0
    absmax = channel_absmax(x)
    assert absmax.tolist() == [1, 1, 1, 1, 20, 1]
    assert outlier_channels(absmax).tolist() == [4]
    assert outlier_channels(absmax, ratio=30.0).tolist() == []
    with pytest.raises(ValueError, match="x is empty"):
        channel_absmax(torch.empty(0, 3))
