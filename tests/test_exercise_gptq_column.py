"""The GPTQ column exercise (chapter 08): the checker passes the reference and fails known wrong answers with the right hint."""

from __future__ import annotations

import pytest
import torch

from qhelpers import gptq
from qhelpers.course.exercises import Feedback, check_gptq_column
from qhelpers.course.solutions.gptq_column import my_gptq_column


def test_the_reference_solution_passes():
    fb = check_gptq_column(my_gptq_column)
    assert isinstance(fb, Feedback) and fb, fb.message


def test_the_reference_agrees_with_qhelpers_gptq_on_a_whole_weight():
    """Column steps in order, one grid per row (chosen up front), give qhelpers.gptq's result (one block, per row)."""
    from qhelpers import quant, weight_only

    g = torch.Generator().manual_seed(3)
    x = torch.randn(256, 32, generator=g) @ torch.randn(32, 32, generator=g)
    W = torch.randn(8, 32, generator=g)
    H = gptq.hessian(x)
    ref = gptq.gptq_weight(W, H, 4, quant.PerChannel(0), blocksize=32)
    Hd = H.clone()
    Hd.diagonal().add_(0.01 * float(Hd.diagonal().mean()))
    Hinv = torch.linalg.cholesky(torch.cholesky_inverse(torch.linalg.cholesky(Hd)), upper=True).float()
    s, z = weight_only.choose_qparams_affine(W, 4, quant.PerChannel(0), False)
    Wk, cols = W.clone(), []
    for j in range(32):
        w_hat, Wk = my_gptq_column(Wk, Hinv, j, s[:, 0].float(), z[:, 0].float(), 4)
        cols.append(w_hat)
    ours = torch.stack(cols, 1)
    assert (ours - ref.weight).abs().max() < 1e-3 * W.abs().max() or (ours != ref.weight).float().mean() < 0.05


def _stub(*args):
    raise NotImplementedError("your turn")


def _codes(W, Hinv, j, s, z, bits):
    w_hat, new = my_gptq_column(W, Hinv, j, s, z, bits)
    return torch.clamp(torch.round(W[:, j] / s) + z, 0, 2**bits - 1), new


def _no_clamp(W, Hinv, j, s, z, bits):
    w_hat = (torch.round(W[:, j] / s) + z - z) * s
    return w_hat, W


def _no_zero(W, Hinv, j, s, z, bits):
    return torch.clamp(torch.round(W[:, j] / s), 0, 2**bits - 1) * s, W


def _update(sign=1.0, divide=True, multiply=False, row=True):
    def fn(W, Hinv, j, s, z, bits):
        q = torch.clamp(torch.round(W[:, j] / s) + z, 0, 2**bits - 1)
        w_hat = (q - z) * s
        err = W[:, j] - w_hat
        err = err / Hinv[j, j] if divide else err
        err = err * Hinv[j, j] if multiply else err
        W = W.clone()
        h = Hinv[j, j:] if row else Hinv[j:, j]
        W[:, j:] -= sign * err[:, None] * h[None, :]
        return w_hat, W
    return fn


def _rounds_earlier(W, Hinv, j, s, z, bits):
    """Rounds every column up to j again (they were rounded in earlier steps)."""
    w_hat, new = my_gptq_column(W, Hinv, j, s, z, bits)
    new[:, :j] = (torch.clamp(torch.round(W[:, :j] / s[:, None]) + z[:, None], 0, 2**bits - 1) - z[:, None]) * s[:, None]
    return w_hat, new


WRONG = [
    (_stub, "not done yet"),
    (lambda *a: gptq.gptq_weight(a[0], torch.eye(a[0].shape[1])), "calls a function of qhelpers.gptq"),
    (gptq.gptq_weight, "you passed qhelpers.gptq.gptq_weight itself"),
    (lambda W, Hinv, j, s, z, b: (__import__("qhelpers").weight_only.fake_quantize_affine(W, b, __import__(
        "qhelpers").quant.PerChannel(0))[:, j], W), "calls a function of qhelpers."),
    (_codes, "w_hat holds the integer codes"),
    (_no_clamp, "clamp the codes"),
    (_no_zero, "the zero-point is missing"),
    (_update(sign=-1.0), "wrong sign"),
    (_update(divide=False), "not divided by Hinv[j, j]"),
    (_update(divide=False, multiply=True), "multiplied by Hinv[j, j] instead"),
    (_update(row=False), "the later columns did not move"),
    (_rounds_earlier, "columns before j changed"),
    (lambda *a: my_gptq_column(*a)[0], "return a tuple (w_hat, W_new)"),
    (lambda *a: (my_gptq_column(*a)[0][:1], my_gptq_column(*a)[1]), "w_hat has shape"),
]


@pytest.mark.parametrize("answer, hint", WRONG, ids=[h[:40] for _, h in WRONG])
def test_wrong_answers_fail_with_the_right_hint(answer, hint):
    fb = check_gptq_column(answer)
    assert not fb and repr(fb).startswith("NOT YET")
    assert hint in fb.message, fb.message


def test_non_functions_are_refused():
    with pytest.raises(TypeError, match="GPTQ column function itself"):
        check_gptq_column("my_gptq_column")
