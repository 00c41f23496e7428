"""Where chapter 5's ResNet-18 and its data come from: ImageNet weights and an ImageFolder, or MNIST.

``weights="imagenet"``: torchvision's ``ResNet18_Weights.IMAGENET1K_V1``, read
from torchvision's cache ``$TORCH_HOME/hub/checkpoints/resnet18-f37072fd.pth``
(torchvision downloads it there when online), evaluated on an ImageNet-style
folder (``ImageFolder`` layout: one sub-folder of images per class) with the
weights' own preprocessing (resize 256, center crop 224, ImageNet mean/std).

``weights="none"``: no pretrained weights can be fetched (offline, CI), so
the chapter trains torchvision's ResNet-18 with a small-image stem on MNIST
(see :func:`qhelpers.models.resnet18_mnist`), once, cached by
:func:`qhelpers.train.train_or_load`.

:func:`resnet18_with_data` is the one entry point the notebook calls.

Arguments are checked before any weights, images or training are touched:
counts must be positive ints, flags bools, folders paths; class folders must
map to ImageNet classes unambiguously. A missing folder or checkpoint raises
``FileNotFoundError`` (:class:`WeightsUnavailableError`) saying where to put it.
"""

from __future__ import annotations

import copy
import functools
import numbers
import os
import re
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlparse

import torch
from torch import nn
from torch.utils.data import DataLoader, Subset
from torchvision import models as tv_models

from . import data as qdata
from .models import resnet18_imagenet, resnet18_mnist
from .train import History, TrainConfig, train_or_load
from .checks import check_int

__all__ = [
    "WEIGHTS",
    "WeightsUnavailableError",
    "checkpoint_path",
    "load_resnet18",
    "preprocess",
    "class_indices",
    "image_folder",
    "imagenet_loaders",
    "plain_resnet",
    "ResNetSetup",
    "resnet18_with_data",
]

WEIGHTS = tv_models.ResNet18_Weights.IMAGENET1K_V1
CATEGORIES: list[str] = list(WEIGHTS.meta["categories"])
# The MNIST model's stem: 3x3 stride-1 conv, then the 3x3 stride-2 max-pool (see models.resnet18_mnist).
STEM = "small_pool"
SEED_MAX = 2**32 - 1
_SYNSET = re.compile(r"^n\d{8}$")  # WordNet ids, the ImageNet folder names: n01440764 ...


# --- argument checks ------------------------------------------------------------------------------


def _check_flag(name: str, value: object) -> bool:
    if not isinstance(value, bool):
        raise TypeError(f"{name}={value!r} must be True or False, not {type(value).__name__}")
    return value


def _check_folder_arg(root: object) -> Path:
    if not isinstance(root, (str, os.PathLike)) or str(root) == "":
        raise TypeError(f"imagenet_dir={root!r} must be a folder path (str or Path) in ImageFolder layout")
    return Path(root).expanduser()


class WeightsUnavailableError(FileNotFoundError):
    """The pretrained checkpoint is not in torchvision's cache and may not be downloaded."""


def checkpoint_path() -> Path:
    """Where torchvision keeps the IMAGENET1K_V1 checkpoint: ``$TORCH_HOME/hub/checkpoints/resnet18-f37072fd.pth``."""
    return Path(torch.hub.get_dir()) / "checkpoints" / Path(urlparse(WEIGHTS.url).path).name


def load_resnet18(weights: str = "imagenet", *, quantizable: bool = True, allow_download: bool = False) -> nn.Module:
    """ResNet-18 with ImageNet weights (``"imagenet"``) or random ones (``"none"``), in eval mode.

    Without ``allow_download`` the checkpoint must already be in torchvision's
    cache (:func:`checkpoint_path`); otherwise a :class:`WeightsUnavailableError`
    says where to put it, instead of a network error deep inside torch.hub.
    ``quantizable=True`` gives torchvision's ``QuantizableResNet`` (stubs,
    ``fuse_model``) for eager mode; ``False`` the plain ``ResNet`` (for FX, PT2E).
    """
    if weights not in ("none", "imagenet"):
        raise ValueError(f"weights={weights!r}: choose 'none' (random init) or 'imagenet'")
    _check_flag("quantizable", quantizable)
    _check_flag("allow_download", allow_download)
    path = checkpoint_path()
    if weights == "imagenet" and not allow_download and not path.is_file():
        raise WeightsUnavailableError(
            f"ResNet-18 ImageNet weights not found at {path}. Copy {WEIGHTS.url} there (or set TORCH_HOME to a "
            "folder whose hub/checkpoints/ holds it), or run with weights='none' to train ResNet-18 on MNIST instead."
        )
    return resnet18_imagenet(weights, quantizable=quantizable).eval()  # type: ignore[arg-type]


def preprocess():
    """The preprocessing the weights were trained with: resize 256, center-crop 224, ImageNet normalization."""
    return WEIGHTS.transforms()


