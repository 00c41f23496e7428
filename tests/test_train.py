"""qhelpers.train: evaluation, a deterministic training loop, the checkpoint cache."""

from __future__ import annotations

import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from qhelpers.data import Loaders
from qhelpers.train import TrainConfig, evaluate, fit, train_or_load


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
