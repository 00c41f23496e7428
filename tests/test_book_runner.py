"""The runner, sweeps, book and execute-in-place on a tiny two-chapter book (real kernels: ~1 min)."""

from __future__ import annotations

import json
import re
import shutil
import sys

import nbformat
import pytest

from book_fixtures import tiny_book, write_notebook
from qhelpers.course.book import BookError, NotebookFailed, execute_all_in_place, load_book, run, sweep


@pytest.fixture(scope="module")
def smoke(tmp_path_factory):
    """The tiny book, run once with the smoke profile."""
    root = tmp_path_factory.mktemp("book")
    book = load_book(tiny_book(root))
    results = run(book, "smoke", progress=False)
    return book, root / "build" / "smoke", results


def test_run_collects_records_per_chapter(smoke):
    book, out, results = smoke
    on_disk = json.loads((out / "results.json").read_text())
    assert on_disk == results
    assert on_disk["alpha"]["err"] == 2.0 ** -4  # smoke sets bits=4
    assert on_disk["alpha"]["per_bits"] == {"w": 4, "a": 8}
    assert on_disk["beta"] == {"seed": 0, "after": 1}


def test_kernel_is_this_python_and_inherits_the_results_env(smoke):
    book, out, results = smoke
    assert results["alpha"]["python"] == sys.executable
    assert results["alpha"]["results_file"] == str((out / "results" / "alpha.json").resolve())


def test_executed_notebooks_carry_the_injected_parameters(smoke):
    book, out, _ = smoke
    nb = nbformat.read(out / "01_alpha.ipynb", as_version=4)
    injected = [c for c in nb.cells if "injected-parameters" in c.metadata.get("tags", [])]
    assert len(injected) == 1 and "bits = 4" in injected[0].source
    assert "deterministic line" in json.dumps(nb.cells[-1].outputs)
    run_info = json.loads((out / "run.json").read_text())
    assert run_info["profile"] == "smoke"
    assert run_info["chapters"]["alpha"]["parameters"] == {"bits": 4, "dataset": "mnist"}
    assert {c["status"] for c in run_info["chapters"].values()} == {"ok"}


def test_run_builds_the_book_with_the_environment(smoke):
    book, out, _ = smoke
    index = (out / "book" / "index.html").read_text()
    assert "Tiny book" in index and 'href="01_alpha.html"' in index and 'href="dashboard.html"' in index
    for link in re.findall(r'href="([^"#:?]+)', index):  # local links, without ?digest= or #anchor
        assert (out / "book" / link).is_file(), link
    page = (out / "book" / "01_alpha.html").read_text()
    assert "deterministic line" in page and "Ran to the end" in page
    assert not re.findall(r'<(?:script|link|img)[^>]+(?:src|href)="(?:https?:)?//', page), "the book must not load anything from the network"
    env = json.loads((out / "run.json").read_text())["environment"]
    assert env["versions"]["torch"] and env["threads"] >= 1 and re.search(r"\bAVX2 (yes|no|unknown)\b", env["cpu"])
    dashboard = (out / "book" / "dashboard.html").read_text()
    assert env["cpu_model"] in dashboard and env["versions"]["torch"] in dashboard and "0.0625" in dashboard


def test_a_chapter_that_records_less_than_its_headline_fails_the_run(tmp_path):
    path = tiny_book(tmp_path)
    path.write_text(path.read_text().replace("[err, bits_seen]", "[err, bits_used]"))
    book = load_book(path)
    with pytest.raises(BookError) as info:
        run(book, "full", only=["alpha"], progress=False, html=False, environment=False)
    message = str(info.value)
    assert "chapter 'alpha' (01_alpha.ipynb) ran but recorded no bits_used" in message and "book.yml" in message
    run_info = json.loads((tmp_path / "build" / "full" / "run.json").read_text())["chapters"]["alpha"]
    assert run_info["status"] == "failed" and "bits_used" in run_info["error"]
    assert json.loads((tmp_path / "build" / "full" / "results.json").read_text())["alpha"]["err"] == 2.0 ** -8


def test_failing_chapter_stops_with_cell_and_keeps_partial_notebook(smoke):
    book, out, _ = smoke
    with pytest.raises(NotebookFailed) as info:
        run(book, "full", only=["beta"], params={"fail": "true"}, progress=False, html=False, environment=False)
    err = info.value
    assert err.cell == 5 and err.ename == "RuntimeError" and "asked to fail" in str(err)
    assert "chapter 'beta'" in str(err) and "if fail:" in str(err)
    assert err.output == book.root / "build" / "full" / "02_beta.ipynb" and err.output.is_file()
    assert json.loads((book.root / "build" / "full" / "results.json").read_text()) == {"beta": {"seed": 0}}
    assert json.loads((book.root / "build" / "full" / "run.json").read_text())["chapters"]["beta"]["status"] == "failed"


def test_sweep_writes_one_notebook_per_point_and_a_table(smoke, tmp_path):
    book, _, _ = smoke
    table = sweep(book, "alpha", {"bits": ["2", "8"]}, out=tmp_path, progress=False)
    assert table["bits"].tolist() == [2, 8] and table["err"].tolist() == [0.25, 2.0 ** -8]
    assert table["status"].tolist() == ["ok", "ok"] and "bits_seen" in table and "per_bits.w" in table
    folder = tmp_path / "sweeps" / "alpha"  # --out is a build folder: sweeps go to <out>/sweeps/<chapter>
    assert sorted(p.name for p in folder.glob("*.ipynb")) == ["01_alpha__bits=2.ipynb", "01_alpha__bits=8.ipynb"]
    assert sorted(p.name for p in folder.glob("results.*")) == ["results.csv", "results.png"]
    assert "2,ok," in (folder / "results.csv").read_text()


def test_execute_in_place_writes_outputs_and_leaves_failures_untouched(tmp_path):
    book = load_book(tiny_book(tmp_path))
    nb_path = book.chapter("beta").notebook
    execute_all_in_place(book, [nb_path])
    nb = nbformat.read(nb_path, as_version=4)
    assert "[record] after = 1" in json.dumps([c.get("outputs") for c in nb.cells])
    assert not any("injected-parameters" in c.metadata.get("tags", []) for c in nb.cells)
    assert not (tmp_path / "build" / "full").exists()  # nothing recorded outside the notebook

    bad = write_notebook(tmp_path / "notebooks" / "09_bad.ipynb", "x = 1  # x", "print('before')", "raise ValueError('boom')")
    before = bad.read_text()
    with pytest.raises(NotebookFailed) as info:
        execute_all_in_place(book, [bad])
    assert info.value.cell == 4 and "boom" in str(info.value)
    assert bad.read_text() == before
    assert (tmp_path / "build" / "failed" / "09_bad.ipynb").is_file()
