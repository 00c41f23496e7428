"""Every torchao config the notebooks' prose recommends runs on this CPU (quantize_ + a forward pass).

The notebooks name configs in their text and migration tables (``quantize_(m, Int8WeightOnlyConfig())``...). A
recommendation that fails on a CPU (``Int4WeightOnlyConfig``'s default packing is a GPU format: "Requires mslk")
is a lesson the learner cannot run, so each config class named in a markdown cell must appear in ``RUNS_ON_CPU``
below, where it is built and applied, or in ``NOT_ON_CPU``, and then the cell that names it must say it is not a
CPU config.
"""

from __future__ import annotations

import copy
import json
import re
from pathlib import Path

import pytest
import torch
from torch import nn

from qhelpers import hardware

NOTEBOOKS = sorted((Path(__file__).resolve().parents[1] / "notebooks").glob("[0-9][0-9]_*.ipynb"))
CONFIG_NAME = re.compile(r"`[^`]*?\b([A-Z]\w*Config)\(")


def _build(name: str):
    """The config ``name`` as the course uses it on a CPU (group sizes that divide the test model's 64 inputs)."""
    import torchao.quantization as tq
    from torchao.prototype.quantization.int4 import PrototypeInt4WeightOnlyConfig
    from torchao.quantization.qat import IntxFakeQuantizeConfig, QATConfig

    int4_weights = IntxFakeQuantizeConfig(torch.int4, group_size=32, is_symmetric=True)
    builders = {
        "Int8DynamicActivationInt8WeightConfig": lambda: [tq.Int8DynamicActivationInt8WeightConfig()],
        "Int8WeightOnlyConfig": lambda: [tq.Int8WeightOnlyConfig()],
        "PrototypeInt4WeightOnlyConfig": lambda: [PrototypeInt4WeightOnlyConfig(group_size=32)],
        "IntxWeightOnlyConfig": lambda: [tq.IntxWeightOnlyConfig(weight_dtype=torch.int4, granularity=tq.PerGroup(32))],
        "Int8DynamicActivationIntxWeightConfig": lambda: [
            tq.Int8DynamicActivationIntxWeightConfig(weight_dtype=torch.int4, weight_granularity=tq.PerGroup(32))],
        # QAT: prepare (fake-quantized training), then convert to the base config's real quantization
        "QATConfig": lambda: [QATConfig(tq.Int8DynamicActivationIntxWeightConfig(
            weight_dtype=torch.int4, weight_granularity=tq.PerGroup(32)), step="prepare"),
            QATConfig(tq.Int8DynamicActivationIntxWeightConfig(
                weight_dtype=torch.int4, weight_granularity=tq.PerGroup(32)), step="convert")],
        "IntxFakeQuantizeConfig": lambda: [QATConfig(weight_config=int4_weights, step="prepare")],
    }
    return builders[name]()


RUNS_ON_CPU = ("Int8DynamicActivationInt8WeightConfig", "Int8WeightOnlyConfig", "PrototypeInt4WeightOnlyConfig",
               "IntxWeightOnlyConfig", "Int8DynamicActivationIntxWeightConfig", "QATConfig", "IntxFakeQuantizeConfig")
NOT_ON_CPU = ("Int4WeightOnlyConfig",)  # default packing: a GPU format
# Taught with their own flows (calibration steps) in chapter 06, and run there: listed, not re-run here.
RUN_IN_A_CHAPTER = ("AWQConfig", "SmoothQuantConfig")
# Names of the course's own config classes (not torchao's).
COURSE_OWN = ("GPTConfig", "TrainConfig")


def _recommended() -> dict[str, list[str]]:
    """Config class name -> the notebooks (and cells) whose prose names it."""
    found: dict[str, list[str]] = {}
    for path in NOTEBOOKS:
        for i, cell in enumerate(json.loads(path.read_text())["cells"]):
            if cell["cell_type"] == "markdown":
                for name in CONFIG_NAME.findall("".join(cell["source"])):
                    found.setdefault(name, []).append(f"{path.name} cell {i}")
    return found


def test_every_recommended_config_is_known_here():
    known = set(RUNS_ON_CPU) | set(NOT_ON_CPU) | set(RUN_IN_A_CHAPTER) | set(COURSE_OWN)
    unknown = {name: where for name, where in _recommended().items() if name not in known}
    assert not unknown, f"the notebooks recommend configs this test does not run: {unknown}; add them to RUNS_ON_CPU"


def test_a_config_that_does_not_run_on_a_cpu_is_named_as_such():
    for path in NOTEBOOKS:
        for i, cell in enumerate(json.loads(path.read_text())["cells"]):
            text = "".join(cell["source"])
            if cell["cell_type"] == "markdown" and any(f"`{n}(" in text or f" {n}(" in text for n in NOT_ON_CPU):
                assert "GPU" in text, f"{path.name} cell {i} names {NOT_ON_CPU} without saying it is a GPU format"


def _model() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(64, 64), nn.ReLU(), nn.Linear(64, 16)).eval()


@pytest.mark.parametrize("name", RUNS_ON_CPU)
def test_recommended_config_runs_on_cpu(name):
    from torchao.quantization import quantize_

    model, x = _model(), torch.randn(4, 64, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        reference = model(x)
    quantized = copy.deepcopy(model)
    for config in _build(name):
        quantize_(quantized, config)
    with torch.no_grad():
        out = quantized(x)
    assert out.shape == reference.shape and torch.isfinite(out).all()
    error = float((out - reference).norm() / reference.norm())
    # INT8 x INT8 through torch._int_mm (oneDNN) saturates where oneDNN has no INT8 dot products (AVX2 alone; chapter
    # 01 counts the wrong entries): on such a CPU dynamic INT8 activations are only checked to run and stay finite.
    saturates = name == "Int8DynamicActivationInt8WeightConfig" and not hardware.onednn_int8_dot()
    assert error < (1.0 if saturates else 0.2), f"{name}: relative error {error:.3f} against FP32"


@pytest.mark.parametrize("name", NOT_ON_CPU)
def test_not_on_cpu_configs_really_fail_on_cpu(name):
    """If torchao ever makes the default Int4WeightOnlyConfig run on a CPU, this fails: then recommend it again."""
    import torchao.quantization as tq
    from torchao.quantization import quantize_

    with pytest.raises(Exception):
        quantize_(_model(), getattr(tq, name)(group_size=32))
