"""Non-uniform quantization with a k-means codebook: the same bits, levels placed where the weights are.

Round-to-nearest spreads its ``2**bits`` levels evenly over each group's
range, but trained weights are bell-shaped: most sit near zero, where an even
grid has few levels. A *codebook* stores ``2**bits`` arbitrary levels and
each weight stores the index of its nearest level. Here:

1. each group of weights (``quant.PerGroup(size)``, or a whole row for
   ``quant.PerChannel(0)``) is divided by its largest ``|w|``
   (one FP16 scale per group, as symmetric RTN stores), so that all groups
   of a layer share the range ``[-1, 1]``;
2. one codebook of ``2**bits`` levels per layer is fitted to those
   normalised weights by k-means (Lloyd's algorithm in 1-D), started from
   the even grid that symmetric round-to-nearest uses (``q / 7.5`` for
   ``q = -8..7`` at 4 bits): each iteration can only lower the error of the
   normalised weights, so the codebook ends at least as good as that grid
   on them, and the result is deterministic;
3. a weight dequantizes to ``codebook[code] * scale``.

The functions carry the names of torchao's codebook ops
(``torchao.prototype.quantization.codebook``: ``choose_qparams_codebook``,
``quantize_codebook``, ``dequantize_codebook``), as :mod:`qhelpers.weight_only`
carries those of its affine ones: :func:`choose_qparams_codebook` fits the
levels and the scales, :func:`quantize_codebook` assigns each weight its
nearest level, :func:`dequantize_codebook` reads them back, and
:func:`fake_quantize_codebook` does all three.

The codebook adds ``2**bits`` FP16 values per *layer* (negligible); the
scales cost what symmetric RTN's do. This is close to NF4 (QLoRA), whose
levels are fixed quantiles of a normal distribution instead of fitted ones,
and a simpler cousin of SqueezeLLM's per-row, sensitivity-weighted k-means.
"""

from __future__ import annotations

import torch

from .checks import check_int, check_tensor
from .quant import EPS, PerChannel, PerGroup, check_weight_granularity
from .weight_only import SCALE_DTYPE, check_group_scale, check_group_size, check_scale_fits, check_weight

__all__ = ["kmeans_1d", "choose_qparams_codebook", "quantize_codebook", "dequantize_codebook", "fake_quantize_codebook",
           "effective_bits_codebook"]


def kmeans_1d(values: torch.Tensor, k: int, iters: int = 25, init: torch.Tensor | None = None) -> torch.Tensor:
    """``k`` sorted centroids of the 1-D ``values`` by Lloyd's algorithm.

    It starts from ``init`` (``k`` levels) or, by default, ``k`` evenly spaced
    levels from the smallest value to the largest. Each iteration assigns every
    value to its nearest level and moves each level to the mean of its values:
    the mean squared error never increases.
    """
    _check_kmeans(values, k, iters, init)
    v = values.detach().flatten().float()
    if init is None:
        centroids = torch.linspace(float(v.min()), float(v.max()), k)
    else:
        centroids, _ = torch.sort(init.float())
    for _ in range(iters):
        codes = _assign(v, centroids)
        sums = torch.zeros(k).scatter_add_(0, codes, v)
        counts = torch.zeros(k).scatter_add_(0, codes, torch.ones_like(v))
        new = torch.where(counts > 0, sums / counts.clamp(min=1), centroids)  # an empty cluster keeps its level
        new, _ = torch.sort(new)
        if torch.equal(new, centroids):
            break
        centroids = new
    return centroids


def _assign(v: torch.Tensor, centroids: torch.Tensor) -> torch.Tensor:
    """Index of the nearest of the sorted ``centroids`` for each value (ties go to the lower level)."""
    boundaries = (centroids[1:] + centroids[:-1]) / 2
    return torch.bucketize(v, boundaries, right=False)


