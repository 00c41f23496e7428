"""Trained models the chapters share, each trained once and then loaded from the checkpoint cache.

Every model here comes from one recipe, :func:`trained`: seeded loaders of a
data set, a :class:`~qhelpers.train.TrainConfig`, and
:func:`qhelpers.course.cache.cached`, which names the checkpoint by the
configuration's hash and the model's code. A model with another trainer (say,
a fixed number of iterations on text) calls :func:`qhelpers.course.cache.cached`
with its own ``train_fn`` in the same way.
"""

from __future__ import annotations

import functools
import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable

import torch
from torch import nn
from torch.utils.data import DataLoader, Subset

from .. import data as qdata
from .. import transformer
from ..checks import SEED_MAX, check_int
from ..models import MLP, SimpleCNN, load_resnet18, resnet18_mnist
from ..train import History, LMHistory, TrainConfig, fit_lm
from ..transformer import GPT, GPTConfig
from . import datasets
from .cache import cached, train_or_load

__all__ = ["trained", "trained_simple_cnn", "trained_mlp", "ResNetSetup", "resnet18_with_data", "GPT_RECIPE", "trained_gpt"]

# The MNIST ResNet's stem: 3x3 stride-1 conv, then the 3x3 stride-2 max-pool (see models.resnet18_mnist).
STEM = "small_pool"


def trained(
    name: str,
    build: Callable[[], nn.Module],
    dataset: str = "mnist",
    *,
    epochs: int,
    lr: float,
    batch_size: int = 64,
    subset: int | None = None,
    seed: int = 0,
    extra: tuple[tuple[str, object], ...] = (),
) -> tuple[nn.Module, qdata.Loaders, History, bool]:
    """``build()`` trained on ``dataset`` (cached): (model, loaders, history, loaded_from_cache).

    ``name`` names the checkpoint (``<name>-<dataset>-<config hash>-<code hash>.pt``).
    Every argument is checked before any data is read or a model is trained.
    """
    if not isinstance(dataset, str) or dataset not in qdata.DATASETS:
        raise ValueError(f"unknown dataset {dataset!r}; choose one of {sorted(qdata.DATASETS)}")
    if subset is not None:
        check_int("train_subset", subset, 1)
    config = TrainConfig(model=name, dataset=dataset, epochs=epochs, lr=lr, batch_size=batch_size, subset=subset,
                         seed=seed, extra=extra)
    loaders = datasets.loaders(dataset, batch_size=batch_size, subset=subset, seed=seed)
    model, history, cached = train_or_load(build, config, loaders)
    return model, loaders, history, cached


def trained_simple_cnn(
    dataset: str = "mnist",
    *,
    epochs: int = 3,
    lr: float = 0.05,
    train_subset: int | None = None,
    seed: int = 0,
    batch_size: int = 64,
) -> tuple[SimpleCNN, qdata.Loaders, History, bool]:
    """The article's SimpleCNN trained on ``dataset``: (model, loaders, history, loaded_from_cache).

    With the defaults (3 epochs on the 55,000 training images) it takes about
    15 s on 2 cores and reaches about 99 % test accuracy on MNIST.
    """
    return trained("simple_cnn", SimpleCNN, dataset, epochs=epochs, lr=lr, batch_size=batch_size,  # type: ignore[return-value]
                   subset=train_subset, seed=seed)


def trained_mlp(
    dataset: str = "mnist", *, epochs: int = 1, lr: float = 0.05, seed: int = 0, batch_size: int = 64
) -> tuple[MLP, qdata.Loaders, History, bool]:
    """The :class:`~qhelpers.models.MLP` trained on ``dataset``: (model, loaders, history, loaded_from_cache).

    One epoch takes about 20-40 s on 2 cores and reaches about 97 % on MNIST.
    """
    return trained("mlp_512_256", MLP, dataset, epochs=epochs, lr=lr, batch_size=batch_size, seed=seed)  # type: ignore[return-value]


@dataclass
class ResNetSetup:
    """ResNet-18 ready to quantize: the FP32 model (quantizable variant), its data, and facts about it."""

    model: nn.Module
    data: qdata.Loaders
    weights: str
    resolution: int  # input height = width
    channels: int
    history: History | None
    loaded_from_cache: bool

    def example(self, batch: int = 1) -> torch.Tensor:
        """A random input batch of the model's shape, e.g. for latency: (batch, C, H, W)."""
        check_int("batch", batch, 1)
        g = torch.Generator().manual_seed(batch)
        return torch.randn(batch, self.channels, self.resolution, self.resolution, generator=g)


