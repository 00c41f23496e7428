"""Bad input to the course machinery's modules, sensitivity, data, train and record (issue #19, item 7):
every mistake is a ValueError/TypeError raised by a check in qhelpers that names it and says what to do,
before any work: no raw torch/Python error, no silent wrong result, nothing half-written.

One row per check: (id, call, exception, message pattern). ``e`` holds small models and tensors built once. Every
row runs with ``QHELPERS_RESULTS`` pointing at a results file that must be unchanged afterwards, and with data
loading and training replaced by stubs that fail if they are reached.
"""

from __future__ import annotations

import traceback
from types import SimpleNamespace

import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

import qhelpers.course
from qhelpers import data as qdata
from qhelpers.course import cache, datasets
import importlib

from qhelpers import models, sensitivity, train, transformer
from qhelpers.data import CharVocab, Loaders
from qhelpers.quant import PerGroup
from qhelpers.train import TrainConfig

rec = importlib.import_module("qhelpers.course.record")  # (qhelpers.course.record is also the function record)

NAN = float("nan")


class Summed(nn.Module):
    """A conv/linear model that returns one number per input, not logits."""

    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(784, 10)

    def forward(self, x):
        return self.fc(x.flatten(1)).sum(1)


@pytest.fixture(scope="module")
def e():
    qhelpers.course.setup(0)
    g = torch.Generator().manual_seed(0)
    cnn = models.SimpleCNN().eval()
    ready = models.QuantReadyCNN.from_simple_cnn(cnn).eval()
    calib = [torch.randn(4, 1, 28, 28, generator=g) for _ in range(2)]
    images, labels = torch.randn(16, 1, 28, 28, generator=g), torch.randint(0, 10, (16,), generator=g)
    ds = TensorDataset(images, labels)
    loader = DataLoader(ds, batch_size=8)
    gpt = transformer.GPT(transformer.GPTConfig(vocab_size=8, block_size=8, n_layer=1, n_head=1, n_embd=8))
    return SimpleNamespace(
        cnn=cnn, ready=ready, calib=calib, images=images, labels=labels, ds=ds, ds10=TensorDataset(images[:10], labels[:10]),
        loader=loader, data=Loaders(loader, loader, loader, "mnist"), summed=Summed().eval(), vocab=CharVocab("abc"),
        gpt=gpt, ids=torch.randint(0, 8, (64,), generator=g), lin=nn.Linear(4, 2),
        result=sensitivity.LayerSensitivity("fc1", 30.0, 1.0, None),
    )


def _config(**kw):
    return TrainConfig("m", "mnist", **kw)


def _ls(e, **kw):
    return sensitivity.layer_sensitivity(e.cnn, e.calib, e.images, **kw)


