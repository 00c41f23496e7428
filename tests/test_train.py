"""qhelpers.train: evaluation, a deterministic training loop; and the checkpoint cache (qhelpers.course.cache)."""

from __future__ import annotations

import functools
import importlib.util
import os
import textwrap
from pathlib import Path

import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from qhelpers.course import cache
from qhelpers.course.cache import code_key, train_or_load
from qhelpers.data import Loaders
from qhelpers.train import TrainConfig, TrainingDivergedError, evaluate, fit, predict, validation_loader


def _blobs(n: int = 400, seed: int = 0) -> TensorDataset:
    """Two well-separated Gaussian blobs: a model that trains at all gets them right."""
    g = torch.Generator().manual_seed(seed)
    y = torch.arange(n) % 2
    x = torch.randn(n, 2, generator=g) * 0.3 + (y.float() * 2 - 1).unsqueeze(1) * 1.5
    return TensorDataset(x, y)


def _loaders(seed: int = 0) -> Loaders:
    gen = torch.Generator().manual_seed(seed)
    train = DataLoader(_blobs(400, 0), batch_size=32, shuffle=True, generator=gen)
    return Loaders(train, DataLoader(_blobs(100, 1), batch_size=50), DataLoader(_blobs(100, 2), batch_size=50), "toy")


def _mlp() -> nn.Module:
    return nn.Sequential(nn.Linear(2, 8), nn.ReLU(), nn.Linear(8, 2))


def test_evaluate_counts_correctly():
    class Fixed(nn.Module):
        def forward(self, x):  # predicts class 0 always
            return torch.stack([torch.ones(len(x)), torch.zeros(len(x))], 1)

    ds = TensorDataset(torch.zeros(10, 1), torch.tensor([0] * 7 + [1] * 3))
    res = evaluate(Fixed(), DataLoader(ds, batch_size=4))
    assert res.accuracy == pytest.approx(0.7)
    assert res.per_class_accuracy == [1.0, 0.0]
    assert res.predictions.tolist() == [0] * 10
    with pytest.raises(ValueError, match="empty"):
        evaluate(Fixed(), DataLoader(TensorDataset(torch.zeros(0, 1), torch.zeros(0, dtype=torch.long))))


def test_fit_learns_and_is_deterministic():
    results = []
    for _ in range(2):
        torch.manual_seed(0)
        model = _mlp()
        data = _loaders()
        hist = fit(model, data.train, data.val, epochs=3, lr=0.1, seed=0)
        results.append((hist, model.state_dict()))
    (h1, s1), (h2, s2) = results
    assert h1.train_loss == h2.train_loss
    assert all(torch.equal(s1[k], s2[k]) for k in s1)
    assert h1.val_accuracy[-1] > 0.95 and h1.train_loss[-1] < h1.train_loss[0]
    with pytest.raises(ValueError, match="epochs=0"):
        fit(_mlp(), data.train, epochs=0)


def test_train_or_load_caches_by_config(tmp_path):
    cfg = TrainConfig(model="mlp", dataset="toy", epochs=2, lr=0.1, batch_size=32)
    m1, h1, cached1 = train_or_load(_mlp, cfg, _loaders(), cache_dir=tmp_path)
    m2, h2, cached2 = train_or_load(_mlp, cfg, _loaders(), cache_dir=tmp_path)
    assert (cached1, cached2) == (False, True)
    assert h1 == h2 and all(torch.equal(a, b) for a, b in zip(m1.state_dict().values(), m2.state_dict().values()))
    _, _, cached3 = train_or_load(_mlp, TrainConfig(**{**cfg.__dict__, "epochs": 3}), _loaders(), cache_dir=tmp_path)
    assert cached3 is False and len(list(tmp_path.glob("*.pt"))) == 2
    assert not list(tmp_path.glob("*.tmp"))


def test_train_or_load_refuses_mismatched_loaders(tmp_path):
    with pytest.raises(ValueError, match="batch_size=64"):
        train_or_load(_mlp, TrainConfig(model="mlp", dataset="toy"), _loaders(), cache_dir=tmp_path)
    with pytest.raises(ValueError, match="'mnist'"):
        train_or_load(_mlp, TrainConfig(model="mlp", dataset="mnist", batch_size=32), _loaders(), cache_dir=tmp_path)


