"""The data, as the chapters use it: seeded splits and loaders, calibration batches, characters, ImageNet folders.

:func:`split` and :class:`Loaders` make the seeded train/validation/test
loaders of an experiment (the course's MNIST and Fashion-MNIST files are read
by :func:`qhelpers.course.datasets.loaders`); :func:`calibration_batches` the
seeded batches of training images that calibrate a model's observers;
:class:`CharVocab` and :func:`char_splits` a character-level vocabulary and
nanoGPT's contiguous train/validation split of a text; :func:`imagenet_loaders`
the same shape of thing over an ImageNet-style folder.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

import torch
from torch.utils.data import DataLoader, Dataset, Subset
from torchvision import datasets
from torchvision import models as tv_models

from .checks import SEED_MAX, check_flag, check_int, describe

__all__ = [
    "DATASETS",
    "split",
    "Loaders",
    "check_loaders",
    "CharVocab",
    "TextSplits",
    "check_val_fraction",
    "char_splits",
    "calibration_batches",
    "imagenet_loaders",
    "image_folder",
    "class_indices",
    "preprocess",
]

DATASETS: dict[str, type[datasets.MNIST]] = {
    "mnist": datasets.MNIST,
    "fashion-mnist": datasets.FashionMNIST,
}
# Mean and standard deviation of the training images (the usual published values).
NORMALIZATION: dict[str, tuple[float, float]] = {
    "mnist": (0.1307, 0.3081),
    "fashion-mnist": (0.2860, 0.3530),
}
# ImageNet: the categories of torchvision's ResNet-18 weights, and its class-folder names (WordNet ids).
_IMAGENET_WEIGHTS = tv_models.ResNet18_Weights.IMAGENET1K_V1
CATEGORIES: list[str] = list(_IMAGENET_WEIGHTS.meta["categories"])
_SYNSET = re.compile(r"^n\d{8}$")


def _check_seed(seed: object) -> int:
    return check_int("seed", seed, 0, SEED_MAX)


def _check_dataset(dataset: object) -> None:
    """A Dataset with a length (a str or bytes has one too, but holds characters, not examples)."""
    if isinstance(dataset, (str, bytes)) or not hasattr(dataset, "__len__") or not hasattr(dataset, "__getitem__"):
        raise TypeError(f"dataset must be a Dataset with a length (e.g. a TensorDataset), not {describe(dataset)}")


def split(dataset: Dataset, val_size: int, seed: int) -> tuple[Subset, Subset]:
    """A seeded, reproducible (train, validation) split: the same seed gives the same indices."""
    _check_dataset(dataset)
    n = len(dataset)  # type: ignore[arg-type]
    if n == 0:
        raise ValueError("the dataset is empty: there is nothing to split")
    val_size = check_int("val_size", val_size, 0, n - 1)
    seed = _check_seed(seed)
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(seed)).tolist()
    return Subset(dataset, perm[val_size:]), Subset(dataset, perm[:val_size])


@dataclass(frozen=True)
class Loaders:
    """The three DataLoaders of an experiment, and the name of the data set."""

    train: DataLoader
    val: DataLoader
    test: DataLoader
    dataset: str


def check_loaders(data: object) -> Loaders:
    """``data`` if it is a :class:`Loaders`; otherwise a TypeError saying what to pass."""
    if not isinstance(data, Loaders):
        raise TypeError(f"data must be a qhelpers.data.Loaders (e.g. qhelpers.course.datasets.loaders('mnist')), not {type(data).__name__}")
    return data


def shuffled(dataset: Dataset, batch_size: int, seed: int) -> DataLoader:
    """A loader over ``dataset`` that shuffles with its own generator seeded by ``seed``.

    The batches depend on the seed alone, not on how often another loader
    over the same images has been iterated before (e.g. whether a model was
    trained now or loaded from the cache).
    """
    _check_dataset(dataset)
    check_int("batch_size", batch_size, 1)
    _check_seed(seed)
    return DataLoader(dataset, batch_size=batch_size, shuffle=True, generator=torch.Generator().manual_seed(seed))


def calibration_batches(
    data: Loaders | Dataset, num_batches: int, *, batch_size: int | None = None, seed: int = 0, allow_fewer: bool = False
) -> list[torch.Tensor]:
    """``num_batches`` batches of training images, shuffled with ``seed``: what calibrates the observers.

    ``data`` is a :class:`Loaders` (its training images, in batches of its
    training batch size unless ``batch_size`` is given; for an ImageNet folder
    these are the images set aside for calibration) or a ``Dataset`` of
    ``(image, label)`` pairs (then ``batch_size`` defaults to 64). The same
    seed gives the same batches (see :func:`shuffled`). Asking for more images
    than the data set holds is a ``ValueError`` saying how many it holds, unless
    ``allow_fewer=True``: then every batch it has is returned (check ``len()``).
    """
    if isinstance(data, Loaders):
        dataset, default = data.train.dataset, data.train.batch_size
    elif isinstance(data, Dataset) and hasattr(data, "__len__"):
        dataset, default = data, 64
    else:
        raise TypeError(f"data must be a qhelpers.data.Loaders (e.g. qhelpers.course.datasets.loaders('mnist')) or a Dataset, "
                        f"not {describe(data)}")
    check_int("num_batches", num_batches, 1)
    _check_seed(seed)
    check_flag("allow_fewer", allow_fewer, " (True: return fewer batches when the data set is too small)")
    if batch_size is not None:
        check_int("batch_size", batch_size, 1)
    if len(dataset) == 0:  # type: ignore[arg-type]
        raise ValueError("the data set is empty: give it at least one image to calibrate on")
    size = batch_size or default or 64
    available = -(-len(dataset) // size)  # type: ignore[arg-type]  # the last batch may be smaller
    if num_batches > available and not allow_fewer:
        raise ValueError(f"num_batches={num_batches} batches of {size} images asks for {num_batches * size} images, but the "
                         f"data set holds {len(dataset)}: {available} batch(es) at most; ask for fewer or smaller "  # type: ignore[arg-type]
                         "batches, give more images, or pass allow_fewer=True to take what there is")
    batches = []
    for i, batch in enumerate(shuffled(dataset, size, seed)):
        images = batch[0] if isinstance(batch, (tuple, list)) else batch
        if not isinstance(images, torch.Tensor):
            raise TypeError(f"batch {i} holds a {type(images).__name__}; the data set must hold (image, label) pairs "
                            "of tensors, e.g. a TensorDataset")
        batches.append(images)
        if len(batches) == num_batches:
            break
    return batches


@dataclass(frozen=True)
class CharVocab:
    """A character-level vocabulary: token ``i`` is the character ``chars[i]`` (sorted, as nanoGPT's)."""

    chars: str

    def __post_init__(self) -> None:
        if not isinstance(self.chars, str) or not self.chars or len(set(self.chars)) != len(self.chars):
            raise ValueError("chars must be a non-empty string of distinct characters")

    @classmethod
    def from_text(cls, text: str) -> CharVocab:
        """The sorted set of the characters of ``text``."""
        if not isinstance(text, str) or not text:
            raise ValueError("text must be a non-empty string")
        return cls("".join(sorted(set(text))))

    def __len__(self) -> int:
        return len(self.chars)

    def encode(self, text: str) -> torch.Tensor:
        """``text`` as a 1-D int64 tensor of token ids; a character outside the vocabulary is a ValueError."""
        if not isinstance(text, str):
            raise TypeError(f"text must be a str, not {describe(text)}")
        index = {c: i for i, c in enumerate(self.chars)}
        try:
            return torch.tensor([index[c] for c in text], dtype=torch.long)
        except KeyError as exc:
            raise ValueError(f"character {exc.args[0]!r} is not in the vocabulary of {len(self)} characters") from None

    def decode(self, ids: torch.Tensor | list[int]) -> str:
        """The text of token ids (a tensor or a list)."""
        if isinstance(ids, torch.Tensor):
            if ids.dim() != 1 or ids.is_floating_point() or ids.is_complex() or ids.dtype == torch.bool:
                raise TypeError(f"ids must be a 1-D integer tensor or a list of ints, not {describe(ids)}")
            values = ids.tolist()
        elif isinstance(ids, (list, tuple)):
            values = list(ids)
            bad = [i for i in values if isinstance(i, bool) or not isinstance(i, int)]
            if bad:
                raise TypeError(f"ids must hold ints (token ids), but {bad[0]!r} is a {type(bad[0]).__name__}")
        else:
            raise TypeError(f"ids must be a 1-D integer tensor or a list of ints, not {describe(ids)}")
        if any(not 0 <= i < len(self.chars) for i in values):
            raise ValueError(f"token ids must lie in 0..{len(self.chars) - 1}")
        return "".join(self.chars[i] for i in values)


@dataclass(frozen=True)
class TextSplits:
    """A character data set ready for a language model: its vocabulary and the token ids of each split."""

    vocab: CharVocab
    train: torch.Tensor
    val: torch.Tensor
    name: str


def check_val_fraction(val_fraction: object) -> float:
    """``val_fraction`` if it is a number strictly between 0 and 1 (the share of a text that validates)."""
    if isinstance(val_fraction, bool) or not isinstance(val_fraction, (int, float)) or not 0 < val_fraction < 1:
        raise ValueError(f"val_fraction={val_fraction!r} must be a number strictly between 0 and 1")
    return val_fraction


def char_splits(text: str, val_fraction: float = 0.1, *, name: str = "text") -> TextSplits:
    """nanoGPT's split of ``text``: the first ``1 - val_fraction`` of the characters train, the rest validate.

    The split is fixed (no seed): contiguous, so that no validation window
    overlaps a training window, as a random split of overlapping windows would.
    ``name`` names the text in the result (the course's texts are loaded by
    :func:`qhelpers.course.datasets.char_splits`, which passes their names).
    """
    if not isinstance(text, str):
        raise TypeError(f"text must be the text itself (a str), not {describe(text)}")
    check_val_fraction(val_fraction)
    if not isinstance(name, str):
        raise TypeError(f"name must be a str, not {describe(name)}")
    vocab = CharVocab.from_text(text)
    ids = vocab.encode(text)
    n = int(len(ids) * (1 - val_fraction))
    return TextSplits(vocab, ids[:n], ids[n:], name)


# --- ImageNet-style folders -----------------------------------------------------------------------

def preprocess():
    """The preprocessing torchvision's ResNet-18 weights were trained with: resize 256, center-crop 224, normalize."""
    return _IMAGENET_WEIGHTS.transforms()


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


def check_folder_arg(root: object) -> Path:
    """``root`` as a ``Path`` if it is a non-empty folder path (str or Path); it need not exist yet."""
    if not isinstance(root, (str, os.PathLike)) or str(root) == "":
        raise TypeError(f"imagenet_dir={root!r} must be a folder path (str or Path) in ImageFolder layout")
    return Path(root).expanduser()


def image_folder(root: Path | str):
    """``torchvision.datasets.ImageFolder`` of ``root`` with the weights' preprocessing and ImageNet labels."""
    from torchvision.datasets import ImageFolder

    root = check_folder_arg(root)
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
) -> Loaders:
    """Loaders over an ImageNet-style folder: a seeded split into calibration and evaluation images.

    ``train`` (and ``val``) hold the ``calibration_images`` used to calibrate
    the observers, ``test`` the rest (at most ``limit`` images). No image is
    used for both. ``dataset`` is ``"imagenet"``.
    """
    check_int("calibration_images", calibration_images, 1)
    check_int("batch_size", batch_size, 1)
    if limit is not None:
        check_int("limit", limit, 1)
    _check_seed(seed)
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
    return Loaders(
        train=cal_loader,
        val=cal_loader,
        test=DataLoader(Subset(folder, sorted(rest)), batch_size=batch_size),
        dataset="imagenet",
    )
