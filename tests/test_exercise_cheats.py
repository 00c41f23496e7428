"""Answers that call the kernel an exercise is about under another name are refused, saying what and why
(issue #19 item 5); the reference solutions still pass; exercise 02 checks the config; exercise 05 is a search."""

from __future__ import annotations

import copy
import functools
import itertools

import pytest
import torch
from torch import nn

from qhelpers import models, ptq, quant
from qhelpers.course.exercises import check_fake_quant_ste, check_fp32_search, check_pack_int4, check_quantize, check_skip_last_linear
from qhelpers.course.solutions.fake_quant import my_fake_quant
from qhelpers.course.solutions.fp32_search import choose_fp32_layers
from qhelpers.course.solutions.packing import my_pack_int4, my_unpack_int4
from qhelpers.course.solutions.quantize import my_quantize
from qhelpers.course.solutions.skip_last import quantize_all_but_last

WHY = "which does what this exercise asks you to write yourself"


def _dtype(lo):
    return torch.quint8 if lo == 0 else torch.qint8


def _decomposed(x, s, z, lo, hi):
    import torch.ao.quantization.fx._decomposed  # noqa: F401  (registers the quantized_decomposed ops)
    return torch.ops.quantized_decomposed.quantize_per_tensor(x, s, z, lo, hi, torch.uint8 if lo == 0 else torch.int8)


def _torchao_quantize(x, s, z, lo, hi):
    from torchao.quantization.quant_primitives import quantize_affine
    return quantize_affine(x, (x.numel(),), torch.tensor([s]), torch.tensor([z]), torch.int32, lo, hi)


def _thread(x, s, z, lo, hi):
    from concurrent.futures import ThreadPoolExecutor
    with ThreadPoolExecutor(1) as pool:  # a thread would run outside the guards
        return pool.submit(torch.ops.aten.quantize_per_tensor, x, s, z, _dtype(lo)).result().int_repr()


def _unhook(x, s, z, lo, hi):
    import sys
    sys.setprofile(None)
    return torch.ops.aten.quantize_per_tensor(x, s, z, _dtype(lo)).int_repr()


QUANTIZE_CHEATS = {
    # the cheats of the issue
    "aten op": (lambda x, s, z, lo, hi: torch.ops.aten.quantize_per_tensor(x, s, z, _dtype(lo)).int_repr(),
                "aten::quantize_per_tensor"),
    "quantized_decomposed": (_decomposed, "quantized_decomposed"),
    # more of the same
    "getattr": (lambda x, s, z, lo, hi: getattr(torch.ops.aten, "quantize_per_tensor")(x, s, z, _dtype(lo)).int_repr(),
                "aten::quantize_per_tensor"),
    "overload": (lambda x, s, z, lo, hi: torch.ops.aten.quantize_per_tensor.default(x, s, z, _dtype(lo)).int_repr(),
                 "aten::quantize_per_tensor"),
    "torch._C": (lambda x, s, z, lo, hi: torch._C._VariableFunctions.quantize_per_tensor(x, s, z, _dtype(lo)).int_repr(),
                 "aten::quantize_per_tensor"),
    "per-channel": (lambda x, s, z, lo, hi: torch.quantize_per_channel(
        x[None], torch.tensor([s]), torch.tensor([z]), 0, _dtype(lo)).int_repr()[0], "torch.quantize_per_channel"),
    "torchao quantize_affine": (_torchao_quantize, "torchao.quantization.quant_primitives"),
    "qhelpers.quant": (lambda x, s, z, lo, hi: quant.quantize(x, quant.choose_qparams(x, 8)), "qhelpers.quant"),
    "fake quant rounded back": (lambda x, s, z, lo, hi: torch.round(
        torch.ops.aten.fake_quantize_per_tensor_affine(x, s, z, lo, hi) / s) + z, "aten::fake_quantize_per_tensor_affine"),
    "a thread": (_thread, "ThreadPoolExecutor.submit"),
    "the guard switched off": (_unhook, "sys.setprofile"),
}


