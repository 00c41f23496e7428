"""Bad input to ptq, qat, sensitivity, bench, models, data, zoo, convert, plots, exercises and repro:
every mistake gets a ValueError/TypeError raised by qhelpers that names it and says what to do.

One row per check: (id, call, exception, message pattern). Each call gets ``e``, a namespace of small models and
tensors built once. The calls fail before any training, calibration or export starts, so the table runs in seconds.
"""

from __future__ import annotations

import traceback
from pathlib import Path
from types import SimpleNamespace

import matplotlib

matplotlib.use("Agg")

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

import qhelpers.course
from qhelpers import bench, checks, convert, formats, models, plots, ptq, qat, quant, sensitivity
from qhelpers import data as qdata
from qhelpers.course import datasets, exercises, repro, zoo
from qhelpers.convert import DynamicBackend
from qhelpers.data import Loaders
from qhelpers.quant import PerChannel, PerTensor, choose_qparams
from qhelpers.train import History

NAN, INF = float("nan"), float("inf")


class Branchy(nn.Module):
    """Data-dependent control flow: neither torch.fx nor torch.export can capture it."""

    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(10, 10)

    def forward(self, x):
        return self.fc(x) if x.sum() > 0 else -self.fc(x)


def _skip_last(m):
    return convert.dynamic_int8(m, DynamicBackend.TORCH_AO, filter_fn=lambda mod, fqn: fqn != "net.5")


@pytest.fixture(scope="module")
def e(tmp_path_factory):
    qhelpers.course.setup(0)
    g = torch.Generator().manual_seed(0)
    cnn = models.SimpleCNN().eval()
    ready = models.QuantReadyCNN.from_simple_cnn(cnn).eval()
    calib = [torch.randn(4, 1, 28, 28, generator=g) for _ in range(2)]
    images, labels = torch.randn(16, 1, 28, 28, generator=g), torch.randint(0, 10, (16,), generator=g)
    ds = TensorDataset(images, labels)
    loader = DataLoader(ds, batch_size=8)
    mlp = models.MLP(hidden=(16, 8)).eval()
    fake = qat.FakeQuantizedModel(10, 10)
    fake(torch.randn(8, 10, generator=g))
    nan_fake = qat.FakeQuantizedModel(10, 10)
    nan_fake(torch.full((2, 10), NAN))
    tiny = tmp_path_factory.mktemp("imagenet") / "val"
    for name in ("tench", "goldfish"):
        (tiny / name).mkdir(parents=True)
        for i in range(3):
            Image.fromarray(torch.randint(0, 256, (32, 32, 3), generator=g, dtype=torch.uint8).numpy()).save(tiny / name / f"{i}.png")
    (tiny.parent / "a_file.txt").write_text("not a folder")
    rn = models.resnet18_mnist(stem="small_pool").eval()
    return SimpleNamespace(
        cnn=cnn, ready=ready, calib=calib, ex=(calib[0][:2],), images=images, labels=labels,
        data=Loaders(loader, loader, loader, "mnist"), loader=loader,
        int8=ptq.ptq_eager(ready, calib, fuse=models.FUSE_PATTERNS), fx=ptq.ptq_fx(cnn, calib, (calib[0][:1],)),
        fq=qat.fake_quant_model(ready, bits=4, fuse=models.FUSE_PATTERNS), branchy=Branchy().eval(),
        x10=torch.randn(4, 10, generator=g), lin=nn.Linear(10, 10), mlp=mlp, dyn=convert.dynamic_int8(mlp, DynamicBackend.TORCH_AO),
        tao=convert.dynamic_int8(mlp, DynamicBackend.TORCHAO_DYNAMIC), fake=fake, frozen=fake.freeze(), nan_fake=nan_fake.freeze(),
        tiny=tiny, a_file=tiny.parent / "a_file.txt", rn=rn,
        setup=zoo.ResNetSetup(rn, Loaders(loader, loader, loader, "mnist"), "none", 28, 1, None, True),
        table=pd.DataFrame({"size": [4.0, 1.0], "acc": [99.0, 98.9], "name": ["a", "b"]}, index=["fp32", "int8"]),
    )