def resnet18_with_data(
    weights: str = "none",
    *,
    imagenet_dir: str | Path | None = None,
    dataset: str = "mnist",
    train_subset: int | None = 24000,
    epochs: int = 1,
    lr: float = 0.05,
    batch_size: int = 64,
    calibration_images: int = 256,
    eval_limit: int | None = None,
    seed: int = 0,
) -> ResNetSetup:
    """The FP32 ResNet-18 and its loaders: pretrained on ImageNet, or trained here on ``dataset``.

    ``weights="imagenet"``: torchvision's ``IMAGENET1K_V1`` weights from its
    cache (:func:`qhelpers.models.load_resnet18`), evaluated on the ImageNet-style
    folder ``imagenet_dir`` (:func:`qhelpers.data.imagenet_loaders`); no training.
    ``weights="none"``: :func:`qhelpers.models.resnet18_mnist` trained on
    ``train_subset`` images for ``epochs`` epochs (:func:`trained`: a re-run
    loads it). Every argument is checked before weights are loaded or a model is trained.
    """
    if weights not in ("none", "imagenet"):
        raise ValueError(f"weights={weights!r}: choose 'none' (train on {dataset}) or 'imagenet'")
    if imagenet_dir is not None and imagenet_dir != "":
        qdata.check_folder_arg(imagenet_dir)
    check_int("calibration_images", calibration_images, 1)
    if eval_limit is not None:
        check_int("eval_limit", eval_limit, 1)
    if weights == "imagenet":
        if not imagenet_dir:
            raise ValueError("weights='imagenet' needs imagenet_dir: a folder in ImageFolder layout to evaluate on")
        model = load_resnet18("imagenet", quantizable=True)
        loaders = qdata.imagenet_loaders(imagenet_dir, calibration_images=calibration_images, limit=eval_limit, seed=seed)
        return ResNetSetup(model, loaders, weights, 224, 3, None, True)
    model, loaders, history, cached = trained(
        "resnet18_mnist", functools.partial(resnet18_mnist, stem=STEM), dataset, epochs=epochs, lr=lr,
        batch_size=batch_size, subset=train_subset, seed=seed, extra=(("stem", STEM),))
    if eval_limit is not None:
        test = loaders.test
        n = len(test.dataset)  # type: ignore[arg-type]
        if not 0 < eval_limit <= n:
            raise ValueError(f"eval_limit={eval_limit} must be between 1 and {n} (the test images)")
        subset = Subset(test.dataset, list(range(eval_limit)))
        loaders = qdata.Loaders(loaders.train, loaders.val, DataLoader(subset, batch_size=test.batch_size), dataset)
    return ResNetSetup(model, loaders, weights, 28, 1, history, cached)


# The char-level GPT's training recipe: 800 AdamW steps of 32 windows of 64 characters (1.6 M characters seen).
GPT_RECIPE = {"iters": 800, "batch_size": 32, "lr": 3e-3, "weight_decay": 0.1, "warmup": 80}


def trained_gpt(
    *,
    iters: int = GPT_RECIPE["iters"],
    seed: int = 0,
    n_layer: int = 4,
    n_embd: int = 128,
    eval_windows: int = 256,
) -> tuple[GPT, qdata.TextSplits, LMHistory, bool]:
    """The nanoGPT-style character model trained on Tiny Shakespeare: (model, splits, history, loaded_from_cache).

    The same recipe as the image models (:func:`qhelpers.course.cache.cached`, the
    configuration's hash and the model's code name the checkpoint) with
    :func:`qhelpers.train.fit_lm` as the trainer. The validation loss in the
    history is measured on ``eval_windows`` evenly spaced windows of the
    validation split. Every argument is checked before any data is read.
    """
    check_int("iters", iters, 1)
    check_int("seed", seed, 0, SEED_MAX)
    check_int("eval_windows", eval_windows, 1)
    check_int("n_layer", n_layer, 1)
    check_int("n_embd", n_embd, 1)
    splits = datasets.char_splits("tinyshakespeare")
    gpt_config = GPTConfig(vocab_size=len(splits.vocab), n_layer=n_layer, n_embd=n_embd)
    recipe = {**GPT_RECIPE, "iters": iters}
    config = TrainConfig(
        model="char_gpt", dataset="tinyshakespeare", epochs=1, lr=recipe["lr"], momentum=0.0,
        weight_decay=recipe["weight_decay"], batch_size=recipe["batch_size"], val_size=len(splits.val), seed=seed,
        extra=(("optimizer", "adamw"), ("iters", iters), ("warmup", recipe["warmup"]),
               ("eval_windows", eval_windows), ("gpt", json.dumps(asdict(gpt_config), sort_keys=True))),
    )
    val = transformer.eval_windows(splits.val, gpt_config.block_size, eval_windows)

    def train_fn(model: nn.Module) -> LMHistory:
        return fit_lm(model, splits.train, val, iters=iters, batch_size=recipe["batch_size"], lr=recipe["lr"],
                      weight_decay=recipe["weight_decay"], warmup=recipe["warmup"], eval_every=max(1, iters // 8),
                      seed=seed)

    model, history, was_cached = cached(functools.partial(GPT, gpt_config), config, train_fn, history_type=LMHistory)
    return model, splits, history, was_cached  # type: ignore[return-value]
