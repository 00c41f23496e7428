"""qhelpers.plots: each figure builds from real inputs and draws what it says."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import pandas as pd
import pytest
import torch

from qhelpers import plots
from qhelpers.quant import MappingType, PerChannel, choose_qparams
from qhelpers.train import History


def test_weight_histogram_draws_the_grid():
    x = torch.randn(1000)
    qp = choose_qparams(x, 3, MappingType.SYMMETRIC, True)
    fig = plots.weight_histogram(x, qp, title="w")
    ax = fig.axes[0]
    assert len(ax.lines) == 8  # one vertical line per 3-bit level
    assert "3-bit range" in ax.get_legend().get_texts()[0].get_text()
    with pytest.raises(ValueError, match="per-tensor"):
        plots.weight_histogram(x.reshape(10, 100), choose_qparams(x.reshape(10, 100), 8, granularity=PerChannel(0)))


def test_other_figures():
    fig = plots.error_vs_bits([2, 4, 8], {"min/max": [10, 22, 46]})
    assert fig.axes[0].lines[0].get_ydata().tolist() == [10, 22, 46]
    fig = plots.sensitivity({"a": 0.1, "b": 2.0})
    assert [t.get_text() for t in fig.axes[0].get_yticklabels()] == ["a", "b"]
    hist = History([1.0, 0.5], [0.9, 0.6], [0.8, 0.9])
    assert len(plots.training_curves(hist).axes) == 2
