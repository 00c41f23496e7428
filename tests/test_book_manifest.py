"""book.yml loading and validation, parameter parsing, run planning and the notebook parameter checks (no kernels)."""

from __future__ import annotations

import textwrap

import pytest
import yaml

from book_fixtures import tiny_book, write_notebook
from qhelpers.course.book import BookError, load_book, notebook_parameters, plan, stanza, sync
from qhelpers.course.book.__main__ import main
from qhelpers.course.book.manifest import parse_assignments, parse_value


@pytest.fixture
def book_path(tmp_path):
    return tiny_book(tmp_path)


def edit(path, change):
    """Apply ``change`` to the parsed book.yml and write it back."""
    raw = yaml.safe_load(path.read_text())
    change(raw)
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    return path


def problems(path) -> str:
    with pytest.raises(BookError) as info:
        load_book(path)
    return str(info.value)


def test_valid_book_loads(book_path):
    book = load_book(book_path)
    assert book.title == "Tiny book"
    assert [c.id for c in book.chapters] == ["alpha", "beta"]
    alpha = book.chapter("alpha")
    assert alpha.parameters["bits"].default == 8 and alpha.parameters["bits"].choices == (2, 4, 8)
    assert alpha.effective("smoke") == {"bits": 4, "dataset": "mnist"}
    assert book.chapter("beta").effective("smoke") == {"seed": 0, "fail": False}
    assert set(book.profiles) == {"full", "smoke"}


@pytest.mark.parametrize("change, expected", [
    (lambda r: r["chapters"][0].update(notebook="notebooks/nope.ipynb"), "notebooks/nope.ipynb does not exist"),
    (lambda r: r["chapters"][1].update(id="alpha"), "duplicate id"),
    (lambda r: r["chapters"][0]["parameters"].update(lr={"type": "float", "default": 0.1, "help": "x"}), "parameter lr is not in the parameters cell"),
    (lambda r: r["chapters"][0]["parameters"].pop("dataset"), "parameter dataset = 'mnist' is missing from book.yml"),
    (lambda r: r["chapters"][0]["parameters"]["bits"].update(default="8"), "has type str, expected int"),
    (lambda r: r["chapters"][0]["parameters"]["bits"].update(type="integer"), "has type 'integer'"),
    (lambda r: r["chapters"][0]["parameters"]["bits"].update(default=4), "book.yml default 4 differs from the notebook's 8"),
    (lambda r: r["chapters"][0]["parameters"]["bits"].pop("help"), "has no help text"),
    (lambda r: r["chapters"][0]["profiles"].update(quick={"bits": 2}), "unknown profile 'quick'"),
    (lambda r: r["chapters"][0]["profiles"].update(smoke={"bits": 3}), "bits = 3 is not allowed"),
    (lambda r: r["chapters"][0]["profiles"].update(smoke={"epochs": 1}), "sets epochs, which is not a parameter"),
    (lambda r: r["chapters"][0]["profiles"].update(full={"bits": 2}), "profile `full` means the notebook defaults"),
    (lambda r: r["chapters"][1]["parameters"]["seed"].update(range=[1, 10]), "seed = 0 is out of range [1, 10]"),
    (lambda r: r.pop("title"), "missing `title:`"),
    (lambda r: r["chapters"][0].pop("summary"), "missing summary"),
    (lambda r: r["chapters"][1]["parameters"]["seed"].update(range=[0, "thousand"]), "range [0, 'thousand'] must hold two finite numbers"),
    (lambda r: r["chapters"][1]["parameters"]["seed"].update(range=[True, 10]), "must hold two finite numbers"),
    (lambda r: r["chapters"][1]["parameters"]["seed"].update(range=[10, 0]), "range [10, 0] is empty (lo > hi)"),
    (lambda r: r["chapters"][1]["parameters"]["seed"].update(range=[0, float("inf")]), "must hold two finite numbers"),
    (lambda r: r["chapters"][0]["parameters"]["bits"].update(choices=[]), "choices must be a non-empty list"),
    (lambda r: r["chapters"][0]["parameters"]["bits"].update(choices=[2, 8, 8]), "choices list a value twice"),
    (lambda r: r["chapters"][0]["parameters"]["bits"].update(nullable="yes"), "nullable must be true or false"),
    (lambda r: r["chapters"][1]["parameters"].update({"bad-name": {"type": "int", "default": 0, "help": "x"}}), "'bad-name' is not a Python variable name"),
    (lambda r: r["chapters"][0].update(notebook="notebooks/01_alpha.txt"), "must be the path of a .ipynb file inside the book's folder"),
    (lambda r: r["chapters"][0].update(notebook="../01_alpha.ipynb"), "must be the path of a .ipynb file inside the book's folder"),
    (lambda r: r["chapters"][0].update(notebook="/tmp/01_alpha.ipynb"), "must be the path of a .ipynb file inside the book's folder"),
    (lambda r: r["chapters"][1].update(notebook="other/01_alpha.ipynb"), "a notebook named 01_alpha.ipynb is already used by another chapter"),
    (lambda r: r.update(chapter=[]), "unknown top-level keys ['chapter']"),
    (lambda r: r["profiles"].update({"../x": "escape"}), "profile name '../x' must be lowercase"),
    (lambda r: r["chapters"][0]["profiles"].update(smok={"bits": 2}), "unknown profile 'smok'; did you mean 'smoke'?"),
    (lambda r: r["chapters"][0]["profiles"].update(smoke={"bitz": 2}), "sets bitz, which is not a parameter of this chapter; did you mean 'bits'?"),
])
def test_invalid_book_is_refused_with_a_clear_message(book_path, change, expected):
    assert expected in problems(edit(book_path, change))


