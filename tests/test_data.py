"""qhelpers.course.datasets: the offline-first resolution order and its errors; qhelpers.data: reproducible splits."""

from __future__ import annotations

import gzip
import os
import re
import shutil
import struct
from pathlib import Path

import pytest
import torch
from torch.utils.data import DataLoader, TensorDataset
from torchvision import datasets as tv_datasets

from qhelpers import data
from qhelpers.course import datasets

MIRROR = os.environ.get("QHELPERS_DATA_MIRROR")
needs_mirror = pytest.mark.skipif(
    not MIRROR or not (Path(MIRROR) / "MNIST" / "raw").is_dir(), reason="QHELPERS_DATA_MIRROR with MNIST not available"
)
needs_debian = pytest.mark.skipif(
    not datasets.DEBIAN_FASHION_MNIST.is_dir(), reason="Debian's dataset-fashion-mnist is not installed"
)


@pytest.fixture
def no_download(monkeypatch):
    """Make torchvision's download fail at once, as it does offline (nothing listens on port 9)."""
    monkeypatch.setattr(tv_datasets.MNIST, "mirrors", ["http://127.0.0.1:9/"])
    monkeypatch.setattr(tv_datasets.FashionMNIST, "mirrors", ["http://127.0.0.1:9/"])


def _leftovers(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file())


def test_unknown_dataset_name():
    with pytest.raises(ValueError, match="unknown dataset 'cifar10'.*fashion-mnist.*mnist"):
        datasets.resolve("cifar10")
    with pytest.raises(ValueError, match="unknown dataset"):
        datasets.loaders("MNIST ")


def test_data_dir_env_override(monkeypatch, tmp_path):
    monkeypatch.setenv("QHELPERS_DATA", str(tmp_path))
    assert datasets.data_dir() == tmp_path.resolve()
    monkeypatch.delenv("QHELPERS_DATA")
    assert datasets.data_dir().name == "data"


@needs_mirror
def test_mirror_is_copied_verified_and_unpacked(tmp_path, no_download):
    root = datasets.resolve("mnist", tmp_path, mirror=MIRROR)
    raw = root / "MNIST" / "raw"
    assert sorted(p.name for p in raw.iterdir()) == sorted(
        [f for f, _ in datasets._files(tv_datasets.MNIST)] + [datasets._unpacked(f) for f, _ in datasets._files(tv_datasets.MNIST)]
    )
    train = datasets.load("mnist", train=True, root=tmp_path)
    test = datasets.load("mnist", train=False, root=tmp_path)
    assert len(train) == 60000 and len(test) == 10000
    x, y = train[0]
    assert x.shape == (1, 28, 28) and x.dtype == torch.float32 and int(y) == 5  # the famous first "5"
    assert abs(float(train.tensors[0].mean())) < 0.01  # normalized with MNIST's own mean/std
    # a second call finds the data folder complete and touches nothing
    before = {p: p.stat().st_mtime_ns for p in raw.iterdir()}
    datasets.resolve("mnist", tmp_path, mirror="/nonexistent")
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
    with pytest.raises(datasets.CorruptDataError, match="t10k-labels-idx1-ubyte.gz: md5 .* does not match"):
        datasets.resolve("mnist", root, mirror=mirror)
    assert _leftovers(root) == []


def test_missing_offline_gives_one_clear_error(tmp_path, no_download, monkeypatch):
    monkeypatch.delenv("QHELPERS_DATA_MIRROR", raising=False)
    root = tmp_path / "data"
    with pytest.raises(datasets.DataUnavailableError) as info:
        datasets.resolve("mnist", root)
    msg = str(info.value)
    assert "mnist is not available" in msg
    assert "data folder" in msg and "QHELPERS_DATA_MIRROR is not set" in msg and "torchvision download" in msg
    assert "To fix:" in msg
    assert _leftovers(root) == []


def test_missing_mirror_folder_is_listed(tmp_path, no_download):
    with pytest.raises(datasets.DataUnavailableError, match=r"offline mirror .*nowhere.*missing"):
        datasets.resolve("mnist", tmp_path / "data", mirror=tmp_path / "nowhere")