CASES = [
    # ---- sensitivity.layer_sensitivity
    ("ls-labels-99", lambda e: _ls(e, labels=torch.full((16,), 99)), ValueError, r"labels hold 99, which is not a class of this model: it outputs 10 classes"),
    ("ls-labels-negative", lambda e: _ls(e, labels=torch.full((16,), -1)), ValueError, r"labels hold -1, which is not a class"),
    ("ls-labels-int", lambda e: _ls(e, labels=99), TypeError, r"labels must be a 1-D tensor of integer class indices \(or None\), not int"),
    ("ls-labels-2d", lambda e: _ls(e, labels=e.labels[None]), TypeError, r"labels must be a 1-D tensor"),
    ("ls-labels-float", lambda e: _ls(e, labels=e.labels.float()), TypeError, r"not a torch.float32 tensor"),
    ("ls-labels-complex", lambda e: _ls(e, labels=e.labels.to(torch.complex64)), TypeError, r"not a torch.complex64 tensor"),
    ("ls-labels-length", lambda e: _ls(e, labels=e.labels[:3]), ValueError, r"labels has 3 entries for 16 inputs"),
    ("ls-not-logits", lambda e: sensitivity.layer_sensitivity(e.summed, e.calib, e.images), ValueError, r"the model returned a torch.float32 tensor of shape \(16,\).*pass a classifier"),
    ("ls-layers-str", lambda e: _ls(e, layers="fc1"), TypeError, r"layers must be a list of layer names"),
    ("ls-layers-unknown", lambda e: _ls(e, layers=["fc9"]), ValueError, r"layers names \['fc9'\], which are not conv/linear layers"),
    ("ls-layers-empty", lambda e: _ls(e, layers=[]), ValueError, r"layers=\[\] is empty"),
    ("ls-inputs-int", lambda e: sensitivity.layer_sensitivity(e.cnn, e.calib, e.labels), ValueError, r"inputs must be a non-empty batch of float inputs"),
    ("ls-inputs-nan", lambda e: sensitivity.layer_sensitivity(e.cnn, e.calib, torch.full((2, 1, 28, 28), NAN)), ValueError, r"inputs holds 1568 NaN/inf"),
    ("ls-granularity-group", lambda e: _ls(e, granularity=PerGroup(32)), TypeError, r"granularity must be"),
    # ---- sensitivity.sensitivity_table, calibration_sweep
    ("table-empty", lambda e: sensitivity.sensitivity_table([]), ValueError, r"results is empty"),
    ("table-str", lambda e: sensitivity.sensitivity_table("fc1"), TypeError, r"results must be the list layer_sensitivity"),
    ("table-dicts", lambda e: sensitivity.sensitivity_table([{"layer": "fc1"}]), TypeError, r"a list of LayerSensitivity"),
    ("sweep-no-stub", lambda e: sensitivity.calibration_sweep(e.cnn, e.calib, [1], e.loader), ValueError, r"needs a QuantStub"),
    ("sweep-sizes-zero", lambda e: sensitivity.calibration_sweep(e.ready, e.calib, [0], e.loader), ValueError, r"must lie between 1 and the number of batches \(2\)"),
    ("sweep-sizes-too-many", lambda e: sensitivity.calibration_sweep(e.ready, e.calib, [3], e.loader), ValueError, r"must lie between 1 and the number of batches"),
    ("sweep-sizes-float", lambda e: sensitivity.calibration_sweep(e.ready, e.calib, [1.5], e.loader), TypeError, r"whole numbers of batches"),
    ("sweep-loader-none", lambda e: sensitivity.calibration_sweep(e.ready, e.calib, [1], None), TypeError, r"loader must yield \(inputs, labels\)"),
    # ---- data.calibration_batches, split, shuffled, loaders
    ("calib-too-many", lambda e: qdata.calibration_batches(e.ds10, 10, batch_size=4), ValueError, r"asks for 40 images, but the data set holds 10: 3 batch\(es\) at most"),
    ("calib-too-many-loaders", lambda e: qdata.calibration_batches(e.data, 3), ValueError, r"3 batches of 8 images asks for 24 images, but the data set holds 16"),
    ("calib-allow-fewer-int", lambda e: qdata.calibration_batches(e.ds, 1, allow_fewer=1), TypeError, r"allow_fewer=1 must be True or False"),
    ("calib-zero", lambda e: qdata.calibration_batches(e.ds, 0), ValueError, r"num_batches=0 must be at least 1"),
    ("calib-str", lambda e: qdata.calibration_batches("images", 1), TypeError, r"data must be a qhelpers.data.Loaders"),
    ("calib-seed", lambda e: qdata.calibration_batches(e.ds, 1, seed=-1), ValueError, r"seed=-1 must be between 0"),
    ("split-str", lambda e: qdata.split("abcdef", 2, 0), TypeError, r"dataset must be a Dataset with a length .* not str 'abcdef'"),
    ("split-val-too-big", lambda e: qdata.split(e.ds, 16, 0), ValueError, r"val_size=16 must be between 0 and 15"),
    ("shuffled-str", lambda e: qdata.shuffled("abcdef", 2, 0), TypeError, r"dataset must be a Dataset with a length"),
    ("shuffled-batch-zero", lambda e: qdata.shuffled(e.ds, 0, 0), ValueError, r"batch_size=0 must be at least 1"),
    ("loaders-subset-too-big", lambda e: datasets.loaders("mnist", subset=56000), ValueError, r"subset=56000 must be between 1 and 55000"),
    ("loaders-val-too-big", lambda e: datasets.loaders("mnist", val_size=60000), ValueError, r"val_size=60000 must leave training images: the training split holds 60000"),
    ("loaders-name", lambda e: datasets.loaders("cifar"), ValueError, r"unknown dataset 'cifar'"),
    ("resolve-root-empty", lambda e: datasets.resolve("mnist", ""), TypeError, r"root='' must be a folder path"),
    # ---- data.CharVocab, char_splits
    ("decode-float", lambda e: e.vocab.decode([1.5]), TypeError, r"ids must hold ints \(token ids\), but 1.5 is a float"),
    ("decode-bool", lambda e: e.vocab.decode([True]), TypeError, r"but True is a bool"),
    ("decode-2d", lambda e: e.vocab.decode(torch.zeros(2, 2, dtype=torch.long)), TypeError, r"ids must be a 1-D integer tensor or a list of ints, not a torch.int64 tensor of shape \(2, 2\)"),
    ("decode-float-tensor", lambda e: e.vocab.decode(torch.zeros(2)), TypeError, r"not a torch.float32 tensor"),
    ("decode-str", lambda e: e.vocab.decode("ab"), TypeError, r"ids must be a 1-D integer tensor or a list of ints, not str"),
    ("decode-out-of-range", lambda e: e.vocab.decode([3]), ValueError, r"token ids must lie in 0..2"),
    ("encode-int", lambda e: e.vocab.encode(5), TypeError, r"text must be a str, not int 5"),
    ("encode-list", lambda e: e.vocab.encode(["a", "b"]), TypeError, r"text must be a str, not list"),
    ("encode-unknown", lambda e: e.vocab.encode("abz"), ValueError, r"character 'z' is not in the vocabulary"),
    ("char-splits-fraction", lambda e: datasets.char_splits(val_fraction=NAN), ValueError, r"val_fraction=nan must be a number strictly between 0 and 1"),
    ("char-splits-text-fraction", lambda e: qdata.char_splits("abcdef", val_fraction=1), ValueError, r"val_fraction=1 must be a number strictly between 0 and 1"),
    ("char-splits-not-text", lambda e: qdata.char_splits(["abc"]), TypeError, r"text must be the text itself \(a str\), not list"),
    ("char-splits-empty", lambda e: qdata.char_splits(""), ValueError, r"text must be a non-empty string"),
    # ---- train.TrainConfig
    ("config-extra-lambda", lambda e: _config(extra=(("f", lambda: 0),)), TypeError, r"extra 'f' is a function, which has no key that is the same in every run"),
    ("config-extra-object", lambda e: _config(extra=(("o", object()),)), TypeError, r"extra 'o' is a object"),
    ("config-extra-tensor", lambda e: _config(extra=(("t", torch.zeros(3)),)), TypeError, r"extra 't' is a Tensor"),
    ("config-extra-nested", lambda e: _config(extra=(("k", (1, nn.ReLU())),)), TypeError, r"extra 'k'\[1\] is a function"),
    ("config-extra-nan", lambda e: _config(extra=(("x", NAN),)), ValueError, r"extra 'x' = nan is not finite"),
    ("config-extra-twice", lambda e: _config(extra=(("x", 1), ("x", 2))), ValueError, r"extra names \['x'\] more than once"),
    ("config-extra-flat", lambda e: _config(extra=("x", 1)), TypeError, r"must be a tuple of \(name, value\) pairs"),
    ("config-epochs", lambda e: _config(epochs=0), ValueError, r"epochs=0 must be at least 1"),
    # ---- cache.code_key, cached; train.progress
    ("code-key-str", lambda e: cache.code_key("model"), TypeError, r"model must be a torch.nn.Module, not str"),
    ("code-key-build-int", lambda e: cache.code_key(e.lin, build=5), TypeError, r"build must be the function or class that builds the model"),
    ("cached-cache-dir-empty", lambda e: cache.cached(lambda: nn.Linear(2, 2), _config(), lambda m: train.History(), cache_dir=""), TypeError, r"cache_dir='' must be a folder path .* working directory"),
    ("cached-history-type", lambda e: cache.cached(lambda: nn.Linear(2, 2), _config(), lambda m: train.History(), history_type=5), TypeError, r"history_type must be the history's dataclass"),
    ("progress-int", lambda e: train.progress(5), TypeError, r"progress\(iterable\) needs something to iterate over"),
    # ---- train.fit_lm, evaluate, fit
    ("fit-lm-not-a-gpt", lambda e: train.fit_lm(e.lin, e.ids, iters=1), TypeError, r"model must be a language model with a .config"),
    ("fit-lm-weight-decay", lambda e: train.fit_lm(e.gpt, e.ids, iters=1, weight_decay=-0.1), ValueError, r"weight_decay=-0.1 must be a finite number in \[0.0, inf\)"),
    ("fit-lm-warmup", lambda e: train.fit_lm(e.gpt, e.ids, iters=1, warmup=-5), ValueError, r"warmup=-5 must be at least 0"),
    ("fit-lm-seed", lambda e: train.fit_lm(e.gpt, e.ids, iters=1, seed=-1), ValueError, r"seed=-1 must be between 0"),
    ("fit-lm-too-short", lambda e: train.fit_lm(e.gpt, e.ids[:9], iters=1), ValueError, r"train_ids holds 9 tokens: a training window needs block_size \+ 2 = 10"),
    ("fit-lm-over-vocab", lambda e: train.fit_lm(e.gpt, torch.full((64,), 8), iters=1), ValueError, r"train_ids holds token ids from 8 to 8; the model's vocab_size=8"),
    ("fit-lm-desc", lambda e: train.fit_lm(e.gpt, e.ids, iters=1, desc=5), TypeError, r"desc=5 must be a string"),
    ("evaluate-num-classes", lambda e: train.evaluate(e.cnn, e.loader, num_classes=0), ValueError, r"num_classes=0 must be at least 1"),
    ("fit-epochs", lambda e: train.fit(e.cnn, e.loader, epochs=0), ValueError, r"epochs=0 must be at least 1"),
    # ---- rec.record, claim, read_results, atomic_open, claim_limits
    ("claim-str-value", lambda e: rec.claim("acc", "0.5", at_least=0), TypeError, r"claim\('acc'\): value '0.5' must be a number"),
    ("claim-bool-value", lambda e: rec.claim("ok", True, at_least=0), TypeError, r"claim\('ok'\): value True must be a number"),
    ("claim-list-value", lambda e: rec.claim("acc", [0.5], at_most=1), TypeError, r"value \[0.5\] must be a number"),
    ("claim-nan", lambda e: rec.claim("acc", NAN, at_least=0), ValueError, r"value nan is not finite"),
    ("claim-tensor-many", lambda e: rec.claim("acc", torch.zeros(3), at_least=0), TypeError, r"value is a Tensor of 3 elements"),
    ("claim-limits-swapped", lambda e: rec.claim("acc", 0.5, at_least=1, at_most=0), ValueError, r"at_least=1 is above at_most=0: no value could hold"),
    ("claim-limit-str", lambda e: rec.claim("acc", 0.5, at_least="0"), TypeError, r"at_least='0' must be a finite number or None"),
    ("claim-bad-name", lambda e: rec.claim("Acc", 0.5, at_least=0), ValueError, r"record name 'Acc' must be snake_case"),
    ("record-set", lambda e: rec.record("x", {1, 2}), TypeError, r"value of type set is not JSON-serializable"),
    ("record-int-key", lambda e: rec.record("x", {1: 2}), TypeError, r"JSON keys are strings"),
    ("read-results-int", lambda e: rec.read_results(5), TypeError, r"read_results: path=5 must be the path of a .json file"),
    ("atomic-open-read", lambda e: rec.atomic_open(e.results, "r").__enter__(), ValueError, r"mode='r' must be 'w', 'wt' or 'wb'"),
    ("atomic-open-int", lambda e: rec.atomic_open(5).__enter__(), TypeError, r"atomic_open: path=5 must be a file path"),
    ("claim-limits-path-int", lambda e: rec.claim_limits("mnist-cnn", "full", path=5), TypeError, r"claim_limits: path=5 must be the path of a limits.yml"),
    ("claim-limits-config-list", lambda e: rec.claim_limits("mnist-cnn", ["full"]), TypeError, r"claim_limits: configuration=\['full'\] must be a str"),
]


