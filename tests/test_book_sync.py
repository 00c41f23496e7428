"""book.yml is the one declaration of each parameter: the notebooks' parameters cells are generated from it
(``python -m qhelpers.course.book sync``), and any drift of name, order, default, type or help is reported."""

from __future__ import annotations

import json
from pathlib import Path

import nbformat
import pytest
import yaml

from qhelpers.course.book import BookError, load_book, parameters_cell, sync
from qhelpers.course.book.__main__ import main
from qhelpers.course.book.manifest import literal, parameters_drift

ROOT = Path(__file__).resolve().parents[1]
SYNC = "python -m qhelpers.course.book sync"
ALPHA = 'bits = 8  # bit-width\ndataset = "mnist"  # which data'  # the tiny book's chapter alpha, as book.yml writes it


def alpha(book_path: Path) -> Path:
    return book_path.parent / "notebooks" / "01_alpha.ipynb"


def set_cell(notebook: Path, source: str) -> None:
    """Give ``notebook``'s parameters cell ``source``, an output to its next cell and execution metadata to both."""
    nb = nbformat.read(notebook, as_version=4)
    cell = next(c for c in nb.cells if "parameters" in c.metadata.get("tags", []))
    cell.source = source
    cell.metadata["execution"] = {"iopub.status.busy": "2026-01-01T00:00:00Z"}
    after = nb.cells[nb.cells.index(cell) + 1]
    after.outputs = [nbformat.v4.new_output("stream", name="stdout", text="kept\n")]
    after.execution_count = 7
    nbformat.write(nb, notebook)


def problems(book_path: Path) -> str:
    with pytest.raises(BookError) as info:
        load_book(book_path)
    return str(info.value)


def test_the_tiny_books_cells_are_what_book_yml_writes(book_path):
    book = load_book(book_path)  # no drift
    assert parameters_cell(book.chapter("alpha").parameters.values()) == ALPHA
    assert sync(book, write=False) == []


# One case per kind of drift: (the notebook's cell, what the report says).
DRIFT = {
    "name": ('bitz = 8  # bit-width\ndataset = "mnist"  # which data',
             ["parameter bits is not in the parameters cell of notebooks/01_alpha.ipynb",
              "the notebook's parameter bitz = 8 is missing from book.yml"]),
    "missing": ('bits = 8  # bit-width', ["parameter dataset is not in the parameters cell"]),
    "extra": (ALPHA + "\nlr = 0.1  # learning rate", ["the notebook's parameter lr = 0.1 is missing from book.yml"]),
    "order": ('dataset = "mnist"  # which data\nbits = 8  # bit-width',
              ["the parameters cell of notebooks/01_alpha.ipynb lists dataset, bits; book.yml's order is bits, dataset"]),
    "default": ('bits = 4  # bit-width\ndataset = "mnist"  # which data',
                ["parameter bits: book.yml default 8 differs from the notebook's 4"]),
    "type-float": ('bits = 8.0  # bit-width\ndataset = "mnist"  # which data',
                   ["parameter bits: the notebook's default 8.0 has type float, book.yml's 8 type int"]),
    "type-str": ('bits = "8"  # bit-width\ndataset = "mnist"  # which data',
                 ["parameter bits: the notebook's default '8' has type str, book.yml's 8 type int"]),
    "type-bool": ('bits = True  # bit-width\ndataset = "mnist"  # which data',
                  ["parameter bits: the notebook's default True has type bool, book.yml's 8 type int"]),
    "help": ('bits = 8  # bit-width of the weights\ndataset = "mnist"  # which data',
             ["parameter bits: the notebook's help 'bit-width of the weights' differs from book.yml's 'bit-width'"]),
    "no-help": ('bits = 8\ndataset = "mnist"  # which data', ["parameter bits: the notebook's help '' differs"]),
    "layout-quotes": ("bits = 8  # bit-width\ndataset = 'mnist'  # which data", ["is not laid out as book.yml writes it"]),
    "layout-blank-line": (ALPHA + "\n", ["is not laid out as book.yml writes it"]),
    "layout-comment": ("# parameters\n" + ALPHA, ["is not laid out as book.yml writes it"]),
    "not-a-literal": ('bits = 2 ** 3  # bit-width\ndataset = "mnist"  # which data',
                      ["parameter bits = 2 ** 3 is not a literal", f"or let `{SYNC}` write the cell"]),
}


@pytest.mark.parametrize("kind", DRIFT)
def test_drift_is_reported_by_check_and_repaired_by_sync(book_path, capsys, kind):
    source, expected = DRIFT[kind]
    notebook = alpha(book_path)
    set_cell(notebook, source)
    before = notebook.read_bytes()

    # load_book (every command that runs a chapter) and `check` refuse, saying what differs and what to run
    msg = problems(book_path)
    for part in expected:
        assert part in msg, msg
    assert SYNC in msg and "chapter 'beta'" not in msg
    assert main(["--book", str(book_path), "check"]) == 2
    err = capsys.readouterr().err
    assert all(part in err for part in expected) and SYNC in err

    # sync --check lists it and writes nothing
    assert main(["--book", str(book_path), "sync", "--check"]) == 1
    out = capsys.readouterr().out
    assert "notebooks/01_alpha.ipynb (alpha): parameters cell differs from book.yml" in out and "02_beta" not in out
    assert all(part in out for part in expected if SYNC not in part), out  # (without the hint: it is the command's own)
    assert f"1 of 2 parameters cells differ from book.yml; run `{SYNC}`" in out
    assert notebook.read_bytes() == before

    # sync rewrites that cell's source only
    assert main(["--book", str(book_path), "sync"]) == 0
    assert "notebooks/01_alpha.ipynb (alpha): rewrote the parameters cell" in capsys.readouterr().out
    old, new = json.loads(before), json.loads(notebook.read_text())
    cell = next(i for i, c in enumerate(new["cells"]) if "parameters" in c["metadata"].get("tags", []))
    assert "".join(new["cells"][cell]["source"]) == ALPHA
    new["cells"][cell]["source"] = old["cells"][cell]["source"]
    assert new == old  # outputs, metadata, execution counts and every other cell as they were
    assert new["cells"][cell + 1]["outputs"][0]["text"] == ["kept\n"]
    load_book(book_path)
    assert main(["--book", str(book_path), "sync", "--check"]) == 0
    assert "2 parameters cells: all as book.yml writes them" in capsys.readouterr().out


