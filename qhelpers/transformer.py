"""A small decoder-only transformer (nanoGPT-style) for characters, its loss and its sampler.

The model is Karpathy's nanoGPT reduced to what a 2-core CPU trains in a
couple of minutes: token and position embeddings, ``n_layer`` blocks of
causal self-attention and an MLP (pre-LayerNorm, residual connections), a
final LayerNorm and an untied linear head. Almost all parameters sit in the
``nn.Linear`` layers of the blocks (``attn.c_attn``, ``attn.c_proj``,
``mlp.c_fc``, ``mlp.c_proj``): those are what weight-only quantization
compresses.

- :class:`GPTConfig`, :class:`GPT`: the model; ``GPT(config)(idx)`` returns logits ``(B, T, vocab)``;
- :func:`lm_loss`: mean next-character cross-entropy (nats per character) over fixed windows;
- (its trainer is :func:`qhelpers.train.fit_lm`);
- :func:`generate`: seeded sampling, one character at a time, from a prompt.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from .checks import SEED_MAX, check_int, check_module, check_positive, check_tensor, describe, linear_layers

__all__ = ["GPTConfig", "GPT", "build_gpt", "CachedDecoder", "check_ids", "eval_windows", "lm_loss", "generate", "block_linears"]


@dataclass(frozen=True)
class GPTConfig:
    """The shape of a :class:`GPT`. With :data:`qhelpers.course.zoo.GPT_RECIPE` the defaults reach about 1.85 nats/char on Tiny Shakespeare."""

    vocab_size: int = 65
    block_size: int = 64
    n_layer: int = 4
    n_head: int = 4
    n_embd: int = 128
    bias: bool = False

    def __post_init__(self) -> None:
        for name in ("vocab_size", "block_size", "n_layer", "n_head", "n_embd"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"GPTConfig {name}={value!r} must be a positive int")
        if self.n_embd % self.n_head:
            raise ValueError(f"GPTConfig n_embd={self.n_embd} must be a multiple of n_head={self.n_head}")
        if not isinstance(self.bias, bool):
            raise TypeError(f"GPTConfig bias={self.bias!r} must be True or False")


class CausalSelfAttention(nn.Module):
    """Multi-head self-attention where each position sees only itself and the positions before it."""

    def __init__(self, config: GPTConfig) -> None:
        super().__init__()
        self.n_head = config.n_head
        self.c_attn = nn.Linear(config.n_embd, 3 * config.n_embd, bias=config.bias)  # queries, keys, values at once
        self.c_proj = nn.Linear(config.n_embd, config.n_embd, bias=config.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, T, C = x.shape
        q, k, v = self.c_attn(x).split(C, dim=2)
        q, k, v = (t.view(B, T, self.n_head, C // self.n_head).transpose(1, 2) for t in (q, k, v))
        y = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        return self.c_proj(y.transpose(1, 2).reshape(B, T, C))


class MLP(nn.Module):
    """Two linear layers with a GELU between them, 4x wider inside."""

    def __init__(self, config: GPTConfig) -> None:
        super().__init__()
        self.c_fc = nn.Linear(config.n_embd, 4 * config.n_embd, bias=config.bias)
        self.gelu = nn.GELU()
        self.c_proj = nn.Linear(4 * config.n_embd, config.n_embd, bias=config.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.c_proj(self.gelu(self.c_fc(x)))


class Block(nn.Module):
    """Pre-LayerNorm transformer block: ``x + attn(ln_1(x))``, then ``x + mlp(ln_2(x))``."""

    def __init__(self, config: GPTConfig) -> None:
        super().__init__()
        self.ln_1 = nn.LayerNorm(config.n_embd, bias=config.bias)
        self.attn = CausalSelfAttention(config)
        self.ln_2 = nn.LayerNorm(config.n_embd, bias=config.bias)
        self.mlp = MLP(config)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.ln_1(x))
        return x + self.mlp(self.ln_2(x))


class GPT(nn.Module):
    """nanoGPT's decoder-only transformer: ``GPT(config)(idx)`` maps token ids ``(B, T)`` to logits ``(B, T, vocab)``."""

    def __init__(self, config: GPTConfig | None = None) -> None:
        super().__init__()
        config = config if config is not None else GPTConfig()
        if not isinstance(config, GPTConfig):
            raise TypeError(f"config must be a GPTConfig, not {type(config).__name__}")
        self.config = config
        self.wte = nn.Embedding(config.vocab_size, config.n_embd)
        self.wpe = nn.Embedding(config.block_size, config.n_embd)
        self.h = nn.ModuleList(Block(config) for _ in range(config.n_layer))
        self.ln_f = nn.LayerNorm(config.n_embd, bias=config.bias)
        self.lm_head = nn.Linear(config.n_embd, config.vocab_size, bias=False)
        self.apply(self._init_weights)
        for name, p in self.named_parameters():  # GPT-2: residual projections scaled down by the depth
            if name.endswith("c_proj.weight"):
                nn.init.normal_(p, mean=0.0, std=0.02 / math.sqrt(2 * config.n_layer))

    @staticmethod
    def _init_weights(module: nn.Module) -> None:
        if isinstance(module, (nn.Linear, nn.Embedding)):
            nn.init.normal_(module.weight, mean=0.0, std=0.02)
            if getattr(module, "bias", None) is not None:
                nn.init.zeros_(module.bias)

    def forward(self, idx: torch.Tensor) -> torch.Tensor:
        _check_idx(idx, self.config)
        T = idx.shape[-1]
        pos = torch.arange(T, device=idx.device)
        x = self.wte(idx) + self.wpe(pos)
        for block in self.h:
            x = block(x)
        return self.lm_head(self.ln_f(x))