def test_missing_fashion_mnist_names_the_debian_package(tmp_path, no_download, monkeypatch):
    monkeypatch.delenv("QHELPERS_DATA_MIRROR", raising=False)
    with pytest.raises(datasets.DataUnavailableError, match="apt-get install dataset-fashion-mnist"):
        datasets.resolve("fashion-mnist", tmp_path / "data", debian_dir=tmp_path / "no-debian")


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
    with pytest.raises(datasets.CorruptDataError, match="27x28, expected 28x28"):
        datasets.resolve("fashion-mnist", root, debian_dir=deb)
    assert _leftovers(root) == []


@needs_debian
def test_fashion_mnist_from_debian(tmp_path, no_download, monkeypatch):
    monkeypatch.delenv("QHELPERS_DATA_MIRROR", raising=False)
    datasets.resolve("fashion-mnist", tmp_path)
    test = datasets.load("fashion-mnist", train=False, root=tmp_path)
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
    a = datasets.loaders("mnist", subset=500, seed=3, batch_size=32)
    b = datasets.loaders("mnist", subset=500, seed=3, batch_size=32)
    assert len(a.train.dataset) == 500 and len(a.val.dataset) == 5000 and len(a.test.dataset) == 10000
    xa, ya = next(iter(a.train))
    xb, yb = next(iter(b.train))
    assert torch.equal(xa, xb) and torch.equal(ya, yb)
    with pytest.raises(ValueError, match="subset=0"):
        datasets.loaders("mnist", subset=0)


def test_calibration_batches_are_seeded_and_match_a_shuffled_loader():
    toy = _toy(50)
    loaders = data.Loaders(DataLoader(toy, batch_size=10), DataLoader(toy), DataLoader(toy), "toy")
    batches = data.calibration_batches(loaders, 3, seed=4)
    assert len(batches) == 3 and batches[0].shape == (10, 1)
    expected = [x for x, _ in DataLoader(toy, batch_size=10, shuffle=True, generator=torch.Generator().manual_seed(4))][:3]
    assert all(torch.equal(a, b) for a, b in zip(batches, expected))
    next(iter(loaders.train))  # using the training loader does not change the choice
    assert all(torch.equal(a, b) for a, b in zip(data.calibration_batches(loaders, 3, seed=4), batches))
    assert [len(x) for x in data.calibration_batches(toy, 3, batch_size=20)] == [20, 20, 10]  # the last one partial
    with pytest.raises(ValueError, match=r"num_batches=9 batches of 20 images asks for 180 images, but the data set holds 50: "
                                         r"3 batch\(es\) at most.*allow_fewer=True"):
        data.calibration_batches(toy, 9, batch_size=20)
    assert [len(x) for x in data.calibration_batches(toy, 9, batch_size=20, allow_fewer=True)] == [20, 20, 10]
    with pytest.raises(ValueError, match=r"asks for 40 images, but the data set holds 10"):  # the example
        data.calibration_batches(_toy(10), 10, batch_size=4)
    with pytest.raises(TypeError, match="allow_fewer=1 must be True or False"):
        data.calibration_batches(toy, 2, allow_fewer=1)
    with pytest.raises(ValueError, match="empty"):
        data.calibration_batches(_toy(0), 2)
    with pytest.raises(ValueError, match="num_batches=0 must be at least 1"):
        data.calibration_batches(loaders, 0)


def test_cli_reports_failure_cleanly(tmp_path, no_download, monkeypatch, capsys):
    monkeypatch.delenv("QHELPERS_DATA_MIRROR", raising=False)
    monkeypatch.setenv("QHELPERS_DATA", str(tmp_path))
    assert datasets.main(["mnist"]) == 1
    assert "error: mnist is not available" in capsys.readouterr().err


# ---------------------------------------------------------------- installed files that cannot lie

@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    """MNIST installed once from the mirror; tests get hard-linked copies (see ``_copy``)."""
    if not MIRROR or not (Path(MIRROR) / "MNIST" / "raw").is_dir():
        pytest.skip("QHELPERS_DATA_MIRROR with MNIST not available")
    root = tmp_path_factory.mktemp("installed")
    datasets.resolve("mnist", root, mirror=MIRROR)
    return root


def _copy(installed: Path, dest: Path) -> Path:
    shutil.copytree(installed, dest, copy_function=os.link)
    return dest


