"""The data files: MNIST and Fashion-MNIST (found offline first) and Tiny Shakespeare, fetched, checked, installed.

:func:`loaders` gives seeded train/validation/test loaders of MNIST or
Fashion-MNIST (:func:`qhelpers.data.split` and :class:`qhelpers.data.Loaders`
over the files :func:`load` reads); :func:`char_splits` the character
vocabulary and train/validation split of a text (:func:`qhelpers.data.char_splits`
over the text :func:`load_text` reads). ``python -m qhelpers.course.datasets NAME...``
installs data sets into the data folder, or says why not.

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
from torch.utils.data import DataLoader, Subset, TensorDataset
from torchvision import datasets

from .. import data as qdata
from ..checks import SEED_MAX, check_flag, check_int
from ..data import DATASETS, NORMALIZATION, Loaders, TextSplits, split

__all__ = [
    "DataUnavailableError",
    "CorruptDataError",
    "data_dir",
    "resolve",
    "load",
    "loaders",
    "TEXTS",
    "TextSource",
    "resolve_text",
    "load_text",
    "char_splits",
    "main",
]

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


class DataUnavailableError(RuntimeError):
    """No source could provide the data set; the message lists every place tried."""


class CorruptDataError(RuntimeError):
    """A source file failed its checksum or format check and was refused."""


def _check_name(name: str) -> type[datasets.MNIST]:
    if not isinstance(name, str) or name not in DATASETS:
        raise ValueError(f"unknown dataset {name!r}; choose one of {sorted(DATASETS)}")
    return DATASETS[name]


def _as_path(name: str, value: object) -> Path:
    if not isinstance(value, (str, os.PathLike)) or str(value) == "":
        raise TypeError(f"{name}={value!r} must be a folder path (str or Path)")
    return Path(value).expanduser()


def data_dir() -> Path:
    """The data folder: ``$QHELPERS_DATA`` if set, else ``data/`` at the course root."""
    env = os.environ.get("QHELPERS_DATA")
    if env:
        return Path(env).expanduser().resolve()
    return Path(__file__).resolve().parents[2] / "data"


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
    return (f"The installed file is damaged: delete it and run `python -m qhelpers.course.datasets {name}` (or `make data`) "
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
    check_flag("allow_download", allow_download)
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
    check_flag("train", train, " (True: the training split, False: the test split)")
    check_flag("normalize", normalize)
    root = resolve(name, root)
    ds = cls(str(root), train=train, download=False)
    labels = ds.targets.long()
    bad = ((labels < 0) | (labels >= len(cls.classes))).nonzero()
    if len(bad):
        i = int(bad[0])
        path = _raw_dir(root, cls) / ("train-labels-idx1-ubyte" if train else "t10k-labels-idx1-ubyte")
        raise CorruptDataError(
            f"{path}: label {int(labels[i])} of item {i} is outside 0..{len(cls.classes) - 1}; the file is damaged: "
            f"delete it and run `python -m qhelpers.course.datasets {name}` to install it again"
        )
    images = ds.data.unsqueeze(1).float().div_(255.0)
    if normalize:
        mean, std = NORMALIZATION[name]
        images = images.sub_(mean).div_(std)
    return TensorDataset(images, labels)


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
    seed = check_int("seed", seed, 0, SEED_MAX)
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
    check_flag("allow_download", allow_download)
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


def char_splits(name: str = "tinyshakespeare", val_fraction: float = 0.1, root: Path | str | None = None) -> TextSplits:
    """nanoGPT's split of the text data set ``name`` (:func:`qhelpers.data.char_splits` of :func:`load_text`)."""
    _check_text_name(name)
    qdata.check_val_fraction(val_fraction)
    return qdata.char_splits(load_text(name, root), val_fraction, name=name)


def main(argv: list[str] | None = None) -> int:
    """``python -m qhelpers.course.datasets NAME...``: resolve data sets into the data folder, or say why not."""
    import argparse

    parser = argparse.ArgumentParser(prog="python -m qhelpers.course.datasets", description=main.__doc__)
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