@pytest.mark.parametrize("cheat, hint", QUANTIZE_CHEATS.values(), ids=list(QUANTIZE_CHEATS))
def test_ex1_refuses_the_kernel_under_any_name(cheat, hint):
    fb = check_quantize(cheat)
    assert not fb and hint in fb.message and "your function" in fb.message, fb.message
    assert WHY in fb.message or "the check cannot see" in fb.message, fb.message


def test_ex1_refuses_a_torch_ops_kernel_passed_itself():
    fb = check_quantize(torch.ops.aten.quantize_per_tensor)
    assert not fb and "you passed torch.ops.aten.quantize_per_tensor itself" in fb.message, fb.message
    fb = check_quantize(functools.partial(quant.quantize))
    assert not fb and "qhelpers.quant.quantize itself" in fb.message, fb.message


def _learnable(x, s, z, lo, hi):
    return torch._fake_quantize_learnable_per_tensor_affine(x, torch.tensor([s]), torch.tensor([float(z)]), lo, hi)


def _torchao_fake(x, s, z, lo, hi):
    from torchao.quantization import quant_primitives
    return quant_primitives._fake_quantize_affine(  # (torchao 0.18 keeps it private)
x, (x.numel(),), torch.tensor([s]), torch.tensor([z]), torch.int32, lo, hi)


_PREBUILT = torch.ao.quantization.FakeQuantize.with_args(quant_min=-128, quant_max=127, dtype=torch.qint8)()

STE_CHEATS = {
    "aten op": (lambda x, s, z, lo, hi: torch.ops.aten.fake_quantize_per_tensor_affine(x, s, z, lo, hi),
                "aten::fake_quantize_per_tensor_affine"),
    "learnable": (_learnable, "_fake_quantize_learnable_per_tensor_affine"),
    "per-channel": (lambda x, s, z, lo, hi: torch.fake_quantize_per_channel_affine(
        x[None], torch.tensor([s]), torch.tensor([z], dtype=torch.int32), 0, lo, hi)[0], "fake_quantize_per_channel_affine"),
    "torchao fake_quantize_affine": (_torchao_fake, "torchao.quantization.quant_primitives"),
    "FakeQuantize module made inside": (lambda x, s, z, lo, hi: torch.ao.quantization.FakeQuantize()(x), "FakeQuantize"),
    "FakeQuantize module made before": (lambda x, s, z, lo, hi: _PREBUILT(x), "FakeQuantize"),
    "from qhelpers import quant": (lambda x, s, z, lo, hi: __import__("qhelpers").quant.fake_quantize(
        x, quant.choose_qparams(x.detach(), 8)), "a function of qhelpers.quant"),
}


@pytest.mark.parametrize("cheat, hint", STE_CHEATS.values(), ids=list(STE_CHEATS))
def test_ex3_refuses_fake_quantization_under_any_name(cheat, hint):
    fb = check_fake_quant_ste(cheat)
    assert not fb and hint in fb.message and WHY in fb.message, fb.message


def _via_quint4x2(codes):
    return torch.quantize_per_tensor(codes.float(), 1, 0, torch.quint4x2).int_repr()


PACK_CHEATS = {
    "quint4x2 (the issue's cheat)": ((_via_quint4x2, my_unpack_int4), "quantize_per_tensor"),
    "quint4x2 via torch.ops": ((lambda c: torch.ops.aten.quantize_per_tensor(c.float(), 1.0, 0, torch.quint4x2).int_repr(),
                                my_unpack_int4), "aten::quantize_per_tensor"),
    "unpack through quint4x2": ((my_pack_int4, lambda p: torch._make_per_tensor_quantized_tensor(
        p, 1.0, 0).dequantize()), "quantized"),
}


@pytest.mark.parametrize("answer, hint", PACK_CHEATS.values(), ids=list(PACK_CHEATS))
def test_ex6_refuses_quantized_dtypes_and_library_packers(answer, hint):
    fb = check_pack_int4(*answer)
    assert not fb and hint in fb.message and "your function" in fb.message, fb.message


