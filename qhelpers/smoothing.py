"""W8A8 with outlier channels: per-tensor vs per-token activation scales, and SmoothQuant's migration.

Quantizing activations as well as weights (W8A8) lets a layer run an INT8
matrix multiply, but activations are harder than weights: a few *channels*
carry values far larger than the rest, and one per-tensor scale must stretch
over them. Two answers:

- **per-token** scales (one per row of the activation): cheap to compute on
  the fly, and what torchao's ``Int8DynamicActivationInt8WeightConfig`` does;
  they do not help when the outliers sit in channels, which every token shares;
- **SmoothQuant** (Xiao et al., 2023) divides each input channel ``j`` by
  ``s_j = max|X_j|**alpha / max|W_:,j|**(1 - alpha)`` and multiplies the
  weight's column ``j`` by it: the product is unchanged, the activation's
  outliers shrink, the weight absorbs them. When the layer's input comes out
  of a LayerNorm, ``1/s`` folds into the LayerNorm's weight (and bias): no
  extra work at run time.

This module *simulates* W8A8 in FP32 (:class:`FakeW8A8Linear`: INT8 values,
float arithmetic), which scores it exactly; torchao's configs run it.
"""

from __future__ import annotations

import copy
import numbers
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

from .checks import (check_dict, check_int, check_module, check_number, check_positive, check_tensor, describe,
                     linear_layers)
from .quant import EPS, PerChannel
from .transformer import GPT
from .weight_only import check_features, check_weight, fake_quantize_affine

__all__ = ["smoothing_factors", "migrate", "fold_smoothing", "inject_outliers", "FakeW8A8Linear", "w8a8", "SMOOTHABLE"]

# Layers whose input is a LayerNorm's output, so that SmoothQuant's 1/s folds into that LayerNorm.
SMOOTHABLE = {"attn.c_attn": "ln_1", "mlp.c_fc": "ln_2"}


def smoothing_factors(act_absmax: torch.Tensor, weight: torch.Tensor, alpha: float) -> torch.Tensor:
    """SmoothQuant's per-input-channel factors ``s = max|X|**alpha / max|W|**(1 - alpha)`` (as torchao computes them)."""
    check_number("alpha", alpha, 0, 1)
    check_weight(weight, "weight")
    _check_absmax("act_absmax", act_absmax, weight.shape[1], "the weight")
    w_absmax = weight.detach().abs().amax(dim=0)
    return (act_absmax + EPS) ** alpha / (w_absmax + EPS) ** (1 - alpha)


@torch.no_grad()
def migrate(model: nn.Module, factors: dict[str, torch.Tensor]) -> nn.Module:
    """A copy of a :class:`~qhelpers.transformer.GPT` where each named Linear's input is divided by ``s``, its weight columns multiplied by ``s``.

    ``factors`` maps names such as ``"h.0.attn.c_attn"`` (a key of
    :data:`SMOOTHABLE` under block ``i``) to ``s`` (one factor per input
    channel). The division happens inside the LayerNorm that feeds the layer
    (its weight and bias divided by ``s``), so the FP32 model computes the
    same function, up to rounding.
    """
    _check_gpt(model)
    check_dict("factors", factors, "{'h.0.attn.c_attn': s} (one factor per input channel)")
    targets = {name: _check_factors(model, name, s) for name, s in factors.items()}
    out = copy.deepcopy(model)
    for name, s in factors.items():
        index, linear_name = targets[name]
        block = out.h[index]
        linear = block.get_submodule(linear_name)
        ln = block.get_submodule(SMOOTHABLE[linear_name])
        ln.weight.div_(s)
        if ln.bias is not None:
            ln.bias.div_(s)
        linear.weight.mul_(s)
    return out.eval()