# ---------------------------------------------------------------- bad input to evaluate / predict

class _Fixed(nn.Module):
    """Predicts class 0 always; the output's shape can be chosen."""

    def __init__(self, shape=None, value=None):
        super().__init__()
        self.shape, self.value = shape, value

    def forward(self, x):
        out = torch.stack([torch.ones(len(x)), torch.zeros(len(x))], 1)
        if self.value is not None:
            out = torch.full_like(out, self.value)
        return out if self.shape is None else torch.zeros(self.shape(len(x)))


def _eval_loader(labels=None, n=8):
    y = torch.tensor(labels) if labels is not None else torch.arange(n) % 2
    return DataLoader(TensorDataset(torch.zeros(len(y), 2), y), batch_size=4)


@pytest.mark.parametrize(
    "model, loader, kwargs, error, match",
    [
        (_Fixed(), _eval_loader(), dict(num_classes=0), ValueError, r"num_classes=0 must be at least 1"),
        (_Fixed(), _eval_loader(), dict(num_classes=True), TypeError, r"num_classes=True must be an int, not bool"),
        (_Fixed(), _eval_loader(), dict(num_classes=3), ValueError, r"num_classes=3 but the model outputs 2 classes"),
        (_Fixed(lambda n: (n,)), _eval_loader(), {}, ValueError,
         r"batch 0 of the evaluation loader: the model returned \(4,\) for 4 inputs; it must return logits of shape \(4, number of classes\)"),
        (_Fixed(lambda n: (n + 1, 2)), _eval_loader(), {}, ValueError, r"the model returned \(5, 2\) for 4 inputs"),
        (_Fixed(lambda n: (n, 2, 1, 1)), _eval_loader(), {}, ValueError, r"the model returned \(4, 2, 1, 1\)"),
        (_Fixed(), _eval_loader([0, 1, 4, 0]), {}, ValueError, r"label 4 is not a class of this model, which outputs 2 classes \(labels 0\.\.1\)"),
        (_Fixed(), _eval_loader([0, -1, 0, 0]), {}, ValueError, r"label -1 is not a class of this model"),
        (_Fixed(), DataLoader(TensorDataset(torch.zeros(4, 2), torch.zeros(4)), batch_size=4), {}, ValueError,
         r"labels must be a 1-D tensor of integer class indices, got torch.float32"),
        (_Fixed(), [torch.zeros(4, 2)], {}, TypeError, r"batch 0 of the evaluation loader is a Tensor; loaders must yield \(inputs, labels\) pairs"),
        (_Fixed(), None, {}, TypeError, r"loader must yield \(inputs, labels\) batches.*got NoneType"),
        ("resnet", _eval_loader(), {}, TypeError, r"model must be a torch.nn.Module, not str"),
        (_Fixed(value=float("nan")), _eval_loader(), {}, ValueError, r"batch 0 of the evaluation loader: the model output NaN"),
    ],
    ids=["num_classes-0", "num_classes-bool", "num_classes-mismatch", "1-D-output", "wrong-batch", "4-D-output",
         "label-too-big", "label-negative", "float-labels", "no-labels", "no-loader", "not-a-model", "nan-output"],
)
def test_evaluate_refuses_bad_input_clearly(model, loader, kwargs, error, match):
    with pytest.raises(error, match=match):
        evaluate(model, loader, **kwargs)


def test_empty_loaders_are_named_before_torch_sees_them():
    empty = DataLoader(TensorDataset(torch.zeros(0, 2), torch.zeros(0, dtype=torch.long)), batch_size=4)
    with pytest.raises(ValueError, match="the evaluation loader is empty"):
        predict(_Fixed(), empty)
    with pytest.raises(ValueError, match=r"train_loader is an empty loader \(0 batches\)"):
        fit(_mlp(), empty, epochs=1)
    with pytest.raises(ValueError, match=r"val_loader is an empty loader.*pass val_loader=None to skip validation"):
        fit(_mlp(), _loaders().train, empty, epochs=1)
    one = DataLoader(TensorDataset(torch.zeros(3, 2), torch.zeros(3, dtype=torch.long)), batch_size=4, drop_last=True)
    with pytest.raises(ValueError, match=r"train_loader is an empty loader.*with drop_last=True, at least batch_size"):
        fit(_mlp(), one, epochs=1)