def _reached(what):
    def stub(*args, **kwargs):
        raise AssertionError(f"{what} was reached: the bad argument was not refused up front")

    return stub


@pytest.mark.parametrize("name, call, exc, pattern", CASES, ids=[c[0] for c in CASES])
def test_bad_input_is_refused_clearly(e, name, call, exc, pattern, monkeypatch, tmp_path):
    results = tmp_path / "results.json"
    results.write_text('{"kept": 1}')
    monkeypatch.setenv(rec.RESULTS_ENV, str(results))
    e.results = results
    monkeypatch.setattr(datasets, "load", _reached("datasets.load"))  # nothing reads the data set
    monkeypatch.setattr(datasets, "resolve_text", _reached("datasets.resolve_text"))
    monkeypatch.setattr(cache, "data_dir", lambda: tmp_path / "data")  # a checkpoint would land here, not in data/
    with pytest.raises(exc, match=pattern) as info:
        call(e)
    last = traceback.extract_tb(info.value.__traceback__)[-1]
    assert "/qhelpers/" in last.filename and (last.line or "").lstrip().startswith("raise"), (
        f"raised from {last.filename}:{last.lineno}, not by a check in qhelpers")
    assert info.value.__cause__ is None or info.value.__suppress_context__  # no torch traceback chained above it
    assert results.read_text() == '{"kept": 1}'  # nothing half-recorded
    assert sorted(p.name for p in tmp_path.iterdir()) == ["results.json"]  # no checkpoint, no temporary file


def test_train_config_keys_are_the_same_in_every_process():
    import subprocess
    import sys

    code = ("from qhelpers.train import TrainConfig; print(TrainConfig('m', 'mnist', extra=(('stem', 'cifar'), ('v', 2), "
            "('t', (1, 'a', None, 0.5)))).key())")
    keys = {subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout for _ in range(2)}
    assert len(keys) == 1
    assert keys == {_config(extra=(("stem", "cifar"), ("v", 2), ("t", (1, "a", None, 0.5)))).key() + "\n"}


def test_a_good_claim_still_records(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv(rec.RESULTS_ENV, str(tmp_path / "r.json"))
    rec.claim("acc", torch.tensor(0.75), at_least=0.5, at_most=1)
    assert (tmp_path / "r.json").read_text().strip().endswith('"acc": 0.75\n}'.strip())
    assert capsys.readouterr().out == "[record] acc = 0.75\n[claim] acc in [0.5, 1]: yes\n"


def test_layer_sensitivity_accuracy_with_true_labels_is_unchanged(e):
    rows = sensitivity.layer_sensitivity(e.cnn, e.calib, e.images, e.labels, layers=["fc2"])
    assert rows[0].accuracy is not None and 0 <= rows[0].accuracy <= 1