def _rewrite(path: Path, change) -> None:
    """Replace a (hard-linked) file by a changed copy, leaving the shared original alone."""
    blob = bytearray(path.read_bytes())
    blob = change(blob)
    path.unlink()
    path.write_bytes(bytes(blob))


def _flip_label(value: int):
    def change(blob: bytearray) -> bytearray:
        blob[8 + 17] = value  # item 17's label
        return blob
    return change


def test_every_load_checks_the_md5(installed, tmp_path, monkeypatch):
    root = _copy(installed, tmp_path / "d")
    calls = []
    digest = datasets._digest
    monkeypatch.setattr(datasets, "_digest", lambda p, algorithm="md5": calls.append(p.name) or digest(p, algorithm))
    datasets.resolve("mnist", root)
    datasets.resolve("mnist", root)
    assert sorted(calls) == sorted(2 * [datasets._unpacked(f) for f, _ in datasets._files(tv_datasets.MNIST)])


@pytest.mark.parametrize("file", ["t10k-labels-idx1-ubyte", "train-images-idx3-ubyte"])
def test_a_file_damaged_in_place_with_its_mtime_restored_is_refused(installed, tmp_path, file):
    """A size-and-mtime stamp would pass it: one byte changed, same size, the old mtime put back."""
    root = _copy(installed, tmp_path / "d")
    path = root / "MNIST" / "raw" / file
    datasets.load("mnist", train=False, root=root)  # verified once before the damage
    st = path.stat()

    def flip(blob: bytearray) -> bytearray:
        blob[len(blob) // 2] ^= 0x01  # a pixel or a label, still a valid file
        return blob

    _rewrite(path, flip)
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert path.stat().st_size == st.st_size and path.stat().st_mtime_ns == st.st_mtime_ns
    with pytest.raises(datasets.CorruptDataError, match=rf"{re.escape(str(path))}: md5 \w+ of the unpacked data does not match"
                       r".*delete it and run `python -m qhelpers.course.datasets mnist` \(or `make data`\)"):
        datasets.load("mnist", train=False, root=root)


@pytest.mark.parametrize(
    "file, change, match",
    [
        ("t10k-images-idx3-ubyte", lambda b: b[: len(b) // 2], r"3920008 bytes, expected 7840016: the file is truncated"),
        ("t10k-labels-idx1-ubyte", lambda b: b[:3], r"3 bytes, too short for an idx header"),
        ("train-images-idx3-ubyte", lambda b: b[:4] + b"\x00\x00\x00\x07" + b[8:], r"idx header says magic=2051 count=7, .*expected magic=2051 count=60000"),
        ("t10k-labels-idx1-ubyte", _flip_label(200), r"md5 \w+ of the unpacked data does not match the data set's 27ae3e"),
        ("t10k-labels-idx1-ubyte", _flip_label(3), r"md5 \w+ of the unpacked data does not match"),  # still a valid class
    ],
    ids=["truncated", "too-short", "bad-header", "label-200", "label-valid-but-wrong"],
)
def test_a_damaged_installed_file_is_refused_with_advice(installed, tmp_path, file, change, match):
    root = _copy(installed, tmp_path / "d")
    path = root / "MNIST" / "raw" / file
    _rewrite(path, change)
    advice = r"The installed file is damaged: delete it and run `python -m qhelpers.course.datasets mnist`"
    with pytest.raises(datasets.CorruptDataError, match=rf"{re.escape(str(path))}: {match}.*{advice}"):
        datasets.load("mnist", train=file.startswith("train"), root=root)
    with pytest.raises(datasets.CorruptDataError, match=advice):
        datasets.resolve("mnist", root)  # what `python -m qhelpers.course.datasets` runs before it says "ready"
    # following the advice repairs it: the .gz files beside it are unpacked and checked again
    path.unlink()
    assert len(datasets.load("mnist", train=file.startswith("train"), root=root)) in (10000, 60000)


def test_the_missing_data_advice_works_when_followed(tmp_path, no_download, monkeypatch):
    """The error says to copy the four .gz files into a folder: do exactly that, and it works."""
    if not MIRROR or not (Path(MIRROR) / "MNIST" / "raw").is_dir():
        pytest.skip("QHELPERS_DATA_MIRROR with MNIST not available")
    monkeypatch.delenv("QHELPERS_DATA_MIRROR", raising=False)
    root = tmp_path / "data"
    with pytest.raises(datasets.DataUnavailableError) as info:
        datasets.resolve("mnist", root)
    advice = re.search(r"copy the four \.gz files \(([^)]*)\) into (\S+),", str(info.value))
    assert advice, str(info.value)
    names, folder = advice.group(1).split(", "), Path(advice.group(2))
    folder.mkdir(parents=True)
    for name in names:
        shutil.copyfile(Path(MIRROR) / "MNIST" / "raw" / name, folder / name)
    assert len(datasets.load("mnist", train=False, root=root)) == 10000
    assert not list(root.glob(".staging-*"))


def test_recompressed_gz_files_in_the_data_folder_are_accepted(tmp_path, no_download, monkeypatch):
    """Like Debian's recompressed Fashion-MNIST: another .gz md5, the same unpacked data."""
    if not MIRROR or not (Path(MIRROR) / "MNIST" / "raw").is_dir():
        pytest.skip("QHELPERS_DATA_MIRROR with MNIST not available")
    monkeypatch.delenv("QHELPERS_DATA_MIRROR", raising=False)
    raw = tmp_path / "MNIST" / "raw"
    raw.mkdir(parents=True)
    for name, md5 in datasets._files(tv_datasets.MNIST):
        with gzip.open(Path(MIRROR) / "MNIST" / "raw" / name) as src, gzip.open(raw / name, "wb", compresslevel=1) as out:
            shutil.copyfileobj(src, out)
        assert datasets._digest(raw / name) != md5
    assert len(datasets.load("mnist", train=False, root=tmp_path)) == 10000


def test_a_corrupt_gz_in_the_data_folder_is_refused_and_nothing_is_installed(tmp_path, no_download, monkeypatch):
    if not MIRROR or not (Path(MIRROR) / "MNIST" / "raw").is_dir():
        pytest.skip("QHELPERS_DATA_MIRROR with MNIST not available")
    raw = tmp_path / "MNIST" / "raw"
    raw.mkdir(parents=True)
    for name, _ in datasets._files(tv_datasets.MNIST):
        shutil.copyfile(Path(MIRROR) / "MNIST" / "raw" / name, raw / name)
    _rewrite(raw / "t10k-labels-idx1-ubyte.gz", lambda b: b[:-30])
    with pytest.raises(datasets.CorruptDataError, match=r"t10k-labels-idx1-ubyte\.gz: cannot be decompressed.*Delete it, or replace it"):
        datasets.resolve("mnist", tmp_path, mirror=MIRROR)
    assert sorted(p.name for p in raw.iterdir()) == sorted(f for f, _ in datasets._files(tv_datasets.MNIST))
    assert not list(tmp_path.glob(".staging-*"))
    # the advice: delete it, and the other sources (here the mirror) are tried
    (raw / "t10k-labels-idx1-ubyte.gz").unlink()
    datasets.resolve("mnist", tmp_path, mirror=MIRROR)
    assert len(datasets.load("mnist", train=False, root=tmp_path)) == 10000


def test_a_data_folder_that_is_a_file_is_refused(tmp_path, monkeypatch):
    (tmp_path / "file").write_text("x")
    monkeypatch.setenv("QHELPERS_DATA", str(tmp_path / "file"))
    with pytest.raises(datasets.DataUnavailableError, match=r"data folder .*file is a file, not a folder; set QHELPERS_DATA"):
        datasets.load("mnist", train=True)
    monkeypatch.setenv("QHELPERS_DATA", str(tmp_path / "file" / "below"))
    with pytest.raises(datasets.DataUnavailableError, match=r"cannot be written \(Not a directory.*set QHELPERS_DATA"):
        datasets.load("mnist", train=True)


def test_a_read_only_data_folder_gets_a_clear_error(tmp_path, monkeypatch, no_download):
    def refuse(*args, **kwargs):
        raise PermissionError(13, "Permission denied", str(tmp_path / ".staging-x"))

    monkeypatch.setattr(datasets.tempfile, "TemporaryDirectory", refuse)  # root ignores permission bits
    with pytest.raises(datasets.DataUnavailableError, match=r"data folder .* cannot be written \(Permission denied.*set QHELPERS_DATA"):
        datasets.resolve("mnist", tmp_path, mirror=tmp_path / "nowhere")


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only folders")
def test_a_read_only_data_folder_really(tmp_path, no_download):
    tmp_path.chmod(0o555)
    try:
        with pytest.raises(datasets.DataUnavailableError, match=r"cannot be written \(Permission denied"):
            datasets.resolve("mnist", tmp_path, mirror=tmp_path / "nowhere")
    finally:
        tmp_path.chmod(0o755)


def test_stale_staging_folders_are_removed_and_failures_leave_none(tmp_path, no_download, monkeypatch):
    monkeypatch.delenv("QHELPERS_DATA_MIRROR", raising=False)
    stale = tmp_path / ".staging-killed"
    stale.mkdir()
    (stale / "train-images-idx3-ubyte.gz").write_bytes(b"half")
    with pytest.raises(datasets.DataUnavailableError):
        datasets.resolve("mnist", tmp_path)
    assert list(tmp_path.glob(".staging-*")) == []


@needs_mirror
def test_a_killed_install_is_cleaned_up_by_the_next_run(tmp_path, no_download):
    import subprocess
    import sys

    kill_while_installing = (
        "import os, signal, sys; from qhelpers.course import datasets\n"
        "datasets._install = lambda *a: os.kill(os.getpid(), signal.SIGKILL)\n"
        "datasets.resolve('mnist', sys.argv[1], mirror=sys.argv[2])\n"
    )
    proc = subprocess.run([sys.executable, "-c", kill_while_installing, str(tmp_path), MIRROR])
    assert proc.returncode == -9
    assert len(list(tmp_path.glob(".staging-*"))) == 1  # what SIGKILL leaves behind
    datasets.resolve("mnist", tmp_path, mirror=MIRROR)
    assert list(tmp_path.glob(".staging-*")) == []


def test_stale_staging_folders_beside_a_complete_data_set_are_removed(installed, tmp_path):
    root = _copy(installed, tmp_path / "d")
    (root / ".staging-killed" / "dl").mkdir(parents=True)
    datasets.resolve("mnist", root)
    assert list(root.glob(".staging-*")) == []


@needs_mirror
def test_concurrent_installs_take_turns(tmp_path, no_download):
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(2) as pool:
        roots = list(pool.map(lambda _: datasets.resolve("mnist", tmp_path, mirror=MIRROR), range(2)))
    assert roots == [tmp_path, tmp_path]
    assert len(datasets.load("mnist", train=False, root=tmp_path)) == 10000
    assert list(tmp_path.glob(".staging-*")) == []


# ---------------------------------------------------------------- bad arguments

@pytest.mark.parametrize(
    "kwargs, error, match",
    [
        (dict(train="yes"), TypeError, r"train='yes' must be True or False \(True: the training split"),
        (dict(train=None), TypeError, r"train=None must be True or False"),
        (dict(train=1), TypeError, r"train=1 must be True or False"),
        (dict(train=True, normalize="no"), TypeError, r"normalize='no' must be True or False"),
        (dict(train=True, root=123), TypeError, r"root=123 must be a folder path"),
        (dict(train=True, root=""), TypeError, r"root='' must be a folder path"),
        (dict(name=["mnist"], train=True), ValueError, r"unknown dataset \['mnist'\]"),
    ],
)
def test_load_checks_its_arguments(kwargs, error, match, tmp_path):
    kwargs = {"name": "mnist", "root": tmp_path, **kwargs}
    with pytest.raises(error, match=match):
        datasets.load(**kwargs)


@pytest.mark.parametrize(
    "kwargs, error, match",
    [
        (dict(allow_download="no"), TypeError, r"allow_download='no' must be True or False"),
        (dict(mirror=5), TypeError, r"mirror=5 must be a folder path"),
        (dict(debian_dir=None), TypeError, r"debian_dir=None must be a folder path"),
    ],
)
def test_resolve_checks_its_arguments(kwargs, error, match, tmp_path):
    with pytest.raises(error, match=match):
        datasets.resolve("mnist", tmp_path, **kwargs)


@pytest.mark.parametrize(
    "args, error, match",
    [
        ((2.5, 0), TypeError, r"val_size=2\.5 must be an int, not float"),
        ((True, 0), TypeError, r"val_size=True must be an int, not bool"),
        ((-1, 0), ValueError, r"val_size=-1 must be between 0 and 99"),
        ((10, -1), ValueError, r"seed=-1 must be between 0 and 4294967295"),
        ((10, 2**32), ValueError, r"seed=4294967296 must be between 0 and 4294967295"),
        ((10, 1.5), TypeError, r"seed=1\.5 must be an int"),
        ((10, "0"), TypeError, r"seed='0' must be an int"),
    ],
)
def test_split_checks_its_arguments(args, error, match):
    with pytest.raises(error, match=match):
        data.split(_toy(), *args)


def test_split_refuses_what_is_not_a_dataset():
    with pytest.raises(TypeError, match="dataset must be a Dataset with a length"):
        data.split(5, 1, 0)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="the dataset is empty"):
        data.split(_toy(0), 0, 0)


@pytest.mark.parametrize(
    "kwargs, error, match",
    [
        (dict(batch_size=0), ValueError, r"batch_size=0 must be at least 1"),
        (dict(batch_size=True), TypeError, r"batch_size=True must be an int, not bool"),
        (dict(batch_size=32.0), TypeError, r"batch_size=32\.0 must be an int, not float"),
        (dict(eval_batch_size=-5), ValueError, r"eval_batch_size=-5 must be at least 1"),
        (dict(val_size=-1), ValueError, r"val_size=-1 must be at least 0"),
        (dict(subset=True), TypeError, r"subset=True must be an int"),
        (dict(subset=2.5), TypeError, r"subset=2\.5 must be an int"),
        (dict(subset=-3), ValueError, r"subset=-3 must be at least 1"),
        (dict(seed=-1), ValueError, r"seed=-1 must be between 0 and"),
        (dict(seed="0"), TypeError, r"seed='0' must be an int"),
    ],
)
def test_loaders_check_their_arguments_before_reading_data(kwargs, error, match, tmp_path, monkeypatch):
    monkeypatch.setattr(datasets, "load", lambda *a, **k: pytest.fail("data was read before the arguments were checked"))
    with pytest.raises(error, match=match):
        datasets.loaders("mnist", root=tmp_path, **kwargs)


def test_calibration_batches_check_their_arguments():
    toy = _toy(50)
    with pytest.raises(TypeError, match=r"num_batches=2\.5 must be an int"):
        data.calibration_batches(toy, 2.5)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match=r"num_batches=True must be an int, not bool"):
        data.calibration_batches(toy, True)
    with pytest.raises(TypeError, match=r"data must be a qhelpers.data.Loaders .* or a Dataset, not NoneType"):
        data.calibration_batches(None, 1)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"seed=-1 must be between 0 and 4294967295"):
        data.calibration_batches(toy, 1, seed=-1)