def fold_smoothing(model: nn.Module, act_absmax: dict[str, torch.Tensor], alpha: float) -> nn.Module:
    """A copy of a GPT with SmoothQuant folded in (see :func:`migrate`): the FP32 function is unchanged.

    For each block, the inputs of ``attn.c_attn`` (after ``ln_1``) and
    ``mlp.c_fc`` (after ``ln_2``) are divided by
    ``s = smoothing_factors(act_absmax[name], weight, alpha)``. ``act_absmax``
    maps each such Linear's name to its input's per-channel ``max|x|`` (from
    :func:`qhelpers.activations.channel_absmax`); other names are ignored.
    """
    _check_gpt(model)
    check_dict("act_absmax", act_absmax, "{'h.0.attn.c_attn': channel_absmax(x)}")
    check_number("alpha", alpha, 0, 1)
    names = [f"h.{i}.{linear_name}" for i in range(len(model.h)) for linear_name in SMOOTHABLE]
    for name in names:
        if name not in act_absmax:
            raise ValueError(f"act_absmax has no entry for {name}: give channel_absmax of the inputs of every "
                             f"{' and '.join('h.<i>.' + n for n in SMOOTHABLE)} (from capture_inputs)")
        _check_absmax(f"act_absmax[{name!r}]", act_absmax[name], model.get_submodule(name).in_features, name)
    factors = {name: smoothing_factors(act_absmax[name], model.get_submodule(name).weight, alpha) for name in names}
    return migrate(model, factors)


def inject_outliers(model: nn.Module, channels: list[int], factor: float = 30.0) -> nn.Module:
    """A copy of a GPT that computes the same FP32 function but whose LayerNorm outputs have outlier channels.

    SmoothQuant in reverse: in every block, ``channels`` of the LayerNorm
    outputs feeding ``attn.c_attn`` and ``mlp.c_fc`` are multiplied by
    ``factor`` and the matching weight columns divided by it. Large language
    models grow such channels by themselves (LayerNorm gains tens of times
    the median in a handful of channels); a 4-layer model trained for two
    minutes does not, so this recreates their situation exactly.
    """
    _check_gpt(model)
    channels = _check_channels(channels, model.config.n_embd)
    check_positive("factor", factor)
    factors = {}
    for i in range(len(model.h)):
        for linear_name in SMOOTHABLE:
            name = f"h.{i}.{linear_name}"
            s = torch.ones(model.get_submodule(name).in_features)
            s[list(channels)] = 1.0 / factor
            factors[name] = s
    return migrate(model, factors)


class FakeW8A8Linear(nn.Module):
    """A Linear layer simulating W8A8: INT8 weights (symmetric, per output channel) and INT8 activations.

    ``act="per-tensor"`` uses one static scale, ``act_absmax / 127.5`` from
    calibration (values beyond it are clipped); ``act="per-token"`` computes
    one scale per token (row) from the token itself, as a dynamic kernel
    does. Values are quantized and dequantized, the product runs in FP32.
    """

    def __init__(self, linear: nn.Linear, act: Literal["per-tensor", "per-token"], act_absmax: torch.Tensor | None = None) -> None:
        super().__init__()
        if not isinstance(linear, nn.Linear):
            raise TypeError(f"linear must be an nn.Linear, not {describe(linear)}")
        _check_act(act)
        if act == "per-tensor" and act_absmax is None:
            raise ValueError("per-tensor activation scales need act_absmax from calibration")
        check_weight(linear.weight, "linear.weight")
        if act_absmax is not None:
            _check_absmax("act_absmax", act_absmax, linear.in_features, "the layer", scalar_ok=True)
        self.act, self.in_features = act, linear.in_features
        w = linear.weight.detach()
        self.register_buffer("weight", fake_quantize_affine(w, 8, PerChannel(0), symmetric=True, scale_dtype=torch.float32))
        self.bias = None if linear.bias is None else nn.Parameter(linear.bias.detach().clone(), requires_grad=False)
        self.register_buffer("act_scale", None if act_absmax is None else torch.clamp(act_absmax.max() / 127.5, min=EPS))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        check_features(x, self.in_features)
        if self.act == "per-token":
            x2 = x.reshape(-1, x.shape[-1])
            xq = fake_quantize_affine(x2, 8, PerChannel(0), symmetric=True, scale_dtype=torch.float32).reshape(x.shape)  # per token
        else:
            xq = torch.clamp(torch.round(x * (1.0 / self.act_scale)), -128, 127) * self.act_scale
        return F.linear(xq, self.weight, self.bias)

    def extra_repr(self) -> str:
        return f"W8A8, activations {self.act}"


