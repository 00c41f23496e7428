"""How closely a quantized language model predicts what its float original predicts, token by token.

Taught in chapter 08. The validation loss scores a model against the *text*; a
quantized model can also be scored against its *original*, which needs no
labels and sees every change of the predictions, not only those that move the
loss. Two yardsticks, at every position of every window:

- the **KL divergence** ``KL(p || q) = sum_v p(v) (ln p(v) - ln q(v))`` of the
  quantized model's next-token distribution ``q`` from the original's ``p``,
  in nats (0 when they agree exactly; it is not symmetric: ``p`` weighs the
  tokens the original finds likely);
- the **top-1 agreement**: the share of positions where both models' most
  likely next token is the same (what greedy decoding would pick).

:func:`next_token_fidelity` returns both as a :class:`NextTokenFidelity`.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from .checks import check_int, check_module, describe

__all__ = ["NextTokenFidelity", "next_token_fidelity"]


@dataclass(frozen=True)
class NextTokenFidelity:
    """Mean ``KL(original || model)`` of the next-token distributions (nats) and the top-1 agreement (0 to 1)."""

    kl: float
    top1_agreement: float
    positions: int


@torch.inference_mode()
def next_token_fidelity(reference: nn.Module, model: nn.Module, windows: tuple[torch.Tensor, torch.Tensor] | torch.Tensor,
                        batch_size: int = 64) -> NextTokenFidelity:
    """Compare ``model``'s next-token predictions with ``reference``'s (the float original) on the same inputs.

    ``windows`` is the ``(inputs, targets)`` pair of
    :func:`qhelpers.transformer.eval_windows` (the targets are not used) or
    the inputs alone, token ids ``(count, tokens)``; both models map them to
    logits ``(count, tokens, vocab)``.
    """
    x = _check_fidelity(reference, model, windows, batch_size)
    reference.eval()
    model.eval()
    kl, agree = 0.0, 0
    for i in range(0, len(x), batch_size):
        log_p = F.log_softmax(reference(x[i:i + batch_size]).double(), dim=-1)
        log_q = F.log_softmax(model(x[i:i + batch_size]).double(), dim=-1)
        if log_p.shape != log_q.shape:
            raise ValueError(f"the two models' logits differ in shape: {tuple(log_p.shape)} and {tuple(log_q.shape)}")
        kl += float((log_p.exp() * (log_p - log_q)).sum())
        agree += int((log_p.argmax(-1) == log_q.argmax(-1)).sum())
    positions = x.numel()
    return NextTokenFidelity(kl / positions, agree / positions, positions)


def _check_fidelity(reference: object, model: object, windows: object, batch_size: object) -> torch.Tensor:
    check_module(reference, "reference")
    check_module(model, "model")
    check_int("batch_size", batch_size, 1)
    x = windows[0] if isinstance(windows, (tuple, list)) and len(windows) == 2 else windows
    if not isinstance(x, torch.Tensor) or x.is_floating_point() or x.is_complex() or x.dtype == torch.bool:
        raise TypeError(f"windows must be the (inputs, targets) pair of eval_windows or the inputs, token ids (count, "
                        f"tokens), not {describe(x)}")
    if x.dim() != 2 or x.numel() == 0:
        raise ValueError(f"the inputs must be 2-D (count, tokens) and not empty, got shape {tuple(x.shape)}")
    return x
