"""The data sets: MNIST and Fashion-MNIST (found offline first), ImageNet-style folders, and calibration batches.

:func:`loaders` gives seeded train/validation/test loaders of MNIST or
Fashion-MNIST; :func:`imagenet_loaders` the same shape of thing over an
ImageNet-style folder; :func:`calibration_batches` the seeded batches of
training images that calibrate a model's observers, for either.

Where the files come from, in order:

1. the data folder (``data/`` at the course root; override with ``QHELPERS_DATA``);
2. an offline mirror named by ``QHELPERS_DATA_MIRROR`` (same layout as the data
   folder, read-only): the ``.gz`` files are copied, their md5 checked against
   torchvision's list, then unpacked;
3. for Fashion-MNIST, Debian's package ``dataset-fashion-mnist``
   (``/usr/share/datasets/fashion-mnist``): recompressed by Debian, so the
   ``.gz`` md5 differs; the unpacked files' md5 is checked instead;
4. torchvision's own download.

The four ``.gz`` files may also be copied into the data folder by hand
(``<data>/MNIST/raw/``): they are unpacked and checked like the others.

Files are staged in a temporary folder and moved into place only when all of
them check out, so a failure never leaves half a data set behind; staging
folders of an install that was killed are removed by the next one (installs
into one folder take turns, under a lock on it).

Every load checks each unpacked file's size and idx header, and its md5 (the
md5 of the *unpacked* data, recorded below once for both data sets: the same
for torchvision's files and Debian's recompressed ones): the four files of a
data set hash in about 0.3 s, so no size-and-mtime stamp skips the md5 (a file
damaged in place with its mtime restored would pass one).

**Tiny Shakespeare** (``tinyshakespeare``, character-level language modelling:
one text file, ``<data>/tinyshakespeare/input.txt``) comes from the same places
in the same order: the data folder, the mirror (``<mirror>/tinyshakespeare/
input.txt``), then a download from char-rnn's repository (:data:`TEXTS` holds
the URL, size and sha256). Every source is checked against the size and sha256,
staged and moved into place only when it checks out; an installed file is
checked for its size and sha256 on every load (about 5 ms). :func:`load_text` returns the text, :func:`char_splits` the
character vocabulary and nanoGPT's 90/10 train/validation split.
"""

from __future__ import annotations

import fcntl
import gzip
import hashlib
import os
import re
import shutil
import struct
import sys
import tempfile
import urllib.request
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import torch
from torch.utils.data import DataLoader, Dataset, Subset, TensorDataset
from torchvision import datasets
from torchvision import models as tv_models

from .checks import SEED_MAX, check_int, describe