# ---------------------------------------------------------------- bad input to fit

@pytest.mark.parametrize(
    "kwargs, error, match",
    [
        (dict(epochs=1.5), TypeError, r"epochs=1\.5 must be an int, not float"),
        (dict(epochs=True), TypeError, r"epochs=True must be an int, not bool"),
        (dict(epochs="3"), TypeError, r"epochs='3' must be an int, not str"),
        (dict(lr=float("nan")), ValueError, r"lr=nan must be a finite number in \(0\.0, inf\)"),
        (dict(lr=float("inf")), ValueError, r"lr=inf must be a finite number"),
        (dict(lr=0), ValueError, r"lr=0\.0 must be a finite number in \(0\.0, inf\)"),
        (dict(lr="0.1"), TypeError, r"lr='0\.1' must be a number, not str"),
        (dict(momentum=1.0), ValueError, r"momentum=1\.0 must be a finite number in \[0\.0, 1\.0\)"),
        (dict(momentum=float("nan")), ValueError, r"momentum=nan must be a finite number"),
        (dict(weight_decay=-1), ValueError, r"weight_decay=-1\.0 must be a finite number in \[0\.0, inf\)"),
        (dict(seed=-1), ValueError, r"seed=-1 must be between 0 and 4294967295"),
        (dict(seed=1.5), TypeError, r"seed=1\.5 must be an int"),
        (dict(desc=3), TypeError, r"desc=3 must be a string"),
    ],
)
def test_fit_checks_its_arguments(kwargs, error, match):
    with pytest.raises(error, match=match):
        fit(_mlp(), _loaders().train, **kwargs)


def test_fit_refuses_bad_models_and_loaders():
    data = _loaders()
    with pytest.raises(TypeError, match="model must be a torch.nn.Module, not str"):
        fit("mlp", data.train)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="the model has no trainable parameters"):
        fit(nn.Identity(), data.train)
    with pytest.raises(TypeError, match="train_loader must be a DataLoader .*not generator"):
        fit(_mlp(), (b for b in data.train))  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"training batch \(epoch 1/1, step 1/13\): the model returned \(32,\) for 32 inputs"):
        fit(nn.Sequential(nn.Linear(2, 1), nn.Flatten(0)), data.train, epochs=1)
    five = DataLoader(TensorDataset(torch.zeros(8, 2), torch.arange(8) % 5), batch_size=4)
    with pytest.raises(ValueError, match=r"training batch \(epoch 1/1, step 1/2\): label 3 is not a class of this model, which outputs 2"):
        fit(_mlp(), five, epochs=1)


def test_fit_stops_when_the_loss_goes_nan_and_names_the_step():
    x, y = _blobs(32).tensors
    x = x.clone()
    x[20] = float("nan")  # in batch 3 of 4
    model = _mlp()
    with pytest.raises(TrainingDivergedError,
                       match=r"training diverged at epoch 1/2, step 3/4: the loss is nan\. Lower lr \(now 0\.1\) or check the inputs"):
        fit(model, DataLoader(TensorDataset(x, y), batch_size=8), epochs=2, lr=0.1)
    assert all(torch.isfinite(p).all() for p in model.parameters())  # stopped before the NaN step


def test_fit_stops_when_the_lr_blows_it_up():
    g = torch.Generator().manual_seed(0)
    ds = TensorDataset(torch.randn(64, 2, generator=g) * 100, torch.arange(64) % 2)
    model = _mlp()
    with pytest.raises(TrainingDivergedError, match=r"training diverged at epoch \d/2, step \d/8: the loss is (nan|inf)"):
        fit(model, DataLoader(ds, batch_size=8), epochs=2, lr=1e30)
    assert issubclass(TrainingDivergedError, FloatingPointError)


# ---------------------------------------------------------------- TrainConfig and train_or_load

