"""The three PTQ flows on the (untrained, seeded) course CNN with random inputs: fast."""

import pytest
import torch
from torch.ao.nn import intrinsic as nni
from torch.ao.nn import quantized as nnq

import qhelpers.course
from qhelpers import bench, checks, plots, ptq
from qhelpers import data as qdata
from qhelpers.quant import PerChannel, PerTensor
from qhelpers.models import FUSE_PATTERNS, QuantReadyCNN, SimpleCNN


@pytest.fixture(scope="module")
def setup():
    qhelpers.course.setup(0)
    torch.manual_seed(0)
    model = SimpleCNN().eval()
    calibration = [torch.randn(16, 1, 28, 28) for _ in range(3)]
    return model, calibration


def _close(a: torch.Tensor, b: torch.Tensor, rel: float = 0.1) -> bool:
    """Quantized outputs track the float ones: error small relative to the output's spread."""
    a, b = a.detach(), b.detach()
    return float((a - b).abs().max()) <= rel * float(b.abs().max())


def test_calibrate_rejects_no_batches(setup):
    model, _ = setup
    with pytest.raises(ValueError, match="no batches"):
        ptq.calibrate(model, [])


def test_calibrate_accepts_loader_pairs(setup):
    model, calibration = setup
    seen = []
    handle = model.conv1.register_forward_hook(lambda m, i, o: seen.append(i[0].shape[0]))
    try:
        ptq.calibrate(model, [(calibration[0], torch.zeros(16)), calibration[1]])
    finally:
        handle.remove()
    assert seen == [16, 16]


@pytest.mark.parametrize("per_channel", [True, False])
def test_ptq_eager_quantizes_and_leaves_input_untouched(setup, per_channel):
    granularity = PerChannel(0) if per_channel else PerTensor()
    model, calibration = setup
    ready = QuantReadyCNN.from_simple_cnn(model).eval()
    before = {k: v.clone() for k, v in ready.state_dict().items()}
    q = ptq.ptq_eager(ready, calibration, fuse=FUSE_PATTERNS, granularity=granularity)
    assert isinstance(q.conv1, nni.quantized.ConvReLU2d)
    assert isinstance(q.fc1, nni.quantized.LinearReLU)
    assert isinstance(q.fc2, nnq.Linear)
    expected = torch.per_channel_affine if per_channel else torch.per_tensor_affine
    assert q.conv2.weight().qscheme() == expected
    assert all(torch.equal(before[k], v) for k, v in ready.state_dict().items())
    assert isinstance(ready.conv1, torch.nn.Conv2d)  # not fused in place
    x = calibration[0]
    assert _close(q(x), ready(x))


def test_ptq_eager_fuse_callable_and_qconfig(setup):
    model, calibration = setup
    calls = []

    def fuse(m):
        calls.append(type(m).__name__)
        torch.ao.quantization.fuse_modules(m, FUSE_PATTERNS, inplace=True)

    q = ptq.ptq_eager(QuantReadyCNN.from_simple_cnn(model), calibration, fuse=fuse, qconfig=ptq.per_tensor_qconfig())
    assert calls == ["QuantReadyCNN"]
    assert q.conv1.weight().qscheme() == torch.per_tensor_affine


def test_ptq_eager_errors(setup):
    model, calibration = setup
    with pytest.raises(ValueError, match="QuantStub"):
        ptq.ptq_eager(model, calibration)
    with pytest.raises(ValueError, match="does not have"):
        ptq.ptq_eager(QuantReadyCNN.from_simple_cnn(model), calibration, fuse=[["conv1", "relu9"]])
    with pytest.raises(ValueError, match="empty"):
        ptq.ptq_eager(QuantReadyCNN.from_simple_cnn(model), [])
    with pytest.raises(TypeError, match="sequence of batches"):
        ptq.ptq_eager(QuantReadyCNN.from_simple_cnn(model), calibration[0])


def test_views_as_reshapes(setup):
    model, calibration = setup
    gm = ptq.views_as_reshapes(model)
    targets = [n.target for n in gm.graph.nodes if n.op == "call_method"]
    assert "view" not in targets and "reshape" in targets
    x = calibration[0]
    assert torch.equal(gm(x), model(x))


@pytest.mark.parametrize("per_channel", [True, False])
def test_ptq_fx_plain_model(setup, per_channel):
    granularity = PerChannel(0) if per_channel else PerTensor()
    model, calibration = setup
    q = ptq.ptq_fx(model, calibration, (calibration[0][:1],), granularity=granularity)
    kinds = {type(m) for m in q.modules()}
    assert nni.quantized.ConvReLU2d in kinds and nni.quantized.LinearReLU in kinds  # fused automatically
    conv = next(m for m in q.modules() if isinstance(m, nni.quantized.ConvReLU2d))
    assert conv.weight().qscheme() == (torch.per_channel_affine if per_channel else torch.per_tensor_affine)
    x = calibration[1]
    assert _close(q(x), model(x), rel=0.2)  # log-probabilities, compared over their whole range


def test_ptq_fx_needs_tuple(setup):
    model, calibration = setup
    with pytest.raises(TypeError, match="tuple"):
        ptq.ptq_fx(model, calibration, calibration[0])


