"""Bad input to the LLM-side modules (weight_only, codebook, activation_aware, smoothing, activations, transformer,
packing): every mistake gets a ValueError/TypeError raised by a check in qhelpers that names it and says what to do.
A group size is always a granularity object (``PerGroup(32)``, ``PerChannel(0)`` per row); a bare int or None is
refused with the object to pass instead.

One row per check: (id, call, exception, message pattern). Each call gets ``e``, a namespace of a tiny GPT, an MLP,
weights and inputs built once. Everything is refused before any real work, so the table runs in seconds.
"""

from __future__ import annotations

import traceback
from types import SimpleNamespace

import pytest
import torch
from torch import nn

from qhelpers import models, packing
from qhelpers import weight_only as W
from qhelpers.activation_aware import activation_aware_weight, awq_search
from qhelpers.activations import capture_inputs, channel_absmax, outlier_channels
from qhelpers.codebook import (choose_qparams_codebook, dequantize_codebook, effective_bits_codebook, fake_quantize_codebook,
                               kmeans_1d, quantize_codebook)
from qhelpers.quant import PerChannel, PerGroup, PerTensor
from qhelpers.smoothing import FakeW8A8Linear, fold_smoothing, inject_outliers, migrate, smoothing_factors, w8a8
from qhelpers.transformer import (GPT, CachedDecoder, GPTConfig, block_linears, check_ids, eval_windows, generate,
                                  lm_loss)

NAN, INF = float("nan"), float("inf")
T = torch.tensor
CFG = GPTConfig(vocab_size=11, block_size=16, n_layer=2, n_head=2, n_embd=32, bias=True)


def _with(t: torch.Tensor, index: tuple, value: float) -> torch.Tensor:
    t = t.clone()
    t[index] = value
    return t


@pytest.fixture(scope="module")
def e():
    torch.manual_seed(0)
    g = torch.Generator().manual_seed(0)
    gpt = GPT(CFG).eval()
    w = torch.randn(8, 64, generator=g) * 0.1
    x = torch.randn(32, 64, generator=g)
    lin = nn.Linear(64, 8)
    scale, zp = W.choose_qparams_affine(w, 4, PerGroup(32))
    scale_s, _ = W.choose_qparams_affine(w, 4, PerGroup(32), True)
    ids = torch.randint(0, 11, (400,), generator=g)
    inputs = capture_inputs(gpt, ids[:32].view(2, 16))
    levels, cb_scale = choose_qparams_codebook(w, 4, PerGroup(32))
    nan_gpt = GPT(CFG).eval()
    with torch.no_grad():
        nan_gpt.h[0].attn.c_attn.weight[0, 0] = NAN
    return SimpleNamespace(
        gpt=gpt, mlp=models.MLP(hidden=(64, 32)).eval(), w=w, x=x, lin=lin, scale=scale, zp=zp, scale_s=scale_s,
        codes=W.quantize_affine(w, scale, zp, 4, False), cb=(quantize_codebook(w, levels, cb_scale), levels, cb_scale), ids=ids,
        windows=eval_windows(ids, 16, 4), absmax={n: channel_absmax(v) for n, v in inputs.items()},
        wol=W.WeightOnlyLinear.from_linear(lin, 4, PerGroup(32)), woe=W.WeightOnlyEmbedding(nn.Embedding(11, 32), 4, PerGroup(32)),
        w4=W.quantize_weight_only(gpt, 4, PerGroup(32)), nan_gpt=nan_gpt, decoder=CachedDecoder(gpt), prompt=T([1, 2, 3]),
        fw=FakeW8A8Linear(lin, "per-token"),
    )