@pytest.mark.parametrize(
    "kwargs, error, match",
    [
        (dict(model=""), ValueError, r"TrainConfig model='' must be a non-empty name"),
        (dict(model="../../x"), ValueError, r"TrainConfig model='\.\./\.\./x' must be a non-empty name of letters, digits"),
        (dict(dataset=None), ValueError, r"TrainConfig dataset=None must be"),
        (dict(epochs=0), ValueError, r"epochs=0 must be at least 1"),
        (dict(epochs=1.5), TypeError, r"epochs=1\.5 must be an int"),
        (dict(lr=float("nan")), ValueError, r"lr=nan must be a finite number"),
        (dict(momentum=-0.1), ValueError, r"momentum=-0\.1 must be a finite number in \[0\.0, 1\.0\)"),
        (dict(weight_decay=float("inf")), ValueError, r"weight_decay=inf must be a finite number"),
        (dict(batch_size=0), ValueError, r"batch_size=0 must be at least 1"),
        (dict(subset=0), ValueError, r"subset=0 must be at least 1"),
        (dict(val_size=-1), ValueError, r"val_size=-1 must be at least 0"),
        (dict(seed=2**32), ValueError, r"seed=4294967296 must be between 0 and 4294967295"),
        (dict(extra="abc"), TypeError, r"TrainConfig extra='abc' must be a tuple of \(name, value\) pairs"),
        (dict(extra=(("a", 1), "b")), TypeError, r"must be a tuple of \(name, value\) pairs"),
    ],
)
def test_train_config_checks_its_fields(kwargs, error, match):
    with pytest.raises(error, match=match):
        TrainConfig(**{"model": "mlp", "dataset": "toy", **kwargs})


def test_train_or_load_checks_its_arguments(tmp_path):
    cfg = TrainConfig(model="mlp", dataset="toy", epochs=1, batch_size=32)
    with pytest.raises(TypeError, match=r"build must be a function or class .*not Sequential \(pass the class or a function"):
        train_or_load(_mlp(), cfg, _loaders(), cache_dir=tmp_path)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="build\\(\\) returned NoneType, not a torch.nn.Module"):
        train_or_load(lambda: None, cfg, _loaders(), cache_dir=tmp_path)  # type: ignore[arg-type,return-value]
    with pytest.raises(TypeError, match="config must be a TrainConfig, not dict"):
        train_or_load(_mlp, {"model": "mlp"}, _loaders(), cache_dir=tmp_path)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="data must be a qhelpers.data.Loaders"):
        train_or_load(_mlp, cfg, (1, 2, 3), cache_dir=tmp_path)  # type: ignore[arg-type]
    (tmp_path / "file").write_text("x")
    with pytest.raises(ValueError, match=r"cannot use .*file as the checkpoint folder \(File exists\); pass cache_dir="):
        train_or_load(_mlp, cfg, _loaders(), cache_dir=tmp_path / "file")
    assert list(tmp_path.iterdir()) == [tmp_path / "file"]