def test_ptq_pt2e(setup):
    model, calibration = setup
    before = {k: v.clone() for k, v in model.state_dict().items()}
    q = ptq.ptq_pt2e(model, calibration, (calibration[0][:2],))
    ops = {str(n.target) for n in q.graph.nodes if n.op == "call_function"}
    assert any("quantize_per_tensor" in o for o in ops) and any("dequantize_per_channel" in o for o in ops)
    used = ptq.graph_tensors(q)
    int8 = [t for t in used.values() if t.dtype == torch.int8]
    assert sum(t.numel() for t in int8) == sum(p.numel() for n, p in model.named_parameters() if n.endswith("weight"))
    for batch in (1, 7):  # the batch dimension was exported as dynamic
        x = torch.randn(batch, 1, 28, 28)
        q.eval()  # allowed on the exported module (returns None there, unlike nn.Module.eval)
        assert _close(q(x), model(x), rel=0.2)
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    qt = ptq.ptq_pt2e(model, calibration, (calibration[0][:2],), granularity=PerTensor())
    assert any("dequantize_per_tensor" in str(n.target) and n.args[0].op == "get_attr" for n in qt.graph.nodes if n.op == "call_function")


def test_file_breakdown_adds_up(setup):
    model, calibration = setup
    q = ptq.ptq_eager(QuantReadyCNN.from_simple_cnn(model), calibration, fuse=FUSE_PATTERNS)
    for m in (model, q):
        parts = bench.file_breakdown(m)
        total = parts.pop("file")
        assert sum(parts.values()) == total
        assert all(v >= 0 for v in parts.values())
    parts = bench.file_breakdown(q)
    assert parts["per-channel scales and zero-points"] == 16 * (10 + 20 + 50 + 10)
    assert bench.file_breakdown(model)["per-channel scales and zero-points"] == 0


def test_calibration_set_is_seeded_and_independent_of_loader_state():
    from torch.utils.data import DataLoader, TensorDataset

    from qhelpers.data import Loaders

    ds = TensorDataset(torch.arange(100.0).reshape(100, 1), torch.zeros(100))
    train = DataLoader(ds, batch_size=10, shuffle=True, generator=torch.Generator().manual_seed(0))
    data = Loaders(train, train, train, "mnist")
    first = qdata.calibration_batches(data, 3, seed=1)
    for _ in train:  # advancing the training loader must not change the choice
        pass
    again = qdata.calibration_batches(data, 3, seed=1)
    assert len(first) == 3 and all(torch.equal(a, b) for a, b in zip(first, again))
    assert not torch.equal(first[0], qdata.calibration_batches(data, 3, seed=2)[0])


def test_changed_predictions_figure():
    import matplotlib

    matplotlib.use("Agg")
    images = torch.zeros(5, 1, 28, 28)
    labels = torch.tensor([0, 1, 2, 3, 4])
    before = torch.tensor([0, 1, 2, 3, 4])
    after = torch.tensor([0, 7, 2, 3, 9])
    fig = plots.changed_predictions(images, labels, before, after)
    titles = [ax.get_title() for ax in fig.axes if ax.get_title()]
    assert titles == ["FP32 1\nINT8 7 (true 1)", "FP32 4\nINT8 9 (true 4)"]
    with pytest.raises(ValueError, match="same length"):
        plots.changed_predictions(images, labels[:3], before, after)


def test_keep_float_leaves_the_named_layers_in_float(setup):
    """FX and PT2E: the layers named in keep_float keep their float weights; the rest are INT8."""
    model, calibration = setup[0], setup[1]
    example = (calibration[0][:2],)
    fx = ptq.ptq_fx(model, calibration, example, keep_float=["fc2"])
    assert type(fx.fc2) is torch.nn.Linear and ".quantized." in type(fx.fc1).__module__
    int8 = lambda gm: sum(t.numel() for t in ptq.graph_tensors(gm).values() if t.dtype == torch.int8)  # noqa: E731
    all_int8, kept = ptq.ptq_pt2e(model, calibration, example), ptq.ptq_pt2e(model, calibration, example, keep_float=["fc2"])
    assert int8(all_int8) - int8(kept) == model.fc2.weight.numel()
    with pytest.raises(ValueError, match=r"keep_float names \['fc3'\], which are not conv/linear layers"):
        ptq.ptq_pt2e(model, calibration, example, keep_float=["fc3"])


def test_the_ptq_core_is_shared(setup):
    """qat and sensitivity build on these: the default qconfig by granularity, fusion, the calibration check."""
    assert ptq.default_qconfig().weight().qscheme == torch.per_channel_symmetric
    assert ptq.default_qconfig(PerTensor()).weight().qscheme == torch.per_tensor_symmetric
    ready = QuantReadyCNN.from_simple_cnn(setup[0]).eval()
    ptq.fuse(ready, FUSE_PATTERNS)
    assert type(ready.conv1).__name__ == "ConvReLU2d" and type(ready.relu1).__name__ == "Identity"
    ptq.check_calibration(setup[1])
    with pytest.raises(ValueError, match="calibration is empty"):
        ptq.check_calibration([])
