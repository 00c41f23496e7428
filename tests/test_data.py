"""qhelpers.data: the offline-first resolution order, its errors, and reproducible splits."""

from __future__ import annotations

import gzip
import os
import shutil
import struct
from pathlib import Path

import pytest
import torch
from torch.utils.data import DataLoader, TensorDataset
from torchvision import datasets

from qhelpers import data

MIRROR = os.environ.get("QHELPERS_DATA_MIRROR")
needs_mirror = pytest.mark.skipif(
    not MIRROR or not (Path(MIRROR) / "MNIST" / "raw").is_dir(), reason="QHELPERS_DATA_MIRROR with MNIST not available"
)
needs_debian = pytest.mark.skipif(
    not data.DEBIAN_FASHION_MNIST.is_dir(), reason="Debian's dataset-fashion-mnist is not installed"
)


@pytest.fixture
def no_download(monkeypatch):
    """Make torchvision's download fail at once, as it does offline (nothing listens on port 9)."""
    monkeypatch.setattr(datasets.MNIST, "mirrors", ["http://127.0.0.1:9/"])
    monkeypatch.setattr(datasets.FashionMNIST, "mirrors", ["http://127.0.0.1:9/"])


def _leftovers(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file())


def test_unknown_dataset_name():
    with pytest.raises(ValueError, match="unknown dataset 'cifar10'.*fashion-mnist.*mnist"):
        data.resolve("cifar10")
    with pytest.raises(ValueError, match="unknown dataset"):
        data.loaders("MNIST ")


def test_data_dir_env_override(monkeypatch, tmp_path):
    monkeypatch.setenv("QHELPERS_DATA", str(tmp_path))
    assert data.data_dir() == tmp_path.resolve()
    monkeypatch.delenv("QHELPERS_DATA")
    assert data.data_dir().name == "data"


@needs_mirror
def test_mirror_is_copied_verified_and_unpacked(tmp_path, no_download):
    root = data.resolve("mnist", tmp_path, mirror=MIRROR)
    raw = root / "MNIST" / "raw"
    assert sorted(p.name for p in raw.iterdir()) == sorted(
        [f for f, _ in data._files(datasets.MNIST)] + [data._unpacked(f) for f, _ in data._files(datasets.MNIST)]
    )
    train = data.load("mnist", train=True, root=tmp_path)
    test = data.load("mnist", train=False, root=tmp_path)
    assert len(train) == 60000 and len(test) == 10000
    x, y = train[0]
    assert x.shape == (1, 28, 28) and x.dtype == torch.float32 and int(y) == 5  # the famous first "5"
    assert abs(float(train.tensors[0].mean())) < 0.01  # normalized with MNIST's own mean/std
    # a second call finds the data folder complete and touches nothing
    before = {p: p.stat().st_mtime_ns for p in raw.iterdir()}
    data.resolve("mnist", tmp_path, mirror="/nonexistent")
    assert before == {p: p.stat().st_mtime_ns for p in raw.iterdir()}


@needs_mirror
def test_corrupt_mirror_file_is_refused_and_nothing_is_left(tmp_path, no_download):
    mirror = tmp_path / "mirror"
    shutil.copytree(Path(MIRROR) / "MNIST", mirror / "MNIST")
    bad = mirror / "MNIST" / "raw" / "t10k-labels-idx1-ubyte.gz"
    bad.chmod(0o644)
    blob = bytearray(bad.read_bytes())
    blob[100] ^= 0xFF
    bad.write_bytes(bytes(blob))
    root = tmp_path / "data"
    with pytest.raises(data.CorruptDataError, match="t10k-labels-idx1-ubyte.gz: md5 .* does not match"):
        data.resolve("mnist", root, mirror=mirror)
    assert _leftovers(root) == []


def test_missing_offline_gives_one_clear_error(tmp_path, no_download, monkeypatch):
    monkeypatch.delenv("QHELPERS_DATA_MIRROR", raising=False)
    root = tmp_path / "data"
    with pytest.raises(data.DataUnavailableError) as info:
        data.resolve("mnist", root)
    msg = str(info.value)
    assert "mnist is not available" in msg
    assert "data folder" in msg and "QHELPERS_DATA_MIRROR is not set" in msg and "torchvision download" in msg
    assert "To fix:" in msg
    assert _leftovers(root) == []