__all__ = [
    "DATASETS",
    "DataUnavailableError",
    "CorruptDataError",
    "data_dir",
    "resolve",
    "load",
    "split",
    "Loaders",
    "check_loaders",
    "loaders",
    "TEXTS",
    "TextSource",
    "resolve_text",
    "load_text",
    "CharVocab",
    "TextSplits",
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
DEBIAN_FASHION_MNIST = Path("/usr/share/datasets/fashion-mnist")
# idx files: (magic number, item count) by file name prefix.
_IDX_EXPECTED = {
    "train-images": (2051, 60000),
    "train-labels": (2049, 60000),
    "t10k-images": (2051, 10000),
    "t10k-labels": (2049, 10000),
}
# md5 of the unpacked idx files: MNIST unpacked from torchvision's md5-checked .gz files; Fashion-MNIST
# from Debian's dataset-fashion-mnist, equal to what torchvision's .gz files unpack to (torchvision's
# own FashionMNIST listed these in its old ``raw_data``).
_UNPACKED_MD5: dict[str, dict[str, str]] = {
    "MNIST": {
        "train-images-idx3-ubyte": "6bbc9ace898e44ae57da46a324031adb",
        "train-labels-idx1-ubyte": "a25bea736e30d166cdddb491f175f624",
        "t10k-images-idx3-ubyte": "2646ac647ad5339dbf082846283269ea",
        "t10k-labels-idx1-ubyte": "27ae3e4e09519cfbb04c329615203637",
    },
    "FashionMNIST": {
        "train-images-idx3-ubyte": "f4a8712d7a061bf5bd6d2ca38dc4d50a",
        "train-labels-idx1-ubyte": "9018921c3c673c538a1fc5bad174d6f9",
        "t10k-images-idx3-ubyte": "8181f5470baa50b63fa0f6fddb340f0a",
        "t10k-labels-idx1-ubyte": "15d484375f8d13e6eb1aabb0c3f46965",
    },
}
# ImageNet: the categories of torchvision's ResNet-18 weights, and its class-folder names (WordNet ids).
_IMAGENET_WEIGHTS = tv_models.ResNet18_Weights.IMAGENET1K_V1
CATEGORIES: list[str] = list(_IMAGENET_WEIGHTS.meta["categories"])
_SYNSET = re.compile(r"^n\d{8}$")


class DataUnavailableError(RuntimeError):
    """No source could provide the data set; the message lists every place tried."""


class CorruptDataError(RuntimeError):
    """A source file failed its checksum or format check and was refused."""


def _check_name(name: str) -> type[datasets.MNIST]:
    if not isinstance(name, str) or name not in DATASETS:
        raise ValueError(f"unknown dataset {name!r}; choose one of {sorted(DATASETS)}")
    return DATASETS[name]


def _check_seed(seed: object) -> int:
    return check_int("seed", seed, 0, SEED_MAX)


def _check_bool(name: str, value: object, meaning: str = "") -> bool:
    if not isinstance(value, bool):
        raise TypeError(f"{name}={value!r} must be True or False{meaning}, not {type(value).__name__}")
    return value


def _as_path(name: str, value: object) -> Path:
    if not isinstance(value, (str, os.PathLike)) or str(value) == "":
        raise TypeError(f"{name}={value!r} must be a folder path (str or Path)")
    return Path(value).expanduser()


def data_dir() -> Path:
    """The data folder: ``$QHELPERS_DATA`` if set, else ``data/`` at the course root."""
    env = os.environ.get("QHELPERS_DATA")
    if env:
        return Path(env).expanduser().resolve()
    return Path(__file__).resolve().parents[1] / "data"


def _raw_dir(root: Path, cls: type[datasets.MNIST]) -> Path:
    return root / cls.__name__ / "raw"


def _files(cls: type[datasets.MNIST]) -> list[tuple[str, str]]:
    """(``.gz`` file name, md5) pairs from torchvision's own resource list."""
    return [(os.path.basename(url), md5) for url, md5 in cls.resources]


def _unpacked(gz_name: str) -> str:
    return gz_name[: -len(".gz")]


def _is_complete(raw: Path, cls: type[datasets.MNIST]) -> bool:
    return all((raw / _unpacked(f)).is_file() for f, _ in _files(cls))


def _has_gz(raw: Path, cls: type[datasets.MNIST]) -> bool:
    return all((raw / f).is_file() for f, _ in _files(cls))


def _digest(path: Path, algorithm: str = "md5") -> str:
    """The hex digest of a file (md5 for torchvision's files, sha256 for the texts), read 1 MiB at a time."""
    h = hashlib.new(algorithm)
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _check_idx(path: Path, label: str | None = None) -> None:
    """Check an unpacked idx file's magic number, item count, image size and total size (cheap: 16 bytes read)."""
    label = label or str(path)
    prefix = path.name.rsplit("-idx", 1)[0]
    magic, count = _IDX_EXPECTED[prefix]
    head = 16 if magic == 2051 else 8
    with open(path, "rb") as fh:
        header = fh.read(head)
    got = path.stat().st_size
    size = 16 + count * 28 * 28 if magic == 2051 else 8 + count
    if len(header) < head:
        raise CorruptDataError(f"{label}: {got} bytes, too short for an idx header; expected {size} bytes")
    got_magic, got_count = struct.unpack(">II", header[:8])
    if magic == 2051 and got_magic == magic:
        rows, cols = struct.unpack(">II", header[8:16])
        if (rows, cols) != (28, 28):
            raise CorruptDataError(f"{label}: images are {rows}x{cols}, expected 28x28")
    if (got_magic, got_count) != (magic, count):
        raise CorruptDataError(
            f"{label}: idx header says magic={got_magic} count={got_count}, "
            f"size {got} bytes; expected magic={magic} count={count}, {size} bytes"
        )
    if got != size:
        raise CorruptDataError(f"{label}: {got} bytes, expected {size}: the file is {'truncated' if got < size else 'too long'}")


def _check_md5(path: Path, cls: type[datasets.MNIST], label: str | None = None) -> str:
    """Compare an unpacked file's md5 with the data set's; returns it."""
    expected = _UNPACKED_MD5[cls.__name__][path.name]
    got = _digest(path)
    if got != expected:
        raise CorruptDataError(f"{label or path}: md5 {got} of the unpacked data does not match the data set's {expected}")
    return got


def _damaged(name: str, path: Path) -> str:
    """What to do about an installed file that failed its check."""
    return (f"The installed file is damaged: delete it and run `python -m qhelpers.data {name}` (or `make data`) "
            "to install it again.")


def _verify(raw: Path, cls: type[datasets.MNIST], name: str) -> None:
    """Check the installed files on every load: size, header and md5 (the four files hash in about 0.3 s).

    A size-and-mtime stamp would skip the md5, but a file damaged in place
    with its mtime restored (a copy tool, a backup restore) keeps its stamp.
    """
    for gz_name, _ in _files(cls):
        path = raw / _unpacked(gz_name)
        try:
            _check_idx(path)
            _check_md5(path, cls)
        except CorruptDataError as exc:
            raise CorruptDataError(f"{exc}. {_damaged(name, path)}") from None


def _unpack(gz: Path, dest: Path, label: Path) -> None:
    try:
        with gzip.open(gz, "rb") as src, open(dest, "wb") as out:
            shutil.copyfileobj(src, out)
    except (OSError, EOFError) as exc:
        raise CorruptDataError(f"{label}: cannot be decompressed ({exc})") from exc


def _stage_from(source: Path, cls: type[datasets.MNIST], stage: Path, check_md5: bool) -> None:
    """Copy and unpack every file of ``cls`` from ``source`` into ``stage``; check headers, then md5s."""
    for gz_name, md5 in _files(cls):
        src = source / gz_name
        if not src.is_file():
            raise FileNotFoundError(f"{src} is missing")
        local = stage / gz_name
        shutil.copyfile(src, local)
        if check_md5 and _digest(local) != md5:
            raise CorruptDataError(
                f"{src}: md5 {_digest(local)} does not match torchvision's {md5}; the file is corrupt or not the original"
            )
        _unpack(local, stage / _unpacked(gz_name), src)
        _check_idx(stage / _unpacked(gz_name), label=f"{src} (unpacked)")
    for gz_name, _ in _files(cls):
        _check_md5(stage / _unpacked(gz_name), cls, label=f"{source / gz_name} (unpacked)")


def _stage_download(cls: type[datasets.MNIST], stage: Path) -> None:
    cls(str(stage / "dl"), train=True, download=True)  # torchvision verifies md5 itself
    raw = _raw_dir(stage / "dl", cls)
    for gz_name, _ in _files(cls):
        shutil.move(str(raw / gz_name), stage / gz_name)
        shutil.move(str(raw / _unpacked(gz_name)), stage / _unpacked(gz_name))
        _check_idx(stage / _unpacked(gz_name), label=f"downloaded {gz_name} (unpacked)")
        _check_md5(stage / _unpacked(gz_name), cls, label=f"downloaded {gz_name} (unpacked)")


def _install(stage: Path, raw: Path, cls: type[datasets.MNIST]) -> None:
    raw.mkdir(parents=True, exist_ok=True)
    for gz_name, _ in _files(cls):
        for name in (gz_name, _unpacked(gz_name)):
            os.replace(stage / name, raw / name)


@contextmanager
def _locked(root: Path, wait: bool = True) -> Iterator[bool]:
    """Lock the data folder so that installs into it take turns (the kernel releases it if the process is killed).

    Yields whether the lock is held: not if ``wait=False`` and another process
    holds it, nor on network file systems without locks (installs then go unlocked).
    """
    fd = os.open(root, os.O_RDONLY)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
            held = True
        except OSError:
            held = False
        yield held
    finally:
        os.close(fd)


def _remove_stale_staging(root: Path) -> None:
    """Remove the staging folders of killed installs; call with the lock held (no live install runs then)."""
    for stale in root.glob(".staging-*"):
        shutil.rmtree(stale, ignore_errors=True)


_USE_ANOTHER = "set QHELPERS_DATA (or pass root=) to a writable folder"


@contextmanager
def _installing(root: Path) -> Iterator[str]:
    """The data folder created and locked (stale staging folders of killed runs removed), and a staging folder in it.

    Whatever is left in the staging folder is removed on the way out; a folder
    that cannot be written becomes one :class:`DataUnavailableError` saying so.
    """
    if root.exists() and not root.is_dir():
        raise DataUnavailableError(f"the data folder {root} is a file, not a folder; {_USE_ANOTHER}")
    try:
        root.mkdir(parents=True, exist_ok=True)
        with _locked(root) as held:
            if held:
                _remove_stale_staging(root)
            with tempfile.TemporaryDirectory(prefix=".staging-", dir=root) as tmp:
                yield tmp
    except OSError as exc:
        raise DataUnavailableError(
            f"the data folder {root} cannot be written ({exc.strerror or exc}: {exc.filename or root}); {_USE_ANOTHER}"
        ) from exc
# What to do about a source file that failed its check, by source.
_REPLACE = {
    "folder": "Delete it, or replace it with a good copy (then the other sources are tried).",
    "mirror": "Replace it with a good copy (see the mirror's README for checksums).",
    "debian": "Reinstall the package: apt-get install --reinstall dataset-fashion-mnist.",
    "download": "Run again to download it afresh.",
}


def resolve(
    name: str,
    root: Path | str | None = None,
    *,
    mirror: Path | str | None = None,
    debian_dir: Path | str = DEBIAN_FASHION_MNIST,
    allow_download: bool = True,
) -> Path:
    """Make sure the raw files of data set ``name`` are in ``root`` and intact; return ``root``.

    Raises :class:`DataUnavailableError` listing every source tried when none
    worked (or saying why the data folder cannot be used), and
    :class:`CorruptDataError` when a source file or an installed one fails its
    checks (the message names the file and what to do).
    """
    cls = _check_name(name)
    root = _as_path("root", root) if root is not None else data_dir()
    mirror = _as_path("mirror", mirror) if mirror is not None else None
    debian_dir = _as_path("debian_dir", debian_dir)
    _check_bool("allow_download", allow_download)
    raw = _raw_dir(root, cls)
    if _is_complete(raw, cls):
        _verify(raw, cls, name)
        if any(root.glob(".staging-*")):
            with _locked(root, wait=False) as held:
                if held:
                    _remove_stale_staging(root)
        return root
    if mirror is None and os.environ.get("QHELPERS_DATA_MIRROR"):
        mirror = Path(os.environ["QHELPERS_DATA_MIRROR"])

    tried: list[str] = []
    sources: list[tuple[str, str | None, Path]] = []  # (label, kind, folder of the .gz files)
    if _has_gz(raw, cls):
        sources.append((f"data folder {raw}: the .gz files", "folder", raw))
    else:
        missing = [f for f, _ in _files(cls) if not (raw / f).is_file()]
        tried.append(f"data folder {raw}: not there yet" + (f" (missing {', '.join(missing)})" if len(missing) < 4 else ""))
    if mirror is not None:
        sources.append((f"offline mirror {_raw_dir(mirror, cls)} (QHELPERS_DATA_MIRROR)", "mirror", _raw_dir(mirror, cls)))
    else:
        sources.append(("offline mirror: QHELPERS_DATA_MIRROR is not set", None, root))
    if name == "fashion-mnist":
        sources.append((f"Debian package dataset-fashion-mnist at {debian_dir}", "debian", debian_dir))
    sources.append(("torchvision download" + ("" if allow_download else " (disabled)"), "download", root))

    with _installing(root) as tmp:
        if _is_complete(raw, cls):  # installed by another process while we waited
            _verify(raw, cls, name)
            return root
        for label, kind, source in sources:
            if kind is None or (kind == "download" and not allow_download):
                tried.append(label)
                continue
            stage = Path(tmp) / kind
            stage.mkdir()
            try:
                if kind == "download":
                    _stage_download(cls, stage)
                else:
                    _stage_from(source, cls, stage, check_md5=kind == "mirror")
            except CorruptDataError as exc:
                raise CorruptDataError(f"{exc}. {_REPLACE[kind]}") from None
            except Exception as exc:  # noqa: BLE001 - each failure is reported below
                tried.append(f"{label}: {type(exc).__name__}: {exc}")
                continue
            _install(stage, raw, cls)
            return root
    how = (
        f"copy the four .gz files ({', '.join(f for f, _ in _files(cls))}) into {raw}, point QHELPERS_DATA_MIRROR "
        f"at a folder holding {cls.__name__}/raw/*.gz"
        + (", install Debian's dataset-fashion-mnist (apt-get install dataset-fashion-mnist)" if name == "fashion-mnist" else "")
        + ", or connect to the internet for torchvision's download"
    )
    raise DataUnavailableError(
        f"{name} is not available. Tried, in order:\n  - " + "\n  - ".join(tried) + f"\nTo fix: {how}."
    )


def load(name: str, train: bool, root: Path | str | None = None, normalize: bool = True) -> TensorDataset:
    """The whole split as a ``TensorDataset`` of float images ``(N, 1, 28, 28)`` and int64 labels.

    Read through torchvision's dataset class, then converted once to tensors
    (ToTensor + Normalize applied to all images at once), which keeps training
    fast on a 2-core CPU. ``train=True`` is the training split, ``False`` the test split.
    """
    cls = _check_name(name)
    _check_bool("train", train, " (True: the training split, False: the test split)")
    _check_bool("normalize", normalize)
    root = resolve(name, root)
    ds = cls(str(root), train=train, download=False)
    labels = ds.targets.long()
    bad = ((labels < 0) | (labels >= len(cls.classes))).nonzero()
    if len(bad):
        i = int(bad[0])
        path = _raw_dir(root, cls) / ("train-labels-idx1-ubyte" if train else "t10k-labels-idx1-ubyte")
        raise CorruptDataError(
            f"{path}: label {int(labels[i])} of item {i} is outside 0..{len(cls.classes) - 1}; the file is damaged: "
            f"delete it and run `python -m qhelpers.data {name}` to install it again"
        )
    images = ds.data.unsqueeze(1).float().div_(255.0)
    if normalize:
        mean, std = NORMALIZATION[name]
        images = images.sub_(mean).div_(std)
    return TensorDataset(images, labels)


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
        raise TypeError(f"data must be a qhelpers.data.Loaders (e.g. qhelpers.data.loaders('mnist')), not {type(data).__name__}")
    return data


def loaders(
    name: str = "mnist",
    *,
    batch_size: int = 64,
    eval_batch_size: int = 1000,
    val_size: int = 5000,
    subset: int | None = None,
    seed: int = 0,
    root: Path | str | None = None,
) -> Loaders:
    """Train/validation/test loaders; ``subset=N`` keeps N training images (seeded choice).

    The training loader shuffles with its own seeded generator, so two runs
    with the same seed see the same batches. Every argument is checked before
    any data is read.
    """
    _check_name(name)
    batch_size = check_int("batch_size", batch_size, 1)
    eval_batch_size = check_int("eval_batch_size", eval_batch_size, 1)
    val_size = check_int("val_size", val_size, 0)
    if subset is not None:
        subset = check_int("subset", subset, 1)
    seed = _check_seed(seed)
    n_train = _IDX_EXPECTED["train-images"][1]  # the same for both data sets: known before any file is read
    if val_size >= n_train:
        raise ValueError(f"val_size={val_size} must leave training images: the training split holds {n_train}")
    if subset is not None and subset > n_train - val_size:
        raise ValueError(f"subset={subset} must be between 1 and {n_train - val_size} (training images after the split)")
    full = load(name, train=True, root=root)
    train, val = split(full, val_size, seed)
    if subset is not None:
        if not 0 < subset <= len(train):
            raise ValueError(f"subset={subset} must be between 1 and {len(train)} (training images after the split)")
        train = Subset(train, list(range(subset)))  # train is already a seeded permutation
    test = load(name, train=False, root=root)
    gen = torch.Generator().manual_seed(seed)
    return Loaders(
        train=DataLoader(train, batch_size=batch_size, shuffle=True, generator=gen),
        val=DataLoader(val, batch_size=eval_batch_size),
        test=DataLoader(test, batch_size=eval_batch_size),
        dataset=name,
    )


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
        raise TypeError(f"data must be a qhelpers.data.Loaders (e.g. qhelpers.data.loaders('mnist')) or a Dataset, "
                        f"not {describe(data)}")
    check_int("num_batches", num_batches, 1)
    _check_seed(seed)
    _check_bool("allow_fewer", allow_fewer, " (True: return fewer batches when the data set is too small)")
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


# ---------------------------------------------------------------- Tiny Shakespeare (one text file)


@dataclass(frozen=True)
class TextSource:
    """A text data set: its file under ``<data>/<folder>/``, expected size and sha256, and where to download it."""

    folder: str
    file: str
    size: int
    sha256: str
    url: str


TEXTS: dict[str, TextSource] = {
    "tinyshakespeare": TextSource(
        folder="tinyshakespeare",
        file="input.txt",
        size=1_115_394,
        sha256="86c4e6aa9db7c042ec79f339dcb96d42b0075e16b8fc2e86bf0ca57e2dc565ed",
        url="https://raw.githubusercontent.com/karpathy/char-rnn/master/data/tinyshakespeare/input.txt",
    ),
}


def _check_text_name(name: object) -> TextSource:
    if not isinstance(name, str) or name not in TEXTS:
        raise ValueError(f"unknown text data set {name!r}; choose one of {sorted(TEXTS)}")
    return TEXTS[name]


def _check_text_file(path: Path, src: TextSource, label: str, *, checksum: bool = True) -> None:
    """Size always, sha256 if ``checksum``: a :class:`CorruptDataError` naming ``label`` otherwise."""
    got = path.stat().st_size
    if got != src.size:
        raise CorruptDataError(f"{label}: {got} bytes, expected {src.size}: the file is "
                               f"{'truncated' if got < src.size else 'too long'} or not the original")
    if checksum:
        digest = _digest(path, "sha256")
        if digest != src.sha256:
            raise CorruptDataError(f"{label}: sha256 {digest} does not match the data set's {src.sha256}")


def _verify_text(path: Path, src: TextSource, name: str) -> None:
    """An installed text file: size and sha256 on every load (about 5 ms for Tiny Shakespeare's 1.1 MB)."""
    try:
        _check_text_file(path, src, str(path))
    except CorruptDataError as exc:
        raise CorruptDataError(f"{exc}. {_damaged(name, path)}") from None


def _download(url: str, dest: Path, timeout: float = 60.0) -> None:
    with urllib.request.urlopen(url, timeout=timeout) as response, open(dest, "wb") as out:  # noqa: S310 - a fixed https URL
        shutil.copyfileobj(response, out)


def resolve_text(
    name: str = "tinyshakespeare",
    root: Path | str | None = None,
    *,
    mirror: Path | str | None = None,
    allow_download: bool = True,
) -> Path:
    """The path of the verified text file of ``name``, installed into the data folder if needed.

    Sources, in order: the data folder (``<root>/<folder>/<file>``), the mirror
    (``mirror``, else ``$QHELPERS_DATA_MIRROR``, same layout), the download URL.
    A source whose file fails the size or sha256 check raises
    :class:`CorruptDataError` (naming it and what to do); when no source has
    the file, :class:`DataUnavailableError` lists every place tried. Nothing is
    left half-written: the file is staged beside the data folder's contents and
    moved into place only once it checks out.
    """
    src = _check_text_name(name)
    root = _as_path("root", root) if root is not None else data_dir()
    mirror = _as_path("mirror", mirror) if mirror is not None else None
    _check_bool("allow_download", allow_download)
    dest = root / src.folder / src.file
    if dest.is_file():
        _verify_text(dest, src, name)
        return dest
    if mirror is None and os.environ.get("QHELPERS_DATA_MIRROR"):
        mirror = Path(os.environ["QHELPERS_DATA_MIRROR"])
    tried = [f"data folder {dest}: not there yet"]
    with _installing(root) as tmp:
        if dest.is_file():  # installed by another process while we waited
            _verify_text(dest, src, name)
            return dest
        staged = Path(tmp) / src.file
        for kind in ("mirror", "download"):
            if kind == "mirror":
                if mirror is None:
                    tried.append("offline mirror: QHELPERS_DATA_MIRROR is not set")
                    continue
                origin = mirror / src.folder / src.file
                label = f"offline mirror {origin} (QHELPERS_DATA_MIRROR)"
                if not origin.is_file():
                    tried.append(f"{label}: FileNotFoundError: {origin} is missing")
                    continue
                shutil.copyfile(origin, staged)
            else:
                label = f"download from {src.url}"
                if not allow_download:
                    tried.append(label + " (disabled)")
                    continue
                try:
                    _download(src.url, staged)
                except Exception as exc:  # noqa: BLE001 - offline, refused, timed out: reported below
                    tried.append(f"{label}: {type(exc).__name__}: {exc}")
                    staged.unlink(missing_ok=True)
                    continue
                origin = src.url
            try:
                _check_text_file(staged, src, str(origin))
            except CorruptDataError as exc:
                raise CorruptDataError(f"{exc}. {_REPLACE[kind]}") from None
            dest.parent.mkdir(parents=True, exist_ok=True)
            os.replace(staged, dest)
            _verify_text(dest, src, name)
            return dest
    how = (f"copy {src.file} ({src.size:,} bytes, sha256 {src.sha256}) to {dest}, point QHELPERS_DATA_MIRROR at a "
           f"folder holding {src.folder}/{src.file}, or connect to the internet for the download")
    raise DataUnavailableError(f"{name} is not available. Tried, in order:\n  - " + "\n  - ".join(tried) + f"\nTo fix: {how}.")


def load_text(name: str = "tinyshakespeare", root: Path | str | None = None) -> str:
    """The whole text of ``name`` (verified by :func:`resolve_text`), decoded as UTF-8."""
    return resolve_text(name, root).read_text(encoding="utf-8")


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


def char_splits(name: str = "tinyshakespeare", val_fraction: float = 0.1, root: Path | str | None = None) -> TextSplits:
    """nanoGPT's split of a text: the first ``1 - val_fraction`` of the characters train, the rest validate.

    The split is fixed (no seed): contiguous, so that no validation window
    overlaps a training window, as a random split of overlapping windows would.
    """
    _check_text_name(name)
    if isinstance(val_fraction, bool) or not isinstance(val_fraction, (int, float)) or not 0 < val_fraction < 1:
        raise ValueError(f"val_fraction={val_fraction!r} must be a number strictly between 0 and 1")
    text = load_text(name, root)
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


def main(argv: list[str] | None = None) -> int:
    """``python -m qhelpers.data NAME...``: resolve data sets into the data folder, or say why not."""
    import argparse

    parser = argparse.ArgumentParser(prog="python -m qhelpers.data", description=main.__doc__)
    names = sorted(DATASETS) + sorted(TEXTS)
    parser.add_argument("names", nargs="+", choices=names, metavar="NAME", help=f"one of {names}")
    args = parser.parse_args(argv)
    for name in args.names:
        try:
            where = resolve_text(name) if name in TEXTS else _raw_dir(resolve(name), DATASETS[name])
        except (DataUnavailableError, CorruptDataError) as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 1
        print(f"{name}: ready in {where}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
