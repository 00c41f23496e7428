"""The checkpoint cache: a model trained once per configuration and code, then loaded.

:func:`cached` trains a model once per configuration and stores it under
the data folder (``checkpoints/``), keyed by a hash of the full training
configuration (:class:`qhelpers.train.TrainConfig`) and of the model's
definition (:func:`code_key`); a notebook re-run with the same configuration
and model code loads it instead. :func:`train_or_load` is :func:`cached` with
:func:`qhelpers.train.fit` as the trainer. A teaching function that trains
(``qhelpers.qat.qat_lowbit``) takes ``cache=cached`` as an argument instead of
importing this module.
"""

from __future__ import annotations

import ast
import functools
import hashlib
import inspect
import json
import os
import re
import sys
import textwrap
from dataclasses import asdict
from pathlib import Path
from typing import Callable

import torch
from torch import nn

from ..checks import check_module
from ..data import Loaders, check_loaders
from ..train import History, TrainConfig, fit, validation_loader
from .datasets import data_dir
from .record import atomic_open

__all__ = ["TRAINING_VERSION", "code_key", "cached", "train_or_load"]

# Part of every checkpoint's code key: bump it when a change to ``fit`` changes the weights it produces.
TRAINING_VERSION = 1
_LIBRARIES = ("torch", "torchvision", "torchao")


def _function_code(func: Callable) -> str:
    """A function's code without comments, docstrings or layout (its syntax tree), or its bytecode if it has no source."""
    try:
        src = textwrap.dedent(inspect.getsource(func))
    except (OSError, TypeError):
        code = getattr(func, "__code__", None)
        return code.co_code.hex() + repr(code.co_names) if code else getattr(func, "__qualname__", repr(func))
    try:
        tree = ast.parse(src)
    except SyntaxError:  # e.g. a lambda cut out of a longer line
        return src
    for node in ast.walk(tree):
        body = getattr(node, "body", None)
        if isinstance(node, (ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)) and body and \
                isinstance(body[0], ast.Expr) and isinstance(getattr(body[0], "value", None), ast.Constant) and \
                isinstance(body[0].value.value, str):
            node.body = body[1:] or [ast.Pass()]
    return ast.dump(tree)


def _class_code(cls: type) -> str:
    """A class's code, method by method (exact even for a class redefined in a notebook), and its plain constants."""
    parts = [cls.__qualname__]
    for name, member in sorted(vars(cls).items()):
        member = member.fget if isinstance(member, property) else getattr(member, "__func__", member)
        if inspect.isfunction(member):
            parts.append(f"{name}: {_function_code(member)}")
        elif not name.startswith("__") and isinstance(member, (bool, int, float, str, tuple, type(None))):
            parts.append(f"{name} = {member!r}")
    return "\n".join(parts)