def w8a8(model: nn.Module, act_absmax: dict[str, torch.Tensor], act: Literal["per-tensor", "per-token"]) -> nn.Module:
    """A copy of ``model`` whose Linear layers named in ``act_absmax`` are :class:`FakeW8A8Linear`."""
    check_module(model)
    _check_act(act)
    check_dict("act_absmax", act_absmax, "{'h.0.mlp.c_fc': channel_absmax(x)}")
    modules = dict(model.named_modules())
    for name in act_absmax:
        if name not in modules or not name:
            raise ValueError(f"act_absmax names {name}, not a layer of the model; {linear_layers(model)}")
        if not isinstance(modules[name], nn.Linear):
            raise TypeError(f"{name} is a {type(modules[name]).__name__}, not an nn.Linear: only Linear layers become W8A8")
    out = copy.deepcopy(model)
    for name, absmax in act_absmax.items():
        parent_name, _, child = name.rpartition(".")
        parent = out.get_submodule(parent_name) if parent_name else out
        setattr(parent, child, FakeW8A8Linear(getattr(parent, child), act, absmax))
    return out.eval()


# --- argument checks ------------------------------------------------------------------------------------------

def _check_gpt(model: object) -> None:
    if not isinstance(model, GPT):
        raise TypeError("model must be a qhelpers.transformer.GPT (its blocks h.<i> feed attn.c_attn from ln_1 and "
                        f"mlp.c_fc from ln_2), not {describe(model)}")


def _check_act(act: object) -> None:
    if act not in ("per-tensor", "per-token"):
        raise ValueError(f"act={act!r} must be 'per-tensor' or 'per-token'")


def _check_absmax(name: str, absmax: object, in_features: int, owner: str, scalar_ok: bool = False) -> None:
    """A per-channel range: finite, non-negative, one value per input channel (or one in all, if ``scalar_ok``)."""
    check_tensor(name, absmax)
    if tuple(absmax.shape) != (in_features,) and not (scalar_ok and absmax.numel() == 1):
        raise ValueError(f"{name} has shape {tuple(absmax.shape)}; {owner} has {in_features} input channels")
    if bool((absmax < 0).any()):
        raise ValueError(f"{name} holds negative values: it is a range, max|x| per input channel (from channel_absmax)")


def _check_factors(model: GPT, name: object, s: object) -> tuple[int, str]:
    """(block index, Linear name) of a factors entry, after checking its name and its factors."""
    prefix, _, rest = str(name).partition(".")
    index, _, linear_name = rest.partition(".")
    if prefix != "h" or linear_name not in SMOOTHABLE or not index.isdigit():
        raise ValueError(f"{name!r}: only the layers after a LayerNorm can migrate, i.e. h.<i>.{' or h.<i>.'.join(SMOOTHABLE)}")
    if int(index) >= len(model.h):
        raise ValueError(f"{name!r}: the model has {len(model.h)} blocks, h.0 to h.{len(model.h) - 1}")
    if not isinstance(s, torch.Tensor) or not s.is_floating_point():
        raise TypeError(f"factors[{name!r}] must be a torch.Tensor of floats, not {describe(s)}")
    n = model.h[int(index)].get_submodule(linear_name).in_features
    if tuple(s.shape) != (n,) or not bool((torch.isfinite(s) & (s > 0)).all()):
        raise ValueError(f"{name}: the factors must be {n} positive, finite numbers")
    return int(index), linear_name


def _check_channels(channels: object, n_embd: int) -> list[int]:
    if isinstance(channels, torch.Tensor) and not channels.is_floating_point() and channels.dim() == 1:
        channels = channels.tolist()
    if isinstance(channels, (str, bytes, numbers.Number)) or not hasattr(channels, "__iter__"):
        raise TypeError(f"channels must be a list of channel indices, e.g. [3, 17], not {describe(channels)}")
    channels = list(channels)
    if not channels:
        raise ValueError("channels is empty: give at least one channel index, e.g. [3, 17]")
    return [check_int(f"channels[{i}]", c, 0, n_embd - 1) for i, c in enumerate(channels)]