def test_all_problems_are_reported_at_once(book_path):
    def change(r):
        r["chapters"][0]["notebook"] = "missing.ipynb"
        r["chapters"][1]["parameters"]["seed"]["default"] = 3
    msg = problems(edit(book_path, change))
    assert "missing.ipynb does not exist" in msg and "default 3 differs" in msg


def test_notebook_without_parameters_cell_is_refused(book_path):
    import nbformat

    nb_path = book_path.parent / "notebooks" / "02_beta.ipynb"
    nb = nbformat.read(nb_path, as_version=4)
    nb.cells[1].metadata["tags"] = []
    nbformat.write(nb, nb_path)
    assert "has 0 cells tagged 'parameters'" in problems(book_path)


def test_non_literal_default_is_refused(tmp_path, book_path):
    write_notebook(book_path.parent / "notebooks" / "02_beta.ipynb", "seed = 2 ** 3  # seed\nfail = False  # x")
    assert "seed = 2 ** 3 is not a literal" in problems(book_path)


def test_stanza_is_a_valid_entry(tmp_path):
    write_notebook(tmp_path / "notebooks" / "07_new_thing.ipynb", """
        bits = 4  # bit-width
        lr = 0.01  # learning rate
        name = 'x'  # a name
        on = True  # a switch
        path = None  # optional folder
        """)
    entry = yaml.safe_load(stanza(tmp_path / "notebooks" / "07_new_thing.ipynb", root=tmp_path))[0]
    assert entry["id"] == "new-thing" and entry["notebook"] == "notebooks/07_new_thing.ipynb"
    assert {k: v["type"] for k, v in entry["parameters"].items()} == {"bits": "int", "lr": "float", "name": "str", "on": "bool", "path": "str"}
    entry.update(title="T", summary="S")
    (tmp_path / "book.yml").write_text(yaml.safe_dump({"title": "B", "profiles": {"smoke": "s"}, "chapters": [entry]}, sort_keys=False))
    # the cell as written ('x' in single quotes) is not yet what book.yml generates: sync writes it, then the book loads
    assert "is not laid out as book.yml writes it" in problems(tmp_path / "book.yml")
    assert [c.id for c, _ in sync(load_book(tmp_path / "book.yml", check_notebooks=False))] == ["new-thing"]
    book = load_book(tmp_path / "book.yml")
    assert book.chapters[0].parameters["path"].nullable
    assert notebook_parameters(book.chapters[0].notebook)["name"] == ("x", "a name")


@pytest.mark.parametrize("text, type_name, expected", [
    ("4", "int", 4), ("0.5", "float", 0.5), ("1e-3", "float", 1e-3), ("mnist", "str", "mnist"),
    ("true", "bool", True), ("No", "bool", False), ("none", "str", "none"),
])
def test_parse_value(text, type_name, expected):
    assert parse_value(text, type_name) == expected and type(parse_value(text, type_name)) is type(expected)


def test_parse_value_errors_and_null():
    assert parse_value("null", "str", nullable=True) is None
    for text in ("nan", "inf", "-inf", "1e999"):
        with pytest.raises(BookError, match="is not a finite number"):
            parse_value(text, "float")
    with pytest.raises(BookError, match="'four' is not a valid int"):
        parse_value("four", "int")
    with pytest.raises(BookError, match="not a valid bool"):
        parse_value("maybe", "bool")