def code_key(model: nn.Module, build: Callable[[], nn.Module] | None = None) -> str:
    """A short hash of what defines ``model`` beyond its training configuration: a checkpoint's second half.

    It changes when the model's code changes, even if no shape does, so that a
    checkpoint trained for the old code is never loaded for the new one. It covers:

    - the module tree: each submodule's name, class, and settings (the plain
      attributes such as ``kernel_size``, ``stride``, ``bias``, ``quant_min``; not
      tensor values), and every parameter's and buffer's name, shape and dtype;
    - the code of every class in the tree and of its base classes (each method's
      source, and plain class constants), and of ``build`` (a function, class or
      ``functools.partial``): compared as syntax trees, so editing comments,
      docstrings or layout does not force retraining. Classes of torch,
      torchvision and torchao count by name and library version (a torch
      upgrade retrains: its kernels give other weights). FX graph modules add
      their generated code;
    - :data:`TRAINING_VERSION`, for changes to :func:`fit` itself.

    Code the model only *calls* (a helper function used in ``forward``) is not
    covered: after changing such code, add a version to ``TrainConfig.extra``
    (e.g. ``("version", 2)``) to retrain.
    """
    check_module(model)
    if build is not None and not callable(build):
        raise TypeError(f"build must be the function or class that builds the model (or None), not {type(build).__name__}")
    parts = [f"training {TRAINING_VERSION}"]
    classes: dict[str, type] = {}
    for name, module in model.named_modules():
        settings = {k: v for k, v in sorted(vars(module).items()) if not k.startswith("_") and k != "training" and
                    isinstance(v, (bool, int, float, str, tuple, type(None), torch.dtype, torch.qscheme))}
        parts.append(f"{name}: {type(module).__module__}.{type(module).__qualname__} {settings!r}")
        if isinstance(module, torch.fx.GraphModule):
            parts.append(module.code)
        for cls in type(module).__mro__:
            classes.setdefault(f"{cls.__module__}.{cls.__qualname__}", cls)
    for name, t in [*model.named_parameters(), *model.named_buffers()]:
        parts.append(f"{name} {tuple(t.shape)} {t.dtype}")
    for qualname, cls in sorted(classes.items()):
        top = cls.__module__.split(".")[0]
        if top == "builtins":
            continue
        if top in _LIBRARIES:
            parts.append(f"{qualname} {sys.modules[top].__version__ if top in sys.modules else '?'}")
        else:
            parts.append(_class_code(cls))
    if build is not None:
        func, args = build, ""
        if isinstance(build, functools.partial):
            func, args = build.func, f"{build.args!r} {sorted(build.keywords.items())!r}"
        parts.append(args + (_class_code(func) if inspect.isclass(func) else _function_code(func)))
    payload = re.sub(r" at 0x[0-9a-fA-F]+", "", "\n".join(parts))  # no memory addresses
    return hashlib.sha256(payload.encode()).hexdigest()[:12]


def _checkpoint_path(config: TrainConfig, cache_dir: Path | None, code: str) -> Path:
    base = cache_dir if cache_dir is not None else data_dir() / "checkpoints"
    return base / f"{config.model}-{config.dataset}-{config.key()}-{code}.pt"


