"""MNIST and Fashion-MNIST, found offline first, through torchvision's own dataset classes.

Where the files come from, in order:

1. the data folder (``data/`` at the course root; override with ``QHELPERS_DATA``);
2. an offline mirror named by ``QHELPERS_DATA_MIRROR`` (same layout as the data
   folder, read-only): the ``.gz`` files are copied, their md5 checked against
   torchvision's list, then unpacked;
3. for Fashion-MNIST, Debian's package ``dataset-fashion-mnist``
   (``/usr/share/datasets/fashion-mnist``): recompressed by Debian, so the md5
   differs; the unpacked idx headers and sizes are checked instead;
4. torchvision's own download.

Files are staged in a temporary folder and moved into place only when all of
them check out, so a failure never leaves half a data set behind.
"""

from __future__ import annotations

import gzip
import hashlib
import os
import shutil
import struct
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

import torch
from torch.utils.data import DataLoader, Dataset, Subset, TensorDataset
from torchvision import datasets

__all__ = [
    "DATASETS",
    "DataUnavailableError",
    "CorruptDataError",
    "data_dir",
    "resolve",
    "load",
    "split",
    "Loaders",
    "loaders",
    "calibration_loader",
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


class DataUnavailableError(RuntimeError):
    """No source could provide the data set; the message lists every place tried."""


class CorruptDataError(RuntimeError):
    """A source file failed its checksum or format check and was refused."""


def _check_name(name: str) -> type[datasets.MNIST]:
    if name not in DATASETS:
        raise ValueError(f"unknown dataset {name!r}; choose one of {sorted(DATASETS)}")
    return DATASETS[name]


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


def _md5(path: Path) -> str:
    h = hashlib.md5()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _check_idx(path: Path) -> None:
    """Check an unpacked idx file's magic number, item count and total size."""
    prefix = path.name.rsplit("-idx", 1)[0]
    magic, count = _IDX_EXPECTED[prefix]
    with open(path, "rb") as fh:
        header = fh.read(16 if magic == 2051 else 8)
    got_magic, got_count = struct.unpack(">II", header[:8])
    size = 16 + count * 28 * 28 if magic == 2051 else 8 + count
    if magic == 2051:
        rows, cols = struct.unpack(">II", header[8:16])
        if (rows, cols) != (28, 28):
            raise CorruptDataError(f"{path.name}: images are {rows}x{cols}, expected 28x28")
    if (got_magic, got_count) != (magic, count) or path.stat().st_size != size:
        raise CorruptDataError(
            f"{path.name}: idx header says magic={got_magic} count={got_count}, "
            f"size {path.stat().st_size} bytes; expected magic={magic} count={count}, {size} bytes"
        )


def _unpack(gz: Path, dest: Path) -> None:
    try:
        with gzip.open(gz, "rb") as src, open(dest, "wb") as out:
            shutil.copyfileobj(src, out)
    except (OSError, EOFError) as exc:
        raise CorruptDataError(f"{gz}: cannot be decompressed ({exc})") from exc


def _stage_from(source: Path, cls: type[datasets.MNIST], stage: Path, check_md5: bool) -> None:
    """Copy and unpack every file of ``cls`` from ``source`` into ``stage``, checking each."""
    for gz_name, md5 in _files(cls):
        src = source / gz_name
        if not src.is_file():
            raise FileNotFoundError(f"{src} is missing")
        local = stage / gz_name
        shutil.copyfile(src, local)
        if check_md5 and _md5(local) != md5:
            raise CorruptDataError(
                f"{src}: md5 {_md5(local)} does not match torchvision's {md5}; the file is corrupt or not "
                "the original. Replace it with a good copy (see the mirror's README for checksums)."
            )
        _unpack(local, stage / _unpacked(gz_name))
        _check_idx(stage / _unpacked(gz_name))


def _stage_download(cls: type[datasets.MNIST], stage: Path) -> None:
    cls(str(stage / "dl"), train=True, download=True)  # torchvision verifies md5 itself
    raw = _raw_dir(stage / "dl", cls)
    for gz_name, _ in _files(cls):
        shutil.move(str(raw / gz_name), stage / gz_name)
        shutil.move(str(raw / _unpacked(gz_name)), stage / _unpacked(gz_name))
        _check_idx(stage / _unpacked(gz_name))


def _install(stage: Path, raw: Path, cls: type[datasets.MNIST]) -> None:
    raw.mkdir(parents=True, exist_ok=True)
    for gz_name, _ in _files(cls):
        for name in (gz_name, _unpacked(gz_name)):
            os.replace(stage / name, raw / name)


def resolve(
    name: str,
    root: Path | str | None = None,
    *,
    mirror: Path | str | None = None,
    debian_dir: Path = DEBIAN_FASHION_MNIST,
    allow_download: bool = True,
) -> Path:
    """Make sure the raw files of data set ``name`` are in ``root``; return ``root``.

    Raises :class:`DataUnavailableError` listing every source tried when none
    worked, and :class:`CorruptDataError` when a mirror file fails its md5 check.
    """
    cls = _check_name(name)
    root = Path(root) if root is not None else data_dir()
    raw = _raw_dir(root, cls)
    if _is_complete(raw, cls):
        return root
    if mirror is None and os.environ.get("QHELPERS_DATA_MIRROR"):
        mirror = os.environ["QHELPERS_DATA_MIRROR"]

    sources: list[tuple[str, object]] = []
    if mirror is not None:
        sources.append((f"offline mirror {_raw_dir(Path(mirror), cls)} (QHELPERS_DATA_MIRROR)", "mirror"))
    else:
        sources.append(("offline mirror: QHELPERS_DATA_MIRROR is not set", None))
    if name == "fashion-mnist":
        sources.append((f"Debian package dataset-fashion-mnist at {debian_dir}", "debian"))
    sources.append(("torchvision download" + ("" if allow_download else " (disabled)"), "download"))

    root.mkdir(parents=True, exist_ok=True)
    tried: list[str] = [f"data folder {raw}: not there yet"]
    for label, kind in sources:
        if kind is None or (kind == "download" and not allow_download):
            tried.append(label)
            continue
        with tempfile.TemporaryDirectory(prefix=".staging-", dir=root) as tmp:
            stage = Path(tmp)
            try:
                if kind == "mirror":
                    _stage_from(_raw_dir(Path(mirror), cls), cls, stage, check_md5=True)  # type: ignore[arg-type]
                elif kind == "debian":
                    _stage_from(debian_dir, cls, stage, check_md5=False)
                else:
                    _stage_download(cls, stage)
            except CorruptDataError:
                raise
            except Exception as exc:  # noqa: BLE001 - each failure is reported below
                tried.append(f"{label}: {type(exc).__name__}: {exc}")
                continue
            _install(stage, raw, cls)
            return root
    how = (
        "copy the four files into the data folder, point QHELPERS_DATA_MIRROR at a folder holding "
        f"{cls.__name__}/raw/*.gz"
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
    fast on a 2-core CPU.
    """
    cls = _check_name(name)
    root = resolve(name, root)
    ds = cls(str(root), train=train, download=False)
    images = ds.data.unsqueeze(1).float().div_(255.0)
    if normalize:
        mean, std = NORMALIZATION[name]
        images = images.sub_(mean).div_(std)
    return TensorDataset(images, ds.targets.long())


def split(dataset: Dataset, val_size: int, seed: int) -> tuple[Subset, Subset]:
    """A seeded, reproducible (train, validation) split: the same seed gives the same indices."""
    n = len(dataset)  # type: ignore[arg-type]
    if not 0 <= val_size < n:
        raise ValueError(f"val_size={val_size} must be between 0 and {n - 1}")
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(seed)).tolist()
    return Subset(dataset, perm[val_size:]), Subset(dataset, perm[:val_size])


@dataclass(frozen=True)
class Loaders:
    """The three DataLoaders of an experiment, and the name of the data set."""

    train: DataLoader
    val: DataLoader
    test: DataLoader
    dataset: str


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
    with the same seed see the same batches.
    """
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


def calibration_loader(loader: DataLoader, num_batches: int) -> list[torch.Tensor]:
    """The first ``num_batches`` input batches of ``loader``, for calibrating observers."""
    if num_batches < 1:
        raise ValueError(f"num_batches={num_batches}: calibration needs at least one batch")
    batches = []
    for images, _ in loader:
        batches.append(images)
        if len(batches) == num_batches:
            break
    if not batches:
        raise ValueError("the calibration loader is empty: give it a dataset with at least one image")
    return batches


def main(argv: list[str] | None = None) -> int:
    """``python -m qhelpers.data NAME...``: resolve data sets into the data folder, or say why not."""
    import argparse

    parser = argparse.ArgumentParser(prog="python -m qhelpers.data", description=main.__doc__)
    parser.add_argument("names", nargs="+", choices=sorted(DATASETS), metavar="NAME", help=f"one of {sorted(DATASETS)}")
    args = parser.parse_args(argv)
    for name in args.names:
        try:
            root = resolve(name)
        except (DataUnavailableError, CorruptDataError) as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 1
        print(f"{name}: ready in {_raw_dir(root, DATASETS[name])}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
