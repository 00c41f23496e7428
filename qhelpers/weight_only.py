"""Weight-only quantization of Linear layers, from scratch: group-wise codes, packed, dequantized on the fly.

This is how language models are usually quantized for inference: the
*weights* become ``bits``-bit integers with one scale (and zero-point) per
group of ``group_size`` consecutive input weights of a row, while the
*activations* stay in floating point ("W4A16", "W8A16": 16-bit activations on
a GPU, FP32 here). Each forward pass unpacks and dequantizes the weight and
runs an ordinary float matrix multiply.

The quantizer follows torchao's conventions exactly, so that it can be
checked bit for bit against ``torchao.quantization.quant_primitives``
(``choose_qparams_affine``, ``quantize_affine``, ``dequantize_affine``) with
``block_size=(1, group_size)``:

- **symmetric**: signed codes ``[-2**(b-1), 2**(b-1) - 1]``, no zero-point,
  ``scale = max|w| / ((quant_max - quant_min) / 2)`` (``max|w| / 7.5`` at 4 bits);
- **asymmetric**: unsigned codes ``[0, 2**b - 1]``, the range widened to
  include 0, ``scale = (max - min) / (2**b - 1)``,
  ``zero_point = quant_min - round(min / scale)``;
- scales are stored in FP16 (as GPTQ/AWQ checkpoints do), zero-points in
  ``uint8``; codes are ``q = clamp(round(w * (1 / scale)) + zero_point)``.

:mod:`qhelpers.quant` holds the general affine math of chapters 1-5, which
follows ``torch.ao.quantization``'s observers instead (FP32 scales, ``x /
scale``, an unsigned symmetric grid centred on 128): the two conventions give
different codes for the same weights, and each module is checked bit for bit
against the library it mirrors.

Public API: :func:`quant_range`, :func:`choose_qparams`, :func:`quantize`,
:func:`dequantize`, :func:`fake_quantize` (round-to-nearest, "RTN"),
:class:`WeightOnlyLinear`, :class:`WeightOnlyEmbedding`, and the walker
:func:`quantize_weight_only` / :func:`replace_weights`.
"""

from __future__ import annotations

import copy
from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn

from . import packing


__all__ = [
    "EPS",
    "SCALE_DTYPE",
    "quant_range",
    "choose_qparams",
    "quantize",
    "dequantize",
    "fake_quantize",
    "WeightOnlyLinear",
    "WeightOnlyEmbedding",
    "quantize_weight_only",
    "replace_weights",
    "in_blocks",
    "weight_as_computed",
]

EPS = torch.finfo(torch.float32).eps  # the smallest scale (torchao's Int8Tensor uses the same)
SCALE_DTYPE = torch.float16


def _check_args(bits: object, group_size: object, symmetric: object) -> None:
    if isinstance(bits, bool) or not isinstance(bits, int) or not 2 <= bits <= 8:
        raise ValueError(f"bits={bits!r} must be an int from 2 to 8")
    if group_size is not None and (isinstance(group_size, bool) or not isinstance(group_size, int) or group_size < 1):
        raise ValueError(f"group_size={group_size!r} must be a positive int, or None for one group per row")
    if not isinstance(symmetric, bool):
        raise TypeError(f"symmetric={symmetric!r} must be True or False")


def quant_range(bits: int, symmetric: bool) -> tuple[int, int]:
    """The integer codes: ``[-2**(bits-1), 2**(bits-1) - 1]`` if symmetric (signed), else ``[0, 2**bits - 1]``."""
    _check_args(bits, None, symmetric)
    return (-(1 << (bits - 1)), (1 << (bits - 1)) - 1) if symmetric else (0, (1 << bits) - 1)


