"""Reference solution of the GPTQ exercise (chapter 08): round one column, push its error onto the later ones."""

from __future__ import annotations

import torch


def my_gptq_column(W: torch.Tensor, Hinv: torch.Tensor, j: int, scale: torch.Tensor, zero_point: torch.Tensor,
                   bits: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Column ``j`` of ``W`` on the grid of each row, and ``W`` after GPTQ's error feedback."""
    q = torch.clamp(torch.round(W[:, j] / scale) + zero_point, 0, 2**bits - 1)  # the codes
    w_hat = (q - zero_point) * scale  # the values they stand for
    err = (W[:, j] - w_hat) / Hinv[j, j]  # the error, scaled by the inverse Hessian's pivot
    W = W.clone()
    W[:, j:] -= err[:, None] * Hinv[j, j:][None, :]  # pushed onto the columns not yet rounded (column j becomes w_hat)
    return w_hat, W
