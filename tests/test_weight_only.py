"""qhelpers.weight_only: bit for bit with torchao's quant_primitives (under their names); packed layers; the swap walker."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from qhelpers import weight_only as W
from qhelpers.quant import EPS, PerChannel, PerGroup
from qhelpers.transformer import GPT, GPTConfig

ROW = PerChannel(0)  # one scale per output row (torchao's block_size=(1, in_features))


def _weight(seed: int = 0, shape=(48, 256)) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    w = torch.randn(shape, generator=g) * torch.rand(shape[0], 1, generator=g) * 0.1
    w[0, :5] = 0.0          # exact zeros
    w[1] = 0.0              # an all-zero row: the smallest scale
    w[2] = w[2].abs()       # one-sided rows: the range is widened to include 0
    w[3] = -w[3].abs()
    w[4, 7] = 3.0           # an outlier
    return w


@pytest.mark.parametrize("bits", [2, 3, 4, 8])
@pytest.mark.parametrize("symmetric", [True, False])
@pytest.mark.parametrize("granularity", [PerGroup(32), PerGroup(64), PerGroup(128), ROW], ids=str)
def test_bit_for_bit_with_torchao_quant_primitives(bits, symmetric, granularity):
    from torchao.quantization.quant_primitives import MappingType, choose_qparams_affine, dequantize_affine, quantize_affine

    w = _weight(bits)
    block = (1, granularity.group_size if isinstance(granularity, PerGroup) else w.shape[1])
    qmin, qmax = W.quant_range_affine(bits, symmetric)
    mapping = MappingType.SYMMETRIC if symmetric else MappingType.ASYMMETRIC
    dtype = torch.int8 if symmetric else torch.uint8
    scale_t, zp_t = choose_qparams_affine(w, mapping, block, dtype, qmin, qmax, eps=EPS, scale_dtype=torch.float16,
                                          zero_point_dtype=torch.int32)
    codes_t = quantize_affine(w, block, scale_t, zp_t, dtype, qmin, qmax)
    values_t = dequantize_affine(codes_t, block, scale_t, zp_t, dtype, qmin, qmax)

    scale, zp = W.choose_qparams_affine(w, bits, granularity, symmetric)
    codes = W.quantize_affine(w, scale, zp, bits, symmetric)
    values = W.dequantize_affine(codes, scale, zp)
    assert scale.dtype == torch.float16 and torch.equal(scale, scale_t.reshape(scale.shape))
    if symmetric:
        assert zp is None and bool((zp_t == 0).all())
    else:
        assert zp.dtype == torch.uint8 and torch.equal(zp.to(torch.int32), zp_t.reshape(zp.shape))
    assert torch.equal(codes.to(torch.int32), codes_t.to(torch.int32))
    assert torch.equal(values, values_t)
    assert torch.equal(W.fake_quantize_affine(w, bits, granularity, symmetric), values_t)


def test_codes_stay_in_range_and_the_error_is_half_a_step():
    w = _weight(1)
    for symmetric in (True, False):
        scale, zp = W.choose_qparams_affine(w, 4, PerGroup(64), symmetric)
        codes = W.quantize_affine(w, scale, zp, 4, symmetric)
        lo, hi = W.quant_range_affine(4, symmetric)
        assert int(codes.min()) >= lo and int(codes.max()) <= hi
        err = (W.dequantize_affine(codes, scale, zp) - w).abs().reshape(48, 4, 64)
        step = scale.float().unsqueeze(-1)
        # rounding moves a weight by half a step at most; symmetric clips +max|w| (7.5 steps) to 7: half a step too.
        # 1 % slack: the step is stored in FP16.
        assert bool((err <= step / 2 * 1.01 + 1e-7).all())


@pytest.mark.parametrize("bits, granularity, symmetric", [(8, ROW, True), (4, PerGroup(64), False), (4, PerGroup(32), True),
                                                          (3, PerGroup(64), False), (2, PerGroup(128), False)])
def test_weight_only_linear_is_packed_and_computes_with_the_fake_quantized_weight(bits, granularity, symmetric):
    torch.manual_seed(0)
    lin = nn.Linear(256, 48)
    layer = W.WeightOnlyLinear.from_linear(lin, bits, granularity, symmetric)
    assert layer.packed.dtype == torch.uint8 and layer.packed.shape == (48, 256 * bits // 8)
    assert layer.granularity == granularity and str(granularity) in repr(layer)
    expected_w = W.fake_quantize_affine(lin.weight.detach(), bits, granularity, symmetric)
    assert torch.equal(layer.dequantized_weight(), expected_w)
    x = torch.randn(3, 5, 256)
    assert torch.equal(layer(x), nn.functional.linear(x, expected_w, lin.bias))
    g = 256 if granularity == ROW else granularity.group_size
    assert layer.effective_bits() == bits + (16 + (0 if symmetric else 8)) / g
    stored = sum(t.numel() * t.element_size() for t in layer.state_dict().values() if t is not None)
    assert stored == 48 * 256 * bits // 8 + 48 * (256 // g) * (2 + (0 if symmetric else 1)) + 48 * 4  # + FP32 bias


def test_walker_keeps_head_and_embeddings_by_default_and_leaves_the_original_alone():
    torch.manual_seed(0)
    model = GPT(GPTConfig(n_layer=2, n_embd=64, n_head=2, block_size=16)).eval()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    q = W.quantize_weight_only(model, 4, PerGroup(32))
    swapped = sorted(n for n, m in q.named_modules() if isinstance(m, W.WeightOnlyLinear))
    assert swapped == sorted(f"h.{i}.{n}" for i in range(2) for n in ("attn.c_attn", "attn.c_proj", "mlp.c_fc", "mlp.c_proj"))
    assert type(q.lm_head) is nn.Linear and type(q.wte) is nn.Embedding
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    everything = W.quantize_weight_only(model, 8, ROW, True, include=lambda n, m: isinstance(m, (nn.Linear, nn.Embedding)))
    assert isinstance(everything.lm_head, W.WeightOnlyLinear) and isinstance(everything.wte, W.WeightOnlyEmbedding)
    idx = torch.randint(0, 65, (2, 16))
    assert (everything(idx) - model(idx)).abs().max() < 0.05


def test_replace_weights_simulates_the_packed_model_exactly():
    torch.manual_seed(0)
    model = GPT(GPTConfig(n_layer=1, n_embd=64, n_head=2, block_size=16)).eval()
    packed = W.quantize_weight_only(model, 4, PerGroup(32))
    simulated = W.replace_weights(model, lambda n, m: W.fake_quantize_affine(m.weight.detach(), 4, PerGroup(32)))
    idx = torch.randint(0, 65, (2, 16))
    assert torch.equal(packed(idx), simulated(idx))


def test_torchao_intx_int4_stores_the_values_of_our_symmetric_int4():
    """IntxWeightOnlyConfig(int4, PerGroup) with FP16 scales dequantizes to exactly our symmetric 4-bit weight."""
    import copy

    import torchao.quantization as tq

    torch.manual_seed(0)
    lin = nn.Linear(128, 32, bias=False)
    theirs = copy.deepcopy(lin)
    tq.quantize_(theirs, tq.IntxWeightOnlyConfig(weight_dtype=torch.int4, granularity=tq.PerGroup(32), scale_dtype=torch.float16))
    ours = W.fake_quantize_affine(lin.weight.detach(), 4, PerGroup(32), symmetric=True)
    assert torch.equal(theirs.weight.dequantize().float(), ours)


@pytest.mark.parametrize(
    "call, error, match",
    [
        (lambda: W.choose_qparams_affine(torch.randn(4, 64), 1, PerGroup(32)), ValueError, "bits=1"),
        (lambda: W.choose_qparams_affine(torch.randn(4, 64), 4, PerGroup(48)), ValueError, r"not a multiple of the group size in PerGroup\(48\)"),
        (lambda: W.choose_qparams_affine(torch.randn(4, 64), 4, 32), TypeError, r"pass quant.PerGroup\(32\), not 32"),
        (lambda: W.choose_qparams_affine(torch.randn(64), 4, PerGroup(32)), ValueError, r"w must be 2-D \(out_features, in_features\)"),
        (lambda: W.choose_qparams_affine(torch.randn(4, 64), 4, PerGroup(32), symmetric="yes"), TypeError, "symmetric"),
        (lambda: W.WeightOnlyLinear.from_linear(nn.Conv2d(1, 1, 1)), TypeError, "nn.Linear"),
        (lambda: W.quantize_weight_only(nn.Sequential(nn.Linear(4, 4), nn.ReLU()), 4, PerGroup(4), include=lambda n, m: True), TypeError,
         "only nn.Linear and nn.Embedding"),
    ],
)
def test_bad_input_is_refused_clearly(call, error, match):
    with pytest.raises(error, match=match):
        call()


def test_weight_as_computed_reads_back_any_linear_layer():
    import copy

    from torchao.prototype.quantization.int4 import PrototypeInt4WeightOnlyConfig
    from torchao.quantization import quantize_

    torch.manual_seed(0)
    lin = nn.Linear(128, 32)
    assert torch.allclose(W.weight_as_computed(lin), lin.weight, atol=1e-6)
    packed = W.WeightOnlyLinear.from_linear(lin, 4, PerGroup(64))
    assert torch.allclose(W.weight_as_computed(packed), packed.dequantized_weight(), atol=1e-6)
    opaque = copy.deepcopy(lin)
    quantize_(opaque, PrototypeInt4WeightOnlyConfig(group_size=64, set_inductor_config=False))
    x = torch.randn(3, 128)
    read = W.weight_as_computed(opaque)
    assert torch.allclose(nn.functional.linear(x, read, opaque.bias), opaque(x), atol=1e-4)
