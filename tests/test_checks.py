"""The shared argument checks: one message format for every module."""

import pytest
import torch
from torch import nn

from qhelpers.checks import SEED_MAX, check_flag, check_float_model, check_int, check_module, describe


def test_check_int_names_the_argument_and_the_rule():
    assert check_int("n", 3, 1) == 3 and check_int("n", 3) == 3 and check_int("seed", SEED_MAX, 0, SEED_MAX) == SEED_MAX
    with pytest.raises(TypeError, match=r"^n=True must be an int, not bool; e.g. 4$"):
        check_int("n", True, 1, hint="; e.g. 4")
    with pytest.raises(TypeError, match=r"^n=2.0 must be an int, not float$"):
        check_int("n", 2.0)
    with pytest.raises(ValueError, match=r"^n=0 must be at least 1$"):
        check_int("n", 0, 1)
    with pytest.raises(ValueError, match=r"^bits=9 must be between 2 and 8: why$"):
        check_int("bits", 9, 2, 8, hint=": why")
    with pytest.raises(ValueError, match=r"^n=5 must be at most 4$"):
        check_int("n", 5, hi=4)


def test_flags_modules_and_float_models():
    assert check_flag("strict", False) is False
    with pytest.raises(TypeError, match=r"strict=1 must be True or False, not int"):
        check_flag("strict", 1)
    lin = nn.Linear(2, 2)
    assert check_module(lin) is lin and check_float_model(lin) is lin
    with pytest.raises(TypeError, match=r"model must be a torch.nn.Module, not str 'x'"):
        check_module("x")
    dynamic = torch.ao.quantization.quantize_dynamic(nn.Sequential(nn.Linear(2, 2)), {nn.Linear}, dtype=torch.qint8)
    with pytest.raises(ValueError, match=r"model is not a float model: it is already quantized \(0 is a DynamicQuantizedLinear\)"):
        check_float_model(dynamic)
    assert describe(torch.zeros(2, 3)) == "a torch.float32 tensor of shape (2, 3)" and describe(lin) == "a Linear module"
