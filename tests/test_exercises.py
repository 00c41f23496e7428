import copy

import pytest
import torch
from torch import nn

from qhelpers import convert, models
from qhelpers.convert import DynamicBackend
from qhelpers.course.exercises import Feedback, check_fake_quant_ste, check_quantize, check_skip_last_linear


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


def test_skip_last_linear_accepts_the_dynamic_config_only(mlp, example):
    last = "net.5"
    # the helper with torchao's dynamic INT8 is the config asked for (compared with it, saturation or not: chapter 01)
    torchao_dynamic = lambda m: convert.dynamic_int8(m, DynamicBackend.TORCHAO_DYNAMIC, filter_fn=lambda mod, fqn: fqn != last)  # noqa: E731
    assert check_skip_last_linear(torchao_dynamic, mlp, example)
    # other ways of quantizing all but the last are a different configuration: refused, naming what was found
    weight_only = lambda m: convert.dynamic_int8(m, DynamicBackend.TORCHAO_WEIGHT_ONLY, filter_fn=lambda mod, fqn: fqn != last)  # noqa: E731
    fb = check_skip_last_linear(weight_only, mlp, example)
    assert not fb and "weight-only Int8Tensor" in fb.message and "Int8DynamicActivationInt8WeightConfig" in fb.message, fb.message
    torch_ao_way = lambda m: torch.ao.quantization.quantize_dynamic(copy.deepcopy(m), {"net.1", "net.3"}, torch.qint8)  # noqa: E731
    fb = check_skip_last_linear(torch_ao_way, mlp, example)
    assert not fb and "torch.ao's DynamicQuantizedLinear" in fb.message and "per tensor" in fb.message, fb.message


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
    fb = check_skip_last_linear(lambda m: convert.dynamic_int8(other, DynamicBackend.TORCHAO_DYNAMIC, filter_fn=lambda mod, fqn: fqn != "net.5"), mlp, example)
    assert not fb and "is the right model converted" in fb.message, fb.message


# --- every checker against its reference solution, a stub, and answers that call the kernel under test -----------

from qhelpers.course.solutions.fake_quant import my_fake_quant  # noqa: E402
from qhelpers.course.solutions.quantize import my_quantize  # noqa: E402


def _stub(*args):
    raise NotImplementedError("write this function")


def test_reference_solutions_pass():
    assert check_quantize(my_quantize), check_quantize(my_quantize).message
    assert check_fake_quant_ste(my_fake_quant), check_fake_quant_ste(my_fake_quant).message


@pytest.mark.parametrize("checker", [check_quantize, check_fake_quant_ste])
def test_stub_is_not_done_yet(checker):
    fb = checker(_stub)
    assert not fb and "not done yet" in fb.message and repr(fb).startswith("NOT YET")


@pytest.mark.parametrize(
    "wrong, hint",
    [
        # a wrapper around the kernel under test
        (lambda x, s, z, lo, hi: torch.quantize_per_tensor(x, s, z, torch.quint8 if lo == 0 else torch.qint8).int_repr(),
         "torch.quantize_per_tensor"),
        # the course's own implementation
        (lambda x, s, z, lo, hi: __import__("qhelpers").quant.quantize(
            x, __import__("qhelpers").quant.choose_qparams(x, 8)), "a function of qhelpers.quant"),
        # an observer computing it
        (lambda x, s, z, lo, hi: torch.ao.quantization.MinMaxObserver()(x), "observer"),
        # fake quantization, rounded back
        (lambda x, s, z, lo, hi: torch.round(torch.fake_quantize_per_tensor_affine(x, s, z, lo, hi) / s) + z,
         "torch.fake_quantize_per_tensor_affine"),
    ],
)
def test_check_quantize_refuses_the_kernel(wrong, hint):
    fb = check_quantize(wrong)
    assert not fb and hint in fb.message and "yourself" in fb.message, fb.message