# ---------------------------------------------------------------- Tiny Shakespeare: one text file

TEXT_MIRROR = Path(MIRROR) / "tinyshakespeare" / "input.txt" if MIRROR else None
needs_text_mirror = pytest.mark.skipif(
    TEXT_MIRROR is None or not TEXT_MIRROR.is_file(), reason="QHELPERS_DATA_MIRROR with tinyshakespeare not available"
)


@pytest.fixture
def no_text_download(monkeypatch):
    """The download fails at once, as it does offline (nothing listens on port 9)."""
    src = datasets.TEXTS["tinyshakespeare"]
    monkeypatch.setitem(datasets.TEXTS, "tinyshakespeare", datasets.TextSource(src.folder, src.file, src.size, src.sha256,
                                                                       "http://127.0.0.1:9/input.txt"))


@needs_text_mirror
def test_text_from_the_mirror_is_verified_installed_and_split(tmp_path, no_text_download):
    path = datasets.resolve_text("tinyshakespeare", tmp_path, mirror=MIRROR)
    assert path == tmp_path / "tinyshakespeare" / "input.txt" and path.stat().st_size == 1_115_394
    assert oct(path.stat().st_mode & 0o777) == oct(0o666 & ~_umask())
    assert [p.name for p in tmp_path.iterdir()] == ["tinyshakespeare"]  # no staging folder left
    text = datasets.load_text("tinyshakespeare", tmp_path)
    assert len(text) == 1_115_394 and text.startswith("First Citizen:")
    splits = datasets.char_splits("tinyshakespeare", root=tmp_path)
    assert len(splits.vocab) == 65 and splits.vocab.chars[0] == "\n"
    assert len(splits.train) == 1_003_854 and len(splits.val) == 111_540
    assert splits.vocab.decode(splits.train[:14]) == "First Citizen:"
    assert torch.equal(torch.cat([splits.train, splits.val]), splits.vocab.encode(text))


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


