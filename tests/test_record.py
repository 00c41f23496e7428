"""qhelpers.record: shown in the notebook, merged into the runner's JSON file."""

from __future__ import annotations

import json

import pytest
import torch

from qhelpers.record import RESULTS_ENV, read_results, record


def test_record_prints_and_merges(tmp_path, monkeypatch, capsys):
    target = tmp_path / "out" / "ch.json"
    monkeypatch.setenv(RESULTS_ENV, str(target))
    record("fp32_accuracy", 0.98931234)
    record("most_sensitive_layer", "layer1.0.conv1")
    record("agreement", torch.tensor(0.5))
    assert capsys.readouterr().out.splitlines() == [
        "[record] fp32_accuracy = 0.9893",
        '[record] most_sensitive_layer = "layer1.0.conv1"',
        "[record] agreement = 0.5",
    ]
    assert json.loads(target.read_text()) == {
        "fp32_accuracy": 0.98931234, "most_sensitive_layer": "layer1.0.conv1", "agreement": 0.5,
    }
    assert read_results(target)["fp32_accuracy"] == 0.98931234
    assert not list(target.parent.glob("*.tmp"))


def test_record_without_runner_only_prints(monkeypatch, capsys, tmp_path):
    monkeypatch.delenv(RESULTS_ENV, raising=False)
    monkeypatch.chdir(tmp_path)
    assert record("bits", 4) == 4
    assert capsys.readouterr().out == "[record] bits = 4\n"
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("name", ["FP32", "has space", "", "1st", None])
def test_bad_names(name):
    with pytest.raises(ValueError, match="snake_case"):
        record(name, 1)  # type: ignore[arg-type]


@pytest.mark.parametrize("value", [float("nan"), float("inf"), object(), {1, 2}])
def test_bad_values(value):
    with pytest.raises((ValueError, TypeError)):
        record("x", value)
