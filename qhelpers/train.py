"""Training and evaluation: a seeded loop with one progress bar, and a checkpoint cache.

``train_or_load`` trains a model once per configuration and stores it under
the data folder (``checkpoints/``), keyed by a hash of the full training
configuration; a notebook re-run with the same configuration loads it instead.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable, Iterable

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader
from tqdm.std import tqdm

from .data import Loaders, data_dir

__all__ = ["EvalResult", "History", "TrainConfig", "evaluate", "predict", "fit", "train_or_load", "progress"]


def progress(iterable: Iterable | None = None, **kwargs) -> tqdm:
    """A text progress bar on stderr that stays readable in a log or a headless run.

    It redraws at most every 2 s, so an executed notebook keeps a handful of
    lines, not thousands.
    """
    kwargs.setdefault("file", sys.stderr)
    kwargs.setdefault("mininterval", 2.0)
    kwargs.setdefault("ncols", 100)
    kwargs.setdefault("disable", os.environ.get("QHELPERS_PROGRESS", "1") == "0")
    return tqdm(iterable, **kwargs)


@dataclass(frozen=True)
class EvalResult:
    """Accuracy (fraction in [0, 1]), mean cross-entropy loss, per-class accuracy, the predictions."""

    accuracy: float
    loss: float
    per_class_accuracy: list[float]
    predictions: torch.Tensor = field(repr=False)

    def __str__(self) -> str:
        return f"accuracy {self.accuracy:.2%}, loss {self.loss:.4f}"


@dataclass
class History:
    """Per-epoch training loss, validation loss and validation accuracy."""

    train_loss: list[float] = field(default_factory=list)
    val_loss: list[float] = field(default_factory=list)
    val_accuracy: list[float] = field(default_factory=list)


@dataclass(frozen=True)
class TrainConfig:
    """Everything that determines a trained model; its hash names the cached checkpoint."""

    model: str
    dataset: str
    epochs: int = 3
    lr: float = 0.01
    momentum: float = 0.9
    weight_decay: float = 0.0
    batch_size: int = 64
    subset: int | None = None
    val_size: int = 5000
    seed: int = 0
    extra: tuple[tuple[str, object], ...] = ()

    def key(self) -> str:
        payload = json.dumps(asdict(self), sort_keys=True, default=str)
        return hashlib.sha256(payload.encode()).hexdigest()[:16]


@torch.inference_mode()
def predict(model: nn.Module, loader: DataLoader | Iterable) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Run ``model`` over ``loader``: (logits, predicted classes, true labels)."""
    model.eval()
    outs, labels = [], []
    for x, y in loader:
        outs.append(model(x).float())
        labels.append(y)
    logits = torch.cat(outs)
    return logits, logits.argmax(dim=1), torch.cat(labels)


def evaluate(model: nn.Module, loader: DataLoader | Iterable, num_classes: int | None = None) -> EvalResult:
    """Accuracy, loss and per-class accuracy of ``model`` on ``loader``, in inference mode."""
    logits, pred, y = predict(model, loader)
    if len(y) == 0:
        raise ValueError("the evaluation loader is empty")
    loss = float(F.cross_entropy(logits, y))
    n = num_classes or logits.shape[1]
    per_class = []
    for c in range(n):
        mask = y == c
        per_class.append(float((pred[mask] == c).float().mean()) if mask.any() else float("nan"))
    return EvalResult(float((pred == y).float().mean()), loss, per_class, pred)


def fit(
    model: nn.Module,
    train_loader: DataLoader,
    val_loader: DataLoader | None = None,
    *,
    epochs: int = 3,
    lr: float = 0.01,
    momentum: float = 0.9,
    weight_decay: float = 0.0,
    seed: int = 0,
    desc: str = "training",
) -> History:
    """Train with SGD (momentum) and a cosine learning-rate schedule; one progress bar for all epochs."""
    if epochs < 1:
        raise ValueError(f"epochs={epochs} must be at least 1")
    torch.manual_seed(seed)
    opt = torch.optim.SGD(model.parameters(), lr=lr, momentum=momentum, weight_decay=weight_decay)
    steps = epochs * len(train_loader)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=steps, pct_start=0.15)
    hist = History()
    with progress(total=steps, desc=desc, unit="batch") as bar:
        for epoch in range(epochs):
            model.train()
            total, n = 0.0, 0
            for x, y in train_loader:
                opt.zero_grad(set_to_none=True)
                loss = F.cross_entropy(model(x), y)
                loss.backward()
                opt.step()
                sched.step()
                total += loss.item() * len(y)
                n += len(y)
                bar.update(1)
            hist.train_loss.append(total / n)
            if val_loader is not None:
                res = evaluate(model, val_loader)
                hist.val_loss.append(res.loss)
                hist.val_accuracy.append(res.accuracy)
                bar.set_postfix(epoch=epoch + 1, val_acc=f"{res.accuracy:.4f}")
    return hist


def _checkpoint_path(config: TrainConfig, cache_dir: Path | None) -> Path:
    base = cache_dir if cache_dir is not None else data_dir() / "checkpoints"
    return base / f"{config.model}-{config.dataset}-{config.key()}.pt"


def train_or_load(
    build: Callable[[], nn.Module],
    config: TrainConfig,
    data: Loaders,
    *,
    cache_dir: Path | None = None,
) -> tuple[nn.Module, History, bool]:
    """Build a model (after seeding) and train it, or load it from the cache.

    Returns ``(model in eval mode, history, loaded_from_cache)``. The cache file
    is written atomically, so an interrupted run never leaves a broken one.
    """
    if data.dataset != config.dataset:
        raise ValueError(f"config is for {config.dataset!r} but the loaders hold {data.dataset!r}")
    if data.train.batch_size != config.batch_size:
        raise ValueError(f"config.batch_size={config.batch_size} but the training loader uses {data.train.batch_size}")
    n_train = len(data.train.dataset)  # type: ignore[arg-type]
    if config.subset is not None and n_train != config.subset:
        raise ValueError(f"config.subset={config.subset} but the training loader holds {n_train} images")
    torch.manual_seed(config.seed)
    model = build()
    path = _checkpoint_path(config, cache_dir)
    if path.is_file():
        ckpt = torch.load(path, map_location="cpu", weights_only=False)
        model.load_state_dict(ckpt["state_dict"])
        return model.eval(), History(**ckpt["history"]), True
    hist = fit(
        model,
        data.train,
        data.val,
        epochs=config.epochs,
        lr=config.lr,
        momentum=config.momentum,
        weight_decay=config.weight_decay,
        seed=config.seed,
        desc=f"training {config.model} on {config.dataset}",
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile(dir=path.parent, suffix=".tmp", delete=False) as tmp:
        torch.save({"state_dict": model.state_dict(), "history": asdict(hist), "config": asdict(config)}, tmp)
    os.replace(tmp.name, path)
    return model.eval(), hist, False
