"""The bit-packing exercise: its checker passes the reference solution and fails known wrong answers with the right hint."""

from __future__ import annotations

import pytest
import torch

from qhelpers import packing
from qhelpers.course.exercises import Feedback, check_pack_int4
from qhelpers.course.solutions.packing import my_pack_int4, my_unpack_int4
from qhelpers.packing import pack as imported_pack
from torchao.prototype.dtypes.uintx import bitpacking  # noqa: F401  (imported: the refusal names its function)


def test_the_reference_solution_passes():
    fb = check_pack_int4(my_pack_int4, my_unpack_int4)
    assert isinstance(fb, Feedback) and fb, fb.message
    assert repr(fb).startswith("PASS")


def _stub(_):
    raise NotImplementedError("your turn")


def _half(c):
    return c.shape[-1] // 2


WRONG = [
    # the notebook's stubs, as shipped: "not done yet", no exception
    ((_stub, _stub), "pack: not done yet: your function still raises NotImplementedError"),
    ((my_pack_int4, _stub), "unpack: not done yet: your function still raises NotImplementedError"),
    # library packers are refused, however they are reached
    ((lambda c: packing.pack(c, 4), my_unpack_int4), "calls a function of qhelpers.packing"),
    ((lambda c: imported_pack(c, 4), my_unpack_int4), "calls a function of qhelpers.packing"),
    ((my_pack_int4, lambda p: packing.unpack(p, 4)), "unpack: your function calls a function of qhelpers.packing"),
    ((lambda c: __import__("torchao.prototype.dtypes.uintx.bitpacking", fromlist=["pack"]).pack(c, 4)[0], my_unpack_int4),
     "calls a function of torchao.prototype.dtypes.uintx.bitpacking"),
    # mistakes in pack
    ((lambda c: (c[..., 1::2] | (c[..., 0::2] << 4)).to(torch.uint8), my_unpack_int4), "the nibbles are swapped"),
    ((lambda c: (c[..., 0::2] | (c[..., 1::2] << 4)).to(torch.int8), my_unpack_int4), "a byte is torch.uint8"),
    ((lambda c: (c[..., :_half(c)] | (c[..., _half(c):] << 4)), my_unpack_int4), "pair neighbours instead"),
    ((lambda c: c, my_unpack_int4), "two codes per byte along the last dimension"),
    ((lambda c: (c[..., 0::2] + c[..., 1::2] * 4).to(torch.uint8), my_unpack_int4), "byte 0 is 9, expected 33"),
    ((lambda c: c.tolist(), my_unpack_int4), "must return a torch.Tensor"),
    ((lambda c: 1 / 0, my_unpack_int4), "raised ZeroDivisionError"),
    # mistakes in unpack
    ((my_pack_int4, lambda p: torch.stack([p, p >> 4], -1).reshape(*p.shape[:-1], -1)), "mask (& 0x0F)"),
    ((my_pack_int4, lambda p: torch.stack([p >> 4, p & 15], -1).reshape(*p.shape[:-1], -1)), "swaps each pair"),
    ((my_pack_int4, lambda p: torch.cat([p & 15, p >> 4], -1)), "low nibble first, then its high nibble"),
    ((my_pack_int4, lambda p: p & 15), "unpack returned shape"),
]


@pytest.mark.parametrize("answer, hint", WRONG, ids=[h[:40] for _, h in WRONG])
def test_wrong_answers_fail_with_the_right_hint(answer, hint):
    fb = check_pack_int4(*answer)
    assert not fb
    assert repr(fb).startswith("NOT YET")
    assert hint in fb.message, fb.message


def test_the_packers_are_restored_and_non_functions_are_refused():
    before = packing.pack.__code__
    check_pack_int4(lambda c: packing.pack(c, 4), my_unpack_int4)
    assert packing.pack.__code__ is before
    assert torch.equal(packing.pack(torch.tensor([1, 2], dtype=torch.uint8), 4), torch.tensor([33], dtype=torch.uint8))
    with pytest.raises(TypeError, match="pack function itself"):
        check_pack_int4("my_pack", my_unpack_int4)
