"""Training and evaluation: a seeded loop with one progress bar, and the description of a training run.

:func:`fit` trains an image classifier (SGD, one-cycle schedule), :func:`fit_lm`
a language model (AdamW, warm-up, cosine decay), :func:`evaluate` measures
accuracy and loss. :class:`TrainConfig` holds everything that determines a
trained model; the course's checkpoint cache (:mod:`qhelpers.course.cache`)
names a checkpoint by its hash.
"""

from __future__ import annotations

import hashlib
import json
import math
import numbers
import os
import re
import sys
import time
from dataclasses import asdict, dataclass, field
from typing import Iterable

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, Subset
from tqdm.std import tqdm

from .checks import SEED_MAX, check_int, check_module
from .data import Loaders, check_loaders
from .transformer import check_ids, check_vocab, lm_loss

__all__ = [
    "History", "TrainConfig", "TrainingDivergedError", "evaluate", "predict", "fit", "LMHistory", "fit_lm", "progress",
    "validation_loader",
]

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.+-]*$")  # model and data set names become part of a file name


class TrainingDivergedError(FloatingPointError):
    """The training loss became NaN or infinite; the message names the epoch and the step."""


def progress(iterable: Iterable | None = None, **kwargs) -> tqdm:
    """A text progress bar on stderr that stays readable in a log or a headless run.

    It redraws at most every 2 s, so an executed notebook keeps a handful of
    lines, not thousands.
    """
    if iterable is not None and not hasattr(iterable, "__iter__"):
        raise TypeError(f"progress(iterable) needs something to iterate over (a list, a loader) or None, "
                        f"not {type(iterable).__name__}")
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

    def __post_init__(self) -> None:
        for name in ("model", "dataset"):
            value = getattr(self, name)
            if not isinstance(value, str) or not _NAME.fullmatch(value):
                raise ValueError(f"TrainConfig {name}={value!r} must be a non-empty name of letters, digits and "
                                 "'_.+-' (it becomes part of the checkpoint's file name)")
        check_int("epochs", self.epochs, 1)
        _check_float("lr", self.lr, 0.0, None, low_open=True)
        _check_float("momentum", self.momentum, 0.0, 1.0, high_open=True)
        _check_float("weight_decay", self.weight_decay, 0.0, None)
        check_int("batch_size", self.batch_size, 1)
        if self.subset is not None:
            check_int("subset", self.subset, 1)
        check_int("val_size", self.val_size, 0)
        check_int("seed", self.seed, 0, SEED_MAX)
        if not isinstance(self.extra, tuple) or not all(
            isinstance(kv, tuple) and len(kv) == 2 and isinstance(kv[0], str) for kv in self.extra
        ):
            raise TypeError(f"TrainConfig extra={self.extra!r} must be a tuple of (name, value) pairs, "
                            "e.g. (('stem', 'cifar'),)")
        names = [k for k, _ in self.extra]
        twice = sorted({k for k in names if names.count(k) > 1})
        if twice:
            raise ValueError(f"TrainConfig extra names {twice} more than once: give each name one value")
        for k, v in self.extra:
            _check_key_value(f"TrainConfig extra {k!r}", v)

    def key(self) -> str:
        """A hash of every field: the first half of a checkpoint's name."""
        payload = json.dumps(asdict(self), sort_keys=True, default=str)
        return hashlib.sha256(payload.encode()).hexdigest()[:16]


def _check_key_value(where: str, value: object) -> None:
    """A value that hashes the same in every process: None, bool, int, finite float, str, or tuples/lists of them.

    Anything else (a function, a tensor, an object whose repr holds a memory address or is cut short) would give a
    checkpoint key that changes between runs, so the cache would never be hit, or that two values share.
    """
    if isinstance(value, (tuple, list)):
        for i, item in enumerate(value):
            _check_key_value(f"{where}[{i}]", item)
    elif isinstance(value, float) and not math.isfinite(value):
        raise ValueError(f"{where} = {value} is not finite; give a finite number")
    elif value is not None and not isinstance(value, (bool, int, float, str)):
        kind = "a function" if callable(value) else f"a {type(value).__name__}"
        raise TypeError(f"{where} is {kind}, which has no key that is the same in every run (the checkpoint cache "
                        "would never be hit); give a str, number, bool, None or a tuple of them, e.g. a version "
                        "number or the function's name")


