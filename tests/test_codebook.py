"""qhelpers.codebook: k-means levels, codes and the error they give against an even grid."""

from __future__ import annotations

import pytest
import torch

from qhelpers.codebook import (choose_qparams_codebook, dequantize_codebook, effective_bits_codebook, fake_quantize_codebook,
                               kmeans_1d, quantize_codebook)
from qhelpers.quant import PerChannel, PerGroup
from qhelpers.weight_only import fake_quantize_affine


def test_kmeans_finds_separated_clusters_and_is_deterministic():
    values = torch.cat([torch.full((100,), -2.0), torch.full((50,), 0.5), torch.full((10,), 3.0)])
    values = values + torch.linspace(-0.01, 0.01, 160)
    c = kmeans_1d(values, 3, init=torch.tensor([-2.5, 0.0, 2.5]))
    assert torch.allclose(c, torch.tensor([-2.0, 0.5, 3.0]), atol=0.02)
    assert torch.equal(c, kmeans_1d(values, 3, init=torch.tensor([-2.5, 0.0, 2.5])))
    assert torch.allclose(kmeans_1d(values, 3), torch.tensor([-2.0, 0.5, 3.0]), atol=0.02)  # default: an even grid
    with pytest.raises(ValueError, match="too few for k=4"):
        kmeans_1d(torch.zeros(2), 4)
    with pytest.raises(ValueError, match="init must hold k=3"):
        kmeans_1d(values, 3, init=torch.zeros(2))


def test_lloyd_iterations_never_increase_the_error():
    values = torch.randn(5000, generator=torch.Generator().manual_seed(1)) ** 3
    def mse(c):
        b = (c[1:] + c[:-1]) / 2
        return float(((values - c[torch.bucketize(values, b)]) ** 2).mean())
    errors = [mse(kmeans_1d(values, 8, iters=i)) for i in range(6)]
    assert all(a >= b - 1e-9 for a, b in zip(errors, errors[1:]))


@pytest.mark.parametrize("bits", [3, 4])
def test_codebook_beats_an_even_grid_on_bell_shaped_weights(bits):
    w = torch.randn(64, 256, generator=torch.Generator().manual_seed(0)) * 0.02
    codebook, scale = choose_qparams_codebook(w, bits, PerGroup(64))
    codes = quantize_codebook(w, codebook, scale)
    assert codes.dtype == torch.uint8 and int(codes.max()) < 2**bits and codebook.shape == (2**bits,)
    assert scale.shape == (64, 4) and scale.dtype == torch.float16
    w_cb = dequantize_codebook(codes, codebook, scale)
    assert torch.equal(w_cb, fake_quantize_codebook(w, bits, PerGroup(64)))
    err_cb = float(((w_cb - w) ** 2).mean())
    err_rtn = float(((fake_quantize_affine(w, bits, PerGroup(64), symmetric=True) - w) ** 2).mean())
    assert err_cb < err_rtn
    assert effective_bits_codebook(bits, PerGroup(64), w.numel()) == bits + 16 / 64 + 16 * 2**bits / w.numel()


def test_one_scale_per_row_is_the_group_of_a_whole_row():
    w = torch.randn(16, 64, generator=torch.Generator().manual_seed(2)) * 0.02
    codebook, scale = choose_qparams_codebook(w, 3, PerChannel(0))
    assert scale.shape == (16, 1)
    assert torch.equal(fake_quantize_codebook(w, 3, PerChannel(0)), fake_quantize_codebook(w, 3, PerGroup(64)))
    assert torch.equal(dequantize_codebook(quantize_codebook(w, codebook, scale), codebook, scale),
                       fake_quantize_codebook(w, 3, PerChannel(0)))