def test_parse_assignments():
    assert parse_assignments(["bits=4", "dataset=fashion-mnist"]) == {"bits": "4", "dataset": "fashion-mnist"}
    assert parse_assignments(["bits=2, 4,8"], lists=True) == {"bits": ["2", "4", "8"]}
    with pytest.raises(BookError, match="name=value"):
        parse_assignments(["bits"])
    with pytest.raises(BookError, match="given twice"):
        parse_assignments(["bits=2", "bits=4"])
    with pytest.raises(BookError, match="empty value"):
        parse_assignments(["bits=2,,4"], lists=True)
    for empty in (["bits="], ["bits= "]):
        with pytest.raises(BookError, match="no value after '='"):
            parse_assignments(empty)
    with pytest.raises(BookError, match="is not a parameter name"):
        parse_assignments(["bad name=1"])
    assert parse_assignments(["alpha.bits=2", "mnist-cnn.bits=4"]) == {"alpha.bits": "2", "mnist-cnn.bits": "4"}


def test_nan_and_inf_parameters_are_refused():
    from qhelpers.course.book import Parameter

    lr = Parameter("lr", "float", 0.1, "learning rate")
    assert lr.problem(0.5) is None and lr.problem(1) is None
    for bad in (float("nan"), float("inf"), float("-inf")):
        assert "is not a finite number" in lr.problem(bad)


def test_chapter_specific_override_wins_over_the_general_one(book_path):
    book = load_book(book_path)
    for params in ({"bits": "2", "alpha.bits": "4"}, {"alpha.bits": "4", "bits": "2"}):
        assert plan(book, only=["alpha"], params=params)[0][1] == {"bits": 4}


def test_plan_applies_profile_then_overrides(book_path):
    book = load_book(book_path)
    todo = plan(book, "smoke", params={"bits": "2", "beta.seed": "7"})
    assert [(c.id, v) for c, v in todo] == [("alpha", {"bits": 2}), ("beta", {"seed": 7})]
    assert [(c.id, v) for c, v in plan(book, "full", only=["beta"])] == [("beta", {})]


@pytest.mark.parametrize("kwargs, expected", [
    ({"profile": "quick"}, "unknown profile 'quick'; choose one of full, smoke"),
    ({"only": ["gamma"]}, "--only: unknown chapter id 'gamma'; the chapters are: alpha, beta"),
    ({"params": {"lr": "0.1"}}, "no chapter of this run has a parameter 'lr'"),
    ({"params": {"bits": "3"}}, "bits = 3 is not allowed; choose one of 2, 4, 8"),
    ({"params": {"seed": "abc"}}, "'abc' is not a valid int"),
    ({"params": {"seed": "5000"}}, "seed = 5000 is out of range [0, 1000]"),
    ({"params": {"alpha.seed": "1"}}, "chapter alpha has no parameter 'seed'"),
    ({"params": {"bits": "2"}, "only": ["beta"]}, "no chapter of this run has a parameter 'bits'"),
])
def test_plan_refuses_bad_requests(book_path, kwargs, expected):
    with pytest.raises(BookError) as info:
        plan(load_book(book_path), **kwargs)
    assert expected in str(info.value)


def test_cli_refuses_before_executing_anything(book_path, capsys):
    out = book_path.parent / "build"
    assert main(["--book", str(book_path), "run", "--profile", "smoke", "-p", "bits=3"]) == 2
    assert main(["--book", str(book_path), "sweep", "alpha", "-p", "bits=2,5"]) == 2
    assert main(["--book", str(book_path), "sweep", "gamma", "-p", "bits=2"]) == 2
    err = capsys.readouterr().err
    assert "bits = 3 is not allowed" in err and "bits = 5 is not allowed" in err and "unknown chapter id 'gamma'" in err
    assert not out.exists()


def test_cli_check_and_list(book_path, capsys):
    assert main(["--book", str(book_path), "check"]) == 0
    assert main(["--book", str(book_path), "list"]) == 0
    out = capsys.readouterr().out
    assert "2 chapters" in out and "bits (int one of 2, 4, 8; default 8): bit-width" in out and "profile smoke: bits=4" in out


MNIST_CNN = dict(dataset="mnist", epochs=3, train_subset=0, calibration_batches=10, qat_epochs=1, seed=0, bits=0,
                 compile_models=True, latency_repeats=10)