@needs_text_mirror
def test_installed_text_is_checksummed_on_every_load_even_with_its_mtime_restored(tmp_path, monkeypatch):
    path = datasets.resolve_text("tinyshakespeare", tmp_path, mirror=MIRROR)
    calls = []
    digest = datasets._digest
    monkeypatch.setattr(datasets, "_digest", lambda p, algorithm="md5": calls.append(p.name) or digest(p, algorithm))
    datasets.resolve_text("tinyshakespeare", tmp_path)
    datasets.resolve_text("tinyshakespeare", tmp_path)
    assert calls == ["input.txt", "input.txt"]
    st = path.stat()
    blob = bytearray(path.read_bytes())
    blob[777] ^= 0x01
    path.write_bytes(bytes(blob))
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))  # same size, same mtime: only the checksum can tell
    with pytest.raises(datasets.CorruptDataError, match=rf"{re.escape(str(path))}: sha256 \w+ does not match.*delete it and run "
                       r"`python -m qhelpers.course.datasets tinyshakespeare` \(or `make data`\)"):
        datasets.load_text("tinyshakespeare", tmp_path)


@needs_text_mirror
@pytest.mark.parametrize("change, match", [
    (lambda b: b[:1000], r"1000 bytes, expected 1115394: the file is truncated"),
    (lambda b: b[:500] + (b"X" if b[500:501] != b"X" else b"Y") + b[501:], r"sha256 \w+ does not match the data set's 86c4e6"),
], ids=["truncated", "one-byte-changed"])
def test_a_damaged_installed_text_is_refused_with_advice(tmp_path, change, match):
    path = datasets.resolve_text("tinyshakespeare", tmp_path, mirror=MIRROR)
    blob = path.read_bytes()
    path.write_bytes(change(blob))
    advice = r"The installed file is damaged: delete it and run `python -m qhelpers.course.datasets tinyshakespeare`"
    with pytest.raises(datasets.CorruptDataError, match=rf"{re.escape(str(path))}: {match}.*{advice}"):
        datasets.load_text("tinyshakespeare", tmp_path)
    path.unlink()  # the advice, followed (the mirror is found again)
    assert len(datasets.load_text("tinyshakespeare", datasets.resolve_text("tinyshakespeare", tmp_path, mirror=MIRROR).parents[1])) == 1_115_394


