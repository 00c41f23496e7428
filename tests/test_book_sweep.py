"""Sweep grids, tables and plots without kernels (the executed sweep is in test_book_runner.py)."""

from __future__ import annotations

import pandas as pd
import pytest

from book_fixtures import tiny_book
from qhelpers.course.book import BookError, load_book
from qhelpers.course.book.sweeps import flatten, grid_points, plot_sweep, write_table


@pytest.fixture
def alpha(tmp_path):
    return load_book(tiny_book(tmp_path)).chapter("alpha")


def test_grid_points_are_the_checked_product(alpha):
    points = grid_points(alpha, {"bits": ["2", "8"], "dataset": ["mnist", "fashion-mnist"]})
    assert points == [{"bits": 2, "dataset": "mnist"}, {"bits": 2, "dataset": "fashion-mnist"},
                      {"bits": 8, "dataset": "mnist"}, {"bits": 8, "dataset": "fashion-mnist"}]


@pytest.mark.parametrize("grid, expected", [
    ({"bits": ["2", "5"]}, "bits = 5 is not allowed"),
    ({"lr": ["0.1"]}, "chapter alpha has no parameter 'lr'"),
    ({"bits": ["2", "2"]}, "the value 2 is given twice"),
])
def test_bad_grid_is_refused(alpha, grid, expected):
    with pytest.raises(BookError, match=expected):
        grid_points(alpha, grid)


def test_flatten_keeps_scalars_and_flat_dicts():
    assert flatten({"acc": 0.9, "sizes": {"fp32": 4, "int8": 1}, "curve": [1, 2], "name": "x"}) == {
        "acc": 0.9, "sizes.fp32": 4, "sizes.int8": 1, "name": "x"}


def test_table_and_plot_over_numeric_and_categorical_parameters(tmp_path):
    rows = [{"bits": b, "dataset": d, "status": "ok", "acc": 0.5 + b / 20 - (d == "fashion-mnist") * 0.1, "ok": True}
            for b in (2, 4, 8) for d in ("mnist", "fashion-mnist")]
    table = write_table(rows, tmp_path)
    assert len(pd.read_csv(tmp_path / "results.csv")) == 6
    assert (tmp_path / "results.csv").read_text().splitlines()[0] == "bits,dataset,status,acc,ok"
    fig = plot_sweep(table, ["bits", "dataset"])
    assert [ax.get_title() for ax in fig.axes if ax.get_visible()] == ["acc"]  # booleans and strings are not plotted
    assert len(fig.axes[0].lines) == 2  # one line per dataset
    fig = plot_sweep(table, ["dataset", "bits"])
    assert [t.get_text() for t in fig.axes[0].get_xticklabels()] == ["mnist", "fashion-mnist"]
    assert plot_sweep(table[["bits", "dataset", "status"]], ["bits"]) is None
