"""Low-bit fake quantization and QAT on the course CNN with random data: fast."""

import pytest
import torch
from torch.utils.data import DataLoader, TensorDataset

import qhelpers.course
from qhelpers import qat
from qhelpers.course import cache
from qhelpers.quant import PerChannel, PerTensor
from qhelpers.data import Loaders
from qhelpers.models import FUSE_PATTERNS, QuantReadyCNN


@pytest.fixture(scope="module")
def model():
    qhelpers.course.setup(0)
    return QuantReadyCNN().eval()


@pytest.mark.parametrize("bits", [2, 4, 8])
@pytest.mark.parametrize("per_channel", [True, False])
def test_lowbit_qconfig_ranges(bits, per_channel):
    qc = qat.lowbit_qconfig(bits, granularity=PerChannel(0) if per_channel else PerTensor())
    act, w = qc.activation(), qc.weight()
    assert (act.quant_min, act.quant_max) == (0, 2**bits - 1)
    assert (w.quant_min, w.quant_max) == (-(2 ** (bits - 1) - 1), 2 ** (bits - 1) - 1)
    assert w.qscheme == (torch.per_channel_symmetric if per_channel else torch.per_tensor_symmetric)


def test_lowbit_qconfig_rejects_bad_bits():
    with pytest.raises(ValueError, match="bits=1"):
        qat.lowbit_qconfig(1)


@pytest.mark.parametrize("bits", [2, 3, 4])
def test_ptq_lowbit_uses_bits_levels(model, bits):
    calibration = [torch.randn(16, 1, 28, 28) for _ in range(2)]
    m = qat.ptq_lowbit(model, calibration, bits=bits, fuse=FUSE_PATTERNS)
    assert not m.training
    # the weights the model computes with sit on at most 2**bits - 1 symmetric levels per channel
    fq = m.conv2.weight_fake_quant
    w = fq(m.conv2.weight)
    for row, scale in zip(w.reshape(w.shape[0], -1), fq.scale):
        assert len(torch.unique(torch.round(row / scale))) <= 2**bits - 1
    # activations: at most 2**bits levels after the first conv+relu
    seen = []
    h = m.conv1.register_forward_hook(lambda mod, i, o: seen.append(o))
    with torch.no_grad():
        m(torch.randn(4, 1, 28, 28))
    h.remove()
    assert len(torch.unique(seen[0])) <= 2**bits
    # observers are frozen: running data again changes no scale
    before = m.conv1.activation_post_process.scale.clone()
    with torch.no_grad():
        m(10 * torch.randn(4, 1, 28, 28))
    assert torch.equal(before, m.conv1.activation_post_process.scale)
    assert isinstance(model.conv1, torch.nn.Conv2d)  # input model untouched


def test_qat_lowbit_trains_and_caches(model, tmp_path, monkeypatch):
    monkeypatch.setenv("QHELPERS_DATA", str(tmp_path))
    g = torch.Generator().manual_seed(0)
    x = torch.randn(64, 1, 28, 28, generator=g)
    y = torch.randint(0, 10, (64,), generator=g)
    ds = TensorDataset(x, y)
    data = Loaders(DataLoader(ds, batch_size=16, shuffle=True), DataLoader(ds, batch_size=32), DataLoader(ds, batch_size=32), "mnist")
    calibration = [x[:16]]
    m1, hist, cached = qat.qat_lowbit(model, calibration, data, bits=4, fuse=FUSE_PATTERNS, epochs=1, lr=0.01, cache=cache.cached)
    assert not cached and len(hist.train_loss) == 1 and not m1.training
    m2, _, cached2 = qat.qat_lowbit(model, calibration, data, bits=4, fuse=FUSE_PATTERNS, epochs=1, lr=0.01, cache=cache.cached)
    assert cached2
    with torch.no_grad():
        assert torch.equal(m1(x), m2(x))
    start = qat.ptq_lowbit(model, calibration, bits=4, fuse=FUSE_PATTERNS)
    assert not torch.equal(start.fc1.weight, m1.fc1.weight)  # fine-tuning moved the weights
    m3, hist3, cached3 = qat.qat_lowbit(model, calibration, data, bits=4, fuse=FUSE_PATTERNS, epochs=1, lr=0.01)
    assert not cached3 and not m3.training and hist3 == hist  # no cache: trained again, to the same weights
    with torch.no_grad():
        assert torch.equal(m1(x), m3(x))
    _, _, cached4 = qat.qat_lowbit(model, calibration, data, bits=3, fuse=FUSE_PATTERNS, epochs=1, lr=0.01, cache=cache.cached)
    assert not cached4  # another bit-width is another fine-tune
    assert len(list((tmp_path / "checkpoints").glob("qat-*.pt"))) == 2
    with pytest.raises(ValueError, match="at least one epoch"):
        qat.qat_lowbit(model, calibration, data, bits=4, epochs=0)


def test_weights_key_changes_with_weights(model):
    other = QuantReadyCNN()
    other.load_state_dict(model.state_dict())
    assert qat.weights_key(other) == qat.weights_key(model)
    with torch.no_grad():
        other.fc2.bias[0] += 1e-3
    assert qat.weights_key(other) != qat.weights_key(model)


def test_keep_8bit_edges(model):
    m = qat.fake_quant_model(model, bits=3, fuse=FUSE_PATTERNS, keep_8bit=("quant", "fc2"))
    assert m.quant.activation_post_process.quant_max == 255
    assert m.fc2.activation_post_process.quant_max == 255
    assert m.fc2.weight_fake_quant.quant_max == 3  # its weights stay at 3 bits
    assert m.conv1.activation_post_process.quant_max == 7
    with pytest.raises(ValueError, match="keep_8bit"):
        qat.fake_quant_model(model, bits=3, keep_8bit=("fc9",))


@pytest.mark.parametrize("clipping", ["mse", "histogram"])
def test_lowbit_qconfig_clipping_keeps_the_grid(clipping):
    from qhelpers.ranges import MSEObserver, PerChannelMSEObserver

    qc = qat.lowbit_qconfig(3, clipping=clipping)
    act, w = qc.activation(), qc.weight()
    assert (act.quant_min, act.quant_max) == (0, 7) and (w.quant_min, w.quant_max) == (-3, 3)
    want = MSEObserver if clipping == "mse" else torch.ao.quantization.HistogramObserver
    assert type(act.activation_post_process) is want
    if clipping == "mse":
        assert type(w.activation_post_process) is PerChannelMSEObserver


def test_ptq_lowbit_mse_is_closer_to_fp32(model):
    """At 3 bits, MSE ranges bring the fake-quantized outputs closer to FP32's than min/max ranges."""
    g = torch.Generator().manual_seed(4)
    calibration = [torch.rand(32, 1, 28, 28, generator=g) for _ in range(3)]
    x = torch.rand(64, 1, 28, 28, generator=g)
    with torch.no_grad():
        ref = model(x)
        errs = {c: float(((qat.ptq_lowbit(model, calibration, bits=3, fuse=FUSE_PATTERNS, clipping=c)(x) - ref) ** 2).mean())
                for c in ("minmax", "mse")}
    assert errs["mse"] < errs["minmax"], errs


def test_clipping_rejects_unknown_rule(model):
    with pytest.raises(ValueError, match=r"clipping='percentile' is not a range rule; use one of \['minmax', 'mse', 'histogram'\]"):
        qat.lowbit_qconfig(3, clipping="percentile")
    with pytest.raises(ValueError, match="clipping='max'"):
        qat.ptq_lowbit(model, [torch.randn(2, 1, 28, 28)], bits=3, clipping="max")