@needs_text_mirror
def test_a_corrupt_mirror_text_is_refused_and_nothing_is_left(tmp_path, no_text_download):
    mirror = tmp_path / "mirror"
    (mirror / "tinyshakespeare").mkdir(parents=True)
    blob = bytearray(TEXT_MIRROR.read_bytes())
    blob[1234] ^= 0x01
    (mirror / "tinyshakespeare" / "input.txt").write_bytes(bytes(blob))
    root = tmp_path / "data"
    with pytest.raises(datasets.CorruptDataError, match=r"mirror/tinyshakespeare/input.txt: sha256 .* does not match.*Replace it with a good copy"):
        datasets.resolve_text("tinyshakespeare", root, mirror=mirror)
    assert _leftovers(root) == []


def test_missing_text_offline_gives_one_clear_error(tmp_path, no_text_download, monkeypatch):
    monkeypatch.delenv("QHELPERS_DATA_MIRROR", raising=False)
    root = tmp_path / "data"
    with pytest.raises(datasets.DataUnavailableError) as info:
        datasets.resolve_text("tinyshakespeare", root)
    msg = str(info.value)
    assert msg.startswith("tinyshakespeare is not available. Tried, in order:")
    assert "data folder" in msg and "QHELPERS_DATA_MIRROR is not set" in msg
    assert "download from http://127.0.0.1:9/input.txt: URLError" in msg
    assert "To fix: copy input.txt (1,115,394 bytes, sha256 86c4e6" in msg
    assert _leftovers(root) == [] and not list(root.glob(".staging-*"))
    with pytest.raises(datasets.DataUnavailableError, match=r"offline mirror .*nowhere.*is missing"):
        datasets.resolve_text("tinyshakespeare", root, mirror=tmp_path / "nowhere")
    with pytest.raises(datasets.DataUnavailableError, match=r"\(disabled\)"):
        datasets.resolve_text("tinyshakespeare", root, allow_download=False)


