"""qhelpers.transformer: the nanoGPT-style model's shapes and causality, its loss, training loop and sampler."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from qhelpers.train import fit_lm
from qhelpers.transformer import GPT, GPTConfig, block_linears, eval_windows, generate, lm_loss

TINY = GPTConfig(vocab_size=11, block_size=16, n_layer=2, n_head=2, n_embd=32)


@pytest.fixture(autouse=True)
def one_thread():
    """Tiny models: one thread is fastest (and does not wait for a busy second core)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def test_default_model_keeps_most_parameters_in_linear_layers():
    model = GPT(GPTConfig())
    total = sum(p.numel() for p in model.parameters())
    in_blocks = sum(m.weight.numel() for m in block_linears(model).values())
    assert total == 812_416
    assert in_blocks / total > 0.95
    assert len(block_linears(model)) == 16 and "lm_head" not in block_linears(model)


def test_shapes_and_causality():
    torch.manual_seed(0)
    model = GPT(TINY).eval()
    idx = torch.randint(0, 11, (3, 16))
    logits = model(idx)
    assert logits.shape == (3, 16, 11)
    changed = idx.clone()
    changed[:, 10:] = (changed[:, 10:] + 1) % 11  # change the future
    assert torch.allclose(model(changed)[:, :10], logits[:, :10], atol=1e-6)
    assert not torch.allclose(model(changed)[:, 10:], logits[:, 10:])
    with pytest.raises(ValueError, match="longer than the model's block_size=16"):
        model(torch.zeros(1, 17, dtype=torch.long))


def test_an_untrained_model_predicts_about_uniformly():
    torch.manual_seed(0)
    model = GPT(TINY)
    ids = torch.randint(0, 11, (2000,))
    loss = lm_loss(model, eval_windows(ids, 16, 20))
    assert abs(loss - math.log(11)) < 0.1


def test_eval_windows_are_evenly_spaced_and_shifted_by_one():
    ids = torch.arange(1000)
    x, y = eval_windows(ids, 16, 10)
    assert x.shape == y.shape == (10, 16)
    assert torch.equal(y, x + 1)
    assert int(x[0, 0]) == 0 and int(y[-1, -1]) == 999
    with pytest.raises(ValueError, match="between 1 and 58"):
        eval_windows(ids, 16, 59)


def test_fit_lm_learns_a_repeating_text_and_is_repeatable():
    text = torch.tensor([0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10] * 40)
    small = GPTConfig(vocab_size=11, block_size=16, n_layer=1, n_head=2, n_embd=16)
    windows = eval_windows(text, 16, 4)
    runs = []
    for iters in (40, 40):
        torch.manual_seed(0)
        model = GPT(small)
        hist = fit_lm(model, text, windows, iters=iters, batch_size=4, lr=1e-2, warmup=4, eval_every=20, seed=0)
        runs.append(hist.val_loss)
    assert runs[0] == runs[1]
    assert runs[0][-1] < 0.5 * math.log(11)  # the sequence is deterministic after the first character
    with pytest.raises(ValueError, match="iters=0"):
        fit_lm(GPT(small), text, iters=0)


def test_generate_is_seeded_and_keeps_the_prompt():
    torch.manual_seed(0)
    model = GPT(TINY).eval()
    prompt = torch.tensor([1, 2, 3])
    a = generate(model, prompt, 30, seed=5)
    b = generate(model, prompt, 30, seed=5)
    c = generate(model, prompt, 30, seed=6)
    assert torch.equal(a, b) and not torch.equal(a, c)
    assert a.shape == (33,) and torch.equal(a[:3], prompt)
    assert int(a.max()) < 11
    greedy = generate(model, prompt, 5, top_k=1, seed=0)
    assert torch.equal(greedy, generate(model, prompt, 5, top_k=1, seed=99))  # top-1 is deterministic
    with pytest.raises(TypeError, match="1-D int64"):
        generate(model, prompt.float(), 3)


@pytest.mark.parametrize("kwargs, match", [
    (dict(n_embd=30, n_head=4), "multiple of n_head"),
    (dict(n_layer=0), "n_layer=0"),
    (dict(block_size=True), "block_size=True"),
])
def test_config_is_checked(kwargs, match):
    with pytest.raises(ValueError, match=match):
        GPTConfig(**kwargs)
    with pytest.raises(TypeError, match="GPTConfig"):
        GPT({"n_layer": 2})


def test_cached_decoder_matches_the_full_forward_pass():
    from qhelpers.transformer import CachedDecoder

    torch.manual_seed(0)
    model = GPT(TINY).eval()
    idx = torch.randint(0, 11, (2, 16))
    full = model(idx)
    decoder = CachedDecoder(model, batch_size=2)
    with torch.inference_mode():
        steps = torch.stack([decoder(idx[:, i:i + 1], torch.tensor(i)) for i in range(16)], dim=1)
    assert torch.allclose(steps, full, atol=1e-5)
    with pytest.raises(TypeError, match="needs a GPT"):
        CachedDecoder(nn.Linear(2, 2))
