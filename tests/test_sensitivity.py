"""Per-layer sensitivity and mixed precision (qhelpers.sensitivity) on small seeded models: fast."""

import pytest
import torch
from torch import nn
from torch.ao.nn import quantized as nnq
from torch.ao.nn.intrinsic import quantized as nniq

import qhelpers.course
from qhelpers import ptq, quant, sensitivity
from qhelpers.quant import PerChannel, PerTensor


class Tiny(nn.Module):
    """conv -> relu -> conv -> relu -> pool -> linear, for 1x8x8 inputs."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(1, 8, 3, padding=1)
        self.relu1 = nn.ReLU()
        self.conv2 = nn.Conv2d(8, 8, 3, padding=1)
        self.relu2 = nn.ReLU()
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(8, 4)

    def forward(self, x):
        x = self.relu2(self.conv2(self.relu1(self.conv1(x))))
        return self.fc(torch.flatten(self.pool(x), 1))


QUANTIZED = (nnq.Conv2d, nnq.Linear, nniq.ConvReLU2d, nniq.LinearReLU)


def _quantized_names(gm) -> set[str]:
    return {name for name, m in gm.named_modules() if isinstance(m, QUANTIZED)}


@pytest.fixture
def tiny():
    qhelpers.course.setup(0)
    torch.manual_seed(0)
    model = Tiny().eval()
    calibration = [torch.randn(16, 1, 8, 8) for _ in range(2)]
    return model, calibration, (calibration[0][:2],)


def test_quantizable_layers_in_order(tiny):
    model, _, _ = tiny
    assert ptq.quantizable_layers(model) == ["conv1", "conv2", "fc"]


def test_only_quantizes_one_layer(tiny):
    model, calibration, example = tiny
    q = ptq.ptq_fx(model, calibration, example, only=["conv2"])
    assert _quantized_names(q) == {"conv2"}
    x = torch.randn(4, 1, 8, 8)
    with torch.inference_mode():
        assert quant.sqnr_db(model(x), q(x)) > 20


def test_keep_fp32_quantizes_the_rest(tiny):
    model, calibration, example = tiny
    q = ptq.ptq_fx(model, calibration, example, keep_float=["conv1"])
    assert _quantized_names(q) == {"conv2", "fc"}
    assert type(q.conv1).__module__.startswith(("torch.nn", "torch.ao.nn.intrinsic.modules"))  # still float


def test_bad_layer_names_are_explained(tiny):
    model, calibration, example = tiny
    with pytest.raises(ValueError, match="not conv/linear layers.*choose from"):
        ptq.ptq_fx(model, calibration, example, only=["conv9"])
    with pytest.raises(ValueError, match="not both"):
        ptq.ptq_fx(model, calibration, example, only=["conv1"], keep_float=["fc"])
    with pytest.raises(ValueError, match="not conv/linear"):
        sensitivity.layer_sensitivity(model, calibration, torch.randn(4, 1, 8, 8), layers=["relu1"])


def test_ranking_finds_the_layer_made_fragile(tiny):
    """One huge weight in conv2 stretches its per-tensor grid: conv2 alone must rank most sensitive."""
    model, calibration, _ = tiny
    with torch.no_grad():
        model.conv2.weight[0, 0, 0, 0] = 40.0 * model.conv2.weight.abs().max()
    x, labels = torch.randn(64, 1, 8, 8), torch.randint(0, 4, (64,))
    ranking = sensitivity.layer_sensitivity(model, calibration, x, labels, granularity=PerTensor())
    assert [r.layer for r in ranking][0] == "conv2"
    assert sorted(r.layer for r in ranking) == ["conv1", "conv2", "fc"]
    assert all(0 <= r.agreement <= 1 and 0 <= r.accuracy <= 1 for r in ranking)
    assert ranking[0].sqnr_db < ranking[-1].sqnr_db
    table = sensitivity.sensitivity_table(ranking)
    assert list(table.index)[0] == "conv2" and list(table["rank"]) == [1, 2, 3]


def test_calibration_sweep_equals_calibrating_from_scratch(tiny):
    from qhelpers import ptq as flows
    from qhelpers.models import FUSE_PATTERNS, QuantReadyCNN, SimpleCNN

    torch.manual_seed(0)
    ready = QuantReadyCNN.from_simple_cnn(SimpleCNN().eval()).eval()
    batches = [torch.randn(8, 1, 28, 28) for _ in range(4)]
    loader = [(torch.randn(32, 1, 28, 28), torch.randint(0, 10, (32,)))]
    sweep = sensitivity.calibration_sweep(ready, batches, [1, 3], loader, fuse=FUSE_PATTERNS)
    assert list(sweep) == [1, 3]
    for n, acc in sweep.items():
        q = ptq.ptq_eager(ready, batches[:n], fuse=FUSE_PATTERNS)
        assert acc == qhelpers.train.evaluate(q, loader).accuracy
    with pytest.raises(ValueError, match="must lie between"):
        sensitivity.calibration_sweep(ready, batches, [8], loader, fuse=FUSE_PATTERNS)