@pytest.mark.parametrize("change, expected", [
    (lambda p: p["bits"].update(help="bits per weight"), "parameter bits: the notebook's help 'bit-width' differs from book.yml's 'bits per weight'"),
    (lambda p: p["bits"].update(default=4), "parameter bits: book.yml default 4 differs from the notebook's 8"),
    (lambda p: p["bits"].update(type="float", choices=None), "parameter bits: the notebook's default 8 has type int, book.yml's 8.0 type float"),
    (lambda p: p.update(dataset=p.pop("dataset"), lr={"type": "float", "default": 0.5, "help": "step"}), "parameter lr is not in the parameters cell"),
])
def test_a_change_of_book_yml_is_drift_until_sync_writes_it(book_path, change, expected):
    raw = yaml.safe_load(book_path.read_text())
    change(raw["chapters"][0]["parameters"])
    if raw["chapters"][0]["parameters"]["bits"].get("choices", 0) is None:
        del raw["chapters"][0]["parameters"]["bits"]["choices"]
    book_path.write_text(yaml.safe_dump(raw, sort_keys=False))
    assert expected in problems(book_path)
    drifted = sync(load_book(book_path, check_notebooks=False))
    assert [c.id for c, _ in drifted] == ["alpha"] and any(expected in d for d in drifted[0][1])
    book = load_book(book_path)  # now in step
    assert nbformat.read(alpha(book_path), as_version=4).cells[1].source == parameters_cell(book.chapter("alpha").parameters.values())


def test_the_generated_cell_keeps_the_course_style():
    from qhelpers.course.book import Parameter

    params = [Parameter("dataset", "str", "mnist", help='"mnist" or "fashion-mnist"'),
              Parameter("quote", "str", 'say "hi"', help="a quote"), Parameter("apostrophe", "str", "it's", help="x"),
              Parameter("folder", "str", "", help="a folder"), Parameter("lr", "float", 1, help="learning rate"),
              Parameter("on", "bool", True, help="a switch"), Parameter("tag", "str", None, nullable=True, help="a label")]
    assert parameters_cell(params) == "\n".join([
        'dataset = "mnist"  # "mnist" or "fashion-mnist"', "quote = 'say \"hi\"'  # a quote", 'apostrophe = "it\'s"  # x',
        'folder = ""  # a folder', "lr = 1.0  # learning rate", "on = True  # a switch", "tag = None  # a label"])
    for value in ["mnist", 'say "hi"', "it's", "both ' and \"", "back\\slash", "", "ünïcode", 0, -2.5, 1e-3, True, None]:
        import ast

        assert ast.literal_eval(literal(value)) == value
    # the drift check of a cell that is exactly the generated one is empty
    assert parameters_drift({p.name: p for p in params}, parameters_cell(params)) == []


def test_sync_refuses_a_notebook_without_one_parameters_cell_and_writes_nothing(book_path):
    set_cell(alpha(book_path), "bits = 4  # bit-width\ndataset = \"mnist\"  # which data")
    beta = book_path.parent / "notebooks" / "02_beta.ipynb"
    nb = nbformat.read(beta, as_version=4)
    nb.cells[1].metadata["tags"] = []
    nbformat.write(nb, beta)
    before = alpha(book_path).read_bytes()
    with pytest.raises(BookError, match="chapter 'beta': notebooks/02_beta.ipynb: has 0 cells tagged 'parameters'"):
        sync(load_book(book_path, check_notebooks=False))
    assert alpha(book_path).read_bytes() == before  # all or nothing


@pytest.mark.parametrize("help_, expected", [
    ("0 = all", "must be one line without '='"),
    ("with weights=imagenet: a folder", "must be one line without '='"),
    ("two\nlines", "must be one line without '='"),
])
def test_a_help_text_papermill_cannot_read_is_refused(book_path, help_, expected):
    raw = yaml.safe_load(book_path.read_text())
    raw["chapters"][0]["parameters"]["bits"]["help"] = help_
    book_path.write_text(yaml.safe_dump(raw, sort_keys=False))
    assert expected in problems(book_path)


def test_the_course_has_no_drift():
    """Every parameters cell of notebooks/ is exactly what book.yml generates (else run the sync command)."""
    book = load_book(ROOT / "book.yml", check_notebooks=False)
    drifted = sync(book, write=False)
    assert not drifted, f"run `{SYNC}`:\n" + "\n".join(f"{c.id}: {d}" for c, d in drifted)
    for chapter in book.chapters:
        cell = next(c for c in nbformat.read(chapter.notebook, as_version=4).cells if "parameters" in c.metadata.get("tags", []))
        assert cell.source == parameters_cell(chapter.parameters.values()), chapter.id
        assert parameters_drift(chapter.parameters, cell.source) == []