CASES = [
    # ---- ptq.calibrate
    ("calibrate-model-str", lambda e: ptq.calibrate("model", e.calib), TypeError, r"model must be a torch.nn.Module"),
    ("calibrate-one-tensor", lambda e: ptq.calibrate(e.cnn, e.calib[0]), TypeError, r"batches must be an iterable.*wrap one tensor in a list"),
    ("calibrate-str", lambda e: ptq.calibrate(e.cnn, "abc"), TypeError, r"batches must be an iterable"),
    ("calibrate-none-batch", lambda e: ptq.calibrate(e.cnn, [None]), TypeError, r"calibration batch 0 is NoneType"),
    ("calibrate-empty-pair", lambda e: ptq.calibrate(e.cnn, [()]), TypeError, r"calibration batch 0 is tuple"),
    ("calibrate-uint8", lambda e: ptq.calibrate(e.cnn, [torch.zeros(2, 1, 28, 28, dtype=torch.uint8)]), TypeError, r"torch.uint8.*convert it with .float\(\)"),
    ("calibrate-nan", lambda e: ptq.calibrate(e.cnn, [torch.full((2, 1, 28, 28), NAN)]), ValueError, r"holds 1568 NaN/inf"),
    ("calibrate-empty-batch", lambda e: ptq.calibrate(e.cnn, [torch.empty(0, 1, 28, 28)]), ValueError, r"is empty \(shape \(0, 1, 28, 28\)\)"),
    ("calibrate-wrong-shape", lambda e: ptq.calibrate(e.cnn, [torch.randn(2, 3, 28, 28)]), ValueError, r"fails on calibration batch 0 .*\(2, 3, 28, 28\).*3 channels"),
    # ---- ptq.ptq_eager
    ("eager-model-str", lambda e: ptq.ptq_eager("model", e.calib), TypeError, r"model must be a torch.nn.Module, not str"),
    ("eager-calib-str", lambda e: ptq.ptq_eager(e.ready, "abc"), TypeError, r"calibration must be a sequence of batches .* not str"),
    ("eager-calib-dict", lambda e: ptq.ptq_eager(e.ready, {"a": e.calib[0]}), TypeError, r"calibration must be a sequence of batches .* not dict"),
    ("eager-calib-int", lambda e: ptq.ptq_eager(e.ready, [torch.zeros(2, 1, 28, 28, dtype=torch.long)]), TypeError, r"calibration\[0\] is a torch.int64 tensor"),
    ("eager-calib-nan", lambda e: ptq.ptq_eager(e.ready, [torch.full((2, 1, 28, 28), NAN)]), ValueError, r"calibration\[0\] holds .* NaN/inf"),
    ("eager-calib-shape", lambda e: ptq.ptq_eager(e.ready, [torch.randn(2, 3, 28, 28)]), ValueError, r"fails on calibration batch 0"),
    ("eager-fuse-str", lambda e: ptq.ptq_eager(e.ready, e.calib, fuse="conv1"), TypeError, r"fuse must be a list of groups of module names"),
    ("eager-fuse-flat", lambda e: ptq.ptq_eager(e.ready, e.calib, fuse=["conv1", "relu1"]), TypeError, r"fuse must be a list of groups"),
    ("eager-fuse-single", lambda e: ptq.ptq_eager(e.ready, e.calib, fuse=[["conv1"]]), TypeError, r"fuse must be a list of groups"),
    ("eager-fuse-unfusable", lambda e: ptq.ptq_eager(e.ready, e.calib, fuse=[["conv1", "fc1"]]), ValueError, r"PyTorch cannot fuse one of the groups.*conv\(\+bn\)\(\+relu\)"),
    ("eager-qconfig-str", lambda e: ptq.ptq_eager(e.ready, e.calib, qconfig="x86"), TypeError, r"qconfig must be a torch.ao.quantization.QConfig"),
    ("eager-granularity-bool", lambda e: ptq.ptq_eager(e.ready, e.calib, granularity=True), TypeError, r"granularity must be qhelpers.quant.PerChannel\(0\) or PerTensor\(\)"),
    ("eager-quantized", lambda e: ptq.ptq_eager(e.int8, e.calib), ValueError, r"not a float model: it is already quantized \(quant is a Quantize\)"),
    ("eager-prepared", lambda e: ptq.ptq_eager(e.fq, e.calib), ValueError, r"already prepared for quantization \(quant.activation_post_process"),
    # ---- ptq.ptq_fx / views_as_reshapes
    ("fx-model-str", lambda e: ptq.ptq_fx("model", e.calib, e.ex), TypeError, r"model must be a torch.nn.Module"),
    ("fx-example-empty", lambda e: ptq.ptq_fx(e.cnn, e.calib, ()), ValueError, r"example_inputs is an empty tuple"),
    ("fx-example-shape", lambda e: ptq.ptq_fx(e.cnn, e.calib, (torch.randn(2, 3, 28, 28),)), ValueError, r"fails on example_inputs \(\(2, 3, 28, 28\)\)"),
    ("fx-example-none", lambda e: ptq.ptq_fx(e.cnn, e.calib, (None,)), ValueError, r"fails on example_inputs \(NoneType\)"),
    ("fx-example-nan", lambda e: ptq.ptq_fx(e.cnn, e.calib, (torch.full((1, 1, 28, 28), NAN),)), ValueError, r"example_inputs\[0\] holds"),
    ("fx-untraceable", lambda e: ptq.ptq_fx(e.branchy, [e.x10], (e.x10,)), ValueError, r"torch.fx cannot trace the model.*use ptq_eager"),
    ("fx-granularity-group", lambda e: ptq.ptq_fx(e.cnn, e.calib, e.ex, granularity=quant.PerGroup(32)), TypeError, r"granularity must be .*no groups"),
    ("fx-granularity-axis", lambda e: ptq.ptq_fx(e.cnn, e.calib, e.ex, granularity=PerChannel(1)), ValueError, r"per output channel, axis 0; pass PerChannel\(0\)"),
    ("pt2e-granularity-class", lambda e: ptq.ptq_pt2e(e.cnn, e.calib, e.ex, granularity=PerTensor), TypeError, r"a class: call it, PerTensor\(\)"),
    ("fx-views", lambda e: ptq.ptq_fx(e.cnn, e.calib, e.ex, views_to_reshape="yes"), TypeError, r"views_to_reshape='yes'"),
    ("fx-quantized", lambda e: ptq.ptq_fx(e.fx, e.calib, e.ex), ValueError, r"already quantized \(conv1 is a QuantizedConvReLU2d\)"),
    ("views-str", lambda e: ptq.views_as_reshapes("model"), TypeError, r"model must be a torch.nn.Module"),
    ("views-untraceable", lambda e: ptq.views_as_reshapes(e.branchy), ValueError, r"torch.fx cannot trace the model"),
    # ---- ptq.ptq_pt2e (all refused before torch.export runs, except the last)
    ("pt2e-example-shape", lambda e: ptq.ptq_pt2e(e.cnn, e.calib, (torch.randn(2, 3, 28, 28),)), ValueError, r"fails on example_inputs"),
    ("pt2e-example-extra", lambda e: ptq.ptq_pt2e(e.cnn, e.calib, (e.calib[0][:2], e.calib[0][:2])), ValueError, r"fails on example_inputs"),
    ("pt2e-strict", lambda e: ptq.ptq_pt2e(e.cnn, e.calib, e.ex, strict="no"), TypeError, r"strict='no' must be True or False"),
    ("pt2e-dynamic", lambda e: ptq.ptq_pt2e(e.cnn, e.calib, e.ex, dynamic_batch=1), TypeError, r"dynamic_batch=1 must be True or False"),
    ("pt2e-batch-1", lambda e: ptq.ptq_pt2e(e.cnn, e.calib, (e.calib[0][:1],)), ValueError, r"dynamic_batch=True needs example inputs with a batch of at least 2"),
    ("pt2e-quantized", lambda e: ptq.ptq_pt2e(e.int8, e.calib, e.ex), ValueError, r"already quantized"),
    ("pt2e-untraceable", lambda e: ptq.ptq_pt2e(e.branchy, [e.x10], (e.x10,), strict=False), ValueError, r"torch.export cannot capture the model .*rewrite the branch with torch.cond"),
    # ---- flows: small helpers
    ("graph-tensors-module", lambda e: ptq.graph_tensors(e.cnn), TypeError, r"needs a torch.fx.GraphModule .* not a SimpleCNN module"),
    ("per-tensor-engine", lambda e: ptq.per_tensor_qconfig("fbgemmm"), ValueError, r"unknown engine 'fbgemmm'; choose one of \['x86'"),
    ("calibration-set-data", lambda e: qdata.calibration_batches(None, 2), TypeError, r"data must be a qhelpers.data.Loaders"),
    ("calibration-set-n", lambda e: qdata.calibration_batches(e.data, "2"), TypeError, r"num_batches='2' must be an int"),
    ("calibration-set-n0", lambda e: qdata.calibration_batches(e.data, 0), ValueError, r"num_batches=0 must be at least 1"),
    ("calibration-set-bs0", lambda e: qdata.calibration_batches(e.data, 2, batch_size=0), ValueError, r"batch_size=0 must be at least 1"),
    ("calibration-set-bs-bool", lambda e: qdata.calibration_batches(e.data, 2, batch_size=True), TypeError, r"batch_size=True must be an int"),
    ("calibration-set-seed", lambda e: qdata.calibration_batches(e.data, 2, seed=-1), ValueError, r"seed=-1 must be between 0 and 4294967295"),
    ("check-float-model-str", lambda e: checks.check_float_model(None), TypeError, r"model must be a torch.nn.Module"),
    ("check-float-model-torchao", lambda e: checks.check_float_model(e.tao), ValueError, r"net.1.weight is a Int8Tensor, a quantized tensor subclass"),
    # ---- qat
    ("lowbit-16", lambda e: qat.lowbit_qconfig(16), ValueError, r"bits=16 must be between 2 and 8: the simulated grids live in 8-bit containers"),
    ("lowbit-act-12", lambda e: qat.lowbit_qconfig(4, act_bits=12), ValueError, r"act_bits=12 must be between 2 and 8"),
    ("lowbit-float", lambda e: qat.lowbit_qconfig(4.0), TypeError, r"bits=4.0 must be an int"),
    ("lowbit-bool", lambda e: qat.lowbit_qconfig(True), TypeError, r"bits=True must be an int"),
    ("lowbit-granularity", lambda e: qat.lowbit_qconfig(4, granularity="yes"), TypeError, r"granularity must be"),
    ("fqm-str", lambda e: qat.fake_quant_model("m", bits=4), TypeError, r"model must be a torch.nn.Module"),
    ("fqm-keep-str", lambda e: qat.fake_quant_model(e.ready, bits=4, keep_8bit="fc2"), TypeError, r"keep_8bit must be a list of module names"),
    ("fqm-keep-none", lambda e: qat.ptq_lowbit(e.ready, e.calib, bits=4, keep_8bit=None), TypeError, r"keep_8bit must be a list of module names"),
    ("fqm-fuse-missing", lambda e: qat.fake_quant_model(e.ready, bits=4, fuse=[["conv1", "relu9"]]), ValueError, r"fuse names a module the model does not have: 'relu9'"),
    ("fqm-fuse-str", lambda e: qat.fake_quant_model(e.ready, bits=4, fuse="conv1"), TypeError, r"fuse must be a list of groups"),
    ("fqm-fuse-unfusable", lambda e: qat.fake_quant_model(e.ready, bits=4, fuse=[["conv1", "fc1"]]), ValueError, r"PyTorch cannot fuse"),
    ("fqm-no-stubs", lambda e: qat.fake_quant_model(e.cnn, bits=4), ValueError, r"needs a QuantStub"),
    ("fqm-prepared", lambda e: qat.fake_quant_model(e.fq, bits=4), ValueError, r"already prepared"),
    ("ptq-lowbit-shape", lambda e: qat.ptq_lowbit(e.ready, [torch.randn(2, 3, 28, 28)], bits=4), ValueError, r"fails on calibration batch 0"),
    ("ptq-lowbit-nan", lambda e: qat.ptq_lowbit(e.ready, [torch.full((2, 1, 28, 28), NAN)], bits=4), ValueError, r"NaN/inf"),
    ("freeze-float", lambda e: qat.freeze(e.cnn), ValueError, r"no fake-quantize modules, so there is nothing to freeze"),
    ("freeze-str", lambda e: qat.freeze("m"), TypeError, r"model must be a torch.nn.Module"),
    ("weights-key-str", lambda e: qat.weights_key("m"), TypeError, r"model must be a torch.nn.Module"),
    ("weights-key-int8", lambda e: qat.weights_key(e.int8), ValueError, r"'conv1.weight' is a quantized tensor \(torch.qint8\): pass the float model"),
    ("qat-epochs-str", lambda e: qat.qat_lowbit(e.ready, e.calib, e.data, bits=4, epochs="1"), TypeError, r"epochs='1' must be an int"),
    ("qat-lr", lambda e: qat.qat_lowbit(e.ready, e.calib, e.data, bits=4, lr=-1), ValueError, r"lr=-1 must be a finite number > 0"),
    ("qat-seed", lambda e: qat.qat_lowbit(e.ready, e.calib, e.data, bits=4, seed=-1), ValueError, r"seed=-1 must be between"),
    ("qat-data", lambda e: qat.qat_lowbit(e.ready, e.calib, None, bits=4), TypeError, r"data must be a qhelpers.data.Loaders"),
    ("qat-calib-none", lambda e: qat.qat_lowbit(e.ready, [None], e.data, bits=4), TypeError, r"calibration\[0\] is NoneType"),
    ("qat-calib-pairs", lambda e: qat.qat_lowbit(e.ready, [(e.images, e.labels)], e.data, bits=4), TypeError, r"QAT needs the input tensors alone"),
    ("qat-bits", lambda e: qat.qat_lowbit(e.ready, e.calib, e.data, bits=9), ValueError, r"bits=9 must be between 2 and 8"),
    ("qat-keep", lambda e: qat.qat_lowbit(e.ready, e.calib, e.data, bits=4, keep_8bit=["fc9"]), ValueError, r"keep_8bit names a module the model does not have: 'fc9'"),
    ("qat-name", lambda e: qat.qat_lowbit(e.ready, e.calib, e.data, bits=4, name=None), TypeError, r"name=None must be a string"),
    ("qat-cache", lambda e: qat.qat_lowbit(e.ready, e.calib, e.data, bits=4, cache=5), TypeError, r"cache must be a function \(build, config, train_fn\)"),
    ("compare-bits-int", lambda e: qat.compare_bits(e.ready, e.calib, e.data, 4), TypeError, r"bit_widths must be a list of bit-widths"),
    ("compare-bits-9", lambda e: qat.compare_bits(e.ready, e.calib, e.data, [4, 9]), ValueError, r"bit_widths\[1\]=9 must be between 2 and 8"),
    ("compare-bits-float", lambda e: qat.compare_bits(e.ready, e.calib, e.data, (8, 4.0)), TypeError, r"bit_widths\[1\]=4.0 must be an int"),
    ("compare-bits-dup", lambda e: qat.compare_bits(e.ready, e.calib, e.data, [4, 4]), ValueError, r"repeats a bit-width"),
    ("compare-bits-data", lambda e: qat.compare_bits(e.ready, e.calib, None, [4]), TypeError, r"data must be a qhelpers.data.Loaders"),
    ("compare-bits-epochs", lambda e: qat.compare_bits(e.ready, e.calib, e.data, [4], epochs=0), ValueError, r"QAT needs at least one epoch"),
    ("compare-bits-lr", lambda e: qat.compare_bits(e.ready, e.calib, e.data, [4], lr=NAN), ValueError, r"lr=nan must be a finite number"),
    ("compare-bits-clip-str", lambda e: qat.compare_bits(e.ready, e.calib, e.data, [4], clippings="mse"), TypeError, r"clippings must be a list of range rules"),
    ("compare-bits-clip-dup", lambda e: qat.compare_bits(e.ready, e.calib, e.data, [4], clippings=["mse", "mse"]), ValueError, r"must name each range rule once"),
    ("compare-bits-cache", lambda e: qat.compare_bits(e.ready, e.calib, e.data, [4], cache="cached"), TypeError, r"cache must be a function"),
    ("compare-bits-clip-bad", lambda e: qat.compare_bits(e.ready, e.calib, e.data, [4], clippings=["l1"]), ValueError, r"clipping='l1' is not a range rule"),
    # ---- sensitivity
    ("layers-str-model", lambda e: ptq.quantizable_layers("m"), TypeError, r"model must be a torch.nn.Module"),
    ("fx-layers-only-str", lambda e: ptq.ptq_fx(e.cnn, e.calib, e.ex, only="conv1"), TypeError, r"only must be a list of layer names"),
    ("fx-layers-only-empty", lambda e: ptq.ptq_fx(e.cnn, e.calib, e.ex, only=[]), ValueError, r"only=\[\] quantizes no layer"),
    ("fx-layers-keep-str", lambda e: ptq.ptq_fx(e.cnn, e.calib, e.ex, keep_float="fc2"), TypeError, r"keep_float must be a list of layer names"),
    ("fx-layers-example", lambda e: ptq.ptq_fx(e.cnn, e.calib, (torch.randn(2, 3, 28, 28),), only=["fc1"]), ValueError, r"fails on example_inputs"),
    ("fx-layers-example-empty", lambda e: ptq.ptq_fx(e.cnn, e.calib, (), only=["fc1"]), ValueError, r"empty tuple"),
    ("fx-layers-quantized", lambda e: ptq.ptq_fx(e.fx, e.calib, e.ex, only=["fc1"]), ValueError, r"already quantized"),
    ("fx-layers-granularity", lambda e: ptq.ptq_fx(e.cnn, e.calib, e.ex, only=["fc1"], granularity="no"), TypeError, r"granularity must be"),
    ("ls-inputs-str", lambda e: sensitivity.layer_sensitivity(e.cnn, e.calib, "x", layers=["fc2"]), TypeError, r"inputs must be a batch of inputs as a torch.Tensor"),
    ("ls-inputs-int", lambda e: sensitivity.layer_sensitivity(e.cnn, e.calib, e.labels, layers=["fc2"]), ValueError, r"inputs must be a non-empty batch of float inputs"),
    ("ls-inputs-shape", lambda e: sensitivity.layer_sensitivity(e.cnn, e.calib, torch.randn(4, 3, 28, 28), layers=["fc2"]), ValueError, r"fails on inputs"),
    ("ls-inputs-nan", lambda e: sensitivity.layer_sensitivity(e.cnn, e.calib, torch.full((4, 1, 28, 28), NAN), layers=["fc2"]), ValueError, r"inputs holds .* NaN/inf"),
    ("ls-labels-len", lambda e: sensitivity.layer_sensitivity(e.cnn, e.calib, e.images, e.labels[:1], layers=["fc2"]), ValueError, r"labels has 1 entries for 16 inputs"),
    ("ls-labels-float", lambda e: sensitivity.layer_sensitivity(e.cnn, e.calib, e.images, e.labels.float(), layers=["fc2"]), TypeError, r"labels must be a 1-D tensor of integer class indices"),
    ("ls-labels-list", lambda e: sensitivity.layer_sensitivity(e.cnn, e.calib, e.images, e.labels.tolist(), layers=["fc2"]), TypeError, r"labels must be a 1-D tensor"),
    ("ls-layers-str", lambda e: sensitivity.layer_sensitivity(e.cnn, e.calib, e.images, layers="fc2"), TypeError, r"layers must be a list of layer names"),
    ("ls-layers-empty", lambda e: sensitivity.layer_sensitivity(e.cnn, e.calib, e.images, layers=[]), ValueError, r"layers=\[\] is empty"),
    ("ls-calib-empty", lambda e: sensitivity.layer_sensitivity(e.cnn, [], e.images, layers=["fc2"]), ValueError, r"calibration is empty"),
    ("ls-quantized", lambda e: sensitivity.layer_sensitivity(e.int8, e.calib, e.images, layers=["fc2"]), ValueError, r"already quantized"),
    ("table-empty", lambda e: sensitivity.sensitivity_table([]), ValueError, r"results is empty"),
    ("table-str", lambda e: sensitivity.sensitivity_table(["a"]), TypeError, r"results must be the list layer_sensitivity\(...\) returns"),
    ("sweep-sizes-int", lambda e: sensitivity.calibration_sweep(e.ready, e.calib, 2, e.loader, fuse=models.FUSE_PATTERNS), TypeError, r"sizes must be a list of batch counts"),
    ("sweep-sizes-float", lambda e: sensitivity.calibration_sweep(e.ready, e.calib, [1.5], e.loader, fuse=models.FUSE_PATTERNS), TypeError, r"whole numbers of batches, but 1.5 is a float"),
    ("sweep-sizes-bool", lambda e: sensitivity.calibration_sweep(e.ready, e.calib, [True], e.loader, fuse=models.FUSE_PATTERNS), TypeError, r"but True is a bool"),
    ("sweep-loader", lambda e: sensitivity.calibration_sweep(e.ready, e.calib, [1], None, fuse=models.FUSE_PATTERNS), TypeError, r"loader must yield \(inputs, labels\) batches"),
    ("sweep-no-stubs", lambda e: sensitivity.calibration_sweep(e.cnn, e.calib, [1], e.loader), ValueError, r"needs a QuantStub"),
    ("sweep-fuse-str", lambda e: sensitivity.calibration_sweep(e.ready, e.calib, [1], e.loader, fuse="conv1"), TypeError, r"fuse must be a list of groups"),
    # ---- fakequant
    ("ste-x-list", lambda e: quant.ste_curve([0.0, 1.0], 0.25, 0, -4, 3), TypeError, r"x must be a real torch.Tensor"),
    ("ste-x-empty", lambda e: quant.ste_curve(torch.empty(0), 0.25, 0, -4, 3), ValueError, r"x is empty"),
    ("ste-x-nan", lambda e: quant.ste_curve(torch.tensor([0.0, NAN]), 0.25, 0, -4, 3), ValueError, r"x holds NaN/inf"),
    ("ste-scale-str", lambda e: quant.ste_curve(torch.zeros(3), "0.25", 0, -4, 3), TypeError, r"scale='0.25' must be a number"),
    ("ste-scale-nan", lambda e: quant.ste_curve(torch.zeros(3), NAN, 0, -4, 3), ValueError, r"scale=nan must be positive and finite"),
    ("ste-scale-inf", lambda e: quant.ste_curve(torch.zeros(3), INF, 0, -4, 3), ValueError, r"scale=inf must be positive and finite"),
    ("ste-zp-float", lambda e: quant.ste_curve(torch.zeros(3), 0.25, 0.5, -4, 3), TypeError, r"zero_point=0.5 must be an int"),
    ("ste-zp-outside", lambda e: quant.ste_curve(torch.zeros(3), 0.25, 10, -4, 3), ValueError, r"zero_point=10 must lie on the grid \[-4, 3\]"),
    ("ste-qmin-float", lambda e: quant.ste_curve(torch.zeros(3), 0.25, 0, -4.5, 3), TypeError, r"quant_min=-4.5 must be an int"),
    ("module-types-str", lambda e: bench.module_types("m"), TypeError, r"model must be a torch.nn.Module"),
    ("inserted-none", lambda e: bench.inserted_modules(e.cnn, None), TypeError, r"after must be a torch.nn.Module"),
    ("fqmodel-0", lambda e: qat.FakeQuantizedModel(0, 10), ValueError, r"in_features=0 must be at least 1"),
    ("fqmodel-float", lambda e: qat.FakeQuantizedModel(10, 10.5), TypeError, r"out_features=10.5 must be an int"),
    ("fqmodel-rr", lambda e: qat.FakeQuantizedModel(10, 10, reduce_range="no"), TypeError, r"reduce_range='no' must be True or False"),
    ("from-linear-conv", lambda e: qat.FakeQuantizedModel.from_linear(nn.Conv2d(1, 2, 3)), TypeError, r"linear must be a torch.nn.Linear"),
    ("from-linear-nobias", lambda e: qat.FakeQuantizedModel.from_linear(nn.Linear(4, 4, bias=False)), ValueError, r"linear has no bias"),
    ("fqmodel-width", lambda e: qat.FakeQuantizedModel(10, 10)(torch.randn(2, 5)), ValueError, r"input has shape \(2, 5\); this layer takes 10 features"),
    ("fqmodel-int-input", lambda e: qat.FakeQuantizedModel(10, 10)(torch.zeros(2, 10, dtype=torch.long)), TypeError, r"the input must be a float tensor"),
    ("to-int8-unfrozen", lambda e: qat.FakeQuantizedModel(4, 4).to_int8(), ValueError, r"call .freeze\(\) after calibration"),
    ("to-int8-uncalibrated", lambda e: qat.FakeQuantizedModel(4, 4).freeze().to_int8(), ValueError, r"has not been calibrated"),
    ("to-int8-nan", lambda e: e.nan_fake.to_int8(), ValueError, r"input scale is nan: the observers saw NaN/inf"),
    ("int8linear-str", lambda e: qat.Int8Linear("m"), TypeError, r"Int8Linear is built from a FakeQuantizedModel"),
    ("int8linear-unfrozen", lambda e: qat.Int8Linear(qat.FakeQuantizedModel(4, 4)), ValueError, r"call .freeze\(\)"),
    ("int8linear-width", lambda e: e.frozen.to_int8()(torch.randn(2, 5)), ValueError, r"this layer takes 10 features"),
    # ---- bench
    ("sd-bytes-str", lambda e: bench.state_dict_bytes("m"), TypeError, r"model must be a torch.nn.Module, not str"),
    ("breakdown-none", lambda e: bench.file_breakdown(None), TypeError, r"model must be a torch.nn.Module"),
    ("payload-str", lambda e: bench.payload_bytes("m"), TypeError, r"model must be a torch.nn.Module"),
    ("count-none", lambda e: bench.count_by_dtype(None), TypeError, r"model must be a torch.nn.Module"),
    ("element-bytes-int", lambda e: bench.element_bytes(5), TypeError, r"t must be a torch.Tensor"),
    ("latency-model-str", lambda e: bench.latency("m", e.x10), TypeError, r"model must be a torch.nn.Module or a function"),
    ("latency-example-str", lambda e: bench.latency(e.lin, "x"), TypeError, r"example must be an input batch as a torch.Tensor"),
    ("latency-example-tuple", lambda e: bench.latency(e.lin, (e.x10,)), TypeError, r"example must be an input batch as a torch.Tensor, not tuple"),
    ("latency-example-shape", lambda e: bench.latency(e.lin, torch.randn(2, 5), repeats=1, warmup=0), ValueError, r"fails on example .*\(2, 5\).*mat1 and mat2"),
    ("latency-repeats-float", lambda e: bench.latency(e.lin, e.x10, repeats=2.5), TypeError, r"repeats=2.5 must be an int"),
    ("latency-repeats-bool", lambda e: bench.latency(e.lin, e.x10, repeats=True), TypeError, r"repeats=True must be an int"),
    ("latency-warmup-neg", lambda e: bench.latency(e.lin, e.x10, warmup=-1), ValueError, r"warmup=-1 must be at least 0"),
    ("latency-threads-0", lambda e: bench.latency(e.lin, e.x10, threads=0), ValueError, r"threads=0 must be at least 1"),
    ("latency-threads-bool", lambda e: bench.latency(e.lin, e.x10, threads=True), TypeError, r"threads=True must be an int"),
    ("latency-min-time-neg", lambda e: bench.latency(e.lin, e.x10, min_time_s=-1), ValueError, r"min_time_s=-1 must be a finite number of seconds >= 0"),
    ("latency-min-time-inf", lambda e: bench.latency(e.lin, e.x10, min_time_s=INF), ValueError, r"min_time_s=inf"),
    ("latency-min-time-str", lambda e: bench.latency(e.lin, e.x10, min_time_s="1"), TypeError, r"min_time_s='1' must be a number of seconds"),
    ("compare-module", lambda e: bench.compare(e.cnn), TypeError, r"models must be a dict, e.g."),
    ("compare-value-str", lambda e: bench.compare({"a": "m"}), TypeError, r"models\['a'\] must be a torch.nn.Module"),
    ("compare-acc-list", lambda e: bench.compare({"a": e.lin}, accuracy=[0.9]), TypeError, r"accuracy must be a dict of accuracies by model name"),
    ("compare-acc-str", lambda e: bench.compare({"a": e.lin}, accuracy={"a": "high"}), TypeError, r"accuracy\['a'\]='high' must be a number"),
    ("compare-acc-name", lambda e: bench.compare({"a": e.lin}, accuracy={"b": 0.9}), ValueError, r"accuracy names 'b', which is not one of the models \['a'\]"),
    ("compare-acc-percent", lambda e: bench.compare({"a": e.lin}, accuracy={"a": 99.0}), ValueError, r"must be a fraction in \[0, 1\].*not a percentage"),
    ("compare-example-str", lambda e: bench.compare({"a": e.lin}, "x"), TypeError, r"example must be an input batch"),
    ("compare-repeats", lambda e: bench.compare({"a": e.lin}, e.x10, repeats=0), ValueError, r"repeats=0 must be at least 1"),
    ("compare-baseline-int", lambda e: bench.compare({"a": e.lin}, baseline=0), TypeError, r"baseline=0 must be the name of one of the models"),
    ("grid-examples-tensor", lambda e: bench.latency_grid({"a": e.lin}, e.x10), TypeError, r"examples must be a dict, e.g. \{'bs1'"),
    ("grid-example-str", lambda e: bench.latency_grid({"a": e.lin}, {"bs1": "x"}), TypeError, r"examples\['bs1'\] must be an input batch"),
    ("grid-model-str", lambda e: bench.latency_grid({"a": "m"}, {"bs1": e.x10}), TypeError, r"models\['a'\] must be a torch.nn.Module or a function"),
    ("grid-repeats", lambda e: bench.latency_grid({"a": e.lin}, {"bs1": e.x10}, repeats=0), ValueError, r"repeats=0"),
    ("compile-str", lambda e: bench.compile_for_cpu("m"), TypeError, r"model must be a torch.nn.Module"),
    ("compile-dynamic", lambda e: bench.compile_for_cpu(e.lin, dynamic="yes"), TypeError, r"dynamic='yes' must be True or False"),
    # ---- models
    ("cnn-classes-0", lambda e: models.SimpleCNN(num_classes=0), ValueError, r"num_classes=0 must be at least 1"),
    ("cnn-classes-float", lambda e: models.SimpleCNN(num_classes=2.5), TypeError, r"num_classes=2.5 must be an int"),
    ("cnn-classes-bool", lambda e: models.SimpleCNN(num_classes=True), TypeError, r"num_classes=True must be an int"),
    ("ready-classes-str", lambda e: models.QuantReadyCNN(num_classes="10"), TypeError, r"num_classes='10' must be an int"),
    ("from-cnn-resnet", lambda e: models.QuantReadyCNN.from_simple_cnn(e.rn), ValueError, r"must be a float SimpleCNN, but it has no fc2 layer"),
    ("from-cnn-str", lambda e: models.QuantReadyCNN.from_simple_cnn("m"), TypeError, r"model must be a SimpleCNN"),
    ("from-cnn-int8", lambda e: models.QuantReadyCNN.from_simple_cnn(e.int8), ValueError, r"its fc2 is a QuantizedLinear \(already quantized\?\)"),
    ("from-cnn-other-shapes", lambda e: models.QuantReadyCNN.from_simple_cnn(nn.Sequential()), ValueError, r"no fc2 layer"),
    ("resnet-classes-0", lambda e: models.resnet18_mnist(num_classes=0), ValueError, r"num_classes=0"),
    ("resnet-quantizable", lambda e: models.resnet18_imagenet("none", quantizable="no"), TypeError, r"quantizable='no' must be True or False"),
    # ---- imagenet
    ("load-quantizable", lambda e: models.load_resnet18("none", quantizable="yes"), TypeError, r"quantizable='yes'"),
    ("load-download", lambda e: models.load_resnet18("none", allow_download="no"), TypeError, r"allow_download='no' must be True or False"),
    ("classes-str", lambda e: qdata.class_indices("tench"), TypeError, r"class_names must be a list of folder names"),
    ("classes-ints", lambda e: qdata.class_indices([1, 2]), TypeError, r"class_names must be a list of folder names \(strings\)"),
    ("classes-dup", lambda e: qdata.class_indices(["5", "5"]), ValueError, r"class folders \['5'\] appear more than once"),
    ("classes-1000-unknown", lambda e: qdata.class_indices([f"class{i:04d}" for i in range(1000)]), ValueError, r"cannot map class folders \['class0000'.* \.\.\. to ImageNet"),
    ("folder-none", lambda e: qdata.image_folder(None), TypeError, r"imagenet_dir=None must be a folder path"),
    ("folder-empty-str", lambda e: qdata.image_folder(""), TypeError, r"imagenet_dir='' must be a folder path"),
    ("folder-file", lambda e: qdata.image_folder(e.a_file), ValueError, r"is a file, not a folder"),
    ("loaders-cal-float", lambda e: qdata.imagenet_loaders(e.tiny, calibration_images=1.5), TypeError, r"calibration_images=1.5 must be an int"),
    ("loaders-bs", lambda e: qdata.imagenet_loaders(e.tiny, calibration_images=2, batch_size=0), ValueError, r"batch_size=0 must be at least 1"),
    ("loaders-limit-0", lambda e: qdata.imagenet_loaders(e.tiny, calibration_images=2, limit=0), ValueError, r"limit=0 must be at least 1"),
    ("loaders-limit-neg", lambda e: qdata.imagenet_loaders(e.tiny, calibration_images=2, limit=-5), ValueError, r"limit=-5"),
    ("loaders-seed", lambda e: qdata.imagenet_loaders(e.tiny, calibration_images=2, seed="0"), TypeError, r"seed='0' must be an int"),
    ("plain-cnn", lambda e: models.plain_resnet(e.cnn), TypeError, r"plain_resnet needs a torchvision ResNet-18"),
    ("plain-str", lambda e: models.plain_resnet("m"), TypeError, r"model must be a torch.nn.Module"),
    ("plain-other-depth", lambda e: models.plain_resnet(_resnet10()), ValueError, r"weights do not fit a ResNet-18 \(Missing key"),
    ("setup-cal-float", lambda e: qdata.calibration_batches(e.setup.data, 1.5), TypeError, r"num_batches=1.5 must be an int"),
    ("setup-cal-bs", lambda e: qdata.calibration_batches(e.setup.data, 2, batch_size=0), ValueError, r"batch_size=0 must be at least 1"),
    ("setup-cal-seed", lambda e: qdata.calibration_batches(e.setup.data, 2, seed=-1), ValueError, r"seed=-1"),
    ("calibration-batches-list", lambda e: qdata.calibration_batches([e.images], 2), TypeError, r"data must be a qhelpers.data.Loaders .* or a Dataset, not list"),
    ("setup-example-0", lambda e: e.setup.example(0), ValueError, r"batch=0 must be at least 1"),
    ("setup-example-float", lambda e: e.setup.example(2.5), TypeError, r"batch=2.5 must be an int"),
    ("with-data-dir", lambda e: zoo.resnet18_with_data("imagenet", imagenet_dir=123), TypeError, r"imagenet_dir=123 must be a folder path"),
    ("with-data-limit", lambda e: zoo.resnet18_with_data(eval_limit=0), ValueError, r"eval_limit=0 must be at least 1"),
    ("with-data-limit-float", lambda e: zoo.resnet18_with_data(eval_limit=2.5), TypeError, r"eval_limit=2.5 must be an int"),
    ("with-data-cal", lambda e: zoo.resnet18_with_data(calibration_images=0), ValueError, r"calibration_images=0"),
    ("with-data-weights", lambda e: zoo.resnet18_with_data("IMAGENET"), ValueError, r"weights='IMAGENET': choose 'none'"),
    # ---- dynamic
    ("size-table-module", lambda e: formats.model_size_table(e.mlp), TypeError, r"models must be a dict of models by name"),
    ("size-table-str", lambda e: formats.model_size_table({"a": "m"}), TypeError, r"models\['a'\] must be a torch.nn.Module, not str"),
    ("size-table-quantized", lambda e: formats.model_size_table({"int8": e.int8}), ValueError, r"models\['int8'\] is not a float model"),
    ("cast-error-list", lambda e: formats.relative_cast_error([1.0], torch.float16), TypeError, r"values must be a real torch.Tensor"),
    ("cast-error-str-dtype", lambda e: formats.relative_cast_error(torch.ones(1), "fp16"), TypeError, r"dtype must be a torch.dtype such as torch.float16"),
    ("cast-error-int8", lambda e: formats.relative_cast_error(torch.ones(1), torch.int8), ValueError, r"dtype=torch.int8 is not a floating-point format"),
    ("cast-error-nan", lambda e: formats.relative_cast_error(torch.tensor([1.0, NAN]), torch.float16), ValueError, r"values holds NaN/inf"),
    ("cast-error-empty", lambda e: formats.relative_cast_error(torch.empty(0), torch.float16), ValueError, r"values is empty"),
    ("matmul-n-float", lambda e: bench.matmul_latency(64.0), TypeError, r"n=64.0 must be an int"),
    ("matmul-threads", lambda e: bench.matmul_latency(16, threads=0), ValueError, r"threads=0 must be at least 1"),
    ("mlp-hidden-int", lambda e: models.MLP(hidden=512), TypeError, r"hidden must be a tuple of layer widths"),
    ("mlp-hidden-0", lambda e: models.MLP(hidden=(0,)), ValueError, r"hidden\[0\]=0 must be at least 1"),
    ("mlp-classes", lambda e: models.MLP(num_classes=0), ValueError, r"num_classes=0 must be at least 1"),
    ("cast-inputs-str", lambda e: convert.CastInputs("m", torch.float16), TypeError, r"model must be a torch.nn.Module, not str"),
    ("cast-inputs-int8", lambda e: convert.CastInputs(e.mlp, torch.int8), ValueError, r"not a floating-point format"),
    ("to-dtype-str", lambda e: convert.to_dtype("m", "fp16"), TypeError, r"model must be a torch.nn.Module"),
    ("to-dtype-quantized", lambda e: convert.to_dtype(e.dyn, "fp16"), ValueError, r"already quantized \(net.1 is a DynamicQuantizedLinear\)"),
    ("autocast-str", lambda e: convert.Autocast("m"), TypeError, r"model must be a torch.nn.Module, not str"),
    ("dynamic-backend-none", lambda e: convert.dynamic_int8(e.mlp, None), TypeError, r"backend must be a DynamicBackend, e.g. DynamicBackend.TORCHAO_DYNAMIC, not None"),
    ("dynamic-backend-str", lambda e: convert.dynamic_int8(e.mlp, "torch.ao"), TypeError, r"backend must be a DynamicBackend.*not 'torch.ao'; choose one of DynamicBackend.TORCH_AO"),
    ("dynamic-filter-str", lambda e: convert.dynamic_int8(e.mlp, filter_fn="net.1"), TypeError, r"filter_fn must be a function"),
    ("dynamic-twice-torch-ao", lambda e: convert.dynamic_int8(e.dyn, DynamicBackend.TORCH_AO), ValueError, r"already quantized"),
    ("dynamic-twice-torchao", lambda e: convert.dynamic_int8(e.tao, DynamicBackend.TORCHAO_DYNAMIC), ValueError, r"Int8Tensor, a quantized tensor subclass"),
    ("variants-str", lambda e: convert.variants("m"), TypeError, r"model must be a torch.nn.Module"),
    ("variants-autocast", lambda e: convert.variants(e.mlp, autocast="yes"), TypeError, r"autocast='yes' must be True or False"),
    ("storage-str", lambda e: bench.storage("m"), TypeError, r"model must be a torch.nn.Module"),
    ("storage-only-str", lambda e: bench.storage(e.mlp, only="net.1"), TypeError, r"only must be a function"),
    ("linear-kinds-str", lambda e: bench.linear_kinds("m"), TypeError, r"model must be a torch.nn.Module"),
    ("work-str", lambda e: bench.work_by_layer_type("m", e.images), TypeError, r"model must be a torch.nn.Module"),
    ("work-example-str", lambda e: bench.work_by_layer_type(e.cnn, "x"), TypeError, r"example must be a non-empty batch of inputs"),
    ("work-example-shape", lambda e: bench.work_by_layer_type(e.cnn, torch.randn(2, 3, 28, 28)), ValueError, r"fails on example \(shape \(2, 3, 28, 28\)\)"),
    # ---- plots
    ("hist-str", lambda e: plots.weight_histogram("w"), TypeError, r"values must be a real torch.Tensor"),
    ("hist-qparams-str", lambda e: plots.weight_histogram(e.x10, "qp"), TypeError, r"qparams must be a QParams"),
    ("hist-bins-0", lambda e: plots.weight_histogram(e.x10, bins=0), ValueError, r"bins=0 must be at least 1"),
    ("hist-bins-float", lambda e: plots.weight_histogram(e.x10, bins=2.5), TypeError, r"bins=2.5 must be an int"),
    ("hist-empty", lambda e: plots.weight_histogram(torch.empty(0)), ValueError, r"values is empty"),
    ("hist-nan", lambda e: plots.weight_histogram(torch.tensor([1.0, NAN])), ValueError, r"values holds NaN/inf"),
    ("bits-lengths", lambda e: plots.error_vs_bits([2, 4], {"a": [1.0]}), ValueError, r"curves\['a'\] has 1 values but bits has 2"),
    ("bits-curves-list", lambda e: plots.error_vs_bits([2, 4], [1.0, 2.0]), TypeError, r"curves must be a dict"),
    ("bits-no-curves", lambda e: plots.error_vs_bits([2, 4], {}), ValueError, r"curves is empty"),
    ("bits-int", lambda e: plots.error_vs_bits(8, {"a": [1.0]}), TypeError, r"bits must be a list of numbers"),
    ("sens-empty", lambda e: plots.sensitivity({}), ValueError, r"scores is empty"),
    ("sens-list", lambda e: plots.sensitivity([("a", 1.0)]), TypeError, r"scores must be a dict"),
    ("sens-str", lambda e: plots.sensitivity({"a": "x"}), TypeError, r"must hold numbers, but holds str 'x'"),
    ("sens-nan", lambda e: plots.sensitivity({"a": NAN}), ValueError, r"scores holds NaN/inf"),
    ("curves-none", lambda e: plots.training_curves(None), TypeError, r"history must be a train.History"),
    ("curves-empty", lambda e: plots.training_curves(History()), ValueError, r"history.train_loss is empty"),
    ("curves-short", lambda e: plots.training_curves(History([1.0, 0.5], [0.9], [0.8])), ValueError, r"history.val_loss has 1 values but history.train_loss has 2"),
    ("precision-list", lambda e: plots.format_precision([1.0], {"FP16": torch.zeros(1)}), TypeError, r"values must be a real torch.Tensor"),
    ("precision-length", lambda e: plots.format_precision(torch.ones(2), {"FP16": torch.zeros(3)}), ValueError, r"errors\['FP16'\] has shape \(3,\) but values \(2,\)"),
    ("clip-keys", lambda e: plots.clipping_tradeoff({"clip": [1.0, 2.0]}), ValueError, r"sweep lacks \['rounding', 'clipping', 'total'\]"),
    ("clip-lengths", lambda e: plots.clipping_tradeoff({"clip": [1.0, 2.0], "rounding": [1.0], "clipping": [1.0], "total": [1.0]}), ValueError, r"sweep\['rounding'\] has 1 values"),
    ("channel-empty", lambda e: plots.per_channel_error({}), ValueError, r"errors is empty"),
    ("channel-lengths", lambda e: plots.per_channel_error({"a": [1.0, 2.0], "b": [1.0]}), ValueError, r"errors\['b'\] has 1 values but errors\['a'\] has 2"),
    ("channel-str", lambda e: plots.per_channel_error({"a": "xyz"}), TypeError, r"must be a list of numbers, not str"),
    ("ste-shapes", lambda e: plots.ste(torch.zeros(5), torch.zeros(4), torch.zeros(5)), ValueError, r"x, y and grad must have the same shape"),
    ("ste-list", lambda e: plots.ste([0.0], torch.zeros(1), torch.zeros(1)), TypeError, r"x must be a real torch.Tensor"),
    ("changed-max-0", lambda e: _changed(e, max_images=0), ValueError, r"max_images=0 must be at least 1"),
    ("changed-max-float", lambda e: _changed(e, max_images=2.0), TypeError, r"max_images=2.0 must be an int"),
    ("changed-class-names", lambda e: _changed(e, class_names=["zero"]), ValueError, r"class_names must be a list with a name for every class 0..3, got 1 names"),
    ("changed-names", lambda e: _changed(e, names=("FP32",)), TypeError, r"names must be two strings"),
    ("changed-class-names-str", lambda e: _changed(e, class_names="0123"), TypeError, r"class_names must be a list of names, one per class"),
    ("changed-logits", lambda e: plots.changed_predictions(e.images[:4], e.labels[:4], torch.randn(4, 10), torch.randn(4, 10)), ValueError, r"before has shape \(4, 10\); expected 1-D"),
    ("changed-float-labels", lambda e: plots.changed_predictions(e.images[:4], e.labels[:4].float(), e.labels[:4], e.labels[:4]), TypeError, r"labels must hold class indices"),
    ("changed-rgb", lambda e: plots.changed_predictions(torch.rand(2, 3, 8, 8), torch.tensor([0, 1]), torch.tensor([0, 1]), torch.tensor([1, 1])), ValueError, r"grey-scale images"),
    ("changed-lists", lambda e: plots.changed_predictions([1], [1], [1], [2]), TypeError, r"images must be a real torch.Tensor"),
    # ---- exercises
    ("skip-last-example-str", lambda e: exercises.check_skip_last_linear(_skip_last, e.mlp, "x"), TypeError, r"example must be an input batch as a torch.Tensor"),
    ("skip-last-example-shape", lambda e: exercises.check_skip_last_linear(_skip_last, e.mlp, torch.randn(2, 5)), ValueError, r"fails on example \(shape \(2, 5\)\)"),
    ("skip-last-quantized", lambda e: exercises.check_skip_last_linear(_skip_last, e.dyn, e.images), ValueError, r"already quantized"),
    # ---- repro (checked before anything is seeded or set)
    ("setup-seed-str", lambda e: repro.setup(seed="0"), TypeError, r"seed='0' must be an int"),
    ("setup-seed-neg", lambda e: repro.setup(seed=-1), ValueError, r"seed=-1 must be between 0 and 4294967295"),
    ("setup-seed-big", lambda e: repro.setup(seed=2**32), ValueError, r"seed=4294967296"),
    ("setup-seed-bool", lambda e: repro.setup(seed=True), TypeError, r"seed=True must be an int"),
    ("setup-threads-0", lambda e: repro.setup(threads=0), ValueError, r"threads=0 must be at least 1"),
    ("setup-threads-float", lambda e: repro.setup(threads=2.5), TypeError, r"threads=2.5 must be an int"),
    ("setup-quiet", lambda e: repro.setup(quiet_deprecations="no"), TypeError, r"quiet_deprecations='no' must be True or False"),
]