@needs_text_mirror
def test_text_download_is_verified_like_any_source(tmp_path, monkeypatch):
    """The download path, exercised offline through a file:// URL; a wrong file from it is refused."""
    monkeypatch.delenv("QHELPERS_DATA_MIRROR", raising=False)
    src = datasets.TEXTS["tinyshakespeare"]
    monkeypatch.setitem(datasets.TEXTS, "tinyshakespeare", datasets.TextSource(src.folder, src.file, src.size, src.sha256,
                                                                       TEXT_MIRROR.as_uri()))
    assert datasets.resolve_text("tinyshakespeare", tmp_path / "ok").stat().st_size == 1_115_394
    wrong = tmp_path / "wrong.txt"
    wrong.write_bytes(b"x" * src.size)
    monkeypatch.setitem(datasets.TEXTS, "tinyshakespeare", datasets.TextSource(src.folder, src.file, src.size, src.sha256, wrong.as_uri()))
    with pytest.raises(datasets.CorruptDataError, match=r"wrong.txt: sha256 .* does not match.*Run again to download it afresh"):
        datasets.resolve_text("tinyshakespeare", tmp_path / "bad")
    assert _leftovers(tmp_path / "bad") == []


def test_text_data_folder_that_is_a_file_is_refused(tmp_path):
    (tmp_path / "file").write_text("x")
    with pytest.raises(datasets.DataUnavailableError, match="is a file, not a folder"):
        datasets.resolve_text("tinyshakespeare", tmp_path / "file", mirror=tmp_path)


