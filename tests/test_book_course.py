"""The real course: book.yml agrees with notebooks/ and their parameters cells, and every chapter has a smoke profile."""

from __future__ import annotations

from pathlib import Path

import nbformat
import pytest

from qhelpers.course.book import load_book

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = ROOT / "notebooks"


@pytest.fixture(scope="module")
def book():
    # Validates every chapter: notebook exists, its parameters cell is exactly the one book.yml generates
    # (same names, order, defaults, types and help: see tests/test_book_sync.py), allowed values, profiles.
    return load_book(ROOT / "book.yml")


def test_book_and_notebooks_folder_list_the_same_notebooks(book):
    listed = {c.notebook.resolve() for c in book.chapters}
    present = {p.resolve() for p in NOTEBOOKS.glob("*.ipynb")}
    assert not present - listed, f"notebooks not in book.yml: {sorted(p.name for p in present - listed)}"
    assert not listed - present, f"book.yml chapters without a notebook: {sorted(p.name for p in listed - present)}"
    assert [c.notebook.name for c in book.chapters] == sorted(c.notebook.name for c in book.chapters), "book order = file order"


def test_parameters_cell_is_the_first_code_cell_and_kernel_is_python3(book):
    for ch in book.chapters:
        nb = nbformat.read(ch.notebook, as_version=4)
        first = next(c for c in nb.cells if c.cell_type == "code")
        assert "parameters" in first.metadata.get("tags", []), f"{ch.notebook.name}: the first code cell must be tagged 'parameters'"
        assert nb.metadata.get("kernelspec", {}).get("name") == "python3", f"{ch.notebook.name}: kernelspec must be python3"


def test_every_chapter_has_a_smoke_profile(book):
    assert "smoke" in book.profiles
    missing = [c.id for c in book.chapters if "smoke" not in c.profiles]
    assert not missing, f"chapters without a `smoke:` entry (write `smoke: {{}}` if the defaults are already fast): {missing}"


# The smoke profile itself (every chapter through the runner on small settings) is not run here: nbval already
# executes every chapter at full size, and a second, smaller run would double the suite's time. `.ci/run` runs it
# as `make course PROFILE=smoke` on both CPU classes and prints its wall time.
