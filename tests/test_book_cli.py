"""The command line refuses bad input with one clear line and exit code 2, never a traceback (no kernels start)."""

from __future__ import annotations

import textwrap

import pytest
import yaml

from book_fixtures import tiny_book, write_notebook
from qhelpers.course.book.__main__ import main


def refused(capsys, argv: list[str], expected: str, code: int = 2) -> str:
    """Run the CLI; assert the exit code, one stderr line containing ``expected`` and no traceback."""
    assert main(argv) == code
    err = capsys.readouterr().err
    assert "Traceback" not in err
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert len(lines) == 1, err
    assert expected in lines[0], lines[0]
    return lines[0]


@pytest.mark.parametrize("argv, expected", [
    (["rnu"], "invalid choice: 'rnu'"),
    ([], "the following arguments are required: COMMAND"),
    (["run", "alpha"], "unrecognized arguments: alpha"),
    (["list", "--only", "alpha"], "unrecognized arguments: --only alpha"),
    (["run", "--only"], "expected at least one argument"),
    (["sweep"], "the following arguments are required: ID"),
])
def test_bad_command_line_is_one_line_not_usage_text(book_path, capsys, argv, expected):
    line = refused(capsys, ["--book", str(book_path), *argv], expected)
    assert line.startswith("error: ") and "--help" in line


def test_unknown_subcommand_suggests_the_closest(book_path, capsys):
    assert "did you mean 'run'?" in refused(capsys, ["rnu"], "invalid choice")


def test_help_still_exits_zero(capsys):
    assert main(["--help"]) == 0
    assert "COMMAND" in capsys.readouterr().out


@pytest.mark.parametrize("argv, expected", [
    (["run", "--only", "alpah"], "unknown chapter id 'alpah'; did you mean 'alpha'?"),
    (["run", "--only", "01_alpha"], "the chapter of that notebook is 'alpha'"),
    (["run", "-p", "bits"], "write parameters as name=value"),
    (["run", "-p", "=4"], "write parameters as name=value"),
    (["run", "-p", "bits="], "no value after '='"),
    (["run", "-p", "bits= "], "no value after '='"),
    (["run", "-p", "bad name=1"], "'bad name' is not a parameter name"),
    (["run", "-p", "bitz=4"], "no chapter of this run has a parameter 'bitz'; did you mean 'bits'?"),
    (["run", "-p", "bits=four"], "'four' is not a valid int (a whole number)"),
    (["run", "-p", "seed=1.5"], "'1.5' is not a valid int"),
    (["run", "-p", "fail=maybe"], "'maybe' is not a valid bool"),
    (["run", "-p", "bits=3"], "bits = 3 is not allowed; choose one of 2, 4, 8"),
    (["run", "-p", "seed=5000"], "seed = 5000 is out of range [0, 1000]"),
    (["run", "-p", "bits=2,4"], "(to run several values, use `sweep`)"),
    (["run", "-p", "bits=2", "-p", "bits=4"], "-p bits is given twice"),
    (["run", "-p", "gamma.bits=2"], "'gamma' is not a chapter of this run"),
    (["run", "-p", "alpha.bitz=2"], "chapter alpha has no parameter 'bitz'; did you mean 'bits'?"),
    (["run", "--profile", "smok"], "unknown profile 'smok'; did you mean 'smoke'?"),
    (["sweep", "alpha"], "give the grid with -p"),
    (["sweep", "alpha", "-p", "bits="], "no value after '='"),
    (["sweep", "alpha", "-p", "bits=2,,4"], "empty value in the list"),
    (["sweep", "alpha", "-p", "bits=2,2"], "the value 2 is given twice"),
    (["sweep", "alpha", "-p", "bits=4,04"], "the value 4 is given twice"),
    (["sweep", "alpah", "-p", "bits=2"], "unknown chapter id 'alpah'; did you mean 'alpha'?"),
    (["sweep", "alpha", "-p", "bitz=2,4"], "chapter alpha has no parameter 'bitz'"),
    (["sweep", "alpha", "-p", "bits=2,4", "--profile", "quick"], "unknown profile 'quick'"),
    (["html", "--profile", "smok"], "unknown profile 'smok'"),
    (["html"], "no run of profile 'full'"),
])
def test_bad_request_is_refused_before_anything_runs(book_path, capsys, argv, expected):
    refused(capsys, ["--book", str(book_path), *argv], expected)
    assert not (book_path.parent / "build").exists()


def test_out_that_is_a_file_or_inside_notebooks_is_refused(book_path, capsys, tmp_path):
    a_file = tmp_path / "a_file"
    a_file.write_text("x")
    for cmd in (["run"], ["sweep", "alpha", "-p", "bits=2,4"], ["html"]):
        refused(capsys, ["--book", str(book_path), *cmd, "--out", str(a_file)], "is a file, not a folder")
        refused(capsys, ["--book", str(book_path), *cmd, "--out", str(a_file / "sub")], "is a file, not a folder")
    refused(capsys, ["--book", str(book_path), "run", "--out", str(tmp_path / "notebooks")], "is inside the notebooks folder")
    refused(capsys, ["--book", str(book_path), "sweep", "alpha", "-p", "bits=2", "--out", str(tmp_path / "notebooks" / "x")],
            "is inside the notebooks folder")


def test_out_that_cannot_be_created_is_refused(book_path, capsys, monkeypatch):
    from pathlib import Path

    def denied(self, *args, **kwargs):
        raise PermissionError(13, "Permission denied", str(self))

    monkeypatch.setattr(Path, "mkdir", denied)
    refused(capsys, ["--book", str(book_path), "run", "--out", str(book_path.parent / "out")], "cannot create")


