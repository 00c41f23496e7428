"""GPTQ, from scratch: round one weight column at a time and let the columns not yet rounded absorb its error.

Taught in chapter 08. Round-to-nearest (RTN, :func:`qhelpers.weight_only.fake_quantize_affine`)
rounds every weight on its own. But what a Linear layer must keep is its
*output* ``X W^T`` on the inputs ``X`` it meets, and those inputs are
correlated: an error in weight column ``j`` can be cancelled by nudging the
columns that see inputs correlated with input ``j``. GPTQ (Frantar et al.,
2023, "GPTQ: Accurate Post-Training Quantization for Generative Pre-trained
Transformers") minimises, row by row, the layer's output error::

    || W X^T - Ŵ X^T ||²  =  tr( (W - Ŵ) H (W - Ŵ)^T ) / 2,    H = 2 X^T X / n

(``X`` is ``(n tokens, in_features)``, ``H`` ``(in, in)``, the *Hessian* of
that error). It goes through the columns in order; column ``j`` is rounded,
and its error ``e = (w_j - q_j) / [H⁻¹]_jj`` is pushed onto the columns on its
right, ``W[:, j:] -= e [H⁻¹]_{j, j:}`` — the optimal update of the remaining
weights (Optimal Brain Surgeon) when ``H⁻¹`` is read from the upper Cholesky
factor of the inverse, restricted to the columns still to do. Worked example:
with ``H = I`` (uncorrelated inputs) ``H⁻¹`` is diagonal, nothing is pushed
and GPTQ *is* RTN, bit for bit (``tests/test_gptq.py`` checks it).

The reference implementation's details, all kept here:

- **damping**: ``H += percdamp * mean(diag H) * I`` (``percdamp = 0.01``)
  keeps the inverse stable where ``X^T X`` is nearly singular; an input that
  is always 0 (``H_jj = 0``) gets ``H_jj = 1`` and its weights are set to 0;
- **lazy block updates**: the pushes inside a block of ``blocksize = 128``
  columns touch only that block; the rest of ``W`` is updated once per block
  with one matrix product (the same result, up to rounding, far fewer passes
  over memory);
- **group-wise grids**: with ``quant.PerGroup(size)`` a group's scale and
  zero-point are chosen (min/max, torchao's grid exactly as in
  :mod:`qhelpers.weight_only`) when its first column is reached, from the
  weights *as updated so far*; the error feedback then moves the group's
  later columns within that fixed grid;
- **act-order** (``act_order=True``): the columns are visited in order of
  decreasing ``H_jj`` (the inputs with the most energy first, while many
  columns are still free to absorb their errors). The grids are then the
  "static groups" of the reference: chosen up front on the original weights,
  one per group of consecutive *original* columns, so the result is stored
  exactly like RTN's (``codes``, ``scale``, ``zero_point`` of
  :func:`qhelpers.weight_only.dequantize_affine`), with no column index.

:func:`hessian` builds ``H`` from captured inputs, :func:`gptq_weight` runs
the algorithm on one weight, :func:`gptq_quantize` runs it on every selected
layer of a model in order, each layer seeing the inputs that the layers
before it, already quantized, produce (as the reference does).
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Callable, Iterable

import torch
from torch import nn

from .activations import capture_inputs
from .checks import (check_flag, check_function, check_int, check_module, check_number, check_selected, check_tensor,
                     describe)
from .quant import PerChannel, PerGroup
from .weight_only import (SCALE_DTYPE, check_args, check_group_size, check_weight, choose_qparams_affine,
                          fake_quantize_affine, in_blocks, quant_range_affine)

__all__ = ["hessian", "GptqWeight", "gptq_weight", "output_error", "GptqLayer", "gptq_quantize"]


def hessian(inputs: torch.Tensor) -> torch.Tensor:
    """``H = 2 X^T X / n`` (FP64, ``(in, in)``) of a layer's inputs ``X`` ``(n tokens, in_features)``."""
    check_tensor("inputs", inputs, dims=(2,), shape_text="2-D (tokens, in_features), e.g. from capture_inputs")
    x = inputs.detach().double()
    return 2.0 * (x.T @ x) / x.shape[0]


@dataclass(frozen=True)
class GptqWeight:
    """GPTQ's result for one weight: the codes and grid (as :func:`qhelpers.weight_only.choose_qparams_affine` stores
    them) and the FP32 weight they dequantize to, ``dequantize_affine(codes, scale, zero_point)``."""

    weight: torch.Tensor
    codes: torch.Tensor
    scale: torch.Tensor
    zero_point: torch.Tensor | None