def test_the_guards_are_gone_after_a_check():
    import sys

    before = sys.getprofile()
    check_quantize(QUANTIZE_CHEATS["aten op"][0])
    check_quantize(_unhook)
    assert sys.getprofile() is before
    assert torch.quantize_per_tensor(torch.ones(2), 1.0, 0, torch.quint8).int_repr().tolist() == [1, 1]
    assert torch.ops.aten.fake_quantize_per_tensor_affine(torch.ones(2), 1.0, 0, 0, 255).tolist() == [1.0, 1.0]


def test_every_reference_solution_passes():
    assert check_quantize(my_quantize), check_quantize(my_quantize).message
    assert check_fake_quant_ste(my_fake_quant), check_fake_quant_ste(my_fake_quant).message
    assert check_pack_int4(my_pack_int4, my_unpack_int4)
    measure, layers, _ = _problem()
    fb = check_fp32_search(choose_fp32_layers, measure, layers)
    assert fb, fb.message


# --- exercise 02: the configuration asked for, not any quantized weight ------------------------------------------

@pytest.fixture(scope="module")
def mlp_example():
    torch.manual_seed(0)
    return models.MLP(hidden=(32, 16)).eval(), torch.randn(8, 1, 28, 28, generator=torch.Generator().manual_seed(0))


def _all_but_last(config):
    def answer(model):
        from torchao.quantization import quantize_
        m = copy.deepcopy(model)
        quantize_(m, config, filter_fn=lambda mod, fqn: isinstance(mod, nn.Linear) and fqn != "net.5")
        return m
    return answer


def test_ex2_refuses_weight_only_int8_and_int4(mlp_example):
    from torchao.quantization import Int8WeightOnlyConfig, IntxWeightOnlyConfig

    model, example = mlp_example
    assert check_skip_last_linear(quantize_all_but_last, model, example)
    fb = check_skip_last_linear(_all_but_last(Int8WeightOnlyConfig()), model, example)
    assert not fb and "'net.1' holds a weight-only Int8Tensor" in fb.message and "activations stay float" in fb.message, fb.message
    fb = check_skip_last_linear(_all_but_last(IntxWeightOnlyConfig(weight_dtype=torch.int4)), model, example)
    assert not fb and "weight-only" in fb.message and "Int8DynamicActivationInt8WeightConfig()" in fb.message, fb.message


def test_ex2_refuses_int4_weights_with_dynamic_activations(mlp_example):
    from torchao.quantization import Int8DynamicActivationIntxWeightConfig

    model, example = mlp_example
    from torchao.quantization.granularity import PerAxis

    config = Int8DynamicActivationIntxWeightConfig(weight_dtype=torch.int4, weight_granularity=PerAxis(0))
    fb = check_skip_last_linear(_all_but_last(config), model, example)
    assert not fb and "'net.1' holds an IntxUnpackedToInt8Tensor, torch.int4 whose activations are quantized int8 asym per token" \
        in fb.message and "makes an Int8Tensor, torch.int8 whose activations are quantized PerRow symmetric" in fb.message, fb.message


# --- exercise 05: a greedy search ---------------------------------------------------------------------------------

def _problem():
    """A fake measure (instant): four layers whose SQNR gains overlap, so greedy keeps two, a ranking three."""
    own = {"conv1": 4e-4, "layer1": 1e-4, "layer2": 3.5e-4, "fc": 5e-4}
    shared = 8e-4  # removed by keeping fc or layer1

    def measure(keep):
        noise = 1e-5 + sum(v for k, v in own.items() if k not in keep) + (shared if not {"fc", "layer1"} & set(keep) else 0)
        return 10 * torch.log10(torch.tensor(1 / noise)).item()
    return measure, list(own), None


def test_ex5_the_reference_passes_and_says_what_it_measured():
    measure, layers, _ = _problem()
    fb = check_fp32_search(choose_fp32_layers, measure, layers, steps=2)
    assert fb and "all layers INT8 measures" in fb.message and "keeping 2 of the 4" in fb.message, fb.message


def _ranking_prefix(measure, layers, goal):
    ranked = sorted(layers, key=lambda n: -measure([n]))
    return next(ranked[:k] for k in range(len(ranked) + 1) if measure(ranked[:k]) >= goal)