@pytest.mark.parametrize("change,match", [
    ({"dataset": "cifar"}, r"parameter dataset = 'cifar' is not allowed; choose one of 'mnist', 'fashion-mnist'; set it"),
    ({"bits": True}, r"parameter bits = True has type bool, expected int"),  # a bool is not the int 1
    ({"bits": 9}, r"parameter bits = 9 is not allowed; choose one of 0, 2, 3, 4, 5, 6, 7, 8"),
    ({"epochs": 51}, r"parameter epochs = 51 is out of range \[1, 50\]; set it in the parameters cell, or pass e.g. `-p epochs=...`"),
    ({"seed": "0"}, r"parameter seed = '0' has type str, expected int"),
])
def test_check_parameters_applies_book_yml(change, match):
    from qhelpers.course.book import check_parameters

    assert check_parameters("mnist-cnn", MNIST_CNN) is None
    with pytest.raises(ValueError, match=match):
        check_parameters("mnist-cnn", {**MNIST_CNN, **change})


def test_check_parameters_needs_every_parameter_and_applies_the_rules():
    from qhelpers.course.book import check_parameters, load_book

    with pytest.raises(ValueError, match="parameter bits is not defined"):
        check_parameters("mnist-cnn", {k: v for k, v in MNIST_CNN.items() if k != "bits"})
    resnet = {p.name: p.default for p in load_book(check_notebooks=False).chapter("resnet18").parameters.values()}
    check_parameters("resnet18", resnet)
    with pytest.raises(ValueError, match="with weights='imagenet', imagenet_dir must be set"):
        check_parameters("resnet18", {**resnet, "weights": "imagenet"})
    with pytest.raises(ValueError, match=r"seed = -1 is out of range"):
        check_parameters("resnet18", {**resnet, "seed": -1})
    with pytest.raises(BookError, match="unknown chapter id 'mnist'"):
        check_parameters("mnist", MNIST_CNN)


def test_every_notebook_checks_its_parameters_with_book_yml():
    import json

    for chapter in load_book(check_notebooks=False).chapters:
        code = "".join("".join(c["source"]) for c in json.loads(chapter.notebook.read_text())["cells"] if c["cell_type"] == "code")
        assert f'check_parameters("{chapter.id}", globals())' in code, chapter.notebook.name


def test_parameters_cell_with_tricky_comments_is_read(tmp_path):
    from qhelpers.course.book import notebook_parameters

    nb = write_notebook(tmp_path / "01_x.ipynb", '''
        bits: int = 0  # 0 = find it; (the widest where PTQ loses >= 1 pp)
        imagenet_dir = ""  # with weights="imagenet": a folder, e.g. "/data/val"
        ratio = -0.5  # negative, "quoted" = fine
        ''')
    assert notebook_parameters(nb) == {
        "bits": (0, "0 = find it; (the widest where PTQ loses >= 1 pp)"),
        "imagenet_dir": ("", 'with weights="imagenet": a folder, e.g. "/data/val"'),
        "ratio": (-0.5, 'negative, "quoted" = fine'),
    }
    write_notebook(tmp_path / "02_y.ipynb", "import os  # not a parameter")
    with pytest.raises(BookError, match="not a plain `name = value  # help` assignment"):
        notebook_parameters(tmp_path / "02_y.ipynb")


def test_book_yml_offers_the_data_sets_qhelpers_loads():
    from qhelpers.data import DATASETS

    offered = {ch.id: set(ch.parameters["dataset"].choices) for ch in load_book(check_notebooks=False).chapters
               if "dataset" in ch.parameters}
    assert offered and all(choices == set(DATASETS) for choices in offered.values()), offered


def test_papermill_reads_every_parameters_cell_without_a_warning(caplog):
    """papermill parses the cell line by line and gives up (``Unable to parse line``) on a comment containing ``=``:
    instructors running papermill would see the notice and `papermill --help-notebook` would miss the parameter."""
    import logging

    from papermill.translators import PythonTranslator

    import nbformat

    from qhelpers.course.book import notebook_parameters

    for chapter in load_book(check_notebooks=False).chapters:
        cell = next(c for c in nbformat.read(chapter.notebook, as_version=4).cells if "parameters" in c.metadata.get("tags", []))
        caplog.clear()
        with caplog.at_level(logging.WARNING, logger="papermill"):
            found = {p.name for p in PythonTranslator.inspect(cell)}
        assert not caplog.records, f"{chapter.notebook.name}: {[r.getMessage() for r in caplog.records]}"
        assert found == set(notebook_parameters(chapter.notebook)), chapter.notebook.name