@torch.no_grad()
def gptq_weight(weight: torch.Tensor, H: torch.Tensor, bits: int = 4, granularity: PerGroup | PerChannel = PerGroup(64),
                symmetric: bool = False, *, percdamp: float = 0.01, blocksize: int = 128, act_order: bool = False,
                scale_dtype: torch.dtype = SCALE_DTYPE) -> GptqWeight:
    """GPTQ of one ``(out, in)`` weight for the Hessian ``H`` of its inputs (see the module's docstring).

    ``scale_dtype`` is the scales' dtype, FP16 as in :mod:`qhelpers.weight_only` (FP32 to match torchao's INT8 tensors).
    """
    _check_gptq(weight, H, bits, granularity, symmetric, percdamp, blocksize, act_order, scale_dtype)
    W = weight.detach().float().clone()
    n_out, n_in = W.shape
    g = check_group_size(n_in, granularity)
    H = H.detach().double().clone()
    dead = torch.diag(H) == 0
    H[dead, dead] = 1.0
    W[:, dead] = 0.0
    # Static grids (act-order, and one grid per row): chosen now, on the weights before any update.
    static = choose_qparams_affine(W, bits, PerGroup(g), symmetric, scale_dtype) if act_order or g == n_in else None
    perm = torch.argsort(torch.diag(H), descending=True, stable=True) if act_order else torch.arange(n_in)
    W, H = W[:, perm], H[perm][:, perm]
    H.diagonal().add_(percdamp * float(torch.diag(H).mean()))
    Hinv = _inverse_cholesky(H).float()  # upper triangular: row j holds [H⁻¹]_{j, j:} of the columns still to do
    qmin, qmax = quant_range_affine(bits, symmetric)
    codes = torch.zeros(n_out, n_in, dtype=torch.int16)
    scale = torch.zeros(n_out, n_in // g, dtype=scale_dtype)
    zero_point = None if symmetric else torch.zeros(n_out, n_in // g, dtype=torch.uint8)
    if static is not None:
        scale, zero_point = static
    block = blocksize if g == n_in else max(g, blocksize // g * g)  # a group never straddles two blocks
    for i1 in range(0, n_in, block):
        i2 = min(i1 + block, n_in)
        W1, Err1 = W[:, i1:i2].clone(), torch.zeros(n_out, i2 - i1)
        for i in range(i2 - i1):
            j = i1 + i  # the column's place in visiting order; perm[j] is its original column
            group = int(perm[j]) // g
            if static is None and j % g == 0:  # the group's grid, from its weights as updated so far
                s, z = choose_qparams_affine(W1[:, i:i + g], bits, PerChannel(0), symmetric, scale_dtype)
                scale[:, group] = s[:, 0]
                if z is not None:
                    zero_point[:, group] = z[:, 0]
            s = scale[:, group]
            z = None if zero_point is None else zero_point[:, group].float()
            q = torch.round(W1[:, i] * (1.0 / s))  # torchao's rounding: times the FP16 reciprocal of the scale
            q = torch.clamp(q if z is None else q + z, qmin, qmax)
            w_hat = (q if z is None else q - z) * s.float()
            codes[:, perm[j]] = q.to(torch.int16)
            err = (W1[:, i] - w_hat) / Hinv[j, j]
            W1[:, i:] -= err.unsqueeze(1) * Hinv[j, i1 + i:i2].unsqueeze(0)  # push the error right, inside the block
            Err1[:, i] = err
        W[:, i2:] -= Err1 @ Hinv[i1:i2, i2:]  # the lazy update of every later block, at once
    return GptqWeight(_dequantize_groups(codes, scale, zero_point), codes, scale, zero_point)


def _dequantize_groups(codes: torch.Tensor, scale: torch.Tensor, zero_point: torch.Tensor | None) -> torch.Tensor:
    """``(codes - zero_point) * scale`` per group (the arithmetic of ``weight_only.dequantize_affine``)."""
    n, k = codes.shape
    q = codes.reshape(n, scale.shape[1], -1).float()
    if zero_point is not None:
        q = q - zero_point.float().unsqueeze(-1)
    return (q * scale.unsqueeze(-1)).reshape(n, k)


def _inverse_cholesky(H: torch.Tensor) -> torch.Tensor:
    """The upper Cholesky factor of ``H⁻¹`` (FP64), with a clear error if the damped ``H`` is not positive definite."""
    try:
        L = torch.linalg.cholesky(H)
        return torch.linalg.cholesky(torch.cholesky_inverse(L), upper=True)
    except torch.linalg.LinAlgError:
        raise ValueError("the damped Hessian is not positive definite (its Cholesky factorization failed): raise percdamp "
                         "(e.g. 0.1), or give more calibration tokens than in_features") from None


def output_error(weight: torch.Tensor, w_hat: torch.Tensor, inputs: torch.Tensor) -> float:
    """The layer's output error on ``inputs``: mean over tokens and outputs of ``(x W^T - x Ŵ^T)²``."""
    check_weight(weight, "weight")
    check_tensor("w_hat", w_hat, dims=(2,), shape_text="2-D (out_features, in_features)")
    check_tensor("inputs", inputs, dims=(2,), shape_text="2-D (tokens, in_features)")
    if w_hat.shape != weight.shape or inputs.shape[1] != weight.shape[1]:
        raise ValueError(f"weight {tuple(weight.shape)}, w_hat {tuple(w_hat.shape)} and inputs {tuple(inputs.shape)} "
                         "must agree: w_hat of the weight's shape, inputs (tokens, in_features)")
    diff = (weight.detach().float() - w_hat.detach().float()).double()
    return float(((inputs.detach().double() @ diff.T) ** 2).mean())


@dataclass(frozen=True)
class GptqLayer:
    """One layer of :func:`gptq_quantize`: GPTQ's weight, and the output errors of GPTQ and RTN on the same inputs."""

    result: GptqWeight
    error: float
    rtn_error: float
    tokens: int


def gptq_quantize(model: nn.Module, batches: Iterable[torch.Tensor] | torch.Tensor, bits: int = 4,
                  granularity: PerGroup | PerChannel = PerGroup(64), symmetric: bool = False, *, percdamp: float = 0.01,
                  blocksize: int = 128, act_order: bool = False,
                  include: Callable[[str, nn.Module], bool] = in_blocks) -> tuple[nn.Module, dict[str, GptqLayer]]:
    """A copy of ``model`` whose selected Linear layers compute with GPTQ's weights, and each layer's :class:`GptqLayer`.

    The layers are done in the model's order. Each one's inputs are captured
    by running ``batches`` (e.g. calibration token ids ``(B, T)``) through the
    copy in which every earlier layer is already quantized, so a layer's
    rounding also corrects what the layers before it changed. The weights are
    *simulated* (FP32 values on the grid), like
    :func:`qhelpers.weight_only.replace_weights`'s; ``result.codes``,
    ``.scale`` and ``.zero_point`` are what a packed layer would store.
    """
    _check_model(model, batches, include)
    check_args(bits, granularity, symmetric)
    _check_options(percdamp, blocksize, act_order)
    out = copy.deepcopy(model).eval()
    chosen = [n for n, m in out.named_modules() if n and include(n, m)]
    check_selected(chosen, out, include)
    for name in chosen:
        layer = out.get_submodule(name)
        if not isinstance(layer, nn.Linear):
            raise TypeError(f"{name} is a {type(layer).__name__}; GPTQ here quantizes nn.Linear layers only")
        check_group_size(layer.in_features, granularity, f"{name}: ")
    layers: dict[str, GptqLayer] = {}
    for name in chosen:
        layer = out.get_submodule(name)
        x = capture_inputs(out, batches, include=lambda n, m, name=name: n == name)[name]
        w = layer.weight.detach().float()
        result = gptq_weight(w, hessian(x), bits, granularity, symmetric, percdamp=percdamp, blocksize=blocksize,
                             act_order=act_order)
        rtn = fake_quantize_affine(w, bits, granularity, symmetric)
        layers[name] = GptqLayer(result, output_error(w, result.weight, x), output_error(w, rtn, x), x.shape[0])
        with torch.no_grad():
            layer.weight.copy_(result.weight.to(layer.weight.dtype))
    return out, layers


# --- argument checks ----------------------------------------------------------------------------------------

def _check_options(percdamp: object, blocksize: object, act_order: object) -> None:
    check_number("percdamp", percdamp, 0.0, 10.0)
    check_int("blocksize", blocksize, 1, hint=", the columns per lazy update (the reference uses 128)")
    check_flag("act_order", act_order, " (True: visit the columns by decreasing H_jj)")


def _check_gptq(weight: object, H: object, bits: object, granularity: object, symmetric: object, percdamp: object,
                blocksize: object, act_order: object, scale_dtype: object) -> None:
    check_weight(weight, "weight")
    check_tensor("H", H, dims=(2,), shape_text="2-D (in_features, in_features), e.g. hessian(inputs)")
    n_in = weight.shape[1]
    if tuple(H.shape) != (n_in, n_in):
        raise ValueError(f"H has shape {tuple(H.shape)}; a weight with in_features={n_in} needs ({n_in}, {n_in}): "
                         "the Hessian of the layer's own inputs, hessian(inputs)")
    if not torch.allclose(H, H.T, rtol=1e-4, atol=1e-6 * float(H.abs().max())) or bool((torch.diag(H) < 0).any()):
        raise ValueError("H must be symmetric with a non-negative diagonal, as 2 X^T X / n is: build it with hessian(inputs)")
    check_args(bits, granularity, symmetric)
    check_group_size(n_in, granularity)
    _check_options(percdamp, blocksize, act_order)
    if scale_dtype not in (torch.float16, torch.bfloat16, torch.float32):
        raise TypeError(f"scale_dtype must be torch.float16, torch.bfloat16 or torch.float32, not {describe(scale_dtype)}")
    choose_qparams_affine(weight.detach().float(), bits, granularity, symmetric, scale_dtype)  # RTN's grid must fit


def _check_model(model: object, batches: object, include: object) -> None:
    check_module(model)
    check_function("include", include, "(name, module) -> bool")
    if not isinstance(batches, (torch.Tensor, list, tuple)):
        raise TypeError(f"batches must be a tensor or a list of tensors (e.g. calibration token ids (B, T)), "
                        f"not {describe(batches)}: it is run once per layer")