CASES = [
    # ---- weight_only.quant_range_affine / choose_qparams_affine
    ("wo-range-bits-str", lambda e: W.quant_range_affine("4", True), TypeError, r"bits='4' must be an int"),
    ("wo-range-bits-9", lambda e: W.quant_range_affine(9, True), ValueError, r"bits=9 must be between 2 and 8"),
    ("wo-range-symmetric-int", lambda e: W.quant_range_affine(4, 1), TypeError, r"symmetric=1 must be True or False"),
    ("wo-choose-w-list", lambda e: W.choose_qparams_affine([[1.0, 2.0]], 4, PerChannel(0)), TypeError, r"w must be a torch.Tensor"),
    ("wo-choose-w-1d", lambda e: W.choose_qparams_affine(torch.randn(64), 4, PerGroup(32)), ValueError, r"w must be 2-D \(out_features, in_features\), got shape \(64,\)"),
    ("wo-choose-w-3d", lambda e: W.choose_qparams_affine(torch.randn(2, 4, 64), 4, PerGroup(32)), ValueError, r"w must be 2-D"),
    ("wo-choose-w-int", lambda e: W.choose_qparams_affine(torch.ones(4, 64, dtype=torch.long), 4, PerGroup(32)), TypeError, r"w must be a floating-point tensor, got dtype torch.int64"),
    ("wo-choose-w-complex", lambda e: W.choose_qparams_affine(torch.ones(4, 64, dtype=torch.complex64), 4, PerGroup(32)), TypeError, r"w must be a floating-point tensor, got dtype torch.complex64"),
    ("wo-choose-w-empty-rows", lambda e: W.choose_qparams_affine(torch.empty(0, 64), 4, PerGroup(32)), ValueError, r"w is empty \(shape \(0, 64\)\)"),
    ("wo-choose-w-empty-cols", lambda e: W.choose_qparams_affine(torch.empty(4, 0), 4, PerChannel(0)), ValueError, r"w is empty \(shape \(4, 0\)\)"),
    ("wo-choose-w-nan", lambda e: W.choose_qparams_affine(_with(e.w, (0, 0), NAN), 4, PerGroup(32)), ValueError, r"w holds 1 NaN/inf value\(s\)"),
    ("wo-choose-w-inf", lambda e: W.choose_qparams_affine(_with(e.w, (3, 5), -INF), 4, PerGroup(32), True), ValueError, r"w holds 1 NaN/inf"),
    ("wo-choose-fp16-overflow", lambda e: W.choose_qparams_affine(e.w * 1e7, 4, PerGroup(32)), ValueError, r"w's range is too wide for torch.float16 scales.*scale_dtype=torch.float32"),
    ("wo-choose-fp16-overflow-sym", lambda e: W.choose_qparams_affine(_with(e.w, (2, 3), 1e6), 4, PerGroup(32), True), ValueError, r"group \(2, 0\).*overflows torch.float16"),
    ("wo-choose-group-not-dividing", lambda e: W.choose_qparams_affine(e.w, 4, PerGroup(48)), ValueError, r"in_features=64 is not a multiple of the group size in PerGroup\(48\): pick a group size that divides 64, or quant.PerChannel\(0\)"),
    ("wo-choose-group-zero", lambda e: W.choose_qparams_affine(e.w, 4, PerGroup(0)), ValueError, r"PerGroup group_size must be at least 1, got 0"),
    ("wo-choose-group-int", lambda e: W.choose_qparams_affine(e.w, 4, 32), TypeError, r"granularity=32 is a bare int: pass quant.PerGroup\(32\), not 32 \(or quant.PerChannel\(0\) for one scale per row\)"),
    ("wo-choose-group-int-zero", lambda e: W.choose_qparams_affine(e.w, 4, 0), TypeError, r"granularity=0 is a bare int: pass a group of at least 1 weight as quant.PerGroup\(size\)"),
    ("wo-choose-group-none", lambda e: W.choose_qparams_affine(e.w, 4, None), TypeError, r"granularity=None: pass quant.PerChannel\(0\) for one scale per row"),
    ("wo-choose-group-float", lambda e: W.choose_qparams_affine(e.w, 4, 32.0), TypeError, r"granularity must be quant.PerGroup\(size\) or quant.PerChannel\(0\) for one scale per row, got float 32.0"),
    ("wo-choose-group-str", lambda e: W.choose_qparams_affine(e.w, 4, "32"), TypeError, r"granularity must be quant.PerGroup\(size\) or quant.PerChannel\(0\) .*, got str '32'"),
    ("wo-choose-group-class", lambda e: W.choose_qparams_affine(e.w, 4, PerGroup), TypeError, r"a class: call it, PerGroup\(...\)"),
    ("wo-choose-group-torchao", lambda e: W.choose_qparams_affine(e.w, 4, __import__("torchao.quantization", fromlist=["PerGroup"]).PerGroup(32)), TypeError, r"is torchao's PerGroup: pass qhelpers' own, e.g. quant.PerGroup\(64\)"),
    ("wo-choose-per-tensor", lambda e: W.choose_qparams_affine(e.w, 4, PerTensor()), ValueError, r"granularity=PerTensor\(\): weight-only scales belong to rows .* quant.PerChannel\(0\)"),
    ("wo-choose-per-column", lambda e: W.choose_qparams_affine(e.w, 4, PerChannel(1)), ValueError, r"granularity=PerChannel\(axis=1\): weight-only scales belong to rows"),
    ("wo-choose-bits-1", lambda e: W.choose_qparams_affine(e.w, 1, PerGroup(32)), ValueError, r"bits=1 must be between 2 and 8"),
    ("wo-choose-bits-bool", lambda e: W.choose_qparams_affine(e.w, True, PerGroup(32)), TypeError, r"bits=True must be an int"),
    ("wo-choose-scale-dtype-int", lambda e: W.choose_qparams_affine(e.w, 4, PerGroup(32), scale_dtype=torch.int8), ValueError, r"scale_dtype=torch.int8 must be a floating-point dtype"),
    ("wo-choose-scale-dtype-str", lambda e: W.choose_qparams_affine(e.w, 4, PerGroup(32), scale_dtype="float16"), TypeError, r"scale_dtype must be a torch.dtype"),
    # ---- weight_only.quantize_affine / dequantize_affine / fake_quantize_affine
    ("wo-quantize-scale-list", lambda e: W.quantize_affine(e.w, [0.1], None, 4, True), TypeError, r"scale must be a torch.Tensor"),
    ("wo-quantize-scale-rows", lambda e: W.quantize_affine(e.w, e.scale[:4], e.zp[:4], 4, False), ValueError, r"scale has shape \(4, 2\) but w of shape \(8, 64\) needs \(8, groups\)"),
    ("wo-quantize-scale-groups", lambda e: W.quantize_affine(e.w, torch.ones(8, 3), None, 4, True), ValueError, r"scale's 3 groups do not divide in_features=64"),
    ("wo-quantize-scale-zero", lambda e: W.quantize_affine(e.w, torch.zeros(8, 2), None, 4, True), ValueError, r"scale must hold positive, finite numbers"),
    ("wo-quantize-scale-nan", lambda e: W.quantize_affine(e.w, _with(e.scale_s, (1, 1), NAN), None, 4, True), ValueError, r"scale must hold positive, finite numbers"),
    ("wo-quantize-scale-int", lambda e: W.quantize_affine(e.w, torch.ones(8, 2, dtype=torch.long), None, 4, True), TypeError, r"scale must be a floating-point tensor"),
    ("wo-quantize-zp-missing", lambda e: W.quantize_affine(e.w, e.scale, None, 4, False), ValueError, r"asymmetric codes need the zero_point from choose_qparams_affine"),
    ("wo-quantize-zp-given-symmetric", lambda e: W.quantize_affine(e.w, e.scale_s, e.zp, 4, True), ValueError, r"symmetric quantization has no zero-point: pass zero_point=None"),
    ("wo-quantize-zp-shape", lambda e: W.quantize_affine(e.w, e.scale, e.zp[:4], 4, False), ValueError, r"zero_point has shape \(4, 2\) but scale has shape \(8, 2\)"),
    ("wo-quantize-zp-float", lambda e: W.quantize_affine(e.w, e.scale, e.zp.float(), 4, False), TypeError, r"zero_point must be an integer tensor"),
    ("wo-quantize-zp-range", lambda e: W.quantize_affine(e.w, e.scale, e.zp.to(torch.int16) + 20, 4, False), ValueError, r"zero_point holds values from \d+ to \d+, outside the 4-bit grid \[0, 15\]"),
    ("wo-quantize-w-nan", lambda e: W.quantize_affine(_with(e.w, (0, 0), NAN), e.scale, e.zp, 4, False), ValueError, r"w holds 1 NaN/inf"),
    ("wo-quantize-bits-9", lambda e: W.quantize_affine(e.w, e.scale, e.zp, 9, False), ValueError, r"bits=9"),
    ("wo-dequantize-float-codes", lambda e: W.dequantize_affine(e.codes.float(), e.scale, e.zp), TypeError, r"codes must be an integer tensor"),
    ("wo-dequantize-1d", lambda e: W.dequantize_affine(e.codes.flatten(), e.scale, e.zp), ValueError, r"codes must be 2-D"),
    ("wo-dequantize-scale-rows", lambda e: W.dequantize_affine(e.codes, e.scale[:4], e.zp[:4]), ValueError, r"scale has shape \(4, 2\) but codes of shape \(8, 64\) needs \(8, groups\)"),
    ("wo-dequantize-scale-groups", lambda e: W.dequantize_affine(e.codes, torch.ones(8, 3), None), ValueError, r"scale's 3 groups do not divide in_features=64"),
    ("wo-dequantize-zp-shape", lambda e: W.dequantize_affine(e.codes, e.scale, e.zp[:, :1]), ValueError, r"zero_point has shape \(8, 1\) but scale has shape \(8, 2\)"),
    ("wo-dequantize-empty", lambda e: W.dequantize_affine(e.codes[:0], e.scale[:0], None), ValueError, r"codes is empty"),
    ("wo-dequantize-list", lambda e: W.dequantize_affine([[1, 2]], e.scale, None), TypeError, r"codes must be a torch.Tensor"),
    ("wo-fake-nan", lambda e: W.fake_quantize_affine(_with(e.w, (1, 1), NAN)), ValueError, r"w holds 1 NaN/inf"),
    ("wo-fake-overflow", lambda e: W.fake_quantize_affine(e.w * 1e7), ValueError, r"too wide for torch.float16 scales"),
    ("wo-fake-1d", lambda e: W.fake_quantize_affine(torch.randn(64)), ValueError, r"w must be 2-D"),
    ("wo-fake-group-str", lambda e: W.fake_quantize_affine(e.w, 4, "64"), TypeError, r"granularity must be quant.PerGroup\(size\) .*, got str '64'"),
    ("wo-fake-group-int", lambda e: W.fake_quantize_affine(e.w, 4, 64), TypeError, r"pass quant.PerGroup\(64\), not 64"),
    # ---- WeightOnlyLinear / WeightOnlyEmbedding
    ("wol-weight-list", lambda e: W.WeightOnlyLinear([[1.0] * 64], None), TypeError, r"weight must be a torch.Tensor"),
    ("wol-weight-1d", lambda e: W.WeightOnlyLinear(torch.randn(64), None), ValueError, r"weight must be 2-D"),
    ("wol-weight-nan", lambda e: W.WeightOnlyLinear(_with(e.w, (0, 0), NAN), None, 4, PerGroup(32)), ValueError, r"weight holds 1 NaN/inf"),
    ("wol-bias-shape", lambda e: W.WeightOnlyLinear(e.w, torch.zeros(5), 4, PerGroup(32)), ValueError, r"bias has shape \(5,\) but the weight has 8 output features"),
    ("wol-bias-list", lambda e: W.WeightOnlyLinear(e.w, [0.0] * 8, 4, PerGroup(32)), TypeError, r"bias must be a torch.Tensor or None"),
    ("wol-3bit-not-packable", lambda e: W.WeightOnlyLinear(torch.randn(4, 12), None, 3, PerChannel(0)), ValueError, r"in_features=12: 3-bit packing needs a multiple of 8"),
    ("wol-from-conv", lambda e: W.WeightOnlyLinear.from_linear(nn.Conv2d(1, 1, 1)), TypeError, r"from_linear needs an nn.Linear, not Conv2d"),
    ("wol-from-str", lambda e: W.WeightOnlyLinear.from_linear("fc"), TypeError, r"from_linear needs an nn.Linear, not str"),
    ("wol-from-group-not-dividing", lambda e: W.WeightOnlyLinear.from_linear(nn.Linear(60, 8), 4, PerGroup(32)), ValueError, r"in_features=60 is not a multiple of the group size in PerGroup\(32\)"),
    ("wol-forward-width", lambda e: e.wol(torch.randn(3, 10)), ValueError, r"x has 10 features in its last dimension; this layer takes in_features=64"),
    ("wol-forward-int", lambda e: e.wol(torch.ones(3, 64, dtype=torch.long)), TypeError, r"x must be a floating-point tensor"),
    ("wol-forward-list", lambda e: e.wol([1.0] * 64), TypeError, r"x must be a torch.Tensor"),
    ("woe-not-embedding", lambda e: W.WeightOnlyEmbedding(nn.Linear(2, 2)), TypeError, r"WeightOnlyEmbedding needs an nn.Embedding, not Linear"),
    ("woe-group-not-dividing", lambda e: W.WeightOnlyEmbedding(nn.Embedding(11, 30), 4, PerGroup(32)), ValueError, r"in_features=30 is not a multiple of the group size in PerGroup\(32\)"),
    ("woe-group-int", lambda e: W.WeightOnlyEmbedding(nn.Embedding(11, 32), 4, 32), TypeError, r"pass quant.PerGroup\(32\), not 32"),
    ("wol-group-int", lambda e: W.WeightOnlyLinear(e.w, None, 4, 32), TypeError, r"pass quant.PerGroup\(32\), not 32"),
    ("wol-from-group-none", lambda e: W.WeightOnlyLinear.from_linear(e.lin, 4, None), TypeError, r"granularity=None: pass quant.PerChannel\(0\)"),
    ("woe-forward-id-too-big", lambda e: e.woe(T([3, 11])), ValueError, r"idx holds token ids from 3 to 11; the table has 11 rows \(ids 0 to 10\)"),
    ("woe-forward-id-negative", lambda e: e.woe(T([-1])), ValueError, r"idx holds token ids from -1 to -1"),
    ("woe-forward-float", lambda e: e.woe(T([1.0])), TypeError, r"idx must be an integer tensor"),
    # ---- weight_only walkers
    ("wo-in-blocks-name-int", lambda e: W.in_blocks(0, e.lin), TypeError, r"name must be a str"),
    ("qwo-model-str", lambda e: W.quantize_weight_only("gpt"), TypeError, r"model must be a torch.nn.Module, not str"),
    ("qwo-mlp-nothing-matched", lambda e: W.quantize_weight_only(e.mlp), ValueError, r"include=in_blocks \(.*\) selected no layer of the MLP; its nn.Linear layers are net.1, net.3, net.5"),
    ("qwo-include-false", lambda e: W.quantize_weight_only(e.gpt, include=lambda n, m: False), ValueError, r"include=<lambda> selected no layer of the GPT; its nn.Linear layers are h.0.attn.c_attn"),
    ("qwo-include-str", lambda e: W.quantize_weight_only(e.gpt, include="h."), TypeError, r"include must be a function \(name, module\) -> bool"),
    ("qwo-bits-9", lambda e: W.quantize_weight_only(e.gpt, 9), ValueError, r"bits=9 must be between 2 and 8"),
    ("qwo-group-not-dividing", lambda e: W.quantize_weight_only(e.gpt, 4, PerGroup(48)), ValueError, r"h.0.attn.c_attn: in_features=32 is not a multiple of the group size in PerGroup\(48\)"),
    ("qwo-group-int", lambda e: W.quantize_weight_only(e.gpt, 4, 16), TypeError, r"pass quant.PerGroup\(16\), not 16"),
    ("qwo-already-quantized", lambda e: W.quantize_weight_only(e.w4, 4, PerGroup(32)), ValueError, r"already weight-only quantized \(h.0.attn.c_attn is a WeightOnlyLinear\)"),
    ("qwo-layernorm", lambda e: W.quantize_weight_only(e.gpt, include=lambda n, m: n == "h.0.ln_1"), TypeError, r"h.0.ln_1 is a LayerNorm; only nn.Linear and nn.Embedding"),
    ("qwo-nan-weight", lambda e: W.quantize_weight_only(e.nan_gpt, 4, PerGroup(32)), ValueError, r"h.0.attn.c_attn.weight holds 1 NaN/inf"),
    ("rw-model-str", lambda e: W.replace_weights("gpt", lambda n, m: m.weight), TypeError, r"model must be a torch.nn.Module"),
    ("rw-new-weight-str", lambda e: W.replace_weights(e.gpt, "fake_quantize"), TypeError, r"new_weight must be a function \(name, linear\) -> tensor"),
    ("rw-mlp-nothing-matched", lambda e: W.replace_weights(e.mlp, lambda n, m: m.weight), ValueError, r"include=in_blocks .* selected no layer of the MLP"),
    ("rw-int-codes", lambda e: W.replace_weights(e.gpt, lambda n, m: torch.zeros_like(m.weight, dtype=torch.int16)), TypeError, r"new_weight for h.0.attn.c_attn returned a torch.int16 tensor.*dequantize"),
    ("rw-nan", lambda e: W.replace_weights(e.gpt, lambda n, m: m.weight * NAN), ValueError, r"new_weight for h.0.attn.c_attn returned .* NaN/inf"),
    ("rw-wrong-shape", lambda e: W.replace_weights(e.gpt, lambda n, m: m.weight.T), ValueError, r"new_weight for h.0.attn.c_attn must return a tensor of shape \(96, 32\), got \(32, 96\)"),
    ("rw-list", lambda e: W.replace_weights(e.gpt, lambda n, m: m.weight.tolist()), TypeError, r"new_weight for h.0.attn.c_attn must return a tensor, got list"),
    ("rw-embedding", lambda e: W.replace_weights(e.gpt, lambda n, m: m.weight, include=lambda n, m: n == "wte"), TypeError, r"wte is a Embedding, not an nn.Linear"),
    ("wac-tensor", lambda e: W.weight_as_computed(torch.randn(2, 2)), TypeError, r"layer must be a torch.nn.Module"),
    ("wac-conv", lambda e: W.weight_as_computed(nn.Conv2d(1, 1, 1)), TypeError, r"layer must be a linear layer"),
    ("wac-relu", lambda e: W.weight_as_computed(nn.ReLU()), TypeError, r"layer must be a linear layer"),
    # ---- codebook
    ("km-values-list", lambda e: kmeans_1d([1.0, 2.0], 2), TypeError, r"values must be a torch.Tensor"),
    ("km-values-empty", lambda e: kmeans_1d(torch.empty(0), 2), ValueError, r"values is empty"),
    ("km-values-nan", lambda e: kmeans_1d(T([1.0, NAN, 2.0]), 2), ValueError, r"values holds 1 NaN/inf"),
    ("km-values-int", lambda e: kmeans_1d(T([1, 2, 3]), 2), TypeError, r"values must be a floating-point tensor"),
    ("km-k-zero", lambda e: kmeans_1d(e.x, 0), ValueError, r"k=0 must be at least 1"),
    ("km-k-float", lambda e: kmeans_1d(e.x, 2.0), TypeError, r"k=2.0 must be an int"),
    ("km-too-few", lambda e: kmeans_1d(torch.zeros(2), 4), ValueError, r"values has 2 element\(s\): too few for k=4 clusters"),
    ("km-iters-negative", lambda e: kmeans_1d(e.x, 2, -1), ValueError, r"iters=-1 must be at least 0"),
    ("km-iters-float", lambda e: kmeans_1d(e.x, 2, 2.5), TypeError, r"iters=2.5 must be an int"),
    ("km-init-length", lambda e: kmeans_1d(e.x, 3, init=torch.zeros(2)), ValueError, r"init must hold k=3 levels, got shape \(2,\)"),
    ("km-init-nan", lambda e: kmeans_1d(e.x, 2, init=T([0.0, NAN])), ValueError, r"init holds 1 NaN/inf"),
    ("km-init-list", lambda e: kmeans_1d(e.x, 2, init=[0.0, 1.0]), TypeError, r"init must be a torch.Tensor"),
    ("cbq-group-zero", lambda e: choose_qparams_codebook(e.w, 4, PerGroup(0)), ValueError, r"PerGroup group_size must be at least 1"),
    ("cbq-group-none", lambda e: choose_qparams_codebook(e.w, 4, None), TypeError, r"granularity=None: pass quant.PerChannel\(0\)"),
    ("cbq-group-int", lambda e: choose_qparams_codebook(e.w, 4, 32), TypeError, r"pass quant.PerGroup\(32\), not 32"),
    ("cbq-group-not-dividing", lambda e: choose_qparams_codebook(e.w, 4, PerGroup(48)), ValueError, r"in_features=64 is not a multiple of the group size in PerGroup\(48\)"),
    ("cbq-bits-0", lambda e: choose_qparams_codebook(e.w, 0, PerGroup(32)), ValueError, r"bits=0 must be between 1 and 8"),
    ("cbq-bits-str", lambda e: choose_qparams_codebook(e.w, "4", PerGroup(32)), TypeError, r"bits='4' must be an int"),
    ("cbq-w-1d", lambda e: choose_qparams_codebook(torch.randn(64), 4, PerGroup(32)), ValueError, r"w must be 2-D"),
    ("cbq-w-nan", lambda e: choose_qparams_codebook(_with(e.w, (0, 0), NAN), 4, PerGroup(32)), ValueError, r"w holds 1 NaN/inf"),
    ("cbq-w-overflow", lambda e: choose_qparams_codebook(e.w * 1e6, 4, PerGroup(32)), ValueError, r"too wide for torch.float16 scales"),
    ("cbq-w-int", lambda e: choose_qparams_codebook(torch.ones(8, 64, dtype=torch.long), 4, PerGroup(32)), TypeError, r"w must be a floating-point tensor"),
    ("cbq-w-list", lambda e: choose_qparams_codebook([[1.0] * 64], 4, PerGroup(32)), TypeError, r"w must be a torch.Tensor"),
    ("cbq-too-few-weights", lambda e: choose_qparams_codebook(torch.randn(1, 8), 4, PerGroup(8)), ValueError, r"w has 8 weights, fewer than the 2\*\*bits = 16 levels"),
    ("cbq-iters-negative", lambda e: choose_qparams_codebook(e.w, 4, PerGroup(32), -3), ValueError, r"iters=-3 must be at least 0"),
    ("cbd-codes-too-big", lambda e: dequantize_codebook(torch.full((8, 64), 16, dtype=torch.uint8), e.cb[1], e.cb[2]), ValueError, r"codes hold indices from 16 to 16 but the codebook has 16 levels \(indices 0 to 15\)"),
    ("cbd-codes-negative", lambda e: dequantize_codebook(torch.full((8, 64), -1, dtype=torch.int8), e.cb[1], e.cb[2]), ValueError, r"codes hold indices from -1"),
    ("cbd-codes-float", lambda e: dequantize_codebook(e.cb[0].float(), e.cb[1], e.cb[2]), TypeError, r"codes must be an integer tensor"),
    ("cbd-scale-rows", lambda e: dequantize_codebook(e.cb[0], e.cb[1], e.cb[2][:4]), ValueError, r"scale has shape \(4, 2\) but codes of shape \(8, 64\) needs \(8, groups\)"),
    ("cbd-codebook-2d", lambda e: dequantize_codebook(e.cb[0], e.cb[1].view(4, 4), e.cb[2]), ValueError, r"codebook must be 1-D"),
    ("cbd-codebook-nan", lambda e: dequantize_codebook(e.cb[0], _with(e.cb[1], (0,), NAN), e.cb[2]), ValueError, r"codebook holds 1 NaN/inf"),
    ("fqc-group-zero", lambda e: fake_quantize_codebook(e.w, 4, 0), TypeError, r"granularity=0 is a bare int: pass a group of at least 1 weight as quant.PerGroup\(size\)"),
    ("qcb-codebook-unsorted", lambda e: quantize_codebook(e.w, e.cb[1].flip(0), e.cb[2]), ValueError, r"codebook must hold its levels sorted in ascending order"),
    ("qcb-scale-rows", lambda e: quantize_codebook(e.w, e.cb[1], e.cb[2][:4]), ValueError, r"scale has shape \(4, 2\) but w of shape \(8, 64\) needs \(8, groups\)"),
    ("qcb-w-1d", lambda e: quantize_codebook(e.w[0], e.cb[1], e.cb[2]), ValueError, r"w must be 2-D"),
    ("qcb-codebook-nan", lambda e: quantize_codebook(e.w, _with(e.cb[1], (0,), NAN), e.cb[2]), ValueError, r"codebook holds 1 NaN/inf"),
    ("fqc-nan", lambda e: fake_quantize_codebook(_with(e.w, (0, 0), INF)), ValueError, r"w holds 1 NaN/inf"),
    ("cbe-numel-negative", lambda e: effective_bits_codebook(4, PerGroup(64), -5), ValueError, r"numel=-5 must be at least 1"),
    ("cbe-numel-zero", lambda e: effective_bits_codebook(4, PerGroup(64), 0), ValueError, r"numel=0 must be at least 1"),
    ("cbe-group-zero", lambda e: effective_bits_codebook(4, PerGroup(0), 4096), ValueError, r"PerGroup group_size must be at least 1"),
    ("cbe-group-int", lambda e: effective_bits_codebook(4, 64, 4096), TypeError, r"pass quant.PerGroup\(64\), not 64$"),
    ("cbe-per-row", lambda e: effective_bits_codebook(4, PerChannel(0), 4096), ValueError, r"the bits per weight need the number of weights per scale: pass quant.PerGroup\(size\) \(for one scale per row, quant.PerGroup\(in_features\)\)"),
    ("cbe-bits-9", lambda e: effective_bits_codebook(9, PerGroup(64), 4096), ValueError, r"bits=9 must be between 1 and 8"),
    ("cbe-bits-float", lambda e: effective_bits_codebook(4.0, PerGroup(64), 4096), TypeError, r"bits=4.0 must be an int"),
    ("cbe-numel-float", lambda e: effective_bits_codebook(4, PerGroup(64), 1e6), TypeError, r"numel=1000000.0 must be an int"),
    # ---- activation_aware
    ("awq-inputs-empty", lambda e: awq_search(e.w, torch.empty(0, 64)), ValueError, r"inputs is empty \(shape \(0, 64\)\)"),
    ("awq-inputs-width", lambda e: awq_search(e.w, e.x[:, :32], 4, PerGroup(32)), ValueError, r"inputs must be \(tokens, 64\), got \(32, 32\)"),
    ("awq-inputs-1d", lambda e: awq_search(e.w, e.x[0], 4, PerGroup(32)), ValueError, r"inputs must be \(tokens, 64\), got \(64,\)"),
    ("awq-inputs-nan", lambda e: awq_search(e.w, _with(e.x, (0, 0), NAN), 4, PerGroup(32)), ValueError, r"inputs holds 1 NaN/inf"),
    ("awq-inputs-int", lambda e: awq_search(e.w, torch.ones(4, 64, dtype=torch.long), 4, PerGroup(32)), TypeError, r"inputs must be a floating-point tensor"),
    ("awq-inputs-list", lambda e: awq_search(e.w, [[1.0] * 64], 4, PerGroup(32)), TypeError, r"inputs must be a torch.Tensor"),
    ("awq-weight-list", lambda e: awq_search([[1.0] * 64], e.x, 4, PerGroup(32)), TypeError, r"weight must be a torch.Tensor"),
    ("awq-weight-1d", lambda e: awq_search(torch.randn(64), e.x, 4, PerGroup(32)), ValueError, r"weight must be 2-D"),
    ("awq-weight-nan", lambda e: awq_search(_with(e.w, (0, 0), NAN), e.x, 4, PerGroup(32)), ValueError, r"weight holds 1 NaN/inf"),
    ("awq-weight-overflow", lambda e: awq_search(e.w * 1e7, e.x, 4, PerGroup(32)), ValueError, r"too wide for torch.float16 scales"),
    ("awq-grid-zero", lambda e: awq_search(e.w, e.x, 4, PerGroup(32), grid=0), ValueError, r"grid=0 must be at least 1"),
    ("awq-grid-float", lambda e: awq_search(e.w, e.x, 4, PerGroup(32), grid=2.0), TypeError, r"grid=2.0 must be an int"),
    ("awq-bits-9", lambda e: awq_search(e.w, e.x, 9, PerGroup(32)), ValueError, r"bits=9 must be between 2 and 8"),
    ("awq-group-not-dividing", lambda e: awq_search(e.w, e.x, 4, PerGroup(48)), ValueError, r"in_features=64 is not a multiple of the group size in PerGroup\(48\)"),
    ("awq-group-int", lambda e: awq_search(e.w, e.x, 4, 32), TypeError, r"pass quant.PerGroup\(32\), not 32"),
    ("aaw-inputs-empty", lambda e: activation_aware_weight(e.w, torch.empty(0, 64)), ValueError, r"inputs is empty"),
    ("aaw-symmetric-str", lambda e: activation_aware_weight(e.w, e.x, 4, PerGroup(32), "yes"), TypeError, r"symmetric='yes' must be True or False"),
    # ---- smoothing
    ("sf-alpha-str", lambda e: smoothing_factors(e.x.abs().amax(0), e.w, "0.5"), TypeError, r"alpha must be a number, not str '0.5'"),
    ("sf-alpha-nan", lambda e: smoothing_factors(e.x.abs().amax(0), e.w, NAN), ValueError, r"alpha=nan must lie in \[0, 1\]"),
    ("sf-alpha-bool", lambda e: smoothing_factors(e.x.abs().amax(0), e.w, True), TypeError, r"alpha must be a number, not bool"),
    ("sf-alpha-big", lambda e: smoothing_factors(e.x.abs().amax(0), e.w, 1.5), ValueError, r"alpha=1.5 must lie in \[0, 1\]"),
    ("sf-absmax-negative", lambda e: smoothing_factors(-e.x.abs().amax(0), e.w, 0.5), ValueError, r"act_absmax holds negative values: it is a range, max\|x\|"),
    ("sf-absmax-nan", lambda e: smoothing_factors(_with(e.x.abs().amax(0), (3,), NAN), e.w, 0.5), ValueError, r"act_absmax holds 1 NaN/inf"),
    ("sf-absmax-list", lambda e: smoothing_factors([1.0] * 64, e.w, 0.5), TypeError, r"act_absmax must be a torch.Tensor"),
    ("sf-absmax-shape", lambda e: smoothing_factors(torch.ones(8), e.w, 0.5), ValueError, r"act_absmax has shape \(8,\); the weight has 64 input channels"),
    ("sf-weight-1d", lambda e: smoothing_factors(torch.ones(64), torch.ones(64), 0.5), ValueError, r"weight must be 2-D"),
    ("sf-weight-nan", lambda e: smoothing_factors(torch.ones(64), _with(e.w, (0, 0), NAN), 0.5), ValueError, r"weight holds 1 NaN/inf"),
    ("mig-model-mlp", lambda e: migrate(e.mlp, {"h.0.attn.c_attn": torch.ones(32)}), TypeError, r"model must be a qhelpers.transformer.GPT"),
    ("mig-block-out-of-range", lambda e: migrate(e.gpt, {"h.5.attn.c_attn": torch.ones(32)}), ValueError, r"'h.5.attn.c_attn': the model has 2 blocks, h.0 to h.1"),
    ("mig-block-not-int", lambda e: migrate(e.gpt, {"h.x.attn.c_attn": torch.ones(32)}), ValueError, r"'h.x.attn.c_attn': only the layers after a LayerNorm"),
    ("mig-wrong-layer", lambda e: migrate(e.gpt, {"h.0.attn.c_proj": torch.ones(32)}), ValueError, r"'h.0.attn.c_proj': only the layers after a LayerNorm"),
    ("mig-factors-inf", lambda e: migrate(e.gpt, {"h.0.attn.c_attn": _with(torch.ones(32), (2,), INF)}), ValueError, r"h.0.attn.c_attn: the factors must be 32 positive, finite numbers"),
    ("mig-factors-nan", lambda e: migrate(e.gpt, {"h.0.attn.c_attn": _with(torch.ones(32), (2,), NAN)}), ValueError, r"h.0.attn.c_attn: the factors must be 32 positive, finite numbers"),
    ("mig-factors-list", lambda e: migrate(e.gpt, {"h.0.attn.c_attn": [1.0] * 32}), TypeError, r"factors\['h.0.attn.c_attn'\] must be a torch.Tensor"),
    ("mig-factors-not-dict", lambda e: migrate(e.gpt, [torch.ones(32)]), TypeError, r"factors must be a dict"),
    ("mig-factors-empty", lambda e: migrate(e.gpt, {}), ValueError, r"factors is empty"),
    ("fold-missing-name", lambda e: fold_smoothing(e.gpt, {k: v for k, v in e.absmax.items() if k != "h.1.mlp.c_fc"}, 0.5), ValueError, r"act_absmax has no entry for h.1.mlp.c_fc"),
    ("fold-absmax-empty", lambda e: fold_smoothing(e.gpt, {}, 0.5), ValueError, r"act_absmax is empty"),
    ("fold-alpha-str", lambda e: fold_smoothing(e.gpt, e.absmax, "half"), TypeError, r"alpha must be a number"),
    ("fold-model-mlp", lambda e: fold_smoothing(e.mlp, e.absmax, 0.5), TypeError, r"model must be a qhelpers.transformer.GPT"),
    ("fold-absmax-not-dict", lambda e: fold_smoothing(e.gpt, list(e.absmax.values()), 0.5), TypeError, r"act_absmax must be a dict"),
    ("inj-negative", lambda e: inject_outliers(e.gpt, [-1]), ValueError, r"channels\[0\]=-1 must be between 0 and 31"),
    ("inj-too-big", lambda e: inject_outliers(e.gpt, [3, 32]), ValueError, r"channels\[1\]=32 must be between 0 and 31"),
    ("inj-float-channel", lambda e: inject_outliers(e.gpt, [1.5]), TypeError, r"channels\[0\]=1.5 must be an int"),
    ("inj-empty", lambda e: inject_outliers(e.gpt, []), ValueError, r"channels is empty"),
    ("inj-int", lambda e: inject_outliers(e.gpt, 3), TypeError, r"channels must be a list of channel indices"),
    ("inj-factor-zero", lambda e: inject_outliers(e.gpt, [1], 0.0), ValueError, r"factor=0.0 must be a positive, finite number"),
    ("inj-factor-inf", lambda e: inject_outliers(e.gpt, [1], INF), ValueError, r"factor=inf must be a positive, finite number"),
    ("inj-factor-str", lambda e: inject_outliers(e.gpt, [1], "30"), TypeError, r"factor must be a number"),
    ("inj-model-mlp", lambda e: inject_outliers(e.mlp, [1]), TypeError, r"model must be a qhelpers.transformer.GPT"),
    ("fw-linear-str", lambda e: FakeW8A8Linear("fc", "per-token"), TypeError, r"linear must be an nn.Linear, not str"),
    ("fw-act-bad", lambda e: FakeW8A8Linear(e.lin, "per-channel"), ValueError, r"act='per-channel' must be 'per-tensor' or 'per-token'"),
    ("fw-absmax-missing", lambda e: FakeW8A8Linear(e.lin, "per-tensor"), ValueError, r"per-tensor activation scales need act_absmax"),
    ("fw-absmax-nan", lambda e: FakeW8A8Linear(e.lin, "per-tensor", _with(torch.ones(64), (0,), NAN)), ValueError, r"act_absmax holds 1 NaN/inf"),
    ("fw-absmax-negative", lambda e: FakeW8A8Linear(e.lin, "per-tensor", -torch.ones(64)), ValueError, r"act_absmax holds negative values"),
    ("fw-absmax-size", lambda e: FakeW8A8Linear(e.lin, "per-tensor", torch.ones(5)), ValueError, r"act_absmax has shape \(5,\); the layer has 64 input channels"),
    ("fw-absmax-list", lambda e: FakeW8A8Linear(e.lin, "per-tensor", [1.0]), TypeError, r"act_absmax must be a torch.Tensor"),
    ("fw-weight-nan", lambda e: FakeW8A8Linear(e.nan_gpt.h[0].attn.c_attn, "per-token"), ValueError, r"linear.weight holds 1 NaN/inf"),
    ("fw-forward-width", lambda e: e.fw(torch.randn(2, 5)), ValueError, r"x has 5 features in its last dimension; this layer takes in_features=64"),
    ("w8a8-empty", lambda e: w8a8(e.gpt, {}, "per-token"), ValueError, r"act_absmax is empty"),
    ("w8a8-unknown-name", lambda e: w8a8(e.gpt, {"h.9.mlp.c_fc": torch.ones(32)}, "per-token"), ValueError, r"act_absmax names h.9.mlp.c_fc, not a layer of the model"),
    ("w8a8-not-linear", lambda e: w8a8(e.gpt, {"h.0.ln_1": torch.ones(32)}, "per-token"), TypeError, r"h.0.ln_1 is a LayerNorm, not an nn.Linear"),
    ("w8a8-act-bad", lambda e: w8a8(e.gpt, e.absmax, "per-channel"), ValueError, r"act='per-channel' must be 'per-tensor' or 'per-token'"),
    ("w8a8-model-str", lambda e: w8a8("gpt", e.absmax, "per-token"), TypeError, r"model must be a torch.nn.Module"),
    ("w8a8-absmax-not-dict", lambda e: w8a8(e.gpt, list(e.absmax.values()), "per-token"), TypeError, r"act_absmax must be a dict"),
    # ---- activations
    ("cap-model-str", lambda e: capture_inputs("gpt", e.ids[:16].view(1, 16)), TypeError, r"model must be a torch.nn.Module"),
    ("cap-batches-empty", lambda e: capture_inputs(e.gpt, []), ValueError, r"batches is empty"),
    ("cap-mlp-default", lambda e: capture_inputs(e.mlp, torch.randn(2, 1, 28, 28)), ValueError, r"include=.* selected no layer of the MLP; its nn.Linear layers are net.1, net.3, net.5"),
    ("cap-include-str", lambda e: capture_inputs(e.gpt, e.ids[:16].view(1, 16), include="h."), TypeError, r"include must be a function"),
    ("cap-batch-none", lambda e: capture_inputs(e.gpt, [None]), TypeError, r"batches\[0\] must be a torch.Tensor, not NoneType"),
    ("cap-batches-int", lambda e: capture_inputs(e.gpt, 5), TypeError, r"batches must be a tensor or an iterable of tensors"),
    ("cap-batch-empty", lambda e: capture_inputs(e.gpt, torch.empty(0, 16, dtype=torch.long)), ValueError, r"batches\[0\] is empty"),
    ("cap-batch-too-long", lambda e: capture_inputs(e.gpt, torch.zeros(1, 20, dtype=torch.long)), ValueError, r"the model fails on batches\[0\] \(shape \(1, 20\)\).*block_size=16"),
    ("cap-batch-out-of-vocab", lambda e: capture_inputs(e.gpt, torch.full((1, 4), 11)), ValueError, r"the model fails on batches\[0\].*vocab_size=11"),
    ("ca-list", lambda e: channel_absmax([1.0, 2.0]), TypeError, r"x must be a torch.Tensor"),
    ("ca-empty", lambda e: channel_absmax(torch.empty(0, 3)), ValueError, r"x is empty"),
    ("ca-0d", lambda e: channel_absmax(T(1.0)), ValueError, r"x must have channels in its last dimension, got a 0-d tensor"),
    ("ca-nan", lambda e: channel_absmax(_with(e.x, (0, 0), NAN)), ValueError, r"x holds 1 NaN/inf"),
    ("ca-int", lambda e: channel_absmax(torch.ones(2, 3, dtype=torch.long)), TypeError, r"x must be a floating-point tensor"),
    ("oc-nan", lambda e: outlier_channels(T([1.0, 100.0, NAN, 1.0, 1.0])), ValueError, r"absmax holds 1 NaN/inf"),
    ("oc-list", lambda e: outlier_channels([1.0, 100.0, 1.0]), TypeError, r"absmax must be a torch.Tensor"),
    ("oc-2d", lambda e: outlier_channels(torch.ones(2, 3)), ValueError, r"absmax must be 1-D"),
    ("oc-negative", lambda e: outlier_channels(T([1.0, -100.0, 1.0])), ValueError, r"absmax holds negative values"),
    ("oc-empty", lambda e: outlier_channels(torch.empty(0)), ValueError, r"absmax is empty"),
    ("oc-ratio-str", lambda e: outlier_channels(torch.ones(4), "6"), TypeError, r"ratio must be a number"),
    ("oc-ratio-negative", lambda e: outlier_channels(torch.ones(4), -1), ValueError, r"ratio=-1 must be a positive, finite number"),
    ("oc-ratio-nan", lambda e: outlier_channels(torch.ones(4), NAN), ValueError, r"ratio=nan must be a positive, finite number"),
    # ---- transformer
    ("cfg-vocab-zero", lambda e: GPTConfig(vocab_size=0), ValueError, r"GPTConfig vocab_size=0 must be a positive int"),
    ("cfg-bias-int", lambda e: GPTConfig(bias=1), TypeError, r"GPTConfig bias=1 must be True or False"),
    ("gpt-config-dict", lambda e: GPT({"n_layer": 2}), TypeError, r"config must be a GPTConfig, not dict"),
    ("gpt-idx-float", lambda e: e.gpt(torch.zeros(1, 4)), TypeError, r"idx must be an integer tensor of token ids"),
    ("gpt-idx-1d", lambda e: e.gpt(torch.zeros(4, dtype=torch.long)), ValueError, r"idx must be 2-D \(batch, tokens\), got shape \(4,\)"),
    ("gpt-idx-out-of-vocab", lambda e: e.gpt(torch.full((1, 4), 11)), ValueError, r"idx holds token ids from 11 to 11; the model's vocab_size=11 takes 0 to 10"),
    ("gpt-idx-negative", lambda e: e.gpt(T([[0, -1]])), ValueError, r"idx holds token ids from -1 to 0"),
    ("gpt-idx-too-long", lambda e: e.gpt(torch.zeros(1, 17, dtype=torch.long)), ValueError, r"a sequence of 17 tokens is longer than the model's block_size=16"),
    ("gpt-idx-empty", lambda e: e.gpt(torch.zeros(1, 0, dtype=torch.long)), ValueError, r"idx is empty"),
    ("gpt-idx-list", lambda e: e.gpt([[1, 2]]), TypeError, r"idx must be a torch.Tensor"),
    ("cd-batch-size-zero", lambda e: CachedDecoder(e.gpt, 0), ValueError, r"batch_size=0 must be at least 1"),
    ("cd-batch-size-float", lambda e: CachedDecoder(e.gpt, 1.0), TypeError, r"batch_size=1.0 must be an int"),
    ("cd-model-mlp", lambda e: CachedDecoder(e.mlp), TypeError, r"CachedDecoder needs a GPT, not MLP"),
    ("cd-pos-block-size", lambda e: e.decoder(T([[1]]), T(16)), ValueError, r"pos=16 is beyond the cache: positions run from 0 to block_size - 1 = 15"),
    ("cd-pos-negative", lambda e: e.decoder(T([[1]]), T(-1)), ValueError, r"pos=-1 is beyond the cache"),
    ("cd-pos-int", lambda e: e.decoder(T([[1]]), 3), TypeError, r"pos must be a 0-d integer tensor, e.g. torch.tensor\(3\), not int"),
    ("cd-pos-float", lambda e: e.decoder(T([[1]]), T(3.0)), TypeError, r"pos must be a 0-d integer tensor"),
    ("cd-pos-2", lambda e: e.decoder(T([[1]]), T([1, 2])), ValueError, r"pos must hold one position, got shape \(2,\)"),
    ("cd-token-1d", lambda e: e.decoder(T([1]), T(0)), ValueError, r"token must be \(batch, 1\), got shape \(1,\)"),
    ("cd-token-batch", lambda e: e.decoder(T([[1], [2]]), T(0)), ValueError, r"token holds 2 sequence\(s\) but the cache was made for batch_size=1"),
    ("cd-token-out-of-vocab", lambda e: e.decoder(T([[11]]), T(0)), ValueError, r"token holds token ids from 11 to 11; the model's vocab_size=11"),
    ("cd-token-float", lambda e: e.decoder(T([[1.0]]), T(0)), TypeError, r"token must be an integer tensor"),
    ("bl-model-str", lambda e: block_linears("gpt"), TypeError, r"model must be a torch.nn.Module"),
    ("bl-mlp", lambda e: block_linears(e.mlp), ValueError, r"the MLP has no nn.Linear inside transformer blocks \(h.<i>.\); its nn.Linear layers are net.1"),
    ("ids-float", lambda e: check_ids("ids", T([1.0])), TypeError, r"ids must be a 1-D int64 tensor of token ids"),
    ("ids-2d", lambda e: check_ids("ids", torch.zeros(2, 2, dtype=torch.long)), ValueError, r"ids must be 1-D, got shape \(2, 2\)"),
    ("ids-empty", lambda e: check_ids("ids", T([], dtype=torch.long)), ValueError, r"ids is empty"),
    ("ids-negative", lambda e: check_ids("ids", T([3, -1])), ValueError, r"ids holds negative token ids \(-1\)"),
    ("ids-list", lambda e: check_ids("ids", [1, 2]), TypeError, r"ids must be a 1-D int64 tensor of token ids .* not list"),
    ("ew-block-zero", lambda e: eval_windows(e.ids, 0, 5), ValueError, r"block_size=0 must be at least 1"),
    ("ew-block-str", lambda e: eval_windows(e.ids, "16", 5), TypeError, r"block_size='16' must be an int"),
    ("ew-count-float", lambda e: eval_windows(e.ids, 16, 2.5), TypeError, r"count=2.5 must be an int"),
    ("ew-count-zero", lambda e: eval_windows(e.ids, 16, 0), ValueError, r"count=0 windows of 17 tokens: between 1 and 23 fit"),
    ("ew-too-short", lambda e: eval_windows(e.ids[:10], 16, 1), ValueError, r"ids holds 10 tokens, fewer than one window of 17"),
    ("ew-ids-float", lambda e: eval_windows(e.ids.float(), 16, 1), TypeError, r"ids must be a 1-D int64 tensor"),
    ("ll-batch-zero", lambda e: lm_loss(e.gpt, e.windows, 0), ValueError, r"batch_size=0 must be at least 1"),
    ("ll-windows-tensor", lambda e: lm_loss(e.gpt, e.windows[0]), TypeError, r"windows must be the pair \(inputs, targets\) from eval_windows"),
    ("ll-windows-shapes", lambda e: lm_loss(e.gpt, (e.windows[0], e.windows[1][:, :5])), ValueError, r"windows' inputs \(shape \(4, 16\)\) and targets \(shape \(4, 5\)\) must have the same 2-D shape"),
    ("ll-windows-empty", lambda e: lm_loss(e.gpt, (e.windows[0][:0], e.windows[1][:0])), ValueError, r"windows hold no tokens"),
    ("ll-targets-vocab", lambda e: lm_loss(e.gpt, (e.windows[0], torch.full_like(e.windows[1], 11))), ValueError, r"windows\[1\] \(the targets\) holds token ids from 11 to 11; the model's vocab_size=11"),
    ("ll-windows-float", lambda e: lm_loss(e.gpt, (e.windows[0].float(), e.windows[1])), TypeError, r"windows' inputs must be an integer tensor"),
    ("ll-model-str", lambda e: lm_loss("gpt", e.windows), TypeError, r"model must be a torch.nn.Module"),
    ("gen-negative", lambda e: generate(e.gpt, e.prompt, -5), ValueError, r"max_new_tokens=-5 must be at least 0"),
    ("gen-count-float", lambda e: generate(e.gpt, e.prompt, 5.0), TypeError, r"max_new_tokens=5.0 must be an int"),
    ("gen-top-k-zero", lambda e: generate(e.gpt, e.prompt, 3, top_k=0), ValueError, r"top_k=0 must be at least 1"),
    ("gen-top-k-float", lambda e: generate(e.gpt, e.prompt, 3, top_k=2.0), TypeError, r"top_k=2.0 must be an int"),
    ("gen-temperature-zero", lambda e: generate(e.gpt, e.prompt, 3, temperature=0), ValueError, r"temperature=0 must be a positive, finite number"),
    ("gen-temperature-bool", lambda e: generate(e.gpt, e.prompt, 3, temperature=True), TypeError, r"temperature must be a number, not bool"),
    ("gen-temperature-inf", lambda e: generate(e.gpt, e.prompt, 3, temperature=INF), ValueError, r"temperature=inf must be a positive, finite number"),
    ("gen-seed-negative", lambda e: generate(e.gpt, e.prompt, 3, seed=-1), ValueError, r"seed=-1 must be between 0 and 4294967295"),
    ("gen-seed-float", lambda e: generate(e.gpt, e.prompt, 3, seed=1.5), TypeError, r"seed=1.5 must be an int"),
    ("gen-prompt-empty", lambda e: generate(e.gpt, T([], dtype=torch.long), 3), ValueError, r"prompt is empty"),
    ("gen-prompt-vocab", lambda e: generate(e.gpt, T([1, 11]), 3), ValueError, r"prompt holds token ids from 1 to 11; the model's vocab_size=11"),
    ("gen-model-str", lambda e: generate("gpt", e.prompt, 3), TypeError, r"model must be a torch.nn.Module"),
    # ---- packing
    ("pack-bits-float", lambda e: packing.pack(torch.zeros(2, dtype=torch.uint8), 4.0), TypeError, r"bits=4.0 must be an int"),
    ("pack-bits-9", lambda e: packing.pack(torch.zeros(2, dtype=torch.uint8), 9), ValueError, r"bits=9 must be between 1 and 8"),
    ("pack-codes-int64", lambda e: packing.pack(T([1, 2]), 4), TypeError, r"codes must be a uint8 tensor, got torch.int64"),
    ("pack-codes-list", lambda e: packing.pack([1, 2], 4), TypeError, r"codes must be a uint8 tensor, got list"),
    ("pack-codes-too-big", lambda e: packing.pack(T([1, 16], dtype=torch.uint8), 4), ValueError, r"codes up to 16 do not fit in 4 bits"),
    ("unpack-bits-0", lambda e: packing.unpack(torch.zeros(2, dtype=torch.uint8), 0), ValueError, r"bits=0 must be between 1 and 8"),
    ("unpack-list", lambda e: packing.unpack([0, 1], 4), TypeError, r"packed must be a uint8 tensor, got list"),
    ("unpack-0d", lambda e: packing.unpack(T(3, dtype=torch.uint8), 4), ValueError, r"packed must have at least one dimension"),
    ("pb-count-float", lambda e: packing.packed_bytes(1.5, 4), TypeError, r"count=1.5 must be an int"),
    ("pb-count-negative", lambda e: packing.packed_bytes(-1, 4), ValueError, r"count=-1 must be at least 0"),
    ("eb-group-zero", lambda e: packing.effective_bits(4, PerGroup(0)), ValueError, r"PerGroup group_size must be at least 1"),
    ("eb-group-float", lambda e: packing.effective_bits(4, 64.0), TypeError, r"granularity must be quant.PerGroup\(size\), got float 64.0"),
    ("eb-group-int", lambda e: packing.effective_bits(4, 64), TypeError, r"granularity=64 is a bare int: pass quant.PerGroup\(64\), not 64$"),
    ("eb-per-row", lambda e: packing.effective_bits(4, PerChannel(0)), ValueError, r"quant.PerGroup\(in_features\)"),
    ("eb-scale-bits-negative", lambda e: packing.effective_bits(4, PerGroup(64), scale_bits=-16), ValueError, r"scale_bits=-16 must be at least 0"),
    ("eb-zero-point-bits-bool", lambda e: packing.effective_bits(4, PerGroup(64), zero_point_bits=True), TypeError, r"zero_point_bits=True must be an int"),
]