def _normalised(w: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    """``w`` ``(n, k)`` in groups ``(n, groups, k / groups)``, each divided by its scale (FP32)."""
    n, k = w.shape
    return w.detach().float().reshape(n, scale.shape[1], k // scale.shape[1]) / scale.float().unsqueeze(-1)


def choose_qparams_codebook(w: torch.Tensor, bits: int = 4, granularity: PerGroup | PerChannel = PerGroup(64),
                            iters: int = 25) -> tuple[torch.Tensor, torch.Tensor]:
    """``(codebook, scale)``: the layer's ``2**bits`` sorted levels (FP16 values, as FP32) and one FP16 scale per group.

    Each group's scale is its largest ``|w|``; the levels are fitted by
    :func:`kmeans_1d` to the weights divided by their scale, started from
    symmetric round-to-nearest's even grid.
    """
    _check_codebook_args(w, bits, granularity, iters)
    n, k = w.shape
    g = check_group_size(k, granularity)
    groups = w.detach().float().reshape(n, k // g, g)
    scale = check_scale_fits(torch.clamp(groups.abs().amax(dim=-1), min=EPS), SCALE_DTYPE).to(SCALE_DTYPE)
    half = 1 << (bits - 1)
    even_grid = torch.arange(-half, half, dtype=torch.float32) / (half - 0.5)  # symmetric RTN's levels
    codebook = kmeans_1d(_normalised(w, scale), 1 << bits, iters, init=even_grid).to(SCALE_DTYPE).float()
    return codebook, scale


def quantize_codebook(w: torch.Tensor, codebook: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    """The uint8 codes of ``w`` (its shape): the index of each weight's nearest level, after dividing by its group's scale."""
    check_weight(w)
    _check_codebook(codebook)
    check_group_scale(w, "w", scale)
    return _assign(_normalised(w, scale).flatten(), codebook.float()).reshape(w.shape).to(torch.uint8)


def dequantize_codebook(codes: torch.Tensor, codebook: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    """``codebook[codes] * scale`` per group, in FP32."""
    _check_dequantize_args(codes, codebook, scale)
    n, k = codes.shape
    values = codebook[codes.long()].reshape(n, scale.shape[1], -1)
    return (values * scale.float().unsqueeze(-1)).reshape(n, k)


def fake_quantize_codebook(w: torch.Tensor, bits: int = 4, granularity: PerGroup | PerChannel = PerGroup(64),
                           iters: int = 25) -> torch.Tensor:
    """``w`` through its k-means codebook and back: the values a codebook-quantized layer computes with."""
    codebook, scale = choose_qparams_codebook(w, bits, granularity, iters)
    return dequantize_codebook(quantize_codebook(w, codebook, scale), codebook, scale)


def effective_bits_codebook(bits: int, granularity: PerGroup, numel: int) -> float:
    """Bits per weight: the code, an FP16 scale per group, and the layer's ``2**bits`` FP16 levels shared by ``numel`` weights.

    One scale per row is the group of a whole row: ``quant.PerGroup(in_features)``.
    """
    check_int("bits", bits, 1, 8)
    group_size = check_weight_granularity(granularity, per_row=False).group_size
    check_int("numel", numel, 1, hint=" (the number of weights in the layer)")
    return bits + 16 / group_size + 16 * (1 << bits) / numel


# --- argument checks ------------------------------------------------------------------------------------------

def _check_kmeans(values: object, k: object, iters: object, init: object) -> None:
    check_tensor("values", values)
    check_int("k", k, 1)
    check_int("iters", iters, 0)
    if values.numel() < k:
        raise ValueError(f"values has {values.numel()} element(s): too few for k={k} clusters (each needs one value)")
    if init is not None:
        check_tensor("init", init)
        if init.shape != (k,):
            raise ValueError(f"init must hold k={k} levels, got shape {tuple(init.shape)}")


def _check_codebook_args(w: object, bits: object, granularity: object, iters: object) -> None:
    check_weight(w)
    check_int("bits", bits, 1, 8)
    check_weight_granularity(granularity)
    check_int("iters", iters, 0)
    check_group_size(w.shape[1], granularity)
    if w.numel() < 1 << bits:
        raise ValueError(f"w has {w.numel()} weights, fewer than the 2**bits = {1 << bits} levels of the codebook: "
                         "use fewer bits or a larger layer")


def _check_codebook(codebook: object) -> None:
    check_tensor("codebook", codebook, dims=(1,))
    if bool((codebook[1:] < codebook[:-1]).any()):
        raise ValueError("codebook must hold its levels sorted in ascending order (as choose_qparams_codebook returns "
                         "them): nearest-level assignment relies on it; sort it with torch.sort(codebook).values")


def _check_dequantize_args(codes: object, codebook: object, scale: object) -> None:
    check_tensor("codes", codes, kind="int", dims=(2,), shape_text="2-D (out_features, in_features)")
    check_tensor("codebook", codebook, dims=(1,))
    check_group_scale(codes, "codes", scale)
    lo, hi, levels = int(codes.min()), int(codes.max()), codebook.numel()
    if lo < 0 or hi >= levels:
        raise ValueError(f"codes hold indices from {lo} to {hi} but the codebook has {levels} levels (indices 0 to "
                         f"{levels - 1}): were they made with another codebook?")