def _check_float(name: str, value: object, low: float, high: float | None, *, low_open: bool = False,
                 high_open: bool = False) -> float:
    """``value`` as a float if it is a finite real number (not a bool) in the given range."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name}={value!r} must be a number, not {type(value).__name__}")
    value = float(value)
    too_low = value <= low if low_open else value < low
    too_high = high is not None and (value >= high if high_open else value > high)
    if not math.isfinite(value) or too_low or too_high:
        bounds = f"{'(' if low_open else '['}{low}, {'inf)' if high is None else str(high) + (')' if high_open else ']')}"
        raise ValueError(f"{name}={value} must be a finite number in {bounds}")
    return value


def _batch(batch: object, where: str) -> tuple[torch.Tensor, torch.Tensor]:
    """One ``(inputs, labels)`` batch, checked."""
    if not (isinstance(batch, (tuple, list)) and len(batch) == 2 and all(isinstance(t, torch.Tensor) for t in batch)):
        raise TypeError(f"{where} is a {type(batch).__name__}; loaders must yield (inputs, labels) pairs of tensors, "
                        "e.g. a DataLoader over a TensorDataset")
    x, y = batch
    if y.dim() != 1 or y.dtype.is_floating_point or y.dtype.is_complex or y.dtype == torch.bool:
        raise ValueError(f"{where}: labels must be a 1-D tensor of integer class indices, got {y.dtype} of shape {tuple(y.shape)}")
    return x, y


def _check_output(out: object, y: torch.Tensor, where: str) -> None:
    """The model's output must be logits of shape (batch, classes), and every label a valid class."""
    if not isinstance(out, torch.Tensor) or out.dim() != 2 or out.shape[0] != len(y):
        shape = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
        raise ValueError(f"{where}: the model returned {shape} for {len(y)} inputs; it must return logits of shape "
                         f"({len(y)}, number of classes)")
    low, high = (int(y.min()), int(y.max())) if len(y) else (0, 0)
    if low < 0 or high >= out.shape[1]:
        bad = low if low < 0 else high
        raise ValueError(f"{where}: label {bad} is not a class of this model, which outputs {out.shape[1]} classes "
                         f"(labels 0..{out.shape[1] - 1})")