@pytest.mark.parametrize("name, call, exc, pattern", CASES, ids=[c[0] for c in CASES])
def test_bad_input_is_refused_clearly(e, name, call, exc, pattern):
    with pytest.raises(exc, match=pattern) as info:
        call(e)
    assert type(info.value) is exc  # not a subclass raised from deeper inside torch
    last = traceback.extract_tb(info.value.__traceback__)[-1]
    assert "/qhelpers/" in last.filename and (last.line or "").lstrip().startswith("raise"), (
        f"raised from {last.filename}:{last.lineno}, not by a check in qhelpers")
    assert info.value.__cause__ is None or info.value.__suppress_context__  # no torch traceback chained above it


def test_case_ids_are_unique():
    names = [c[0] for c in CASES]
    assert len(names) == len(set(names))


# --- what is accepted, and how ----------------------------------------------------------------------------------

def test_the_remedy_the_overflow_message_names_works(e):
    """Weights whose FP16 scales overflow are refused; scale_dtype=torch.float32 (what the message says) quantizes them."""
    big = e.w * 1e7
    with pytest.raises(ValueError, match="scale_dtype=torch.float32"):
        W.fake_quantize_affine(big, 4, PerGroup(32))
    out = W.fake_quantize_affine(big, 4, PerGroup(32), scale_dtype=torch.float32)
    assert bool(torch.isfinite(out).all()) and float((out - big).abs().max()) <= float(big.abs().max()) / 7


