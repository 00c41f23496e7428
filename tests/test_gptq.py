"""GPTQ (qhelpers.gptq) and next-token fidelity (qhelpers.fidelity): exact where the math says so, better than RTN
where it should be, and clear errors for bad arguments."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from qhelpers import quant
from qhelpers.fidelity import next_token_fidelity
from qhelpers.gptq import gptq_quantize, gptq_weight, hessian, output_error
from qhelpers.transformer import GPT, GPTConfig, eval_windows
from qhelpers.weight_only import dequantize_affine, fake_quantize_affine


def _weight(out: int = 48, inp: int = 128, seed: int = 0) -> torch.Tensor:
    return torch.randn(out, inp, generator=torch.Generator().manual_seed(seed)) * 0.05


def _correlated_inputs(n: int = 1024, inp: int = 128, seed: int = 1) -> torch.Tensor:
    """Inputs with correlated channels of uneven size, as a layer's inputs are."""
    gen = torch.Generator().manual_seed(seed)
    mix = torch.eye(inp) + torch.randn(inp, inp, generator=gen) / inp**0.5
    return (torch.randn(n, inp, generator=gen) @ mix) * torch.linspace(0.2, 3.0, inp)


@pytest.mark.parametrize("granularity", [quant.PerGroup(32), quant.PerGroup(64), quant.PerChannel(0)])
@pytest.mark.parametrize("symmetric", [False, True])
@pytest.mark.parametrize("act_order", [False, True])
@pytest.mark.parametrize("bits", [2, 3, 4, 8])
def test_with_an_identity_hessian_gptq_is_rtn_bit_for_bit(granularity, symmetric, act_order, bits):
    # H = I: H^-1 is diagonal, no error is pushed onto other columns, every column is rounded on its own grid.
    w = _weight()
    got = gptq_weight(w, torch.eye(128), bits, granularity, symmetric, act_order=act_order)
    assert torch.equal(got.weight, fake_quantize_affine(w, bits, granularity, symmetric))


@pytest.mark.parametrize("granularity", [quant.PerGroup(32), quant.PerChannel(0)])
@pytest.mark.parametrize("act_order", [False, True])
def test_the_codes_and_grid_are_weight_only_s_storage(granularity, act_order):
    w, x = _weight(), _correlated_inputs()
    got = gptq_weight(w, hessian(x), 3, granularity, act_order=act_order)
    assert got.codes.dtype == torch.int16 and int(got.codes.min()) >= 0 and int(got.codes.max()) <= 7
    assert got.scale.dtype == torch.float16 and got.zero_point.dtype == torch.uint8
    assert torch.equal(dequantize_affine(got.codes, got.scale, got.zero_point), got.weight)


@pytest.mark.parametrize("bits", [2, 3, 4])
@pytest.mark.parametrize("act_order", [False, True])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_on_correlated_inputs_gptq_has_a_smaller_output_error_than_rtn(bits, act_order, seed):
    w, x = _weight(seed=seed), _correlated_inputs(seed=seed + 10)
    got = gptq_weight(w, hessian(x), bits, quant.PerGroup(32), act_order=act_order)
    assert output_error(w, got.weight, x) < 0.95 * output_error(w, fake_quantize_affine(w, bits, quant.PerGroup(32)), x)


def test_at_8_bits_gptq_stays_within_a_few_steps_of_rtn():
    w, x = _weight(), _correlated_inputs()
    got = gptq_weight(w, hessian(x), 8, quant.PerGroup(32))
    rtn = fake_quantize_affine(w, 8, quant.PerGroup(32))
    step = float(got.scale.float().max())
    assert float((got.weight - rtn).abs().max()) <= 4 * step
    assert output_error(w, got.weight, x) < 1e-4 * float((x @ w.T).pow(2).mean())


def test_the_block_size_changes_nothing_but_rounding():
    w, x = _weight(inp=256), _correlated_inputs(inp=256)
    a = gptq_weight(w, hessian(x), 4, quant.PerGroup(32), blocksize=128)
    b = gptq_weight(w, hessian(x), 4, quant.PerGroup(32), blocksize=32)
    assert (a.codes != b.codes).float().mean() < 0.01


def test_a_dead_input_gets_zero_weights():
    w, x = _weight(), _correlated_inputs()
    x[:, 5] = 0
    got = gptq_weight(w, hessian(x), 4, quant.PerGroup(32))
    assert torch.equal(got.weight[:, 5], torch.zeros(48))


def _tiny_gpt() -> tuple[GPT, torch.Tensor]:
    torch.manual_seed(0)
    model = GPT(GPTConfig(vocab_size=17, block_size=16, n_layer=2, n_head=2, n_embd=32)).eval()
    ids = torch.randint(0, 17, (400,), generator=torch.Generator().manual_seed(0))
    return model, ids