@pytest.mark.parametrize(
    "damage",
    [
        lambda b: b[: len(b) // 2],
        lambda b: b"garbage" * 100,
        lambda b: _saved({"state_dict": {"x": torch.zeros(1)}, "history": {}}),
        lambda b: _saved({"state_dict": {}, "history": {"bogus": 1}}),
    ],
    ids=["truncated", "garbage", "other-model", "bad-history"],
)
def test_a_corrupt_checkpoint_is_retrained_with_one_line(tmp_path, capsys, damage):
    cfg = TrainConfig(model="mlp", dataset="toy", epochs=1, lr=0.1, batch_size=32)
    m1, _, _ = train_or_load(_mlp, cfg, _loaders(), cache_dir=tmp_path)
    (path,) = tmp_path.glob("*.pt")
    path.write_bytes(damage(path.read_bytes()))
    capsys.readouterr()
    m2, _, cached = train_or_load(_mlp, cfg, _loaders(), cache_dir=tmp_path)
    err = capsys.readouterr().err.strip().splitlines()
    assert cached is False
    assert [line for line in err if "checkpoint" in line] == [
        next(line for line in err if line.startswith(f"cached checkpoint {path} is unreadable ("))
    ]
    assert err[0].endswith("training again to replace it")
    # retrained from the same seeded start: the same weights as the first time, and cached again
    assert all(torch.equal(a, b) for a, b in zip(m1.state_dict().values(), m2.state_dict().values()))
    assert train_or_load(_mlp, cfg, _loaders(), cache_dir=tmp_path)[2] is True


def _saved(obj) -> bytes:
    import io

    buf = io.BytesIO()
    torch.save(obj, buf)
    return buf.getvalue()


def _module_from(tmp_path: Path, version: str, source: str):
    """Import ``source`` as module ``netdef`` from its own file, as an edited .py file would be."""
    path = tmp_path / version / "netdef.py"
    path.parent.mkdir()
    path.write_text(textwrap.dedent(source))
    spec = importlib.util.spec_from_file_location("netdef", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)  # type: ignore[union-attr]
    return module


_NET = """
    from torch import nn

    class Net(nn.Module):
        \"\"\"A tiny model.\"\"\"

        def __init__(self):
            super().__init__()
            self.lin = nn.Linear(2, 2)

        def forward(self, x):
            return self.lin(x)  # logits
"""


def test_code_key_follows_the_model_code_not_its_comments(tmp_path):
    v1 = _module_from(tmp_path, "v1", _NET)
    same = _module_from(tmp_path, "comments", _NET.replace("# logits", "# the logits").replace("A tiny model.", "Tiny.")
                        .replace("return self.lin(x)", "return self.lin(\n                x)"))
    forward = _module_from(tmp_path, "forward", _NET.replace("return self.lin(x)", "return -self.lin(x)"))
    constant = _module_from(tmp_path, "constant", _NET.replace('"""A tiny model."""', '"""A tiny model."""\n        scale = 2'))
    layer = _module_from(tmp_path, "layer", _NET.replace("nn.Linear(2, 2)", "nn.Linear(2, 2, bias=False)"))
    keys = {name: code_key(m.Net(), m.Net) for name, m in
            [("v1", v1), ("same", same), ("forward", forward), ("constant", constant), ("layer", layer)]}
    assert keys["same"] == keys["v1"]
    assert len({keys[k] for k in ("v1", "forward", "constant", "layer")}) == 4
    # build functions count too, and partials with their arguments; memory addresses never do
    build_a = functools.partial(v1.Net)
    assert code_key(v1.Net(), build_a) == code_key(v1.Net(), functools.partial(v1.Net))
    plain = lambda: nn.Linear(2, 2)  # noqa: E731
    other = lambda: nn.Linear(2, 2, True)  # noqa: E731
    assert code_key(nn.Linear(2, 2), plain) != code_key(nn.Linear(2, 2), other)


def test_a_changed_model_is_retrained_not_loaded_stale(tmp_path, capsys):
    cfg = TrainConfig(model="net", dataset="toy", epochs=1, lr=0.1, batch_size=32)
    v1 = _module_from(tmp_path, "v1", _NET)
    v2 = _module_from(tmp_path, "v2", _NET.replace("return self.lin(x)", "return -self.lin(x)"))
    cache = tmp_path / "cache"
    assert train_or_load(v1.Net, cfg, _loaders(), cache_dir=cache)[2] is False
    assert train_or_load(v1.Net, cfg, _loaders(), cache_dir=cache)[2] is True
    capsys.readouterr()
    assert train_or_load(v2.Net, cfg, _loaders(), cache_dir=cache)[2] is False  # same shapes, other code
    assert "the model's code changed since net-toy-" in capsys.readouterr().err
    assert len(list(cache.glob("net-toy-*.pt"))) == 2


@pytest.mark.parametrize("umask, mode", [(0o022, 0o644), (0o077, 0o600), (0o002, 0o664)])
def test_checkpoints_are_written_with_normal_permissions(tmp_path, umask, mode):
    old = os.umask(umask)
    try:
        train_or_load(_mlp, TrainConfig(model="mlp", dataset="toy", epochs=1, batch_size=32), _loaders(), cache_dir=tmp_path)
    finally:
        os.umask(old)
    (path,) = tmp_path.iterdir()  # no temporary file left beside it
    assert path.suffix == ".pt" and path.stat().st_mode & 0o777 == mode


def test_a_failed_save_keeps_the_trained_model_and_leaves_nothing(tmp_path, capsys, monkeypatch):
    def full(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(cache.torch, "save", full)
    model, hist, cached = train_or_load(_mlp, TrainConfig(model="mlp", dataset="toy", epochs=1, batch_size=32),
                                        _loaders(), cache_dir=tmp_path)
    assert cached is False and len(hist.train_loss) == 1
    assert "could not save the checkpoint" in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []


def test_cached_takes_any_trainer_and_history(tmp_path):
    """The checkpoint cache behind every zoo model: a model with its own trainer (say, N iterations on text) plugs in."""
    import functools
    from dataclasses import dataclass, field

    from qhelpers.course.cache import cached

    @dataclass
    class Steps:
        loss: list[float] = field(default_factory=list)

    calls = []

    def train_steps(model):
        calls.append(1)
        with torch.no_grad():
            model.weight.fill_(0.5)
        return Steps([1.0, 0.5])

    config = TrainConfig(model="tiny_lm", dataset="tiny-text", epochs=1, lr=0.1, extra=(("iters", 2),))
    build = functools.partial(nn.Linear, 2, 2)
    model, hist, hit = cached(build, config, train_steps, cache_dir=tmp_path, history_type=Steps)
    assert not hit and hist == Steps([1.0, 0.5]) and calls == [1]
    again, hist2, hit2 = cached(build, config, train_steps, cache_dir=tmp_path, history_type=Steps)
    assert hit2 and hist2 == hist and calls == [1] and torch.equal(again.weight, model.weight)
    assert [p.name.split("-")[:2] for p in tmp_path.glob("*.pt")] == [["tiny_lm", "tiny"]]
    with pytest.raises(TypeError, match="train_fn must be a function"):
        cached(build, config, None, cache_dir=tmp_path)


def test_fit_clips_the_gradient_norm_when_asked():
    """With max_grad_norm tiny the weights barely move; without, they do.

    One-cycle also cycles SGD's momentum (up to 0.95), so a step moves the weights by at most
    lr x max_grad_norm / (1 - 0.95).
    """
    def moved(max_grad_norm):
        torch.manual_seed(0)
        model = _mlp()
        before = torch.cat([p.detach().flatten().clone() for p in model.parameters()])
        data = _loaders()
        fit(model, data.train, None, epochs=1, lr=0.1, momentum=0.0, seed=0, max_grad_norm=max_grad_norm)
        return float((torch.cat([p.detach().flatten() for p in model.parameters()]) - before).norm())

    n_steps = len(_loaders().train)
    assert moved(1e-6) <= n_steps * 0.1 * 1e-6 / (1 - 0.95)
    assert moved(None) > 1e-3
    for bad, exc in ((0.0, ValueError), (-1.0, ValueError), (float("nan"), ValueError), ("1", TypeError)):
        with pytest.raises(exc, match="max_grad_norm"):
            fit(_mlp(), _loaders().train, None, epochs=1, max_grad_norm=bad)


def _split_loaders(n_train: int, n_val: int) -> Loaders:
    def part(n):
        return DataLoader(TensorDataset(torch.randn(n, 1, 4, 4), torch.zeros(n, dtype=torch.long)), batch_size=100)
    return Loaders(train=part(n_train), val=part(n_val), test=part(10), dataset="mnist")


@pytest.mark.parametrize("n_train, n_val, expected", [
    (1000, 5000, 1000), (2048, 5000, 2048), (300, 5000, 1000), (55000, 5000, 5000), (5000, 5000, 5000), (200, 800, 800),
])
def test_validation_loader_validates_on_at_most_as_many_images_as_train(n_train, n_val, expected):
    data = _split_loaders(n_train, n_val)
    val = validation_loader(data)
    assert len(val.dataset) == expected and val.batch_size == 100
    assert (val is data.val) == (expected == n_val)
    first = next(iter(val))[0]
    assert torch.equal(first, data.val.dataset.tensors[0][:100])  # the first images of the split, in order


def test_validation_loader_refuses_what_is_not_split_loaders():
    with pytest.raises(TypeError, match="must be a qhelpers.data.Loaders"):
        validation_loader([1, 2])
    with pytest.raises(ValueError, match="at_least"):
        validation_loader(_split_loaders(10, 20), at_least=0)