def test_fp16_activations_are_searched_in_fp32(e):
    x16 = e.x.half()
    assert torch.equal(awq_search(e.w, x16, 4, PerGroup(32), grid=4).weight, awq_search(e.w, x16.float(), 4, PerGroup(32), grid=4).weight)


def test_edge_values_that_are_allowed(e):
    assert torch.equal(generate(e.gpt, e.prompt, 0), e.prompt)  # no new tokens: the prompt itself
    assert torch.equal(inject_outliers(e.gpt, T([3, 5]))(e.windows[0]), inject_outliers(e.gpt, [3, 5])(e.windows[0]))
    one = FakeW8A8Linear(e.lin, "per-tensor", T(4.0))  # one range for the whole tensor
    assert torch.equal(one.act_scale, FakeW8A8Linear(e.lin, "per-tensor", torch.full((64,), 4.0)).act_scale)
    with torch.inference_mode():
        assert torch.equal(CachedDecoder(e.gpt)(T([[1]]), T([0])), CachedDecoder(e.gpt)(T([[1]]), T(0)))
    assert packing.packed_bytes(0, 4) == 0 and outlier_channels(torch.zeros(4)).tolist() == []
    assert effective_bits_codebook(1, PerGroup(1), 1) == 1 + 16 + 32


def test_checks_leave_the_compiled_decoder_in_one_graph(e):
    """The checks in the decoding step (pos, token ids; value checks skipped while tracing) add no graph break."""
    with torch.inference_mode():
        explained = torch._dynamo.explain(CachedDecoder(e.w4))(T([[1]]), T(3))
    assert explained.graph_count == 1 and explained.graph_break_count == 0
