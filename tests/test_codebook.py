"""qhelpers.codebook: k-means levels, codes and the error they give against an even grid."""

from __future__ import annotations

import pytest
import torch

from qhelpers.codebook import (codebook_dequantize, codebook_effective_bits, codebook_quantize, fake_quantize_codebook,
                               kmeans_1d)
from qhelpers.weight_only import fake_quantize


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
    codes, codebook, scale = codebook_quantize(w, bits, 64)
    assert codes.dtype == torch.uint8 and int(codes.max()) < 2**bits and codebook.shape == (2**bits,)
    assert scale.shape == (64, 4) and scale.dtype == torch.float16
    w_cb = codebook_dequantize(codes, codebook, scale)
    assert torch.equal(w_cb, fake_quantize_codebook(w, bits, 64))
    err_cb = float(((w_cb - w) ** 2).mean())
    err_rtn = float(((fake_quantize(w, bits, 64, symmetric=True) - w) ** 2).mean())
    assert err_cb < err_rtn
    assert codebook_effective_bits(bits, 64, w.numel()) == bits + 16 / 64 + 16 * 2**bits / w.numel()