def test_char_vocab_round_trip_and_errors():
    vocab = data.CharVocab.from_text("hello world")
    assert vocab.chars == " dehlorw" and len(vocab) == 8
    ids = vocab.encode("hello")
    assert ids.dtype == torch.long and vocab.decode(ids) == "hello" and vocab.decode([1, 2]) == "de"
    with pytest.raises(ValueError, match="character 'z' is not in the vocabulary of 8"):
        vocab.encode("zoo")
    with pytest.raises(ValueError, match=r"token ids must lie in 0\.\.7"):
        vocab.decode([8])
    with pytest.raises(ValueError, match="distinct"):
        data.CharVocab("aa")


def test_char_splits_of_a_text_are_contiguous_and_named():
    splits = data.char_splits("hello world", val_fraction=0.2, name="greeting")
    assert splits.name == "greeting" and splits.vocab.chars == " dehlorw"
    assert splits.vocab.decode(splits.train) == "hello wo" and splits.vocab.decode(splits.val) == "rld"
    assert data.char_splits("abcd").name == "text"


@pytest.mark.parametrize("call, error, match", [
    (lambda: datasets.resolve_text("shakespeare"), ValueError, r"unknown text data set 'shakespeare'; choose one of \['tinyshakespeare'\]"),
    (lambda: datasets.resolve_text("tinyshakespeare", allow_download="no"), TypeError, "allow_download='no' must be True or False"),
    (lambda: datasets.resolve_text("tinyshakespeare", mirror=3), TypeError, "mirror=3 must be a folder path"),
    (lambda: datasets.char_splits("tinyshakespeare", val_fraction=1.0), ValueError, "val_fraction=1.0 must be a number strictly between 0 and 1"),
    (lambda: datasets.char_splits("shakespeare"), ValueError, r"unknown text data set 'shakespeare'"),
    (lambda: data.char_splits("hello world", val_fraction=0), ValueError, "val_fraction=0 must be a number strictly between 0 and 1"),
])
def test_text_functions_check_their_arguments(call, error, match):
    with pytest.raises(error, match=match):
        call()


@needs_text_mirror
def test_cli_installs_the_text(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("QHELPERS_DATA", str(tmp_path))
    monkeypatch.setenv("QHELPERS_DATA_MIRROR", MIRROR)
    assert datasets.main(["tinyshakespeare"]) == 0
    assert "tinyshakespeare: ready in" in capsys.readouterr().out