def _resnet10():
    from torchvision.models.quantization.resnet import QuantizableBasicBlock, QuantizableResNet

    return QuantizableResNet(QuantizableBasicBlock, [1, 1, 1, 1])


def _changed(e, **kw):
    return plots.changed_predictions(e.images[:4], torch.tensor([0, 1, 2, 3]), torch.tensor([0, 1, 2, 3]),
                                     torch.tensor([0, 2, 2, 1]), **kw)


@pytest.mark.parametrize("name, call, exc, pattern", CASES, ids=[c[0] for c in CASES])
def test_bad_input_is_refused_clearly(e, name, call, exc, pattern, monkeypatch):
    # Nothing may train, or read data: a check that lets the call get that far fails here instead.
    monkeypatch.setattr(zoo, "train_or_load", _reached("train_or_load"))
    monkeypatch.setattr(qat, "fit", _reached("qat.fit"))  # qat_lowbit trains (cache or not) through fit
    monkeypatch.setattr(datasets, "loaders", _reached("datasets.loaders"))
    if name.startswith("compare-bits"):  # compare_bits checks everything before its first PTQ model
        monkeypatch.setattr(qat, "ptq_lowbit", _reached("ptq_lowbit"))
    threads = torch.get_num_threads()
    with pytest.raises(exc, match=pattern) as info:
        call(e)
    torch.set_num_threads(threads)
    last = traceback.extract_tb(info.value.__traceback__)[-1]
    assert "/qhelpers/" in last.filename and (last.line or "").lstrip().startswith("raise"), (
        f"raised from {last.filename}:{last.lineno}, not by a check in qhelpers")
    assert info.value.__cause__ is None or info.value.__suppress_context__  # no torch traceback chained above it