@pytest.mark.parametrize(
    "wrong, hint",
    [
        (torch.fake_quantize_per_tensor_affine, "torch.fake_quantize_per_tensor_affine itself"),
        (__import__("functools").partial(torch.fake_quantize_per_tensor_affine), "itself"),
        (lambda x, s, z, lo, hi: torch.fake_quantize_per_tensor_affine(x, s, z, lo, hi), "torch.fake_quantize_per_tensor_affine"),
        (lambda x, s, z, lo, hi: torch.quantize_per_tensor(x.detach(), s, z, torch.qint8).dequantize(), "torch.quantize_per_tensor"),
        (lambda x, s, z, lo, hi: torch.ao.quantization.FakeQuantize()(x), "FakeQuantize"),
    ],
)
def test_check_fake_quant_ste_refuses_the_kernel(wrong, hint):
    fb = check_fake_quant_ste(wrong)
    assert not fb and hint in fb.message, fb.message


def test_check_quantize_refuses_the_kernel_itself():
    fb = check_quantize(torch.quantize_per_tensor)
    assert not fb and "torch.quantize_per_tensor itself" in fb.message


def test_kernels_are_restored_after_a_check():
    original = torch.quantize_per_tensor
    check_quantize(lambda x, s, z, lo, hi: torch.quantize_per_tensor(x, s, z, torch.quint8).int_repr())
    assert torch.quantize_per_tensor is original
    from qhelpers import quant
    x = torch.randn(10)
    assert quant.quantize(x, quant.choose_qparams(x, 8)).dtype == torch.int32  # its code is back


# --- chapter 04: eager PTQ by hand ------------------------------------------------------------------------------

from qhelpers.course.exercises import check_ptq_eager  # noqa: E402
from qhelpers.course.solutions.eager_ptq import my_ptq_eager  # noqa: E402


@pytest.fixture(scope="module")
def ready():
    torch.manual_seed(0)
    return models.QuantReadyCNN.from_simple_cnn(models.SimpleCNN()).eval()


@pytest.fixture(scope="module")
def calib():
    g = torch.Generator().manual_seed(3)
    return [torch.randn(16, 1, 28, 28, generator=g) for _ in range(3)]


def test_ptq_eager_reference_passes(ready, calib):
    fb = check_ptq_eager(my_ptq_eager, ready, calib, models.FUSE_PATTERNS)
    assert fb, fb.message


def _no_fuse(model, calibration, fuse):
    from torch.ao.quantization import convert, get_default_qconfig, prepare
    m = copy.deepcopy(model).eval()
    m.qconfig = get_default_qconfig("x86")
    prepare(m, inplace=True)
    for x in calibration:
        m(x)
    return convert(m)


def _no_calibration(model, calibration, fuse):
    return my_ptq_eager(model, calibration[:1], fuse)


def _no_convert(model, calibration, fuse):
    from torch.ao.quantization import get_default_qconfig, prepare
    m = copy.deepcopy(model).eval()
    m.qconfig = get_default_qconfig("x86")
    return prepare(m)


def _in_place(model, calibration, fuse):
    from torch.ao.quantization import convert, fuse_modules, get_default_qconfig, prepare
    fuse_modules(model, fuse, inplace=True)
    model.qconfig = get_default_qconfig("x86")
    prepare(model, inplace=True)
    for x in calibration:
        model(x)
    return convert(model)


def _helper(model, calibration, fuse):
    from qhelpers import ptq
    return ptq.ptq_eager(model, calibration, fuse=fuse)


@pytest.mark.parametrize(
    "wrong, hint",
    [
        (_stub, "not done yet"),
        (_no_fuse, "not fused"),
        (_no_calibration, "calibrate with every batch"),
        (_no_convert, "convert"),
        (_helper, "yourself"),
        (lambda m, c, f: None, "nn.Module"),
    ],
)
def test_ptq_eager_explains_mistakes(ready, calib, wrong, hint):
    fb = check_ptq_eager(wrong, ready, calib, models.FUSE_PATTERNS)
    assert not fb and hint in fb.message, fb.message


def test_ptq_eager_catches_a_changed_model(ready, calib):
    victim = copy.deepcopy(ready)
    fb = check_ptq_eager(_in_place, victim, calib, models.FUSE_PATTERNS)
    assert not fb and "changed the model" in fb.message, fb.message


def test_skip_last_linear_reference_solution_and_stub(mlp, example):
    from qhelpers.course.solutions.skip_last import quantize_all_but_last

    fb = check_skip_last_linear(quantize_all_but_last, mlp, example)  # on every CPU: compared with the config itself
    assert fb, fb.message
    fb = check_skip_last_linear(_stub, mlp, example)
    assert not fb and "not done yet" in fb.message