def test_gptq_quantize_does_every_block_linear_in_order_and_beats_rtn_layer_by_layer():
    model, ids = _tiny_gpt()
    calibration = eval_windows(ids, 16, 8)[0]
    before = {n: p.clone() for n, p in model.state_dict().items()}
    out, layers = gptq_quantize(model, calibration, 3, quant.PerGroup(16))
    assert list(layers) == [f"h.{i}.{n}" for i in range(2) for n in ("attn.c_attn", "attn.c_proj", "mlp.c_fc", "mlp.c_proj")]
    assert all(torch.equal(p, before[n]) for n, p in model.state_dict().items()), "the original model is unchanged"
    for name, layer in layers.items():
        assert torch.equal(out.get_submodule(name).weight, layer.result.weight)
        assert layer.tokens == 8 * 16
    assert sum(l.error for l in layers.values()) < sum(l.rtn_error for l in layers.values())
    assert torch.equal(out.lm_head.weight, model.lm_head.weight)


def test_next_token_fidelity_of_a_model_with_itself_and_with_another():
    model, ids = _tiny_gpt()
    windows = eval_windows(ids, 16, 8)
    same = next_token_fidelity(model, model, windows)
    assert same.kl == pytest.approx(0.0, abs=1e-12) and same.top1_agreement == 1.0 and same.positions == 128
    other = GPT(GPTConfig(vocab_size=17, block_size=16, n_layer=2, n_head=2, n_embd=32))
    diff = next_token_fidelity(model, other, windows[0])
    assert diff.kl > 0 and 0 <= diff.top1_agreement < 1


@pytest.mark.parametrize("call, error, words", [
    (lambda w, H: gptq_weight(w, H[:5, :5]), ValueError, "H has shape (5, 5)"),
    (lambda w, H: gptq_weight(w, H, granularity=32), TypeError, "quant.PerGroup(32)"),
    (lambda w, H: gptq_weight(w, H, granularity=quant.PerGroup(48)), ValueError, "not a multiple of the group size"),
    (lambda w, H: gptq_weight(w, H, bits=9), ValueError, "bits=9"),
    (lambda w, H: gptq_weight(w, H, percdamp=-1), ValueError, "percdamp"),
    (lambda w, H: gptq_weight(w, H, blocksize=0), ValueError, "blocksize"),
    (lambda w, H: gptq_weight(w, H, act_order=1), TypeError, "act_order"),
    (lambda w, H: gptq_weight(w, H - 2 * torch.eye(128) * float(H.diag().max())), ValueError, "non-negative diagonal"),
    (lambda w, H: gptq_weight(w, torch.ones(128, 128), percdamp=0.0), ValueError, "raise percdamp"),
    (lambda w, H: gptq_weight(w.long(), H), TypeError, "floating-point"),
    (lambda w, H: gptq_weight(w, H, scale_dtype=torch.int8), TypeError, "scale_dtype"),
    (lambda w, H: hessian(torch.zeros(3)), ValueError, "2-D (tokens, in_features)"),
    (lambda w, H: output_error(w, w[:2], torch.zeros(3, 128)), ValueError, "must agree"),
])
def test_bad_arguments_get_clear_errors(call, error, words):
    w, x = _weight(), _correlated_inputs()
    with pytest.raises(error) as info:
        call(w, hessian(x))
    assert words in str(info.value)
    assert info.traceback[-1].path.name in {"gptq.py", "checks.py", "quant.py", "weight_only.py"}


def test_gptq_quantize_refuses_bad_models_and_choices():
    model, ids = _tiny_gpt()
    calibration = eval_windows(ids, 16, 4)[0]
    with pytest.raises(TypeError, match="torch.nn.Module"):
        gptq_quantize("model", calibration)
    with pytest.raises(TypeError, match="batches must be"):
        gptq_quantize(model, "text")
    with pytest.raises(ValueError, match="selected no layer"):
        gptq_quantize(model, calibration, include=lambda n, m: False)
    with pytest.raises(TypeError, match="nn.Linear layers only"):
        gptq_quantize(model, calibration, include=lambda n, m: n == "ln_f")
    with pytest.raises(ValueError, match="h.0.attn.c_attn: in_features=32"):
        gptq_quantize(model, calibration, granularity=quant.PerGroup(64))
    with pytest.raises(ValueError, match="fails on batches"):
        gptq_quantize(model, torch.zeros(1, 99, dtype=torch.long), granularity=quant.PerGroup(16))
    with pytest.raises(TypeError, match="windows must be"):
        next_token_fidelity(model, model, torch.zeros(2, 3))
