"""What flows into each Linear layer: capture it on calibration data, and measure its per-channel range.

Activation-aware methods (SmoothQuant, AWQ) decide how to quantize a layer
from the inputs it sees. :func:`capture_inputs` runs a model on calibration
batches and keeps, for each selected ``nn.Linear``, its inputs flattened to
``(tokens, in_features)``; :func:`channel_absmax` and :func:`outlier_channels`
turn them into the per-channel statistics those methods use.
"""

from __future__ import annotations

from typing import Callable, Iterable

import torch
from torch import nn

__all__ = ["capture_inputs", "channel_absmax", "outlier_channels"]


def _default_include(name: str, module: nn.Module) -> bool:
    return isinstance(module, nn.Linear) and name.startswith("h.")


@torch.inference_mode()
def capture_inputs(
    model: nn.Module,
    batches: Iterable[torch.Tensor] | torch.Tensor,
    include: Callable[[str, nn.Module], bool] = _default_include,
) -> dict[str, torch.Tensor]:
    """The inputs of every layer ``include(name, module)`` selects, over all ``batches``: ``{name: (tokens, in_features)}``.

    ``batches`` is one input tensor or an iterable of them (e.g. token ids
    ``(B, T)`` for a language model). The model runs in eval mode; hooks are
    removed afterwards, also on error.
    """
    if isinstance(batches, torch.Tensor):
        batches = [batches]
    seen: dict[str, list[torch.Tensor]] = {}
    hooks = []

    def hook(name: str):
        def record(_module: nn.Module, args: tuple) -> None:
            x = args[0].detach()
            seen.setdefault(name, []).append(x.reshape(-1, x.shape[-1]).float().clone())
        return record

    try:
        for name, module in model.named_modules():
            if name and include(name, module):
                hooks.append(module.register_forward_pre_hook(hook(name)))
        if not hooks:
            raise ValueError("include selected no layer of the model")
        model.eval()
        for x in batches:
            model(x)
    finally:
        for h in hooks:
            h.remove()
    return {name: torch.cat(xs) for name, xs in seen.items()}


def channel_absmax(x: torch.Tensor) -> torch.Tensor:
    """The largest ``|x|`` of each channel (last dimension) over all tokens."""
    if not isinstance(x, torch.Tensor) or x.dim() < 1 or x.numel() == 0:
        raise ValueError("x must be a non-empty tensor with channels in its last dimension")
    return x.reshape(-1, x.shape[-1]).abs().amax(dim=0)


def outlier_channels(absmax: torch.Tensor, ratio: float = 6.0) -> torch.Tensor:
    """Indices of the channels whose range exceeds ``ratio`` times the median channel's range."""
    if not isinstance(absmax, torch.Tensor) or absmax.dim() != 1:
        raise ValueError("absmax must be a 1-D tensor of per-channel ranges (from channel_absmax)")
    return torch.nonzero(absmax > ratio * absmax.median()).flatten()