def test_out_that_is_not_writable_is_refused(book_path, capsys, monkeypatch):
    monkeypatch.setattr("qhelpers.course.book.files.os.access", lambda *a, **k: False)
    refused(capsys, ["--book", str(book_path), "run", "--out", str(book_path.parent / "out")], "is not writable")


@pytest.mark.parametrize("content, expected", [
    ("hello", "is not a Jupyter notebook"),
    ("[1, 2]", "is not a Jupyter notebook"),
    ('{"nbformat": 4, "nbformat_minor": 5, "metadata": {}}', "is not a Jupyter notebook"),
    ('{"nbformat": 4, "nbformat_minor": 5, "metadata": {}, "cells": [{"cell_type": "code", "metadata": {}}]}',
     "is not a valid Jupyter notebook ('source' is a required property)"),
    (b"\xff\xfe\x00", "is not a Jupyter notebook"),
])
def test_stanza_and_check_refuse_a_file_that_is_not_a_notebook(book_path, capsys, content, expected):
    nb = book_path.parent / "notebooks" / "02_beta.ipynb"
    nb.write_bytes(content.encode() if isinstance(content, str) else content)
    refused(capsys, ["stanza", str(nb)], expected)
    refused(capsys, ["--book", str(book_path), "check"], expected)


def test_stanza_on_bad_paths(tmp_path, capsys):
    refused(capsys, ["stanza", str(tmp_path / "nope.ipynb")], "does not exist")
    refused(capsys, ["stanza", str(tmp_path)], "is a folder")
    (tmp_path / "notes.txt").write_text("x")
    refused(capsys, ["stanza", str(tmp_path / "notes.txt")], "is not a .ipynb file")
    nb = write_notebook(tmp_path / "01_x.ipynb", "x = 1  # x")
    refused(capsys, ["stanza", str(nb), "--id", "Bad Id"], "a chapter id must be lowercase")


def test_stanza_writes_the_path_relative_to_the_book(book_path, capsys):
    assert main(["--book", str(book_path), "stanza", str(book_path.parent / "notebooks" / "02_beta.ipynb")]) == 0
    assert yaml.safe_load(capsys.readouterr().out)[0]["notebook"] == "notebooks/02_beta.ipynb"


def test_execute_in_place_only_takes_the_books_notebooks(book_path, capsys, tmp_path):
    outside = write_notebook(tmp_path / "elsewhere" / "01_x.ipynb", "x = 1  # x")
    refused(capsys, ["--book", str(book_path), "execute-in-place", str(outside)], "is not in the book's notebooks folder")
    refused(capsys, ["--book", str(book_path), "execute-in-place", str(book_path)], "no such notebook")
    refused(capsys, ["--book", str(book_path), "execute-in-place", str(tmp_path / "notebooks" / "nope.ipynb")], "no such notebook")
    refused(capsys, ["--book", str(book_path), "execute-in-place", str(tmp_path / "notebooks")], "a folder, not a notebook")


@pytest.mark.parametrize("text, expected", [
    ("", "expected a mapping with title, profiles, chapters (it is empty)"),
    ("- a\n- b\n", "(it holds a list)"),
    ("title: x\nchapters:\n  - id: a\n   title: b\n", "book.yml line 4, column 4: invalid YAML"),
    ("title: [x\n", "invalid YAML: expected ',' or ']'"),
    ("title: a\ntitle: b\n", "line 2, column 1: invalid YAML: duplicate key 'title' (first given on line 1)"),
])
def test_malformed_book_yml(tmp_path, capsys, text, expected):
    (tmp_path / "book.yml").write_text(text)
    refused(capsys, ["--book", str(tmp_path / "book.yml"), "check"], expected)


def test_book_yml_missing_unreadable_or_a_folder(tmp_path, capsys):
    refused(capsys, ["--book", str(tmp_path / "nope.yml"), "check"], "does not exist")
    refused(capsys, ["--book", str(tmp_path), "check"], "is a folder without a book.yml")
    (tmp_path / "book.yml").write_bytes(b"title: caf\xe9\n")
    refused(capsys, ["--book", str(tmp_path / "book.yml"), "check"], "cannot read it")


def test_a_folder_with_a_book_yml_is_accepted_as_book(book_path, capsys):
    assert main(["--book", str(book_path.parent), "check"]) == 0


def test_duplicate_parameter_key_is_refused_with_its_line(book_path, capsys):
    lines = book_path.read_text().splitlines(keepends=True)
    i = next(i for i, ln in enumerate(lines) if ln.strip().startswith("seed: {type: int"))
    lines.insert(i + 1, lines[i].replace("default: 0", "default: 1"))
    book_path.write_text("".join(lines))
    refused(capsys, ["--book", str(book_path), "check"], "duplicate key 'seed'")


def test_a_requires_rule_refuses_the_run_before_a_kernel_starts(book_path, capsys):
    book_path.write_text(book_path.read_text() + textwrap.indent(textwrap.dedent("""
        requires:
          - {if: {fail: true}, then: {seed: [1, 2]}, message: a failing run needs seed 1 or 2}
        """), " " * 4))
    line = refused(capsys, ["--book", str(book_path), "run", "--only", "beta", "-p", "fail=yes"],
                   "chapter beta: with fail=True, seed must be one of 1, 2 (it is 0): a failing run needs seed 1 or 2")
    assert line.startswith("error: ")
    refused(capsys, ["--book", str(book_path), "sweep", "beta", "-p", "fail=no,yes"], "chapter beta at fail=True: with fail=True")


def test_interrupt_outside_a_chapter_is_one_line_and_exit_130(book_path, capsys, monkeypatch):
    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr("qhelpers.course.book.__main__.load_book", interrupted)
    assert main(["--book", str(book_path), "check"]) == 130
    assert capsys.readouterr().err == "interrupted (Ctrl-C)\n"
