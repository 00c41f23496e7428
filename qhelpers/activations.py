"""What flows into each Linear layer: capture it on calibration data, and measure its per-channel range.

Activation-aware methods (SmoothQuant, AWQ) decide how to quantize a layer
from the inputs it sees. :func:`capture_inputs` runs a model on calibration
batches and keeps, for each selected ``nn.Linear``, its inputs flattened to
``(tokens, in_features)``; :func:`channel_absmax` and :func:`outlier_channels`
turn them into the per-channel statistics those methods use.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Callable, Iterable

import torch
from torch import nn

from .checks import check_function, check_module, check_positive, check_selected, check_tensor, describe
from .weight_only import in_blocks

__all__ = ["capture_inputs", "channel_absmax", "outlier_channels"]


@torch.inference_mode()
def capture_inputs(
    model: nn.Module,
    batches: Iterable[torch.Tensor] | torch.Tensor,
    include: Callable[[str, nn.Module], bool] = in_blocks,
) -> dict[str, torch.Tensor]:
    """The inputs of every layer ``include(name, module)`` selects, over all ``batches``: ``{name: (tokens, in_features)}``.

    ``batches`` is one input tensor or an iterable of them (e.g. token ids
    ``(B, T)`` for a language model). The model runs in eval mode; hooks are
    removed afterwards, also on error. The default ``include`` takes the
    ``nn.Linear`` layers inside the blocks of a :class:`~qhelpers.transformer.GPT`.
    """
    batches = _check_capture(model, batches, include)
    seen: dict[str, list[torch.Tensor]] = {}
    hooks = []

    def hook(name: str):
        def record(_module: nn.Module, args: tuple) -> None:
            x = args[0].detach()
            seen.setdefault(name, []).append(x.reshape(-1, x.shape[-1]).float().clone())
        return record

    try:
        chosen = [name for name, module in model.named_modules() if name and include(name, module)]
        check_selected(chosen, model, include)
        for name in chosen:
            hooks.append(model.get_submodule(name).register_forward_pre_hook(hook(name)))
        model.eval()
        for i, x in enumerate(batches):
            try:
                model(x)
            except Exception as err:  # the model's own message, said about the batch that caused it
                raise ValueError(f"the model fails on batches[{i}] (shape {tuple(x.shape)}): {type(err).__name__}: {err}") from None
    finally:
        for h in hooks:
            h.remove()
    return {name: torch.cat(xs) for name, xs in seen.items()}


def channel_absmax(x: torch.Tensor) -> torch.Tensor:
    """The largest ``|x|`` of each channel (last dimension) over all tokens."""
    check_tensor("x", x)
    if x.dim() == 0:
        raise ValueError("x must have channels in its last dimension, got a 0-d tensor")
    return x.reshape(-1, x.shape[-1]).abs().amax(dim=0)


def outlier_channels(absmax: torch.Tensor, ratio: float = 6.0) -> torch.Tensor:
    """Indices of the channels whose range exceeds ``ratio`` times the median channel's range."""
    check_tensor("absmax", absmax, dims=(1,), shape_text="1-D, one range per channel (from channel_absmax)")
    if bool((absmax < 0).any()):
        raise ValueError("absmax holds negative values: it is a range per channel, max|x| (from channel_absmax)")
    check_positive("ratio", ratio)
    return torch.nonzero(absmax > ratio * absmax.median()).flatten()


def _check_capture(model: object, batches: object, include: object) -> list[torch.Tensor]:
    """The batches as a list, after checking the model, ``include`` and every batch (before anything runs)."""
    check_module(model)
    check_function("include", include, "(name, module) -> bool")
    if isinstance(batches, torch.Tensor):
        batches = [batches]
    if isinstance(batches, (str, bytes, Mapping)) or not isinstance(batches, Iterable):
        raise TypeError(f"batches must be a tensor or an iterable of tensors (e.g. a list), not {describe(batches)}")
    batches = list(batches)
    if not batches:
        raise ValueError("batches is empty: give at least one input tensor")
    for i, x in enumerate(batches):
        check_tensor(f"batches[{i}]", x, kind="any")
    return batches