def test_missing_mirror_folder_is_listed(tmp_path, no_download):
    with pytest.raises(data.DataUnavailableError, match=r"offline mirror .*nowhere.*missing"):
        data.resolve("mnist", tmp_path / "data", mirror=tmp_path / "nowhere")


def test_missing_fashion_mnist_names_the_debian_package(tmp_path, no_download, monkeypatch):
    monkeypatch.delenv("QHELPERS_DATA_MIRROR", raising=False)
    with pytest.raises(data.DataUnavailableError, match="apt-get install dataset-fashion-mnist"):
        data.resolve("fashion-mnist", tmp_path / "data", debian_dir=tmp_path / "no-debian")


def _write_idx(path: Path, magic: int, count: int, rows: int = 28) -> None:
    header = struct.pack(">II", magic, count) + (struct.pack(">II", rows, 28) if magic == 2051 else b"")
    body = bytes(count * rows * 28 if magic == 2051 else count)
    with gzip.open(path, "wb") as fh:
        fh.write(header + body)


def test_debian_files_with_a_bad_header_are_refused(tmp_path, no_download, monkeypatch):
    monkeypatch.delenv("QHELPERS_DATA_MIRROR", raising=False)
    deb = tmp_path / "debian"
    deb.mkdir()
    _write_idx(deb / "train-images-idx3-ubyte.gz", 2051, 60000)
    _write_idx(deb / "train-labels-idx1-ubyte.gz", 2049, 60000)
    _write_idx(deb / "t10k-images-idx3-ubyte.gz", 2051, 10000, rows=27)  # wrong image size
    _write_idx(deb / "t10k-labels-idx1-ubyte.gz", 2049, 10000)
    root = tmp_path / "data"
    with pytest.raises(data.CorruptDataError, match="27x28, expected 28x28"):
        data.resolve("fashion-mnist", root, debian_dir=deb)
    assert _leftovers(root) == []


@needs_debian
def test_fashion_mnist_from_debian(tmp_path, no_download, monkeypatch):
    monkeypatch.delenv("QHELPERS_DATA_MIRROR", raising=False)
    data.resolve("fashion-mnist", tmp_path)
    test = data.load("fashion-mnist", train=False, root=tmp_path)
    assert len(test) == 10000
    assert torch.bincount(test.tensors[1]).tolist() == [1000] * 10


def _toy(n: int = 100) -> TensorDataset:
    return TensorDataset(torch.arange(n).float().reshape(n, 1), torch.arange(n) % 10)


def test_split_is_seeded_and_disjoint():
    a_train, a_val = data.split(_toy(), 20, seed=1)
    b_train, b_val = data.split(_toy(), 20, seed=1)
    c_train, _ = data.split(_toy(), 20, seed=2)
    assert a_train.indices == b_train.indices and a_val.indices == b_val.indices
    assert a_train.indices != c_train.indices
    assert len(a_val) == 20 and set(a_train.indices).isdisjoint(a_val.indices)
    with pytest.raises(ValueError, match="val_size"):
        data.split(_toy(), 100, seed=0)


@needs_mirror
def test_loaders_subset_and_reproducible_batches():
    a = data.loaders("mnist", subset=500, seed=3, batch_size=32)
    b = data.loaders("mnist", subset=500, seed=3, batch_size=32)
    assert len(a.train.dataset) == 500 and len(a.val.dataset) == 5000 and len(a.test.dataset) == 10000
    xa, ya = next(iter(a.train))
    xb, yb = next(iter(b.train))
    assert torch.equal(xa, xb) and torch.equal(ya, yb)
    with pytest.raises(ValueError, match="subset=0"):
        data.loaders("mnist", subset=0)


def test_calibration_loader():
    loader = DataLoader(_toy(50), batch_size=10)
    batches = data.calibration_loader(loader, 3)
    assert len(batches) == 3 and batches[0].shape == (10, 1)
    with pytest.raises(ValueError, match="empty"):
        data.calibration_loader(DataLoader(_toy(0), batch_size=10), 2)
    with pytest.raises(ValueError, match="at least one batch"):
        data.calibration_loader(loader, 0)


def test_cli_reports_failure_cleanly(tmp_path, no_download, monkeypatch, capsys):
    monkeypatch.delenv("QHELPERS_DATA_MIRROR", raising=False)
    monkeypatch.setenv("QHELPERS_DATA", str(tmp_path))
    assert data.main(["mnist"]) == 1
    assert "error: mnist is not available" in capsys.readouterr().err