def class_indices(class_names: list[str]) -> list[int]:
    """ImageNet class index (0-999) of each ``ImageFolder`` class folder, in the folder's (sorted) order.

    Three layouts are understood:

    - all 1000 classes (e.g. synset folders ``n01440764`` ... of the ImageNet
      validation set): the sorted order *is* ImageNet's class order;
    - folders named by index, ``"0"`` ... ``"999"`` (any subset);
    - folders named by the weights' category names, ``"tench"``, ``"goldfish"`` ... (any subset).

    Index and category names are looked up whatever their number, so 1000
    folders ``"0"`` ... ``"999"`` (sorted as strings: ``"0", "1", "10", "100"``
    ...) get their own indices, not their position.
    """
    if isinstance(class_names, str) or not isinstance(class_names, (list, tuple)) or not all(
        isinstance(name, str) for name in class_names
    ):
        raise TypeError(f"class_names must be a list of folder names (strings), e.g. ImageFolder(...).classes, "
                        f"not {type(class_names).__name__} {class_names!r}"[:200])
    if not class_names:
        raise ValueError("no class folders: an ImageFolder needs one sub-folder of images per class")
    if len(set(class_names)) != len(class_names):
        twice = sorted({name for name in class_names if class_names.count(name) > 1})
        raise ValueError(f"class folders {twice[:5]} appear more than once: each class needs one folder")
    if len(class_names) == len(CATEGORIES) and all(_SYNSET.match(name) for name in class_names):
        return list(range(len(CATEGORIES)))
    if all(name.isdigit() for name in class_names):
        idx = [int(name) for name in class_names]
        bad = [name for name, i in zip(class_names, idx) if i >= len(CATEGORIES)]
        if bad:
            raise ValueError(f"class folders {bad} are not ImageNet indices (0-{len(CATEGORIES) - 1})")
        return idx
    lookup = {name: i for i, name in enumerate(CATEGORIES)}
    unknown = [name for name in class_names if name not in lookup]
    if unknown:
        raise ValueError(
            f"cannot map class folders {unknown[:5]}{' ...' if len(unknown) > 5 else ''} to ImageNet classes: "
            "name the folders by ImageNet index "
            "('0'-'999'), by category name (e.g. 'tench', 'goldfish': torchvision's ResNet18_Weights.meta"
            "['categories']), or give all 1000 synset folders (n01440764, ...)"
        )
    return [lookup[name] for name in class_names]


def image_folder(root: Path | str):
    """``torchvision.datasets.ImageFolder`` of ``root`` with the weights' preprocessing and ImageNet labels."""
    from torchvision.datasets import ImageFolder

    root = _check_folder_arg(root)
    if root.exists() and not root.is_dir():
        raise ValueError(f"imagenet_dir={str(root)!r} is a file, not a folder: give the folder that holds one "
                         "sub-folder of images per class (root/<class>/<image>.jpg)")
    if not root.is_dir():
        raise FileNotFoundError(
            f"imagenet_dir={str(root)!r} is not a folder: give an ImageFolder layout (root/<class>/<image>.jpg), "
            "e.g. the ImageNet validation set sorted into class folders"
        )
    try:
        folder = ImageFolder(str(root), transform=preprocess())
    except FileNotFoundError as exc:  # no class folders, or a class folder without images
        raise ValueError(f"{root} is not a usable ImageFolder: {exc}") from None
    to_imagenet = class_indices(folder.classes)
    folder.target_transform = to_imagenet.__getitem__
    return folder


def imagenet_loaders(
    root: Path | str,
    *,
    calibration_images: int = 256,
    batch_size: int = 32,
    limit: int | None = None,
    seed: int = 0,
) -> qdata.Loaders:
    """Loaders over an ImageNet-style folder: a seeded split into calibration and evaluation images.

    ``train`` (and ``val``) hold the ``calibration_images`` used to calibrate
    the observers, ``test`` the rest (at most ``limit`` images). No image is
    used for both. ``dataset`` is ``"imagenet"``.
    """
    check_int("calibration_images", calibration_images, 1)
    check_int("batch_size", batch_size, 1)
    if limit is not None:
        check_int("limit", limit, 1)
    check_int("seed", seed, 0, SEED_MAX)
    folder = image_folder(root)
    n = len(folder)
    if not 0 < calibration_images < n:
        raise ValueError(
            f"calibration_images={calibration_images} must leave images to evaluate on: the folder holds {n}"
        )
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(seed)).tolist()
    calib, rest = perm[:calibration_images], perm[calibration_images:]
    if limit is not None:
        rest = rest[:limit]
    cal_loader = DataLoader(Subset(folder, calib), batch_size=batch_size)
    return qdata.Loaders(
        train=cal_loader,
        val=cal_loader,
        test=DataLoader(Subset(folder, sorted(rest)), batch_size=batch_size),
        dataset="imagenet",
    )