def build_gpt(**fields: object) -> GPT:
    """``GPT(GPTConfig(**fields))``: a GPT built from plain values (JSON), e.g. by a fresh process that reloads its weights
    (:class:`qhelpers.serialization.Builder`)."""
    return GPT(GPTConfig(**fields))  # type: ignore[arg-type]


class CachedDecoder(nn.Module):
    """One decoding step of a :class:`GPT` with a key/value cache: the way a language model generates at batch 1.

    ``decoder(token, pos)`` takes the newest token ``(B, 1)`` and its position
    (a 0-d int64 tensor), appends its keys and values to the cache, attends
    over positions ``0..pos`` and returns the logits of the next token
    ``(B, vocab)``. Every Linear layer then multiplies a single row: the
    weights are read once per token, the arithmetic per weight is one
    multiply-add. All shapes are fixed (the cache holds ``block_size``
    positions, masked beyond ``pos``), so ``torch.compile`` compiles it once.

    It uses the model's own submodules, so a quantized model (swapped
    layers, or torchao's quantized weight tensors) decodes the same way.
    """

    def __init__(self, model: GPT, batch_size: int = 1) -> None:
        super().__init__()
        if not isinstance(model, GPT):
            raise TypeError(f"CachedDecoder needs a GPT, not {type(model).__name__}")
        check_int("batch_size", batch_size, 1)
        self.model = model
        c = model.config
        shape = (c.n_layer, batch_size, c.n_head, c.block_size, c.n_embd // c.n_head)
        self.register_buffer("k_cache", torch.zeros(shape), persistent=False)
        self.register_buffer("v_cache", torch.zeros(shape), persistent=False)
        self.register_buffer("positions", torch.arange(c.block_size), persistent=False)

    def forward(self, token: torch.Tensor, pos: torch.Tensor) -> torch.Tensor:
        _check_step(token, pos, self.model.config, self.k_cache.shape[1])
        m = self.model
        B, C, H = token.shape[0], m.config.n_embd, m.config.n_head
        x = m.wte(token) + m.wpe(pos).view(1, 1, C)
        visible = (self.positions <= pos).view(1, 1, 1, -1)
        for i, block in enumerate(m.h):
            q, k, v = block.attn.c_attn(block.ln_1(x)).split(C, dim=2)
            q, k, v = (t.view(B, 1, H, C // H).transpose(1, 2) for t in (q, k, v))
            self.k_cache[i].index_copy_(2, pos.view(1), k)
            self.v_cache[i].index_copy_(2, pos.view(1), v)
            y = F.scaled_dot_product_attention(q, self.k_cache[i], self.v_cache[i], attn_mask=visible)
            x = x + block.attn.c_proj(y.transpose(1, 2).reshape(B, 1, C))
            x = x + block.mlp(block.ln_2(x))
        return m.lm_head(m.ln_f(x))[:, -1]


def block_linears(model: nn.Module) -> dict[str, nn.Linear]:
    """The ``nn.Linear`` layers inside the transformer blocks (not the head), by name."""
    check_module(model)
    found = {name: m for name, m in model.named_modules() if isinstance(m, nn.Linear) and ".h." in f".{name}"}
    if not found:
        raise ValueError(f"the {type(model).__name__} has no nn.Linear inside transformer blocks (h.<i>.); "
                         f"{linear_layers(model)}")
    return found


def check_ids(name: str, ids: object) -> torch.Tensor:
    """``ids`` if it is a non-empty 1-D int64 tensor of token ids (none negative); a TypeError/ValueError naming ``name``."""
    if not isinstance(ids, torch.Tensor) or ids.dtype != torch.long:
        raise TypeError(f"{name} must be a 1-D int64 tensor of token ids (e.g. from CharVocab.encode), not {describe(ids)}")
    check_tensor(name, ids, kind="int", dims=(1,))
    if int(ids.min()) < 0:
        raise ValueError(f"{name} holds negative token ids ({int(ids.min())}): ids run from 0 to vocab_size - 1")
    return ids


def eval_windows(ids: torch.Tensor, block_size: int, count: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``count`` evenly spaced, non-overlapping windows of ``ids``: inputs ``(count, block_size)`` and next-token targets."""
    check_ids("ids", ids)
    check_int("block_size", block_size, 1)
    check_int("count", count, hint=", the number of windows")
    span = block_size + 1
    available = len(ids) // span
    if not available:
        raise ValueError(f"ids holds {len(ids)} tokens, fewer than one window of {span} (block_size + 1)")
    if not 1 <= count <= available:
        raise ValueError(f"count={count} windows of {span} tokens: between 1 and {available} fit in {len(ids)} tokens")
    starts = torch.linspace(0, len(ids) - span, count).long()
    chunks = torch.stack([ids[s : s + span] for s in starts.tolist()])
    return chunks[:, :-1].contiguous(), chunks[:, 1:].contiguous()


@torch.inference_mode()
def lm_loss(model: nn.Module, windows: tuple[torch.Tensor, torch.Tensor], batch_size: int = 64) -> float:
    """Mean next-token cross-entropy of ``model`` over ``windows`` (from :func:`eval_windows`), in nats per token."""
    x, y = _check_windows(model, windows, batch_size)
    model.eval()
    total = 0.0
    for i in range(0, len(x), batch_size):
        logits = model(x[i : i + batch_size])
        total += float(F.cross_entropy(logits.reshape(-1, logits.shape[-1]).float(), y[i : i + batch_size].reshape(-1),
                                       reduction="sum"))
    return total / y.numel()


@torch.inference_mode()
def generate(
    model: nn.Module,
    prompt: torch.Tensor,
    max_new_tokens: int,
    *,
    temperature: float = 0.8,
    top_k: int | None = None,
    seed: int = 0,
) -> torch.Tensor:
    """Sample ``max_new_tokens`` tokens after ``prompt`` (1-D ids), one at a time; returns prompt + new ids.

    Each step feeds the last ``block_size`` tokens (no KV cache, as nanoGPT
    does) and samples from ``softmax(logits / temperature)``, restricted to the
    ``top_k`` most likely tokens if given, with a generator seeded by ``seed``:
    two models given the same prompt and seed draw the same random numbers, so
    their texts differ only where their probabilities do.
    """
    check_module(model)
    check_ids("prompt", prompt)
    check_int("max_new_tokens", max_new_tokens, 0)
    check_positive("temperature", temperature)
    if top_k is not None:
        check_int("top_k", top_k, 1, hint=", or None for no restriction")
    check_int("seed", seed, 0, SEED_MAX)
    if isinstance(getattr(model, "config", None), GPTConfig):
        check_vocab("prompt", prompt, model.config.vocab_size)
    gen = torch.Generator().manual_seed(seed)
    block = model.config.block_size if hasattr(model, "config") else len(prompt)
    model.eval()
    ids = prompt.clone()
    for _ in range(max_new_tokens):
        logits = model(ids[-block:].unsqueeze(0))[0, -1].float() / temperature
        if top_k is not None:
            kth = torch.topk(logits, min(top_k, logits.numel())).values[-1]
            logits = logits.masked_fill(logits < kth, float("-inf"))
        nxt = torch.multinomial(torch.softmax(logits, dim=-1), 1, generator=gen)
        ids = torch.cat([ids, nxt])
    return ids


# --- argument checks ------------------------------------------------------------------------------------------

def check_vocab(name: str, ids: torch.Tensor, vocab_size: int) -> None:
    """Every id in ``ids`` is in ``[0, vocab_size)`` (skipped while torch.compile traces: it would break the graph)."""
    if torch.compiler.is_compiling():
        return
    lo, hi = (int(v) for v in torch.aminmax(ids))
    if lo < 0 or hi >= vocab_size:
        raise ValueError(f"{name} holds token ids from {lo} to {hi}; the model's vocab_size={vocab_size} takes 0 to "
                         f"{vocab_size - 1}")


def _check_ids_dtype(name: str, ids: object) -> None:
    check_tensor(name, ids, kind="int")
    if ids.dtype not in (torch.int64, torch.int32):
        raise TypeError(f"{name} must be an integer tensor of token ids (int64 or int32), got dtype {ids.dtype}")


def _check_idx(idx: object, config: GPTConfig) -> None:
    if not isinstance(idx, torch.Tensor):
        raise TypeError(f"idx must be a torch.Tensor of token ids (batch, tokens), not {describe(idx)}")
    if idx.is_floating_point() or idx.is_complex() or idx.dtype == torch.bool:
        raise TypeError(f"idx must be an integer tensor of token ids, got dtype {idx.dtype}")
    if idx.dim() != 2:
        raise ValueError(f"idx must be 2-D (batch, tokens), got shape {tuple(idx.shape)}; add a batch dimension with idx[None]")
    if idx.shape[-1] > config.block_size:
        raise ValueError(f"a sequence of {idx.shape[-1]} tokens is longer than the model's block_size={config.block_size}")
    _check_ids_dtype("idx", idx)
    check_vocab("idx", idx, config.vocab_size)


def _check_step(token: object, pos: object, config: GPTConfig, batch_size: int) -> None:
    if not isinstance(pos, torch.Tensor) or pos.is_floating_point() or pos.is_complex() or pos.dtype == torch.bool:
        raise TypeError(f"pos must be a 0-d integer tensor, e.g. torch.tensor(3), not {describe(pos)}")
    if pos.numel() != 1:
        raise ValueError(f"pos must hold one position, got shape {tuple(pos.shape)}")
    _check_ids_dtype("token", token)
    if token.dim() != 2 or token.shape[1] != 1:
        raise ValueError(f"token must be (batch, 1), got shape {tuple(token.shape)}: the newest token of each sequence")
    if token.shape[0] != batch_size:
        raise ValueError(f"token holds {token.shape[0]} sequence(s) but the cache was made for batch_size={batch_size}")
    if not torch.compiler.is_compiling():
        p = int(pos)
        if not 0 <= p < config.block_size:
            raise ValueError(f"pos={p} is beyond the cache: positions run from 0 to block_size - 1 = {config.block_size - 1}")
    check_vocab("token", token, config.vocab_size)


def _check_windows(model: object, windows: object, batch_size: object) -> tuple[torch.Tensor, torch.Tensor]:
    check_module(model)
    if not isinstance(windows, (tuple, list)) or len(windows) != 2:
        raise TypeError(f"windows must be the pair (inputs, targets) from eval_windows, not {describe(windows)}")
    x, y = windows
    check_int("batch_size", batch_size, 1)
    for what, t in (("inputs", x), ("targets", y)):
        if not isinstance(t, torch.Tensor) or t.is_floating_point() or t.is_complex() or t.dtype == torch.bool:
            raise TypeError(f"windows' {what} must be an integer tensor of token ids, not {describe(t)}")
    if x.shape != y.shape or x.dim() != 2:
        raise ValueError(f"windows' inputs (shape {tuple(x.shape)}) and targets (shape {tuple(y.shape)}) must have the "
                         "same 2-D shape (count, block_size), as eval_windows makes them")
    if x.numel() == 0:
        raise ValueError(f"windows hold no tokens (shape {tuple(x.shape)}): make them with eval_windows(ids, block_size, count)")
    if isinstance(getattr(model, "config", None), GPTConfig):
        check_vocab("windows[1] (the targets)", y, model.config.vocab_size)
    return x, y
