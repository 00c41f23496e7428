import copy

import pytest
import torch
from torch import nn

from qhelpers import convert, models, zoo
from qhelpers.convert import DynamicBackend
from qhelpers.exercises import Feedback, check_fake_quant_ste, check_quantize, check_skip_last_linear


# --- chapter 01 ---------------------------------------------------------------------------------


def good_quantize(x, scale, zero_point, quant_min, quant_max):
    return torch.clamp(torch.round(x * (1.0 / scale)) + zero_point, quant_min, quant_max).to(torch.int32)


def test_check_quantize_accepts_the_reference_and_division():
    fb = check_quantize(good_quantize)
    assert fb and isinstance(fb, Feedback) and repr(fb).startswith("PASS")
    assert check_quantize(lambda x, s, z, lo, hi: torch.clamp(torch.round(x / s) + z, lo, hi))


@pytest.mark.parametrize(
    "wrong, hint",
    [
        (lambda x, s, z, lo, hi: torch.round(x / s) + z, "clamp"),
        (lambda x, s, z, lo, hi: torch.clamp(torch.floor(x / s) + z, lo, hi), "round down"),
        (lambda x, s, z, lo, hi: torch.clamp(torch.round(x / s), lo, hi), "zero-point"),
        (lambda x, s, z, lo, hi: torch.clamp(x / s + z, lo, hi), "whole numbers"),
        (lambda x, s, z, lo, hi: 1 / 0, "ZeroDivisionError"),
        (lambda x, s, z, lo, hi: x.tolist(), "torch.Tensor"),
        (lambda x, s, z, lo, hi: torch.clamp(torch.round(x * s) + z, lo, hi), "differ"),
    ],
)
def test_check_quantize_explains_mistakes(wrong, hint):
    fb = check_quantize(wrong)
    assert not fb
    assert hint in fb.message, fb.message
    assert repr(fb).startswith("NOT YET")


def test_checkers_reject_non_functions():
    with pytest.raises(TypeError, match="function"):
        check_quantize(3)
    with pytest.raises(TypeError, match="function"):
        check_fake_quant_ste("answer")


# --- chapter 02 ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def mlp():
    torch.manual_seed(0)
    return models.MLP(hidden=(32, 16)).eval()


@pytest.fixture(scope="module")
def example():
    return torch.randn(4, 1, 28, 28, generator=torch.Generator().manual_seed(0))


def test_skip_last_linear_reference_solutions_pass(mlp, example):
    last = "net.5"
    # weight-only: on CPUs without INT8 dot products torchao's dynamic INT8 saturates on this random model (chapter 01)
    torchao_way = lambda m: convert.dynamic_int8(m, DynamicBackend.TORCHAO_WEIGHT_ONLY, filter_fn=lambda mod, fqn: fqn != last)  # noqa: E731
    torch_ao_way = lambda m: torch.ao.quantization.quantize_dynamic(copy.deepcopy(m), {"net.1", "net.3"}, torch.qint8)  # noqa: E731
    assert check_skip_last_linear(torchao_way, mlp, example)
    assert check_skip_last_linear(torch_ao_way, mlp, example)


def test_skip_last_linear_explains_mistakes(mlp, example):
    fb = check_skip_last_linear(lambda m: convert.dynamic_int8(m, DynamicBackend.TORCH_AO), mlp, example)
    assert not fb and "last Linear" in fb.message
    fb = check_skip_last_linear(lambda m: copy.deepcopy(m), mlp, example)
    assert not fb and "still float" in fb.message
    fb = check_skip_last_linear(lambda m: None, mlp, example)
    assert not fb and "nn.Module" in fb.message

    def in_place(m):
        from torchao.quantization import Int8WeightOnlyConfig, quantize_

        quantize_(m, Int8WeightOnlyConfig(), filter_fn=lambda mod, fqn: isinstance(mod, nn.Linear) and fqn != "net.5")
        return m

    victim = copy.deepcopy(mlp)
    fb = check_skip_last_linear(in_place, victim, example)
    assert not fb and "copy" in fb.message


def test_skip_last_linear_needs_two_linears(example):
    with pytest.raises(ValueError, match="two Linear"):
        check_skip_last_linear(lambda m: m, nn.Sequential(nn.Flatten(), nn.Linear(784, 2)), example)


# --- chapter 03 ---------------------------------------------------------------------------------


def good_ste(x, scale, zero_point, quant_min, quant_max):
    q = torch.round(x * (1.0 / scale)) + zero_point
    inside = (q >= quant_min) & (q <= quant_max)
    x_hat = (torch.clamp(q, quant_min, quant_max) - zero_point) * scale
    return x_hat.detach() + (x - x.detach()) * inside


def test_fake_quant_ste_reference_passes():
    fb = check_fake_quant_ste(good_ste)
    assert fb, fb.message


@pytest.mark.parametrize(
    "wrong, hint",
    [
        # plain rounding: right values, no gradient
        (lambda x, s, z, lo, hi: (torch.clamp(torch.round(x / s) + z, lo, hi) - z) * s, "zero everywhere"),
        # straight-through everywhere, also where clipped
        (lambda x, s, z, lo, hi: x + ((torch.clamp(torch.round(x / s) + z, lo, hi) - z) * s - x).detach(), "1 everywhere"),
        # forgot to dequantize
        (lambda x, s, z, lo, hi: torch.clamp(torch.round(x / s) + z, lo, hi).to(torch.int32), "stays in float"),
        # forgot to clamp
        (lambda x, s, z, lo, hi: x + ((torch.round(x / s) + z - z) * s - x).detach(), "forward values differ"),
        (lambda x, s, z, lo, hi: ((torch.clamp(torch.round(x / s) + z, lo, hi) - z) * s).detach(), "no gradient"),
    ],
)
def test_fake_quant_ste_explains_mistakes(wrong, hint):
    fb = check_fake_quant_ste(wrong)
    assert not fb
    assert hint in fb.message, fb.message


def test_skip_last_linear_catches_the_wrong_model(mlp, example):
    other = models.MLP(hidden=(32, 16)).eval()
    with torch.no_grad():
        for p in other.parameters():
            p.normal_(0, 1, generator=torch.Generator().manual_seed(1))
    fb = check_skip_last_linear(lambda m: convert.dynamic_int8(other, DynamicBackend.TORCH_AO, filter_fn=lambda mod, fqn: fqn != "net.5"), mlp, example)
    assert not fb and "predicts the original's class" in fb.message
