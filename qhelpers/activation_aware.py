"""Activation-aware weight quantization (AWQ-style), from scratch: protect the weights that meet large inputs.

Round-to-nearest treats every weight alike, but a weight's error is
multiplied by the input it meets: errors in the columns of input channels
with large activations cost the most. AWQ (Lin et al., 2024) scales those
columns *up* before quantizing (so they get relatively finer steps) and the
input *down* by the same factor (so the product is unchanged)::

    y = x W^T = (x / s) (W * s)^T   ->   quantize W * s, not W

with ``s = mean|x|**alpha`` per input channel, normalised, and ``alpha``
chosen per layer by a grid search that minimises the layer's output error on
calibration inputs. The effective weight is ``Q(W * s) / s``; a deployed
model folds ``1/s`` into the previous operation (or, as torchao's
``AWQConfig`` does, multiplies the activation by it at run time).

This follows torchao's ``AWQObserver`` (same statistic, grid and
normalisation), applied on top of :func:`qhelpers.weight_only.fake_quantize_affine`
with the same granularity, ``quant.PerGroup(size)`` or ``quant.PerChannel(0)``.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from .checks import check_int, check_tensor
from .quant import PerChannel, PerGroup
from .weight_only import check_args, check_group_size, check_weight, choose_qparams_affine, fake_quantize_affine

__all__ = ["AwqSearch", "awq_search", "activation_aware_weight"]


@dataclass(frozen=True)
class AwqSearch:
    """The result of :func:`awq_search` for one layer: the chosen ``alpha`` and scales, and the error of every ``alpha`` tried."""

    alpha: float
    scale: torch.Tensor
    errors: dict[float, float]
    weight: torch.Tensor  # the effective (dequantized, unscaled) weight Q(W * s) / s

    @property
    def rtn_error(self) -> float:
        """The output error of plain round-to-nearest (``alpha = 0``: every ``s`` is 1)."""
        return self.errors[0.0]


@torch.no_grad()
def awq_search(
    weight: torch.Tensor,
    inputs: torch.Tensor,
    bits: int = 4,
    granularity: PerGroup | PerChannel = PerGroup(64),
    symmetric: bool = False,
    grid: int = 20,
) -> AwqSearch:
    """Search ``alpha`` in ``{0, 1/grid, ..., (grid-1)/grid}`` for the scales ``s = mean|x|**alpha`` that minimise the output MSE.

    ``inputs`` are the layer's calibration inputs ``(tokens, in_features)``
    (e.g. from :func:`qhelpers.activations.capture_inputs`). ``alpha = 0`` is
    round-to-nearest, so the search never does worse than RTN on these inputs.
    """
    _check_search(weight, inputs, bits, granularity, symmetric, grid)
    w = weight.detach().float()
    inputs = inputs.detach().float()  # e.g. FP16 activations; FP32 ones are used as they are
    x_mean = inputs.abs().mean(dim=0)
    reference = inputs @ w.T
    errors: dict[float, float] = {}
    best = None
    for i in range(grid):
        alpha = i / grid
        s = x_mean.pow(alpha).clamp(min=1e-4)
        s = s / (s.max() * s.min()).sqrt()
        w_eff = fake_quantize_affine(w * s, bits, granularity, symmetric) / s
        err = float(((inputs @ w_eff.T - reference) ** 2).mean())
        errors[alpha] = err
        if best is None or err < best[0]:
            best = (err, alpha, s, w_eff)
    _, alpha, s, w_eff = best
    return AwqSearch(alpha, s, errors, w_eff)


def activation_aware_weight(weight: torch.Tensor, inputs: torch.Tensor, bits: int = 4,
                            granularity: PerGroup | PerChannel = PerGroup(64), symmetric: bool = False,
                            grid: int = 20) -> torch.Tensor:
    """The effective weight ``Q(W * s) / s`` of the best ``alpha`` (see :func:`awq_search`)."""
    return awq_search(weight, inputs, bits, granularity, symmetric, grid).weight


def _check_search(weight: object, inputs: object, bits: object, granularity: object, symmetric: object, grid: object) -> None:
    check_weight(weight, "weight")
    check_tensor("inputs", inputs)
    if inputs.dim() != 2 or inputs.shape[1] != weight.shape[1]:
        raise ValueError(f"inputs must be (tokens, {weight.shape[1]}), got {tuple(inputs.shape)}: the layer's inputs "
                         "flattened over batch and positions (capture_inputs gives them so)")
    check_args(bits, granularity, symmetric)
    check_int("grid", grid, 1)
    check_group_size(weight.shape[1], granularity)
    choose_qparams_affine(weight.detach().float(), bits, granularity, symmetric)  # the scales of alpha = 0 (RTN) must fit FP16