@torch.inference_mode()
def predict(model: nn.Module, loader: DataLoader | Iterable) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Run ``model`` over ``loader``: (logits, predicted classes, true labels)."""
    check_module(model)
    if not hasattr(loader, "__iter__"):
        raise TypeError(f"loader must yield (inputs, labels) batches, e.g. a DataLoader; got {type(loader).__name__}")
    model.eval()
    outs, labels = [], []
    for i, batch in enumerate(loader):
        x, y = _batch(batch, f"batch {i} of the evaluation loader")
        out = model(x)
        _check_output(out, y, f"batch {i} of the evaluation loader")
        out = (out.dequantize() if out.is_quantized else out).float()
        if torch.isnan(out).any():
            raise ValueError(f"batch {i} of the evaluation loader: the model output NaN; check its weights and inputs")
        outs.append(out)
        labels.append(y.long())
    if not outs:
        raise ValueError("the evaluation loader is empty: give it a dataset with at least one example")
    logits = torch.cat(outs)
    return logits, logits.argmax(dim=1), torch.cat(labels)


def evaluate(model: nn.Module, loader: DataLoader | Iterable, num_classes: int | None = None) -> EvalResult:
    """Accuracy, loss and per-class accuracy of ``model`` on ``loader``, in inference mode.

    ``num_classes``, when given, must match the width of the model's output.
    """
    if num_classes is not None:
        check_int("num_classes", num_classes, 1)
    logits, pred, y = predict(model, loader)
    n = logits.shape[1]
    if num_classes is not None and num_classes != n:
        raise ValueError(f"num_classes={num_classes} but the model outputs {n} classes; leave num_classes=None")
    loss = float(F.cross_entropy(logits, y))
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
    max_grad_norm: float | None = None,
) -> History:
    """Train with SGD (momentum) and a one-cycle learning-rate schedule; one progress bar for all epochs.

    Every argument is checked first. ``max_grad_norm`` clips the gradients'
    global norm before each step (``torch.nn.utils.clip_grad_norm_``; None: no
    clipping). A loss that becomes NaN or infinite stops training with
    :class:`TrainingDivergedError` naming the epoch and the step (before that
    step changes the weights).
    """
    check_module(model)
    epochs = check_int("epochs", epochs, 1)
    lr = _check_float("lr", lr, 0.0, None, low_open=True)
    momentum = _check_float("momentum", momentum, 0.0, 1.0, high_open=True)
    weight_decay = _check_float("weight_decay", weight_decay, 0.0, None)
    seed = check_int("seed", seed, 0, SEED_MAX)
    if max_grad_norm is not None:
        max_grad_norm = _check_float("max_grad_norm", max_grad_norm, 0.0, None, low_open=True)
    if not isinstance(desc, str):
        raise TypeError(f"desc={desc!r} must be a string (the progress bar's label)")
    if not any(p.requires_grad for p in model.parameters()):
        raise ValueError("the model has no trainable parameters (none with requires_grad=True): there is nothing to fit")
    for name, loader in (("train_loader", train_loader), ("val_loader", val_loader)):
        if loader is None and name == "val_loader":
            continue
        if not hasattr(loader, "__len__") or not hasattr(loader, "__iter__"):
            raise TypeError(f"{name} must be a DataLoader (or another iterable with a length), not {type(loader).__name__}")
        if len(loader) == 0:
            raise ValueError(f"{name} is an empty loader (0 batches): give it at least one example"
                             + (" (with drop_last=True, at least batch_size)" if getattr(loader, "drop_last", False) else "")
                             + ("" if name == "train_loader" else ", or pass val_loader=None to skip validation"))
    torch.manual_seed(seed)
    opt = torch.optim.SGD(model.parameters(), lr=lr, momentum=momentum, weight_decay=weight_decay)
    n_batches = len(train_loader)
    steps = epochs * n_batches
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=steps, pct_start=0.15)
    hist = History()
    with progress(total=steps, desc=desc, unit="batch") as bar:
        for epoch in range(epochs):
            model.train()
            total, n = 0.0, 0
            for i, batch in enumerate(train_loader):
                where = f"epoch {epoch + 1}/{epochs}, step {i + 1}/{n_batches}"
                x, y = _batch(batch, f"training batch ({where})")
                opt.zero_grad(set_to_none=True)
                out = model(x)
                _check_output(out, y, f"training batch ({where})")
                loss = F.cross_entropy(out, y.long())
                value = loss.item()
                if not math.isfinite(value):
                    raise TrainingDivergedError(
                        f"training diverged at {where}: the loss is {value}. Lower lr (now {lr:g}) or check the "
                        "inputs for NaN/inf; the model stopped before this step and is only partly trained"
                    )
                loss.backward()
                if max_grad_norm is not None:
                    torch.nn.utils.clip_grad_norm_(model.parameters(), max_grad_norm)
                opt.step()
                sched.step()
                total += value * len(y)
                n += len(y)
                bar.update(1)
            hist.train_loss.append(total / n)
            if val_loader is not None:
                res = evaluate(model, val_loader)
                hist.val_loss.append(res.loss)
                hist.val_accuracy.append(res.accuracy)
                bar.set_postfix(epoch=epoch + 1, val_acc=f"{res.accuracy:.4f}")
    return hist




@dataclass
class LMHistory:
    """Training loss at every evaluation point, and validation loss there (nats per token)."""

    step: list[int] = field(default_factory=list)
    train_loss: list[float] = field(default_factory=list)
    val_loss: list[float] = field(default_factory=list)
    seconds: float = 0.0


def fit_lm(
    model: nn.Module,
    train_ids: torch.Tensor,
    val_windows: tuple[torch.Tensor, torch.Tensor] | None = None,
    *,
    iters: int = 1500,
    batch_size: int = 32,
    lr: float = 2e-3,
    weight_decay: float = 0.1,
    warmup: int = 100,
    eval_every: int = 250,
    seed: int = 0,
    desc: str = "training the GPT",
) -> LMHistory:
    """Train a language model on random windows of ``train_ids`` with AdamW, warm-up and cosine decay to ``lr/10``.

    The windows are drawn with a generator seeded by ``seed``, so a run is
    repeatable. The training loss shown and recorded is a running mean over
    the last ``eval_every`` steps; the validation loss is :func:`lm_loss` on
    ``val_windows`` at every ``eval_every`` steps and at the end.
    """
    check_module(model)
    config = getattr(model, "config", None)
    if not isinstance(getattr(config, "block_size", None), int) or not isinstance(getattr(config, "vocab_size", None), int):
        raise TypeError(f"model must be a language model with a .config holding block_size and vocab_size (e.g. "
                        f"qhelpers.transformer.GPT), not {type(model).__name__}")
    check_ids("train_ids", train_ids)
    for name, value in (("iters", iters), ("batch_size", batch_size), ("eval_every", eval_every)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{name}={value!r} must be a positive int")
    if not (isinstance(lr, (int, float)) and math.isfinite(lr) and lr > 0):
        raise ValueError(f"lr={lr!r} must be a positive finite number")
    _check_float("weight_decay", weight_decay, 0.0, None)
    check_int("warmup", warmup, 0)
    check_int("seed", seed, 0, SEED_MAX)
    if not isinstance(desc, str):
        raise TypeError(f"desc={desc!r} must be a string (the progress bar's label)")
    block = config.block_size
    if len(train_ids) < block + 2:
        raise ValueError(f"train_ids holds {len(train_ids)} tokens: a training window needs block_size + 2 = {block + 2} "
                         "at least; give a longer text")
    check_vocab("train_ids", train_ids, config.vocab_size)
    gen = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    decay = [p for n, p in model.named_parameters() if p.dim() >= 2]
    no_decay = [p for n, p in model.named_parameters() if p.dim() < 2]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}],
                            lr=lr, betas=(0.9, 0.99))

    def lr_at(it: int) -> float:
        if it < warmup:
            return lr * (it + 1) / warmup
        t = (it - warmup) / max(1, iters - warmup)
        return lr / 10 + 0.5 * (lr - lr / 10) * (1 + math.cos(math.pi * t))

    hist = LMHistory()
    running, n_running = 0.0, 0
    start = time.perf_counter()
    bar = progress(total=iters, desc=desc, unit="step")
    with bar:
        for it in range(iters):
            model.train()
            ix = torch.randint(len(train_ids) - block - 1, (batch_size,), generator=gen)
            x = torch.stack([train_ids[i : i + block] for i in ix.tolist()])
            y = torch.stack([train_ids[i + 1 : i + 1 + block] for i in ix.tolist()])
            for group in opt.param_groups:
                group["lr"] = lr_at(it)
            logits = model(x)
            loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), y.reshape(-1))
            value = loss.item()
            if not math.isfinite(value):
                raise TrainingDivergedError(f"training diverged at step {it + 1}: the loss is {value}; lower lr (now {lr:g})")
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()
            running += value
            n_running += 1
            bar.update(1)
            if (it + 1) % eval_every == 0 or it + 1 == iters:
                hist.step.append(it + 1)
                hist.train_loss.append(running / n_running)
                running, n_running = 0.0, 0
                if val_windows is not None:
                    hist.val_loss.append(lm_loss(model, val_windows))
                    bar.set_postfix(val_loss=f"{hist.val_loss[-1]:.3f}")
    hist.seconds = time.perf_counter() - start
    model.eval()
    return hist


def validation_loader(data: Loaders, *, at_least: int = 1000) -> DataLoader:
    """What training on ``data.train`` validates on: ``data.val``, or, when fewer images train than it holds, its first
    ``max(training images, at_least)``. The validation figure only tracks progress; a quick run on 1,000 images would
    otherwise spend five times its training time on validating 5,000. Training itself does not depend on it.
    """
    check_loaders(data)
    check_int("at_least", at_least, 1)
    n_train, n_val = len(data.train.dataset), len(data.val.dataset)  # type: ignore[arg-type]
    keep = max(n_train, at_least)
    if keep >= n_val:
        return data.val
    return DataLoader(Subset(data.val.dataset, range(keep)), batch_size=data.val.batch_size)