def _reached(what):
    def stub(*args, **kwargs):
        raise AssertionError(f"{what} was reached: the bad argument was not refused up front")

    return stub


def test_setup_refuses_before_changing_anything():
    torch.set_num_threads(1)
    with pytest.raises(ValueError, match="threads=0"):
        repro.setup(seed=5, threads=0)
    assert torch.get_num_threads() == 1
    torch.set_num_threads(2)


def test_setup_accepts_numpy_ints():
    assert "seed 3 | 2 threads" in repro.setup(seed=np.int64(3), threads=np.int64(2))
    repro.setup(0)


def test_check_float_model_accepts_float_models_with_float_functional():
    """torchvision's QuantizableResNet holds FloatFunctional (a float module from torch.ao.nn.quantized) and stubs."""
    rn = models.resnet18_mnist()
    assert checks.check_float_model(rn) is rn
    fused = models.QuantReadyCNN()
    torch.ao.quantization.fuse_modules(fused, models.FUSE_PATTERNS, inplace=True)
    assert checks.check_float_model(fused) is fused


def test_class_indices_reads_index_folders_by_name_not_position():
    """1000 folders '0'..'999' come sorted as strings ('0', '1', '10', '100', ...): each gets its own index."""
    names = sorted(str(i) for i in range(1000))
    assert qdata.class_indices(names) == [int(n) for n in names]
    synsets = [f"n{i:08d}" for i in range(1000)]
    assert qdata.class_indices(synsets) == list(range(1000))


