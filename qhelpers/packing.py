"""Bit packing: store ``bits``-bit integer codes densely in bytes, and get them back exactly.

PyTorch has no 4-bit (or 3-bit, or 2-bit) integer dtype a tensor can be
stored in: the smallest is one byte. A 4-bit weight kept in a ``uint8`` wastes
half of every byte, so "INT4" is only smaller than INT8 once the codes are
*packed*: two 4-bit codes per byte, four 2-bit codes, eight 3-bit codes in
three bytes.

The layout here is a little-endian bit stream along the last dimension: code
``j`` occupies stream bits ``j*bits`` to ``j*bits + bits - 1``, lowest bit
first, and stream bit ``i`` is bit ``i % 8`` of byte ``i // 8``. For 4 bits
that is the usual nibble order (code ``2k`` in the low nibble of byte ``k``,
code ``2k + 1`` in the high nibble)::

    codes [1, 2, 15, 0]  ->  bytes [0x21, 0x0F]

- :func:`pack` / :func:`unpack`: the round trip, exact for every code;
- :func:`packed_bytes`: bytes taken by ``n`` codes;
- :func:`effective_bits`: bits per weight once the scales and zero-points of
  group-wise quantization (``quant.PerGroup(size)``) are counted.
"""

from __future__ import annotations

import math

import torch

from .checks import check_int
from .quant import PerGroup, check_weight_granularity

__all__ = ["pack", "unpack", "packed_bytes", "effective_bits"]


def _check_bits(bits: object) -> int:
    return check_int("bits", bits, 1, 8)


def _check_bytes(name: str, t: object, hint: str, why: str) -> None:
    """``t`` must be a uint8 tensor of at least one dimension (a TypeError / ValueError naming ``name`` otherwise)."""
    if not isinstance(t, torch.Tensor) or t.dtype != torch.uint8:
        got = t.dtype if isinstance(t, torch.Tensor) else type(t).__name__
        raise TypeError(f"{name} must be a uint8 tensor, got {got}{hint}")
    if t.dim() == 0:
        raise ValueError(f"{name} must have at least one dimension{' ' + why if why else ''}")


def _codes_per_chunk(bits: int) -> int:
    """The fewest codes that fill whole bytes: 8 // gcd(bits, 8) (2 for 4 bits, 8 for 3 bits)."""
    return 8 // math.gcd(bits, 8)


def pack(codes: torch.Tensor, bits: int) -> torch.Tensor:
    """Pack ``bits``-bit codes (a ``uint8`` tensor of values in ``[0, 2**bits - 1]``) along the last dimension.

    The last dimension must hold a multiple of ``8 // gcd(bits, 8)`` codes
    (2 for 4 bits, 4 for 2 bits, 8 for 3 bits); the result is ``uint8`` with
    a last dimension of ``n * bits / 8``. Signed codes must be shifted to
    unsigned first (add ``2**(bits - 1)``), as the layers of
    :mod:`qhelpers.weight_only` do.
    """
    bits = _check_bits(bits)
    _check_bytes("codes", codes, "; convert unsigned codes with .to(torch.uint8)", "to pack along")
    n = codes.shape[-1]
    chunk = _codes_per_chunk(bits)
    if n % chunk:
        raise ValueError(f"the last dimension holds {n} codes; {bits}-bit packing needs a multiple of {chunk}")
    if codes.numel() and int(codes.max()) >= 1 << bits:
        raise ValueError(f"codes up to {int(codes.max())} do not fit in {bits} bits (largest {2**bits - 1})")
    if bits == 8:
        return codes.clone()
    if 8 % bits == 0:  # whole codes per byte: shift each into place and OR them together
        per_byte = 8 // bits
        groups = codes.reshape(*codes.shape[:-1], n // per_byte, per_byte)
        out = torch.zeros(groups.shape[:-1], dtype=torch.uint8)
        for j in range(per_byte):
            out |= groups[..., j] << (j * bits)
        return out
    return _pack_bitstream(codes, bits)


def _pack_bitstream(codes: torch.Tensor, bits: int) -> torch.Tensor:
    """The general case: split each code into its bits, then read the stream back 8 bits at a time."""
    n = codes.shape[-1]
    shifts = torch.arange(bits, dtype=torch.uint8)
    stream = ((codes.unsqueeze(-1) >> shifts) & 1).reshape(*codes.shape[:-1], n * bits // 8, 8)
    weights = (1 << torch.arange(8, dtype=torch.int32)).to(torch.uint8)
    return (stream * weights).sum(dim=-1, dtype=torch.int32).to(torch.uint8)


def unpack(packed: torch.Tensor, bits: int) -> torch.Tensor:
    """The codes packed by :func:`pack`: ``uint8`` with a last dimension of ``packed.shape[-1] * 8 / bits``."""
    bits = _check_bits(bits)
    _check_bytes("packed", packed, "; pass what pack() returned", "")
    m = packed.shape[-1]
    chunk_bytes = bits // math.gcd(bits, 8)
    if m % chunk_bytes:
        raise ValueError(f"a last dimension of {m} bytes is not a whole number of {bits}-bit chunks ({chunk_bytes} bytes each)")
    if bits == 8:
        return packed.clone()
    mask = (1 << bits) - 1
    if 8 % bits == 0:
        per_byte = 8 // bits
        parts = [(packed >> (j * bits)) & mask for j in range(per_byte)]
        return torch.stack(parts, dim=-1).reshape(*packed.shape[:-1], m * per_byte)
    shifts = torch.arange(8, dtype=torch.uint8)
    stream = ((packed.unsqueeze(-1) >> shifts) & 1).reshape(*packed.shape[:-1], m * 8 // bits, bits)
    weights = (1 << torch.arange(bits, dtype=torch.int32)).to(torch.uint8)
    return (stream * weights).sum(dim=-1, dtype=torch.int32).to(torch.uint8)


def packed_bytes(count: int, bits: int) -> int:
    """Bytes that ``count`` packed ``bits``-bit codes take (rounded up to whole bytes)."""
    bits = _check_bits(bits)
    check_int("count", count, 0)
    return (count * bits + 7) // 8


def effective_bits(bits: int, granularity: PerGroup, *, scale_bits: int = 16, zero_point_bits: int = 0) -> float:
    """Bits stored per weight: the code, plus one scale (and zero-point) shared by each group of ``granularity``.

    E.g. 4-bit codes with an FP16 scale and an 8-bit zero-point per group of
    64 (``quant.PerGroup(64)``): ``4 + (16 + 8) / 64 = 4.375``. One scale per
    row is the group of a whole row: ``quant.PerGroup(in_features)``.
    """
    bits = _check_bits(bits)
    group_size = check_weight_granularity(granularity, per_row=False).group_size
    check_int("scale_bits", scale_bits, 0)
    check_int("zero_point_bits", zero_point_bits, 0)
    return bits + (scale_bits + zero_point_bits) / group_size
