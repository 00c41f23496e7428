"""The command line's remaining bad inputs (issue #19): a relative --book, an empty --out, numbers in other scripts'
digits, path parameters that do not exist, and Ctrl-C while the modules load. No notebook is executed."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from book_fixtures import tiny_book, write_notebook
from qhelpers.course.book import check_parameters, load_book
import qhelpers.course.book.sweeps  # noqa: F401  (its execute_papermill is stubbed below)
from qhelpers.course.book.__main__ import main

ROOT = Path(__file__).resolve().parents[1]


def one_line(capsys, argv: list[str], expected: str, code: int = 2) -> str:
    assert main(argv) == code
    err = capsys.readouterr().err
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert "Traceback" not in err and len(lines) == 1, err
    assert expected in lines[0], lines[0]
    return lines[0]


# ---- a relative --book (it crashed in Path.relative_to)

def test_a_relative_book_path_lists_and_checks(book_path, capsys, monkeypatch):
    monkeypatch.chdir(book_path.parent / "notebooks")  # the path is relative and goes up: ../book.yml
    assert main(["--book", "../book.yml", "list"]) == 0
    out = capsys.readouterr().out
    assert "alpha: Chapter A  [notebooks/01_alpha.ipynb]" in out
    monkeypatch.chdir(book_path.parent)
    assert main(["--book", "book.yml", "list"]) == 0
    assert "[notebooks/01_alpha.ipynb]" in capsys.readouterr().out
    assert load_book("book.yml").chapters[0].notebook.is_absolute()


@pytest.mark.parametrize("argv, expected", [
    (["run", "--only", "alpah"], "unknown chapter id 'alpah'; did you mean 'alpha'?"),
    (["run", "--only", "01_alpha"], "the chapter of that notebook is 'alpha'"),
    (["sweep", "alpah", "-p", "bits=2,4"], "unknown chapter id 'alpah'"),
    (["sweep", "01_alpha", "-p", "bits=2,4"], "the chapter of that notebook is 'alpha'"),
])
def test_a_relative_book_path_names_unknown_chapters(book_path, capsys, monkeypatch, argv, expected):
    monkeypatch.chdir(book_path.parent)
    one_line(capsys, ["--book", "book.yml", *argv], expected)


def test_check_parameters_with_a_relative_book(book_path, monkeypatch):
    monkeypatch.chdir(book_path.parent)
    check_parameters("alpha", {"bits": 4, "dataset": "mnist"}, book="book.yml")
    with pytest.raises(ValueError, match="unknown chapter id '01_alpha'; the chapter of that notebook is 'alpha'"):
        check_parameters("01_alpha", {}, book="book.yml")


# ---- an empty --out (it meant ./full)

@pytest.mark.parametrize("argv", [["run"], ["sweep", "alpha", "-p", "bits=2,4"], ["html"]])
@pytest.mark.parametrize("out", ["", " "])
def test_an_empty_out_is_refused(book_path, capsys, monkeypatch, tmp_path, argv, out):
    work = tmp_path / "cwd"
    work.mkdir()
    monkeypatch.chdir(work)
    one_line(capsys, ["--book", str(book_path), *argv, "--out", out], f"argument --out: {out!r} is empty: give a folder path")
    assert list(work.iterdir()) == []


def test_an_empty_book_is_refused(capsys):
    one_line(capsys, ["--book", "", "list"], "argument --book: '' is empty")


# ---- numbers: ASCII digits only

@pytest.mark.parametrize("text", ["٨", "１６", "1_0", "۴"])
def test_numbers_in_other_scripts_or_with_underscores_are_refused(book_path, capsys, text):
    one_line(capsys, ["--book", str(book_path), "run", "-p", f"bits={text}"], "is not a valid int: write numbers with the ASCII digits 0-9")
    one_line(capsys, ["--book", str(book_path), "sweep", "alpha", "-p", f"bits=2,{text}"], "is not a valid int: write numbers")
    assert not (book_path.parent / "build").exists()


def test_float_parameters_take_ascii_only_too():
    from qhelpers.course.book.manifest import BookError, parse_value

    assert parse_value("1e-3", "float") == 0.001 and parse_value(" -2.5", "float") == -2.5 and parse_value("4", "int") == 4
    for text in ("1_0.5", "١.٥", "０.５"):
        with pytest.raises(BookError, match="is not a valid float: write numbers with the ASCII digits 0-9"):
            parse_value(text, "float")
    with pytest.raises(BookError, match="not a finite number"):
        parse_value("inf", "float")


# ---- path parameters: checked before a kernel starts, naming the parameter and the path

def _path_book(root: Path) -> Path:
    write_notebook(root / "notebooks" / "01_img.ipynb", 'weights = "none"  # weights\nimage_dir = ""  # a folder of class folders',
                   "print(image_dir)")
    (root / "book.yml").write_text(yaml.safe_dump({"title": "Paths", "profiles": {"smoke": "s"}, "chapters": [{
        "id": "img", "title": "Images", "notebook": "notebooks/01_img.ipynb", "summary": "reads a folder",
        "parameters": {"weights": {"type": "str", "default": "none", "choices": ["none", "imagenet"], "help": "weights"},
                       "image_dir": {"type": "str", "default": "", "path": "folder", "help": "a folder of class folders"}},
        "requires": [{"if": {"weights": "imagenet"}, "then": "image_dir"}]}]}, sort_keys=False))
    return root / "book.yml"


def test_a_missing_path_parameter_is_refused_before_a_kernel_starts(tmp_path, capsys, monkeypatch):
    book = _path_book(tmp_path)
    monkeypatch.setattr("qhelpers.course.book.runner.execute_papermill", lambda *a, **k: pytest.fail("a kernel started"))
    monkeypatch.setattr(sys.modules["qhelpers.course.book.sweeps"], "execute_papermill", lambda *a, **k: pytest.fail("a kernel started"))
    line = one_line(capsys, ["--book", str(book), "run", "-p", "weights=imagenet", "-p", "image_dir=/nonexistent/val"],
                    "image_dir = '/nonexistent/val': /nonexistent/val does not exist; give the path of an existing folder")
    assert "weights" not in line.split("image_dir", 1)[1].split(";")[0]  # the path is blamed, not the weights
    a_file = tmp_path / "a_file.txt"
    a_file.write_text("x")
    one_line(capsys, ["--book", str(book), "run", "-p", f"image_dir={a_file}"], "is a file, not a folder")
    one_line(capsys, ["--book", str(book), "sweep", "img", "-p", "weights=none,imagenet", "-p", "image_dir=/nonexistent"],
             "/nonexistent does not exist")
    assert not (tmp_path / "build").exists()


def test_a_relative_path_parameter_is_made_absolute_from_the_working_directory(tmp_path, monkeypatch):
    from qhelpers.course.book.runner import plan

    book = load_book(_path_book(tmp_path))
    (tmp_path / "val").mkdir()
    monkeypatch.chdir(tmp_path)  # the kernel runs in notebooks/: the notebook must get the path the user meant
    [(_, values)] = plan(book, params={"image_dir": "val"})
    assert values["image_dir"] == str(tmp_path / "val")


def test_the_notebooks_own_check_refuses_a_missing_path_too(tmp_path):
    book = _path_book(tmp_path)
    with pytest.raises(ValueError, match="parameter image_dir = '/nonexistent': /nonexistent does not exist"):
        check_parameters("img", {"weights": "imagenet", "image_dir": "/nonexistent"}, book=book)
    check_parameters("img", {"weights": "none", "image_dir": ""}, book=book)


def test_path_is_only_for_str_parameters(tmp_path):
    book = _path_book(tmp_path)
    raw = yaml.safe_load(book.read_text())
    raw["chapters"][0]["parameters"]["weights"]["path"] = "directory"
    book.write_text(yaml.safe_dump(raw))
    with pytest.raises(ValueError, match="parameter weights: path must be `folder` or `file`"):
        load_book(book)


def test_the_courses_imagenet_dir_is_a_path_parameter():
    """book.yml declares `path: folder` for resnet18's imagenet_dir, so `-p imagenet_dir=/nonexistent` is refused up front."""
    chapter = load_book(ROOT / "book.yml", check_notebooks=False).chapter("resnet18")
    assert chapter.parameters["imagenet_dir"].path == "folder"


# ---- Ctrl-C while the modules load (before main() has started)

@pytest.mark.parametrize("delay", [0.3, 0.8, 1.3])
def test_ctrl_c_while_starting_is_one_line_and_exit_130(tmp_path, delay):
    book = tiny_book(tmp_path)
    proc = subprocess.Popen([sys.executable, "-m", "qhelpers.course.book", "--book", str(book), "check"], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, cwd=ROOT,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    time.sleep(delay)
    if proc.poll() is not None:
        pytest.skip(f"the command finished within {delay} s on this machine")
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=60)
    if proc.returncode == 0 and not err:  # the signal landed after the command had done its work (it is then ignored)
        pytest.skip(f"the command had finished its work within {delay} s on this machine")
    assert proc.returncode == 130 and err.startswith("interrupted (Ctrl-C)") and err.count("\n") == 1, (proc.returncode, err)
    assert "Traceback" not in err
