"""qhelpers.packing: the pack/unpack round trip is exact for every bit-width, on random and edge codes."""

from __future__ import annotations

import pytest
import torch

from qhelpers import packing
from qhelpers.quant import PerChannel, PerGroup


def _codes(bits: int, shape: tuple[int, ...], seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, 1 << bits, shape, generator=g).to(torch.uint8)


@pytest.mark.parametrize("bits", range(1, 9))
@pytest.mark.parametrize("shape", [(64,), (3, 40), (2, 5, 16)])
def test_round_trip_random_codes(bits, shape):
    codes = _codes(bits, shape, seed=bits)
    packed = packing.pack(codes, bits)
    assert packed.dtype == torch.uint8
    assert packed.shape == (*shape[:-1], shape[-1] * bits // 8)
    assert packed.numel() == packing.packed_bytes(codes.numel(), bits)
    assert torch.equal(packing.unpack(packed, bits), codes)


@pytest.mark.parametrize("bits", range(1, 9))
def test_round_trip_edge_codes(bits):
    top = (1 << bits) - 1
    for codes in (torch.zeros(2, 16, dtype=torch.uint8), torch.full((2, 16), top, dtype=torch.uint8),
                  torch.tensor([0, top] * 8, dtype=torch.uint8), torch.tensor([top, 0] * 8, dtype=torch.uint8)):
        assert torch.equal(packing.unpack(packing.pack(codes, bits), bits), codes)


def test_every_byte_value_unpacks_and_packs_back():
    every = torch.arange(256, dtype=torch.int32).to(torch.uint8)
    for bits in (1, 2, 4):
        assert torch.equal(packing.pack(packing.unpack(every, bits), bits), every)


def test_layout_is_low_bits_first():
    assert packing.pack(torch.tensor([1, 2, 15, 0], dtype=torch.uint8), 4).tolist() == [0x21, 0x0F]
    assert packing.pack(torch.tensor([1, 2, 3, 0], dtype=torch.uint8), 2).tolist() == [0b00111001]
    # 3 bits: eight codes in three bytes, a little-endian bit stream
    codes = torch.tensor([7, 0, 0, 0, 0, 0, 0, 5], dtype=torch.uint8)
    assert packing.pack(codes, 3).tolist() == [0b00000111, 0, 0b10100000]


@pytest.mark.parametrize("bits", [1, 2, 4])
def test_whole_byte_path_equals_the_bit_stream(bits):
    codes = _codes(bits, (4, 32), seed=3)
    assert torch.equal(packing._pack_bitstream(codes, bits), packing.pack(codes, bits))


@pytest.mark.parametrize("bits", [2, 4])
def test_same_bytes_as_torchao_bitpacking_up_to_the_order_of_codes(bits):
    """torchao's prototype packer puts code k and code k + n/per_byte in one byte; ours puts neighbours together."""
    from torchao.prototype.dtypes.uintx.bitpacking import pack as torchao_pack

    codes = _codes(bits, (4, 64), seed=5)
    per_byte = 8 // bits
    theirs = torchao_pack(codes, bits, dim=-1)[0]
    n = codes.shape[-1] // per_byte
    interleaved = torch.stack([codes[:, i * n:(i + 1) * n] for i in range(per_byte)], dim=-1).reshape(codes.shape)
    assert torch.equal(packing.pack(interleaved, bits), theirs)


def test_effective_bits_and_packed_bytes():
    assert packing.effective_bits(4, PerGroup(64), scale_bits=16, zero_point_bits=8) == 4.375
    assert packing.effective_bits(4, PerGroup(32)) == 4.5
    assert packing.effective_bits(8, PerGroup(128), scale_bits=32) == 8.25
    assert packing.packed_bytes(10, 3) == 4
    assert packing.packed_bytes(0, 4) == 0


@pytest.mark.parametrize(
    "call, error, match",
    [
        (lambda: packing.pack(torch.tensor([1, 2]), 4), TypeError, "uint8"),
        (lambda: packing.pack(torch.tensor([1, 16], dtype=torch.uint8), 4), ValueError, "do not fit in 4 bits"),
        (lambda: packing.pack(torch.tensor([1, 2, 3], dtype=torch.uint8), 4), ValueError, "multiple of 2"),
        (lambda: packing.pack(torch.zeros(12, dtype=torch.uint8), 3), ValueError, "multiple of 8"),
        (lambda: packing.pack(torch.tensor(3, dtype=torch.uint8), 4), ValueError, "at least one dimension"),
        (lambda: packing.pack(torch.zeros(2, dtype=torch.uint8), 0), ValueError, "between 1 and 8"),
        (lambda: packing.pack(torch.zeros(2, dtype=torch.uint8), 4.0), TypeError, "bits=4.0 must be an int"),
        (lambda: packing.unpack(torch.zeros(2, dtype=torch.int8), 4), TypeError, "uint8"),
        (lambda: packing.unpack(torch.zeros(4, dtype=torch.uint8), 3), ValueError, "whole number of 3-bit chunks"),
        (lambda: packing.effective_bits(4, PerGroup(0)), ValueError, "group_size"),
        (lambda: packing.effective_bits(4, 64), TypeError, r"pass quant.PerGroup\(64\), not 64"),
        (lambda: packing.effective_bits(4, PerChannel(0)), ValueError, r"quant.PerGroup\(in_features\)"),
        (lambda: packing.packed_bytes(-1, 4), ValueError, "count"),
    ],
)
def test_bad_input_is_refused_clearly(call, error, match):
    with pytest.raises(error, match=match):
        call()
