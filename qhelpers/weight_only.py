"""Weight-only quantization of Linear layers, from scratch: group-wise codes, packed, dequantized on the fly.

This is how language models are usually quantized for inference: the
*weights* become ``bits``-bit integers with one scale (and zero-point) per
group of consecutive input weights of a row (``quant.PerGroup(size)``; one
scale per row is ``quant.PerChannel(0)``), while the
*activations* stay in floating point ("W4A16", "W8A16": 16-bit activations on
a GPU, FP32 here). Each forward pass unpacks and dequantizes the weight and
runs an ordinary float matrix multiply.

The quantizer follows torchao's conventions exactly, and carries its names,
so that it can be checked bit for bit against
``torchao.quantization.quant_primitives`` (``choose_qparams_affine``,
``quantize_affine``, ``dequantize_affine``) with ``block_size=(1, size)`` for
``PerGroup(size)`` and ``(1, in_features)`` for ``PerChannel(0)``:

- **symmetric**: signed codes ``[-2**(b-1), 2**(b-1) - 1]``, no zero-point,
  ``scale = max|w| / ((quant_max - quant_min) / 2)`` (``max|w| / 7.5`` at 4 bits);
- **asymmetric**: unsigned codes ``[0, 2**b - 1]``, the range widened to
  include 0, ``scale = (max - min) / (2**b - 1)``,
  ``zero_point = quant_min - round(min / scale)``;
- scales are stored in FP16 (as GPTQ/AWQ checkpoints do), zero-points in
  ``uint8``; codes are ``q = clamp(round(w * (1 / scale)) + zero_point)``;
  the smallest scale is :data:`qhelpers.quant.EPS`, torchao's ``eps``.

:mod:`qhelpers.quant` holds the general affine math of chapters 1-5, which
follows ``torch.ao.quantization``'s observers instead (FP32 scales, ``x /
scale``, an unsigned symmetric grid centred on 128) under the names without
a suffix (``quant.choose_qparams``, ``quant.quant_range(bits, signed)``): the
two conventions give different codes for the same weights, each module is
checked bit for bit against the library it mirrors, and the ``_affine``
suffix says which one a function follows.

Public API: :func:`quant_range_affine`, :func:`choose_qparams_affine`,
:func:`quantize_affine`, :func:`dequantize_affine`,
:func:`fake_quantize_affine` (round-to-nearest, "RTN"),
:class:`WeightOnlyLinear`, :class:`WeightOnlyEmbedding`, and the walker
:func:`quantize_weight_only` / :func:`replace_weights`.
"""

from __future__ import annotations

import copy
import math
from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn

from . import packing
from .checks import (check_flag, check_float_model, check_function, check_int, check_module, check_selected,
                     check_tensor, describe)
from .quant import EPS, PerChannel, PerGroup, check_weight_granularity, group_size_of


__all__ = [
    "SCALE_DTYPE",
    "quant_range_affine",
    "choose_qparams_affine",
    "quantize_affine",
    "dequantize_affine",
    "fake_quantize_affine",
    "WeightOnlyLinear",
    "WeightOnlyEmbedding",
    "quantize_weight_only",
    "replace_weights",
    "in_blocks",
    "weight_as_computed",
]

SCALE_DTYPE = torch.float16


def quant_range_affine(bits: int, symmetric: bool) -> tuple[int, int]:
    """torchao's codes for a mapping: ``[-2**(bits-1), 2**(bits-1) - 1]`` if symmetric (signed), else ``[0, 2**bits - 1]``.

    The argument is the *mapping*, as in torchao, where symmetric codes are
    signed and asymmetric ones unsigned; :func:`qhelpers.quant.quant_range`
    takes the integer dtype's signedness instead (``signed=``), because
    ``torch.ao`` also maps symmetric ranges onto unsigned codes.
    """
    _check_bits_mapping(bits, symmetric)
    return (-(1 << (bits - 1)), (1 << (bits - 1)) - 1) if symmetric else (0, (1 << bits) - 1)