def test_latency_reraises_failures_after_the_first_call():
    """Only a first call that fails is about the input; a model failing later keeps its own error."""
    calls = []

    def flaky(x):
        calls.append(1)
        if len(calls) > 2:
            raise RuntimeError("boom")
        return x

    with pytest.raises(RuntimeError, match="boom"):
        bench.latency(flaky, torch.zeros(1), repeats=5, warmup=1)


def test_names_may_come_from_any_iterable(e):
    """keep_8bit and layer lists are checked, and still taken from any iterable of names (e.g. a generator)."""
    m = qat.fake_quant_model(e.ready, bits=3, fuse=models.FUSE_PATTERNS, keep_8bit=(n for n in ("quant", "fc2")))
    assert m.fc2.activation_post_process.quant_max == 255 and m.conv1.activation_post_process.quant_max == 7
    assert ptq.ptq_fx(e.cnn, e.calib, e.ex, keep_float=(n for n in ("fc2",))) is not None


def test_image_folder_missing_path_stays_file_not_found(tmp_path):
    with pytest.raises(FileNotFoundError, match="is not a folder"):
        qdata.image_folder(tmp_path / "missing")


def test_weight_histogram_per_channel_qparams_still_refused():
    x = torch.randn(4, 8)
    with pytest.raises(ValueError, match="per-tensor"):
        plots.weight_histogram(x, choose_qparams(x, granularity=PerChannel(0)))