def _groups(w: torch.Tensor, group_size: int | None) -> tuple[torch.Tensor, int]:
    if not isinstance(w, torch.Tensor) or w.dim() != 2 or not w.is_floating_point():
        raise TypeError("the weight must be a 2-D floating-point tensor (out_features, in_features)")
    n, k = w.shape
    g = k if group_size is None else group_size
    if k % g:
        raise ValueError(f"in_features={k} is not a multiple of group_size={g}")
    return w.reshape(n, k // g, g), g


def choose_qparams(
    w: torch.Tensor, bits: int = 4, group_size: int | None = 64, symmetric: bool = False,
    scale_dtype: torch.dtype = SCALE_DTYPE,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """One scale (FP16 by default) and, if asymmetric, one zero-point (uint8) per group: each ``(out, in / group_size)``.

    ``group_size=None`` means one group per row (per-channel; for activations
    laid out as ``(tokens, channels)``, per-token).
    """
    _check_args(bits, group_size, symmetric)
    groups, _ = _groups(w, group_size)
    qmin, qmax = quant_range(bits, symmetric)
    min_neg = torch.clamp(groups.amin(dim=-1).float(), max=0.0)
    max_pos = torch.clamp(groups.amax(dim=-1).float(), min=0.0)
    if symmetric:
        scale = torch.clamp(torch.maximum(-min_neg, max_pos) / (float(qmax - qmin) / 2), min=EPS)
        return scale.to(scale_dtype), None
    scale = torch.clamp((max_pos - min_neg) / float(qmax - qmin), min=EPS)
    zero_point = torch.clamp(qmin - torch.round(min_neg / scale), qmin, qmax)
    return scale.to(scale_dtype), zero_point.to(torch.uint8)


def quantize(
    w: torch.Tensor, scale: torch.Tensor, zero_point: torch.Tensor | None, bits: int, symmetric: bool
) -> torch.Tensor:
    """The integer codes of ``w`` (int16, shape of ``w``): ``clamp(round(w * (1 / scale)) + zero_point)`` per group."""
    n_groups = scale.shape[-1]
    groups, _ = _groups(w, w.shape[1] // n_groups if n_groups else None)
    qmin, qmax = quant_range(bits, symmetric)
    q = torch.round(groups * (1.0 / scale).unsqueeze(-1))
    if zero_point is not None:
        q = q + zero_point.unsqueeze(-1)
    return torch.clamp(q, qmin, qmax).reshape(w.shape).to(torch.int16)


def dequantize(codes: torch.Tensor, scale: torch.Tensor, zero_point: torch.Tensor | None) -> torch.Tensor:
    """``(codes - zero_point) * scale`` per group, in FP32."""
    n, k = codes.shape
    q = codes.reshape(n, scale.shape[-1], -1).to(torch.float32)
    if zero_point is not None:
        q = q - zero_point.to(torch.float32).unsqueeze(-1)
    return (q * scale.unsqueeze(-1)).reshape(n, k)


def fake_quantize(w: torch.Tensor, bits: int = 4, group_size: int | None = 64, symmetric: bool = False,
                  scale_dtype: torch.dtype = SCALE_DTYPE) -> torch.Tensor:
    """Round-to-nearest (RTN): ``w`` quantized and dequantized again, the values a weight-only layer computes with."""
    scale, zero_point = choose_qparams(w, bits, group_size, symmetric, scale_dtype)
    return dequantize(quantize(w, scale, zero_point, bits, symmetric), scale, zero_point)


class _PackedWeight(nn.Module):
    """Storage shared by the weight-only layers: packed codes, FP16 scales, uint8 zero-points (buffers)."""

    def _store(self, w: torch.Tensor, bits: int, group_size: int | None, symmetric: bool) -> None:
        _check_args(bits, group_size, symmetric)
        self.bits, self.symmetric = bits, symmetric
        self.group_size = w.shape[1] if group_size is None else group_size
        scale, zero_point = choose_qparams(w.detach().float(), bits, group_size, symmetric)
        codes = quantize(w.detach().float(), scale, zero_point, bits, symmetric)
        qmin, _ = quant_range(bits, symmetric)
        self.register_buffer("packed", packing.pack((codes - qmin).to(torch.uint8), bits))
        self.register_buffer("scale", scale)
        self.register_buffer("zero_point", zero_point)

    def codes(self) -> torch.Tensor:
        """The integer codes (int16), unpacked."""
        qmin, _ = quant_range(self.bits, self.symmetric)
        return packing.unpack(self.packed, self.bits).to(torch.int16) + qmin

    def dequantized_weight(self) -> torch.Tensor:
        """The FP32 weight this layer computes with (unpack, subtract the zero-point, multiply by the scale)."""
        return dequantize(self.codes(), self.scale, self.zero_point)

    def effective_bits(self) -> float:
        """Bits stored per weight, scales and zero-points included."""
        return packing.effective_bits(self.bits, self.group_size, scale_bits=16, zero_point_bits=0 if self.symmetric else 8)


class WeightOnlyLinear(_PackedWeight):
    """``nn.Linear`` with a ``bits``-bit packed, group-wise quantized weight; activations stay in float.

    ``WeightOnlyLinear.from_linear(linear, bits=4, group_size=64)`` is W4A16;
    ``bits=8`` is W8A16. Each call unpacks and dequantizes the weight, then
    runs ``F.linear`` in FP32: the memory saved is real, the arithmetic is not
    changed.
    """

    def __init__(self, weight: torch.Tensor, bias: torch.Tensor | None, bits: int = 4, group_size: int | None = 64,
                 symmetric: bool = False) -> None:
        super().__init__()
        self.out_features, self.in_features = weight.shape
        self._store(weight, bits, group_size, symmetric)
        self.bias = None if bias is None else nn.Parameter(bias.detach().clone(), requires_grad=False)

    @classmethod
    def from_linear(cls, linear: nn.Linear, bits: int = 4, group_size: int | None = 64, symmetric: bool = False) -> WeightOnlyLinear:
        if not isinstance(linear, nn.Linear):
            raise TypeError(f"from_linear needs an nn.Linear, not {type(linear).__name__}")
        return cls(linear.weight, linear.bias, bits, group_size, symmetric)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(x, self.dequantized_weight(), self.bias)

    def extra_repr(self) -> str:
        kind = "symmetric" if self.symmetric else "asymmetric"
        return f"in_features={self.in_features}, out_features={self.out_features}, W{self.bits}A16, group_size={self.group_size}, {kind}"


class WeightOnlyEmbedding(_PackedWeight):
    """``nn.Embedding`` with a packed, group-wise quantized table (groups along the embedding dimension)."""

    def __init__(self, embedding: nn.Embedding, bits: int = 4, group_size: int | None = 64, symmetric: bool = False) -> None:
        super().__init__()
        if not isinstance(embedding, nn.Embedding):
            raise TypeError(f"WeightOnlyEmbedding needs an nn.Embedding, not {type(embedding).__name__}")
        self.num_embeddings, self.embedding_dim = embedding.weight.shape
        self._store(embedding.weight, bits, group_size, symmetric)

    def forward(self, idx: torch.Tensor) -> torch.Tensor:
        return F.embedding(idx, self.dequantized_weight())

    def extra_repr(self) -> str:
        return f"{self.num_embeddings}, {self.embedding_dim}, {self.bits}-bit, group_size={self.group_size}"


def in_blocks(name: str, module: nn.Module) -> bool:
    """The default choice of layers: every ``nn.Linear`` inside a transformer block (``h.<i>.``), not the head."""
    return isinstance(module, nn.Linear) and name.startswith("h.")


def _parent(model: nn.Module, name: str) -> tuple[nn.Module, str]:
    parent_name, _, child = name.rpartition(".")
    return (model.get_submodule(parent_name) if parent_name else model), child


def quantize_weight_only(
    model: nn.Module,
    bits: int = 4,
    group_size: int | None = 64,
    symmetric: bool = False,
    *,
    include: Callable[[str, nn.Module], bool] = in_blocks,
) -> nn.Module:
    """A copy of ``model`` with every layer that ``include(name, module)`` selects swapped for its weight-only twin.

    ``nn.Linear`` becomes :class:`WeightOnlyLinear`, ``nn.Embedding`` becomes
    :class:`WeightOnlyEmbedding`. The default keeps the embeddings and the head
    in FP32; pass e.g. ``include=lambda n, m: isinstance(m, (nn.Linear, nn.Embedding))``
    to quantize everything. The original model is not changed.
    """
    _check_args(bits, group_size, symmetric)
    if not callable(include):
        raise TypeError("include must be a function (name, module) -> bool")
    out = copy.deepcopy(model)
    chosen = [(n, m) for n, m in out.named_modules() if n and include(n, m)]
    for name, module in chosen:
        if isinstance(module, nn.Linear):
            new: nn.Module = WeightOnlyLinear.from_linear(module, bits, group_size, symmetric)
        elif isinstance(module, nn.Embedding):
            new = WeightOnlyEmbedding(module, bits, group_size, symmetric)
        else:
            raise TypeError(f"{name} is a {type(module).__name__}; only nn.Linear and nn.Embedding can be swapped")
        parent, child = _parent(out, name)
        setattr(parent, child, new)
    return out.eval()


def replace_weights(
    model: nn.Module,
    new_weight: Callable[[str, nn.Linear], torch.Tensor],
    *,
    include: Callable[[str, nn.Module], bool] = in_blocks,
) -> nn.Module:
    """A copy of ``model`` whose selected Linear weights are replaced by ``new_weight(name, linear)`` (same shape).

    This *simulates* a quantization method: the new weights are the
    dequantized values a quantized layer would compute with (e.g.
    :func:`fake_quantize`), kept in FP32 so that every method is evaluated the
    same way and at full speed.
    """
    out = copy.deepcopy(model)
    for name, module in out.named_modules():
        if name and include(name, module):
            if not isinstance(module, nn.Linear):
                raise TypeError(f"{name} is a {type(module).__name__}, not an nn.Linear")
            w = new_weight(name, module)
            if not isinstance(w, torch.Tensor) or w.shape != module.weight.shape:
                raise ValueError(f"new_weight for {name} must return a tensor of shape {tuple(module.weight.shape)}")
            with torch.no_grad():
                module.weight.copy_(w)
    return out.eval()


@torch.inference_mode()
def weight_as_computed(layer: nn.Module) -> torch.Tensor:
    """The ``(out, in)`` weight a (possibly quantized) linear layer multiplies by, read back through the layer itself.

    ``layer(I)`` for the identity matrix ``I`` returns ``W^T`` (+ bias), whatever
    the weight is stored as: a packed tensor subclass whose kernel computes
    with it but offers no ``dequantize()`` (torchao's ``Int4OpaqueTensor``)
    included. Each output is one weight times 1 plus zeros, so the values are
    exact.
    """
    in_features = layer.in_features if hasattr(layer, "in_features") else layer.weight.shape[1]
    eye = torch.eye(in_features)
    out = layer(eye)
    bias = getattr(layer, "bias", None)
    if bias is not None:
        out = out - bias
    return out.T.contiguous()