def cached(
    build: Callable[[], nn.Module],
    config: TrainConfig,
    train_fn: Callable[[nn.Module], object],
    *,
    cache_dir: Path | str | None = None,
    history_type: type = History,
) -> tuple[nn.Module, object, bool]:
    """Build a model (after seeding with ``config.seed``) and load its weights from the cache, or train and cache it.

    Returns ``(model in eval mode, history, loaded_from_cache)``. ``train_fn(model)``
    trains the model in place and returns its history (a dataclass of
    ``history_type``). The cache file is named
    ``<config.model>-<config.dataset>-<config.key()>-<code_key>.pt``: by the
    configuration's hash and the model's :func:`code_key`. ``config`` may be
    any frozen dataclass with ``model``, ``dataset`` and ``seed`` fields and a
    ``key()`` method (e.g. :class:`TrainConfig`). The file is written atomically
    (with normal file permissions), so an interrupted run never leaves a broken
    one. A cache file that cannot be read (truncated, garbage, another model's
    weights) is reported in one line and replaced by training again.
    """
    if not callable(build) or isinstance(build, nn.Module):
        raise TypeError(f"build must be a function or class that returns a new model, not {type(build).__name__}"
                        + (" (pass the class or a function, not a model instance)" if isinstance(build, nn.Module) else ""))
    if not all(hasattr(config, a) for a in ("model", "dataset", "seed", "key")):
        raise TypeError(f"config must be a TrainConfig, not {type(config).__name__}")
    if not callable(train_fn):
        raise TypeError(f"train_fn must be a function that trains a model in place, not {type(train_fn).__name__}")
    if cache_dir is not None and (not isinstance(cache_dir, (str, os.PathLike)) or not str(cache_dir).strip()):
        raise TypeError(f"cache_dir={cache_dir!r} must be a folder path (str or Path) or None (an empty path would mean "
                        "the working directory)")
    if not isinstance(history_type, type):
        raise TypeError(f"history_type must be the history's dataclass (e.g. History), not {type(history_type).__name__}")
    cache = Path(cache_dir) if cache_dir is not None else data_dir() / "checkpoints"
    try:
        cache.mkdir(parents=True, exist_ok=True)  # before training, so a bad folder does not cost a training run
    except OSError as exc:
        raise ValueError(f"cannot use {cache} as the checkpoint folder ({exc.strerror or exc}); pass cache_dir= a "
                         "writable folder, or set QHELPERS_DATA") from exc

    def fresh() -> nn.Module:
        torch.manual_seed(config.seed)
        model = build()
        if not isinstance(model, nn.Module):
            raise TypeError(f"build() returned {type(model).__name__}, not a torch.nn.Module; it must return a new model")
        return model

    model = fresh()
    path = _checkpoint_path(config, cache, code_key(model, build))
    if path.is_file():
        try:
            ckpt = torch.load(path, map_location="cpu", weights_only=True)
            model.load_state_dict(ckpt["state_dict"])
            return model.eval(), history_type(**ckpt["history"]), True
        except Exception as exc:  # noqa: BLE001 - any unreadable cache file is replaced
            print(f"cached checkpoint {path} is unreadable ({type(exc).__name__}); training again to replace it",
                  file=sys.stderr)
            model = fresh()  # a failed load may have changed some weights
    else:
        stale = sorted(cache.glob(f"{config.model}-{config.dataset}-{config.key()}-*.pt"))
        if stale:
            print(f"the model's code changed since {stale[-1].name} was trained: training again", file=sys.stderr)
    hist = train_fn(model)
    try:
        with atomic_open(path, "wb") as fh:
            torch.save({"state_dict": model.state_dict(), "history": asdict(hist),
                        "config": json.dumps(asdict(config), sort_keys=True, default=str)}, fh)
    except OSError as exc:
        print(f"could not save the checkpoint {path} ({exc.strerror or exc}); the model is trained but not cached",
              file=sys.stderr)
    return model.eval(), hist, False


def train_or_load(
    build: Callable[[], nn.Module],
    config: TrainConfig,
    data: Loaders,
    *,
    cache_dir: Path | str | None = None,
) -> tuple[nn.Module, History, bool]:
    """:func:`cached` with :func:`fit` as the trainer: SGD on ``data.train`` as ``config`` says, validated on
    :func:`validation_loader` (``data.val``, or its first images for a small training subset).

    Returns ``(model in eval mode, history, loaded_from_cache)``. ``data`` must
    be the loaders ``config`` describes (data set, batch size, subset size).
    """
    if not callable(build) or isinstance(build, nn.Module):
        raise TypeError(f"build must be a function or class that returns a new model, not {type(build).__name__}"
                        + (" (pass the class or a function, not a model instance)" if isinstance(build, nn.Module) else ""))
    if not isinstance(config, TrainConfig):
        raise TypeError(f"config must be a TrainConfig, not {type(config).__name__}")
    check_loaders(data)
    if data.dataset != config.dataset:
        raise ValueError(f"config is for {config.dataset!r} but the loaders hold {data.dataset!r}")
    if data.train.batch_size != config.batch_size:
        raise ValueError(f"config.batch_size={config.batch_size} but the training loader uses {data.train.batch_size}")
    n_train = len(data.train.dataset)  # type: ignore[arg-type]
    if config.subset is not None and n_train != config.subset:
        raise ValueError(f"config.subset={config.subset} but the training loader holds {n_train} images")

    def train_fn(model: nn.Module) -> History:
        return fit(model, data.train, validation_loader(data), epochs=config.epochs, lr=config.lr, momentum=config.momentum,
                   weight_decay=config.weight_decay, seed=config.seed, desc=f"training {config.model} on {config.dataset}")

    return cached(build, config, train_fn, cache_dir=cache_dir)  # type: ignore[return-value]
