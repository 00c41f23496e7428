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
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

from .weight_only import fake_quantize

__all__ = ["smoothing_factors", "migrate", "fold_smoothing", "inject_outliers", "FakeW8A8Linear", "w8a8", "SMOOTHABLE"]

# Layers whose input is a LayerNorm's output, so that SmoothQuant's 1/s folds into that LayerNorm.
SMOOTHABLE = {"attn.c_attn": "ln_1", "mlp.c_fc": "ln_2"}
_EPS = torch.finfo(torch.float32).eps


def smoothing_factors(act_absmax: torch.Tensor, weight: torch.Tensor, alpha: float) -> torch.Tensor:
    """SmoothQuant's per-input-channel factors ``s = max|X|**alpha / max|W|**(1 - alpha)`` (as torchao computes them)."""
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha={alpha} must lie in [0, 1]")
    if act_absmax.shape != weight.shape[1:]:
        raise ValueError(f"act_absmax has shape {tuple(act_absmax.shape)}; the weight has {weight.shape[1]} input channels")
    w_absmax = weight.detach().abs().amax(dim=0)
    return (act_absmax + _EPS) ** alpha / (w_absmax + _EPS) ** (1 - alpha)


@torch.no_grad()
def migrate(model: nn.Module, factors: dict[str, torch.Tensor]) -> nn.Module:
    """A copy of a :class:`~qhelpers.transformer.GPT` where each named Linear's input is divided by ``s``, its weight columns multiplied by ``s``.

    ``factors`` maps names such as ``"h.0.attn.c_attn"`` (a key of
    :data:`SMOOTHABLE` under block ``i``) to ``s`` (one factor per input
    channel). The division happens inside the LayerNorm that feeds the layer
    (its weight and bias divided by ``s``), so the FP32 model computes the
    same function, up to rounding.
    """
    out = copy.deepcopy(model)
    for name, s in factors.items():
        prefix, _, rest = name.partition(".")
        index, _, linear_name = rest.partition(".")
        if prefix != "h" or linear_name not in SMOOTHABLE:
            raise ValueError(f"{name!r}: only the layers after a LayerNorm can migrate, i.e. h.<i>.{' or h.<i>.'.join(SMOOTHABLE)}")
        block = out.h[int(index)]
        linear = block.get_submodule(linear_name)
        ln = block.get_submodule(SMOOTHABLE[linear_name])
        if s.shape != (linear.in_features,) or not bool((s > 0).all()):
            raise ValueError(f"{name}: the factors must be {linear.in_features} positive numbers")
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
    factors = {}
    for i in range(len(model.h)):
        for linear_name in SMOOTHABLE:
            name = f"h.{i}.{linear_name}"
            factors[name] = smoothing_factors(act_absmax[name], model.get_submodule(name).weight, alpha)
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
    if not channels or factor <= 0:
        raise ValueError("give at least one channel and a positive factor")
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
        if act not in ("per-tensor", "per-token"):
            raise ValueError(f"act={act!r} must be 'per-tensor' or 'per-token'")
        if act == "per-tensor" and act_absmax is None:
            raise ValueError("per-tensor activation scales need act_absmax from calibration")
        self.act = act
        w = linear.weight.detach()
        self.register_buffer("weight", fake_quantize(w, 8, None, symmetric=True, scale_dtype=torch.float32))
        self.bias = None if linear.bias is None else nn.Parameter(linear.bias.detach().clone(), requires_grad=False)
        self.register_buffer("act_scale", None if act_absmax is None else torch.clamp(act_absmax.max() / 127.5, min=_EPS))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.act == "per-token":
            x2 = x.reshape(-1, x.shape[-1])
            xq = fake_quantize(x2, 8, None, symmetric=True, scale_dtype=torch.float32).reshape(x.shape)
        else:
            xq = torch.clamp(torch.round(x * (1.0 / self.act_scale)), -128, 127) * self.act_scale
        return F.linear(xq, self.weight, self.bias)

    def extra_repr(self) -> str:
        return f"W8A8, activations {self.act}"


def w8a8(model: nn.Module, act_absmax: dict[str, torch.Tensor], act: Literal["per-tensor", "per-token"]) -> nn.Module:
    """A copy of ``model`` whose Linear layers named in ``act_absmax`` are :class:`FakeW8A8Linear`."""
    out = copy.deepcopy(model)
    for name, absmax in act_absmax.items():
        parent_name, _, child = name.rpartition(".")
        parent = out.get_submodule(parent_name) if parent_name else out
        setattr(parent, child, FakeW8A8Linear(getattr(parent, child), act, absmax))
    return out.eval()
