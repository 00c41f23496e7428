"""Trained models the chapters share, each trained once and cached (see ``train.train_or_load``)."""

from __future__ import annotations

import json
import sys
from dataclasses import asdict

import torch
from torch import nn

from . import data as qdata
from .checks import check_int
from .models import SimpleCNN
from .record import atomic_open
from .train import History, TrainConfig, code_key, train_or_load

__all__ = ["trained_simple_cnn", "trained_gpt", "GPT_RECIPE"]


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
    15 s on 2 cores and reaches about 99 % test accuracy on MNIST. Every
    argument is checked before any data is read.
    """
    if not isinstance(dataset, str) or dataset not in qdata.DATASETS:
        raise ValueError(f"unknown dataset {dataset!r}; choose one of {sorted(qdata.DATASETS)}")
    if train_subset is not None:
        check_int("train_subset", train_subset, 1)
    config = TrainConfig(
        model="simple_cnn", dataset=dataset, epochs=epochs, lr=lr, batch_size=batch_size, subset=train_subset, seed=seed
    )
    loaders = qdata.loaders(dataset, batch_size=batch_size, subset=train_subset, seed=seed)
    model, history, cached = train_or_load(SimpleCNN, config, loaders)
    return model, loaders, history, cached  # type: ignore[return-value]


# The char-level GPT's training recipe: 800 AdamW steps of 32 windows of 64 characters (1.6 M characters seen).
GPT_RECIPE = {"iters": 800, "batch_size": 32, "lr": 3e-3, "weight_decay": 0.1, "warmup": 80}


def trained_gpt(
    *,
    iters: int = GPT_RECIPE["iters"],
    seed: int = 0,
    n_layer: int = 4,
    n_embd: int = 128,
    eval_windows: int = 256,
):
    """The nanoGPT-style character model trained on Tiny Shakespeare: (model, splits, history, loaded_from_cache).

    Trained once per configuration with :func:`qhelpers.transformer.fit_lm`
    and cached beside the other models (``<data>/checkpoints/``), named like
    ``train.train_or_load``'s checkpoints: the configuration's hash
    (:class:`~qhelpers.train.TrainConfig`, the recipe in ``extra``) and the
    model's :func:`~qhelpers.train.code_key`. The validation loss in the
    history is measured on ``eval_windows`` evenly spaced windows of the
    validation split.
    """
    from .transformer import GPT, GPTConfig, LMHistory, eval_windows as windows_of, fit_lm

    check_int("iters", iters, 1)
    check_int("eval_windows", eval_windows, 1)
    seed = check_int("seed", seed, 0, qdata.SEED_MAX)
    splits = qdata.char_splits("tinyshakespeare")
    gpt_config = GPTConfig(vocab_size=len(splits.vocab), n_layer=n_layer, n_embd=n_embd)
    recipe = {**GPT_RECIPE, "iters": iters}
    config = TrainConfig(
        model="char_gpt", dataset="tinyshakespeare", epochs=1, lr=recipe["lr"], momentum=0.0,
        weight_decay=recipe["weight_decay"], batch_size=recipe["batch_size"], val_size=len(splits.val), seed=seed,
        extra=(("optimizer", "adamw"), ("iters", iters), ("warmup", recipe["warmup"]), ("eval_windows", eval_windows),
               ("gpt", json.dumps(asdict(gpt_config), sort_keys=True))),
    )
    torch.manual_seed(seed)
    model = GPT(gpt_config)
    cache = qdata.data_dir() / "checkpoints"
    path = cache / f"{config.model}-{config.dataset}-{config.key()}-{code_key(model, GPT)}.pt"
    if path.is_file():
        try:
            ckpt = torch.load(path, map_location="cpu", weights_only=True)
            model.load_state_dict(ckpt["state_dict"])
            return model.eval(), splits, LMHistory(**ckpt["history"]), True
        except Exception as exc:  # noqa: BLE001 - any unreadable cache file is replaced
            print(f"cached checkpoint {path.name} is unreadable ({type(exc).__name__}); training again to replace it",
                  file=sys.stderr)
            torch.manual_seed(seed)
            model = GPT(gpt_config)
    val = windows_of(splits.val, gpt_config.block_size, eval_windows)
    history = fit_lm(model, splits.train, val, iters=iters, batch_size=recipe["batch_size"], lr=recipe["lr"],
                     weight_decay=recipe["weight_decay"], warmup=recipe["warmup"], eval_every=max(1, iters // 8), seed=seed)
    try:
        cache.mkdir(parents=True, exist_ok=True)
        with atomic_open(path, "wb") as fh:
            torch.save({"state_dict": model.state_dict(), "history": asdict(history),
                        "config": json.dumps(asdict(config), sort_keys=True, default=str)}, fh)
    except OSError as exc:
        print(f"could not save the checkpoint {path} ({exc.strerror or exc}); the model is trained but not cached",
              file=sys.stderr)
    return model.eval(), splits, history, False