def plain_resnet(model: nn.Module) -> nn.Module:
    """A plain torchvision ``ResNet`` computing the same function as a ``QuantizableResNet`` (same weights).

    FX and PT2E trace the model themselves and need neither stubs nor
    ``FloatFunctional``; they get this twin. The stem (``conv1``, ``maxpool``)
    and the classifier size are copied, so it works for the MNIST variant too.
    """
    from .flows import check_float_model

    check_float_model(model)
    if not all(isinstance(getattr(model, name, None), kind) for name, kind in
               (("conv1", nn.Conv2d), ("maxpool", nn.Module), ("fc", nn.Linear))):
        raise TypeError(f"plain_resnet needs a torchvision ResNet-18 (e.g. from load_resnet18 or resnet18_mnist), "
                        f"not a {type(model).__name__}")
    plain = tv_models.resnet18(weights=None, num_classes=model.fc.out_features)
    plain.conv1 = copy.deepcopy(model.conv1)
    plain.maxpool = copy.deepcopy(model.maxpool)
    try:
        plain.load_state_dict(model.state_dict())
    except RuntimeError as exc:
        lines = str(exc).strip().splitlines()
        raise ValueError(f"the {type(model).__name__}'s weights do not fit a ResNet-18 "
                         f"({(lines[1] if len(lines) > 1 else lines[0]).strip()[:200]}): pass a ResNet-18") from None
    return plain.eval()


@dataclass
class ResNetSetup:
    """Chapter 5's starting point: the FP32 model (quantizable variant), its data, and facts about it."""

    model: nn.Module
    data: qdata.Loaders
    weights: str
    resolution: int  # input height = width
    channels: int
    history: History | None
    loaded_from_cache: bool

    def calibration(self, num_batches: int, batch_size: int = 128, seed: int = 0) -> list[torch.Tensor]:
        """``num_batches`` seeded random batches of calibration images (training split, or ImageNet's calibration split).

        Drawn with their own generator, so the same call gives the same
        batches however often the training loader has been iterated before.
        """
        if isinstance(num_batches, bool) or not isinstance(num_batches, numbers.Integral):
            raise TypeError(f"num_batches={num_batches!r} must be an int, not {type(num_batches).__name__}")
        if num_batches < 1:
            raise ValueError(f"num_batches={num_batches}: calibration needs at least one batch")
        check_int("batch_size", batch_size, 1)
        check_int("seed", seed, 0, SEED_MAX)
        g = torch.Generator().manual_seed(seed)
        loader = DataLoader(self.data.train.dataset, batch_size=batch_size, shuffle=True, generator=g)
        return qdata.calibration_loader(loader, num_batches)

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

    ``weights="imagenet"`` needs ``imagenet_dir`` and the cached checkpoint
    (no training). ``weights="none"`` trains :func:`models.resnet18_mnist` on
    ``train_subset`` images for ``epochs`` epochs (cached: a re-run loads it).
    Every argument is checked before weights are loaded or a model is trained.
    """
    if weights not in ("none", "imagenet"):
        raise ValueError(f"weights={weights!r}: choose 'none' (train on {dataset}) or 'imagenet'")
    if imagenet_dir is not None and imagenet_dir != "":
        _check_folder_arg(imagenet_dir)
    check_int("calibration_images", calibration_images, 1)
    if eval_limit is not None:
        check_int("eval_limit", eval_limit, 1)
    if weights == "imagenet":
        if not imagenet_dir:
            raise ValueError("weights='imagenet' needs imagenet_dir: a folder in ImageFolder layout to evaluate on")
        model = load_resnet18("imagenet", quantizable=True)
        loaders = imagenet_loaders(imagenet_dir, calibration_images=calibration_images, limit=eval_limit, seed=seed)
        return ResNetSetup(model, loaders, weights, 224, 3, None, True)
    if weights != "none":
        raise ValueError(f"weights={weights!r}: choose 'none' (train on {dataset}) or 'imagenet'")
    loaders = qdata.loaders(dataset, batch_size=batch_size, subset=train_subset, seed=seed)
    config = TrainConfig(
        model="resnet18_mnist",
        dataset=dataset,
        epochs=epochs,
        lr=lr,
        batch_size=batch_size,
        subset=train_subset,
        seed=seed,
        extra=(("stem", STEM),),
    )
    model, history, cached = train_or_load(functools.partial(resnet18_mnist, stem=STEM), config, loaders)
    if eval_limit is not None:
        test = loaders.test
        n = len(test.dataset)  # type: ignore[arg-type]
        if not 0 < eval_limit <= n:
            raise ValueError(f"eval_limit={eval_limit} must be between 1 and {n} (the test images)")
        subset = Subset(test.dataset, list(range(eval_limit)))
        loaders = qdata.Loaders(loaders.train, loaders.val, DataLoader(subset, batch_size=test.batch_size), dataset)
    return ResNetSetup(model, loaders, weights, 28, 1, history, cached)