def _groups(w: torch.Tensor, group_size: int) -> torch.Tensor:
    """``w`` ``(n, k)`` viewed as ``(n, k // group_size, group_size)`` (``group_size`` divides ``k``)."""
    n, k = w.shape
    return w.reshape(n, k // group_size, group_size)


def choose_qparams_affine(
    w: torch.Tensor, bits: int = 4, granularity: PerGroup | PerChannel = PerGroup(64), symmetric: bool = False,
    scale_dtype: torch.dtype = SCALE_DTYPE,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """One scale (FP16 by default) and, if asymmetric, one zero-point (uint8) per group: each ``(out, groups)``.

    ``granularity`` is ``quant.PerGroup(size)`` (``in / size`` groups per row)
    or ``quant.PerChannel(0)``: one group per row (per output channel; for
    activations laid out as ``(tokens, channels)``, per token). A scale that
    overflows ``scale_dtype`` (FP16 above 65504: weights of about 1e5 and
    more) is refused; pass ``scale_dtype=torch.float32`` for such weights. As
    in torchao, :func:`quantize_affine` takes ``1 / scale`` in the scale's
    dtype: in FP16 it overflows for a group whose largest ``|w|`` is below
    about 1e-4 (but not 0), whose codes then go to the grid's ends; FP32
    scales avoid that too.
    """
    check_args(bits, granularity, symmetric)
    check_weight(w)
    _check_scale_dtype(scale_dtype)
    groups = _groups(w, check_group_size(w.shape[1], granularity))
    qmin, qmax = quant_range_affine(bits, symmetric)
    min_neg = torch.clamp(groups.amin(dim=-1).float(), max=0.0)
    max_pos = torch.clamp(groups.amax(dim=-1).float(), min=0.0)
    if symmetric:
        scale = torch.clamp(torch.maximum(-min_neg, max_pos) / (float(qmax - qmin) / 2), min=EPS)
        return check_scale_fits(scale, scale_dtype).to(scale_dtype), None
    scale = torch.clamp((max_pos - min_neg) / float(qmax - qmin), min=EPS)
    zero_point = torch.clamp(qmin - torch.round(min_neg / scale), qmin, qmax)
    return check_scale_fits(scale, scale_dtype).to(scale_dtype), zero_point.to(torch.uint8)


def quantize_affine(
    w: torch.Tensor, scale: torch.Tensor, zero_point: torch.Tensor | None, bits: int, symmetric: bool
) -> torch.Tensor:
    """The integer codes of ``w`` (int16, shape of ``w``): ``clamp(round(w * (1 / scale)) + zero_point)`` per group.

    The groups are read from ``scale`` (``(out, groups)``, from :func:`choose_qparams_affine`).
    """
    _check_bits_mapping(bits, symmetric)
    _check_qparams(check_weight(w), "w", scale, zero_point, bits, symmetric)
    return _quantize(w, scale, zero_point, bits, symmetric)


def _quantize(w: torch.Tensor, scale: torch.Tensor, zero_point: torch.Tensor | None, bits: int, symmetric: bool) -> torch.Tensor:
    groups = _groups(w, w.shape[1] // scale.shape[-1])
    qmin, qmax = quant_range_affine(bits, symmetric)
    q = torch.round(groups * (1.0 / scale).unsqueeze(-1))
    if zero_point is not None:
        q = q + zero_point.unsqueeze(-1)
    return torch.clamp(q, qmin, qmax).reshape(w.shape).to(torch.int16)


def dequantize_affine(codes: torch.Tensor, scale: torch.Tensor, zero_point: torch.Tensor | None) -> torch.Tensor:
    """``(codes - zero_point) * scale`` per group, in FP32."""
    check_tensor("codes", codes, kind="int", dims=(2,), shape_text="2-D (out_features, in_features)")
    _check_qparams(codes, "codes", scale, zero_point)
    return _dequantize(codes, scale, zero_point)


def _dequantize(codes: torch.Tensor, scale: torch.Tensor, zero_point: torch.Tensor | None) -> torch.Tensor:
    n, k = codes.shape
    q = codes.reshape(n, scale.shape[-1], -1).to(torch.float32)
    if zero_point is not None:
        q = q - zero_point.to(torch.float32).unsqueeze(-1)
    return (q * scale.unsqueeze(-1)).reshape(n, k)


def fake_quantize_affine(w: torch.Tensor, bits: int = 4, granularity: PerGroup | PerChannel = PerGroup(64),
                         symmetric: bool = False, scale_dtype: torch.dtype = SCALE_DTYPE) -> torch.Tensor:
    """Round-to-nearest (RTN): ``w`` quantized and dequantized again, the values a weight-only layer computes with."""
    scale, zero_point = choose_qparams_affine(w, bits, granularity, symmetric, scale_dtype)  # checks every argument
    return _dequantize(_quantize(w, scale, zero_point, bits, symmetric), scale, zero_point)


class _PackedWeight(nn.Module):
    """Storage shared by the weight-only layers: packed codes, FP16 scales, uint8 zero-points (buffers)."""

    def _store(self, w: torch.Tensor, bits: int, granularity: PerGroup | PerChannel, symmetric: bool) -> None:
        self.bits, self.granularity, self.symmetric = bits, granularity, symmetric
        scale, zero_point = choose_qparams_affine(w.detach().float(), bits, granularity, symmetric)
        codes = _quantize(w.detach().float(), scale, zero_point, bits, symmetric)
        qmin, _ = quant_range_affine(bits, symmetric)
        self.register_buffer("packed", packing.pack((codes - qmin).to(torch.uint8), bits))
        self.register_buffer("scale", scale)
        self.register_buffer("zero_point", zero_point)

    def codes(self) -> torch.Tensor:
        """The integer codes (int16), unpacked."""
        qmin, _ = quant_range_affine(self.bits, self.symmetric)
        return packing.unpack(self.packed, self.bits).to(torch.int16) + qmin

    def dequantized_weight(self) -> torch.Tensor:
        """The FP32 weight this layer computes with (unpack, subtract the zero-point, multiply by the scale)."""
        return _dequantize(self.codes(), self.scale, self.zero_point)  # trusted buffers: no checks, compiles cleanly

    def effective_bits(self) -> float:
        """Bits stored per weight, scales and zero-points included."""
        per_scale = self.packed.shape[1] * 8 // self.bits // self.scale.shape[1]  # a row's weights / its scales
        return packing.effective_bits(self.bits, PerGroup(per_scale), scale_bits=16, zero_point_bits=0 if self.symmetric else 8)


class WeightOnlyLinear(_PackedWeight):
    """``nn.Linear`` with a ``bits``-bit packed, group-wise quantized weight; activations stay in float.

    ``WeightOnlyLinear.from_linear(linear, bits=4, granularity=quant.PerGroup(64))``
    is W4A16; ``bits=8, granularity=quant.PerChannel(0)`` is W8A16 with one
    scale per output row. Each call unpacks and dequantizes the weight, then
    runs ``F.linear`` in FP32: the memory saved is real, the arithmetic is not
    changed.
    """

    def __init__(self, weight: torch.Tensor, bias: torch.Tensor | None, bits: int = 4,
                 granularity: PerGroup | PerChannel = PerGroup(64), symmetric: bool = False) -> None:
        super().__init__()
        check_args(bits, granularity, symmetric)
        check_packable(check_weight(weight, "weight"), bits, granularity)
        if bias is not None:
            if not isinstance(bias, torch.Tensor):
                raise TypeError(f"bias must be a torch.Tensor or None, not {describe(bias)}")
            if tuple(bias.shape) != (weight.shape[0],):
                raise ValueError(f"bias has shape {tuple(bias.shape)} but the weight has {weight.shape[0]} output features")
        self.out_features, self.in_features = weight.shape
        self._store(weight, bits, granularity, symmetric)
        self.bias = None if bias is None else nn.Parameter(bias.detach().clone(), requires_grad=False)

    @classmethod
    def from_linear(cls, linear: nn.Linear, bits: int = 4, granularity: PerGroup | PerChannel = PerGroup(64),
                    symmetric: bool = False) -> WeightOnlyLinear:
        if not isinstance(linear, nn.Linear):
            raise TypeError(f"from_linear needs an nn.Linear, not {type(linear).__name__}")
        return cls(linear.weight, linear.bias, bits, granularity, symmetric)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        check_features(x, self.in_features)
        return F.linear(x, self.dequantized_weight(), self.bias)

    def extra_repr(self) -> str:
        kind = "symmetric" if self.symmetric else "asymmetric"
        return f"in_features={self.in_features}, out_features={self.out_features}, W{self.bits}A16, {self.granularity}, {kind}"


class WeightOnlyEmbedding(_PackedWeight):
    """``nn.Embedding`` with a packed, group-wise quantized table (groups along the embedding dimension)."""

    def __init__(self, embedding: nn.Embedding, bits: int = 4, granularity: PerGroup | PerChannel = PerGroup(64),
                 symmetric: bool = False) -> None:
        super().__init__()
        if not isinstance(embedding, nn.Embedding):
            raise TypeError(f"WeightOnlyEmbedding needs an nn.Embedding, not {type(embedding).__name__}")
        check_args(bits, granularity, symmetric)
        check_packable(check_weight(embedding.weight, "embedding.weight"), bits, granularity)
        self.num_embeddings, self.embedding_dim = embedding.weight.shape
        self._store(embedding.weight, bits, granularity, symmetric)

    def forward(self, idx: torch.Tensor) -> torch.Tensor:
        check_tensor("idx", idx, kind="int")
        if not torch.compiler.is_compiling():  # a value check would break the compiled graph
            lo, hi = int(idx.min()), int(idx.max())
            if lo < 0 or hi >= self.num_embeddings:
                raise ValueError(f"idx holds token ids from {lo} to {hi}; the table has {self.num_embeddings} rows "
                                 f"(ids 0 to {self.num_embeddings - 1})")
        return F.embedding(idx, self.dequantized_weight())

    def extra_repr(self) -> str:
        return f"{self.num_embeddings}, {self.embedding_dim}, {self.bits}-bit, {self.granularity}"


def in_blocks(name: str, module: nn.Module) -> bool:
    """The default choice of layers: every ``nn.Linear`` inside a transformer block (``h.<i>.``), not the head."""
    if not isinstance(name, str):
        raise TypeError(f"name must be a str (a module's name from named_modules()), not {describe(name)}")
    return isinstance(module, nn.Linear) and name.startswith("h.")


def _parent(model: nn.Module, name: str) -> tuple[nn.Module, str]:
    parent_name, _, child = name.rpartition(".")
    return (model.get_submodule(parent_name) if parent_name else model), child


def quantize_weight_only(
    model: nn.Module,
    bits: int = 4,
    granularity: PerGroup | PerChannel = PerGroup(64),
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
    check_module(model)
    check_args(bits, granularity, symmetric)
    check_function("include", include, "(name, module) -> bool")
    _check_not_quantized(model)
    chosen = [n for n, m in model.named_modules() if n and include(n, m)]
    check_selected(chosen, model, include)
    for name in chosen:
        _check_swappable(name, model.get_submodule(name), bits, granularity)
    out = copy.deepcopy(model)
    for name in chosen:
        module = out.get_submodule(name)
        if isinstance(module, nn.Linear):
            new: nn.Module = WeightOnlyLinear.from_linear(module, bits, granularity, symmetric)
        else:
            new = WeightOnlyEmbedding(module, bits, granularity, symmetric)
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
    :func:`fake_quantize_affine`), kept in FP32 so that every method is evaluated the
    same way and at full speed.
    """
    check_module(model)
    check_function("new_weight", new_weight, "(name, linear) -> tensor")
    check_function("include", include, "(name, module) -> bool")
    chosen = [n for n, m in model.named_modules() if n and include(n, m)]
    check_selected(chosen, model, include)
    for name in chosen:
        if not isinstance(model.get_submodule(name), nn.Linear):
            raise TypeError(f"{name} is a {type(model.get_submodule(name)).__name__}, not an nn.Linear")
    out = copy.deepcopy(model)
    for name in chosen:
        module = out.get_submodule(name)
        w = new_weight(name, module)
        _check_new_weight(name, w, tuple(module.weight.shape))
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
    check_module(layer, "layer")
    in_features = getattr(layer, "in_features", None)
    if not isinstance(in_features, int):
        weight = getattr(layer, "weight", None)
        if not isinstance(weight, torch.Tensor) or weight.dim() != 2:
            raise TypeError("layer must be a linear layer (nn.Linear, WeightOnlyLinear, FakeW8A8Linear, a torchao-quantized "
                            f"nn.Linear): one with in_features or a 2-D weight, not {describe(layer)}")
        in_features = weight.shape[1]
    eye = torch.eye(in_features)
    out = layer(eye)
    bias = getattr(layer, "bias", None)
    if bias is not None:
        out = out - bias
    return out.T.contiguous()


# --- argument checks (public for codebook, activation_aware and smoothing; not in __all__) ----------------------

def check_args(bits: object, granularity: object, symmetric: object) -> None:
    """``bits`` from 2 to 8, ``granularity`` ``quant.PerGroup(size)`` or ``quant.PerChannel(0)``, ``symmetric`` True or False."""
    check_int("bits", bits, 2, 8)
    check_weight_granularity(granularity)
    check_flag("symmetric", symmetric)


def _check_bits_mapping(bits: object, symmetric: object) -> None:
    check_int("bits", bits, 2, 8)
    check_flag("symmetric", symmetric)


def check_weight(w: object, what: str = "w") -> torch.Tensor:
    """``w`` if it is a finite, non-empty, 2-D floating-point tensor ``(out_features, in_features)``."""
    return check_tensor(what, w, dims=(2,), shape_text="2-D (out_features, in_features)")


def check_group_size(in_features: int, granularity: PerGroup | PerChannel, where: str = "") -> int:
    """The weights per scale of a checked ``granularity`` (``in_features`` for ``PerChannel(0)``), if it divides ``in_features``."""
    g = group_size_of(granularity, in_features)
    if in_features % g:
        raise ValueError(f"{where}in_features={in_features} is not a multiple of the group size in PerGroup({g}): pick a "
                         f"group size that divides {in_features}, or quant.PerChannel(0) for one scale per row")
    return g


def check_packable(w: torch.Tensor, bits: int, granularity: PerGroup | PerChannel, where: str = "") -> None:
    """``w``'s rows split into groups and pack into whole bytes at ``bits`` bits."""
    in_features = w.shape[1]
    check_group_size(in_features, granularity, where)
    chunk = 8 // math.gcd(bits, 8)
    if in_features % chunk:
        raise ValueError(f"{where}in_features={in_features}: {bits}-bit packing needs a multiple of {chunk} weights per row")


def check_scale_fits(scale: torch.Tensor, scale_dtype: torch.dtype, what: str = "w") -> torch.Tensor:
    """``scale`` (FP32, one per group) if it stays finite in ``scale_dtype``; FP16 overflows above 65504."""
    stored = scale.to(scale_dtype)
    bad = ~torch.isfinite(stored)
    if bool(bad.any()):
        where = tuple(int(i) for i in bad.nonzero()[0])
        raise ValueError(
            f"{what}'s range is too wide for {scale_dtype} scales: group {where} needs a scale of {float(scale[where]):.3g}, "
            f"which overflows {scale_dtype} (largest {torch.finfo(scale_dtype).max:.3g}). Pass scale_dtype=torch.float32, "
            f"or scale {what} down (e.g. divide it by a power of ten and multiply the output back)")
    return scale


def check_features(x: object, in_features: int) -> None:
    """``x`` is a floating-point tensor with ``in_features`` in its last dimension (a layer's input)."""
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"x must be a torch.Tensor, not {describe(x)}")
    if not x.is_floating_point():
        raise TypeError(f"x must be a floating-point tensor, got dtype {x.dtype}")
    if x.dim() == 0 or x.shape[-1] != in_features:
        got = x.shape[-1] if x.dim() else "no"
        raise ValueError(f"x has {got} features in its last dimension; this layer takes in_features={in_features}")


def _check_scale_dtype(scale_dtype: object) -> None:
    if not isinstance(scale_dtype, torch.dtype):
        raise TypeError(f"scale_dtype must be a torch.dtype (torch.float16, torch.bfloat16, torch.float32), not {describe(scale_dtype)}")
    if not scale_dtype.is_floating_point:
        raise ValueError(f"scale_dtype={scale_dtype} must be a floating-point dtype (torch.float16, torch.bfloat16, torch.float32)")


def check_group_scale(data: torch.Tensor, what: str, scale: object) -> torch.Tensor:
    """``scale`` if it holds one positive, finite scale per group of ``data`` ``(n, k)``: shape ``(n, groups)``."""
    check_tensor("scale", scale, dims=(2,), shape_text="2-D (out_features, groups)")
    n, k = data.shape
    if scale.shape[0] != n:
        raise ValueError(f"scale has shape {tuple(scale.shape)} but {what} of shape {(n, k)} needs ({n}, groups)")
    if k % scale.shape[1]:
        raise ValueError(f"scale's {scale.shape[1]} groups do not divide in_features={k}: pass the scale "
                         f"computed for this {what}")
    if not bool((scale > 0).all()):
        raise ValueError("scale must hold positive, finite numbers (from choose_qparams_affine or choose_qparams_codebook)")
    return scale


def _check_qparams(data: torch.Tensor, what: str, scale: object, zero_point: object, bits: int | None = None,
                   symmetric: bool | None = None) -> None:
    if isinstance(scale, torch.Tensor) and scale.is_floating_point() and not bool(torch.isfinite(scale).all()):
        raise ValueError("scale must hold positive, finite numbers (from choose_qparams_affine or choose_qparams_codebook)")
    check_group_scale(data, what, scale)
    if symmetric is True and zero_point is not None:
        raise ValueError("symmetric quantization has no zero-point: pass zero_point=None (as choose_qparams_affine returns it)")
    if symmetric is False and zero_point is None:
        raise ValueError("asymmetric codes need the zero_point from choose_qparams_affine(..., symmetric=False)")
    if zero_point is None:
        return
    check_tensor("zero_point", zero_point, kind="int")
    if zero_point.shape != scale.shape:
        raise ValueError(f"zero_point has shape {tuple(zero_point.shape)} but scale has shape {tuple(scale.shape)}")
    if bits is not None:
        qmin, qmax = quant_range_affine(bits, bool(symmetric))
        lo, hi = int(zero_point.min()), int(zero_point.max())
        if lo < qmin or hi > qmax:
            raise ValueError(f"zero_point holds values from {lo} to {hi}, outside the {bits}-bit grid [{qmin}, {qmax}]: "
                             "were they chosen for other bits?")


def _check_not_quantized(model: nn.Module) -> None:
    for name, m in model.named_modules():
        if isinstance(m, _PackedWeight):
            raise ValueError(f"model is already weight-only quantized ({name} is a {type(m).__name__}): "
                             "pass the float model it was made from")
    check_float_model(model)


def _check_swappable(name: str, module: nn.Module, bits: int, granularity: PerGroup | PerChannel) -> None:
    if not isinstance(module, (nn.Linear, nn.Embedding)):
        raise TypeError(f"{name} is a {type(module).__name__}; only nn.Linear and nn.Embedding can be swapped")
    check_packable(check_weight(module.weight, f"{name}.weight"), bits, granularity, f"{name}: ")


def _check_new_weight(name: str, w: object, shape: tuple[int, ...]) -> None:
    if not isinstance(w, torch.Tensor):
        raise TypeError(f"new_weight for {name} must return a tensor, got {type(w).__name__}")
    if not w.is_floating_point():
        raise TypeError(f"new_weight for {name} returned a {w.dtype} tensor: return the float weights the layer computes "
                        "with (e.g. dequantize_affine(codes, scale, zero_point)), not the codes")
    if tuple(w.shape) != shape:
        raise ValueError(f"new_weight for {name} must return a tensor of shape {shape}, got {tuple(w.shape)}")
    bad = ~torch.isfinite(w)
    if bool(bad.any()):
        raise ValueError(f"new_weight for {name} returned a tensor holding {int(bad.sum())} NaN/inf value(s)")
