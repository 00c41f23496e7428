"""qhelpers.smoothing: SmoothQuant's factors (as torchao computes them), folding that keeps the FP32 function, W8A8."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from qhelpers.activations import capture_inputs, channel_absmax
from qhelpers.smoothing import FakeW8A8Linear, fold_smoothing, smoothing_factors, w8a8
from qhelpers.transformer import GPT, GPTConfig

CFG = GPTConfig(vocab_size=11, block_size=16, n_layer=2, n_head=2, n_embd=32, bias=True)


def test_smoothing_factors_equal_torchaos_observer():
    from torchao.prototype.smoothquant.core import SmoothQuantObserver

    torch.manual_seed(0)
    w = torch.randn(16, 8)
    x = torch.randn(50, 8) * torch.tensor([1, 1, 30, 1, 1, 1, 0.1, 1])
    obs = SmoothQuantObserver(w, alpha=0.5)
    obs(x)
    theirs, _, _ = obs.calculate_qparams()
    assert torch.allclose(smoothing_factors(channel_absmax(x), w, 0.5), theirs, rtol=1e-6)
    with pytest.raises(ValueError, match="alpha"):
        smoothing_factors(channel_absmax(x), w, 1.5)


def test_folding_keeps_the_fp32_model_and_shrinks_the_outlier_channel():
    torch.manual_seed(0)
    model = GPT(CFG).eval()
    with torch.no_grad():
        model.h[0].ln_1.weight[3] = 25.0  # an outlier channel going into h.0.attn.c_attn
    idx = torch.randint(0, 11, (4, 16))
    inputs = capture_inputs(model, idx)
    absmax = {n: channel_absmax(x) for n, x in inputs.items()}
    smooth = fold_smoothing(model, absmax, alpha=0.5)
    assert torch.allclose(smooth(idx), model(idx), atol=1e-4)
    after = channel_absmax(capture_inputs(smooth, idx)["h.0.attn.c_attn"])
    before = absmax["h.0.attn.c_attn"]
    assert after.max() / after.median() < before.max() / before.median()


def test_fake_w8a8_per_token_and_per_tensor():
    torch.manual_seed(0)
    lin = nn.Linear(8, 4)
    x = torch.randn(2, 5, 8)
    x[0, 0] *= 50  # one loud token: per-tensor scales lose the quiet ones, per-token scales do not
    ref = lin(x)
    per_token = FakeW8A8Linear(lin, "per-token")(x)
    per_tensor = FakeW8A8Linear(lin, "per-tensor", channel_absmax(x))(x)
    quiet = slice(1, None)
    err_token = (per_token - ref)[1].abs().max()
    err_tensor = (per_tensor - ref)[1].abs().max()
    assert err_token < err_tensor
    assert per_token.shape == ref.shape
    with pytest.raises(ValueError, match="act_absmax"):
        FakeW8A8Linear(lin, "per-tensor")
    model = nn.Sequential(nn.Linear(8, 8))
    q = w8a8(model, {"0": channel_absmax(x)}, "per-tensor")
    assert isinstance(q[0], FakeW8A8Linear) and isinstance(model[0], nn.Linear)
    del quiet