def _everything(measure, layers, goal):  # measures every subset, then takes the shortest that reaches the goal
    subsets = [list(c) for k in range(len(layers) + 1) for c in itertools.combinations(layers, k)]
    return min((c for c in subsets if measure(c) >= goal), key=len)


def _shortest_first(measure, layers, goal):  # an exhaustive search by size: the shortest list, found within budget
    return next(list(c) for k in range(len(layers) + 1) for c in itertools.combinations(layers, k) if measure(list(c)) >= goal)


def test_ex5_accepts_any_search_that_finds_a_list_as_short_within_budget():
    measure, layers, _ = _problem()
    fb = check_fp32_search(_shortest_first, measure, layers, steps=2)
    assert fb, fb.message


def _sensitivity(measure, layers, goal):
    from qhelpers import sensitivity
    return [r.layer for r in sensitivity.layer_sensitivity(nn.Linear(2, 2), [torch.ones(1, 2)], torch.ones(4, 2))][:1]


def _stub(measure, layers, goal):
    raise NotImplementedError


@pytest.mark.parametrize("answer, hint", [
    (_stub, "not done yet"),
    (lambda m, l, g: ["fc"], "not among the candidate layers"),  # a table row, hard-coded
    (lambda m, l, g: l[:1], "below the goal"),
    (lambda m, l, g: ["head", "stem"], "return [] then"),  # the made-up problem's answer, hard-coded
    (_ranking_prefix, "a ranking of single layers is not enough"),
    (_sensitivity, "calls a function of qhelpers.sensitivity"),
    (_everything, "more than 24 different lists"),  # all 64 subsets: far beyond greedy's cost
    (lambda m, l, g: "fc", "return a list of layer names"),
    (lambda m, l, g: [l[0], l[0]], "names a layer twice"),
    (lambda m, l, g: m("fc"), "measure takes a list of layer names"),
    (lambda m, l, g: m(["conv9"]), "not among the candidate layers"),
], ids=["stub", "table row", "first layer", "hard-coded", "ranking prefix", "sensitivity", "exhaustive", "str", "twice", "measure str",
        "unknown"])
def test_ex5_explains_what_is_wrong(answer, hint):
    measure, layers, _ = _problem()
    fb = check_fp32_search(answer, measure, layers, steps=2)
    assert not fb and hint in fb.message, fb.message


def test_ex5_bad_setup_raises():
    measure, layers, _ = _problem()
    with pytest.raises(TypeError, match="search function"):
        check_fp32_search("greedy", measure, layers)
    with pytest.raises(ValueError, match="at least two different layers"):
        check_fp32_search(choose_fp32_layers, measure, ["fc"])
    with pytest.raises(ValueError, match="steps must be a positive int"):
        check_fp32_search(choose_fp32_layers, measure, layers, steps=0)
    with pytest.raises(ValueError, match="must return the SQNR in dB as a number"):
        check_fp32_search(choose_fp32_layers, lambda keep: "high", layers)


def test_ex5_on_a_real_fx_ptq_of_a_tiny_model():
    """The notebook's measure on a small model: FX PTQ keeping some layers in FP32, logit SQNR against FP32."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 16), nn.ReLU(), nn.Linear(16, 4)).eval()
    with torch.no_grad():
        model[2].weight[0].mul_(50.0)  # an outlier channel: coarse activation grids downstream
    g = torch.Generator().manual_seed(1)
    calibration, x = [torch.randn(64, 8, generator=g)], torch.randn(128, 8, generator=g)
    with torch.inference_mode():
        ref = model(x)
    calls = []

    def measure(keep_float):
        calls.append(list(keep_float))
        q = ptq.ptq_fx(model, calibration, (x[:2],), keep_float=keep_float, desc=None)
        with torch.inference_mode():
            return quant.sqnr_db(ref, q(x))

    layers = ptq.quantizable_layers(model)
    fb = check_fp32_search(choose_fp32_layers, measure, layers, steps=2)
    assert fb, fb.message
    assert len(calls) == len({frozenset(c) for c in calls}) <= 1 + 3 + 2  # cached: greedy's own lists, once each
