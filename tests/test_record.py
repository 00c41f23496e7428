"""qhelpers.course.record: shown in the notebook, merged into the runner's JSON file."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
import torch

from qhelpers.course.record import RESULTS_ENV, atomic_open, read_results, record

ROOT = Path(__file__).resolve().parents[1]


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


@pytest.mark.parametrize(
    "value, error, match",
    [
        (torch.tensor([1.0, 2.0]), TypeError, r"record\('x'\): value is a Tensor of 2 elements, not one number.*tolist\(\)"),
        (np.array([1, 2, 3]), TypeError, r"value is a ndarray of 3 elements, not one number"),
        ([1.0, float("nan")], ValueError, r"record\('x'\): value\[1\] nan is not finite"),
        ({"a": [0.5, float("inf")]}, ValueError, r"value\['a'\]\[1\] inf is not finite"),
        ({1: 2}, TypeError, r"value has the key 1 of type int; JSON keys are strings"),
        ({"a": object()}, TypeError, r"value\['a'\] of type object is not JSON-serializable"),
    ],
    ids=["tensor", "ndarray", "nan-in-list", "inf-in-dict", "int-key", "object-in-dict"],
)
def test_bad_values_are_named(value, error, match, tmp_path, monkeypatch):
    target = tmp_path / "r.json"
    monkeypatch.setenv(RESULTS_ENV, str(target))
    with pytest.raises(error, match=match):
        record("x", value)
    assert not target.exists()


def test_scalars_and_nested_values_are_kept(tmp_path, monkeypatch, capsys):
    target = tmp_path / "r.json"
    monkeypatch.setenv(RESULTS_ENV, str(target))
    assert record("a", np.float32(0.5)) == 0.5 and record("b", torch.tensor([3])) == 3
    record("c", {"w": [1, 2.5, None, True], "name": "x"})
    assert read_results(target) == {"a": 0.5, "b": 3, "c": {"w": [1, 2.5, None, True], "name": "x"}}


@pytest.mark.parametrize(
    "content, match",
    [
        (None, r"r-dir is a folder; give the path of a \.json file"),
        ("{not json", r"r\.json is not valid JSON \(.*\); delete it"),
        ("\x00\xff", r"is not valid JSON"),
        ("[1, 2]", r"holds a JSON list, not an object of results; delete it"),
    ],
    ids=["folder", "garbage", "binary", "list"],
)
def test_a_bad_results_file_is_named(tmp_path, monkeypatch, content, match):
    if content is None:
        target = tmp_path / "r-dir"
        target.mkdir()
    else:
        target = tmp_path / "r.json"
        target.write_bytes(content.encode("latin-1"))
    with pytest.raises(ValueError, match=rf"results file .*{match}"):
        read_results(target)
    monkeypatch.setenv(RESULTS_ENV, str(target))
    with pytest.raises(ValueError, match=rf"record\('x'\): results file .*{match}.*\({RESULTS_ENV}="):
        record("x", 1)
    assert [p.name for p in tmp_path.iterdir()] == [target.name]  # nothing half-written beside it


def test_an_unwritable_results_path_is_named(tmp_path, monkeypatch):
    (tmp_path / "file").write_text("x")
    monkeypatch.setenv(RESULTS_ENV, str(tmp_path / "file" / "r.json"))
    with pytest.raises(ValueError, match=rf"cannot write {RESULTS_ENV}=.*file/r\.json \(.*\); point {RESULTS_ENV} at a writable"):
        record("x", 1)


@pytest.mark.parametrize("umask, mode", [(0o022, 0o644), (0o027, 0o640), (0o077, 0o600)])
def test_results_are_written_with_normal_permissions(tmp_path, monkeypatch, umask, mode):
    target = tmp_path / "r.json"
    monkeypatch.setenv(RESULTS_ENV, str(target))
    old = os.umask(umask)
    try:
        record("x", 1)
        record("y", 2)  # replaced, still with the umask's mode
    finally:
        os.umask(old)
    assert target.stat().st_mode & 0o777 == mode
    assert [p.name for p in tmp_path.iterdir()] == ["r.json"]


def test_atomic_open_leaves_the_old_file_on_failure(tmp_path):
    target = tmp_path / "f.txt"
    target.write_text("old")
    with pytest.raises(KeyboardInterrupt):
        with atomic_open(target) as fh:
            fh.write("half")
            raise KeyboardInterrupt
    assert target.read_text() == "old" and [p.name for p in tmp_path.iterdir()] == ["f.txt"]
    with atomic_open(target, "wb") as fh:
        fh.write(b"new")
    assert target.read_bytes() == b"new"


def test_claim_records_prints_and_asserts(tmp_path, monkeypatch, capsys):
    from qhelpers.course.record import claim

    results = tmp_path / "results.json"
    monkeypatch.setenv(RESULTS_ENV, str(results))
    assert claim("int8_accuracy", 0.97, at_least=0.96, at_most=0.98) is None  # a statement: nothing to display
    assert claim("size_ratio", 3.95, at_least=3.9) is None
    assert claim("not_checked", 0.5) is None
    out = capsys.readouterr().out.splitlines()
    assert out == ["[record] int8_accuracy = 0.97", "[claim] int8_accuracy in [0.96, 0.98]: yes",
                   "[record] size_ratio = 3.95", "[claim] size_ratio >= 3.9: yes",
                   "[record] not_checked = 0.5", "[claim] not_checked: no limit in this configuration, not checked"]
    with pytest.raises(AssertionError, match=r"claim drop_pp: 0.25 is not <= 0.2"):
        claim("drop_pp", 0.25, at_most=0.2)
    assert capsys.readouterr().out.splitlines()[-1] == "[claim] drop_pp <= 0.2: NO"
    assert read_results(results) == {"int8_accuracy": 0.97, "size_ratio": 3.95, "not_checked": 0.5, "drop_pp": 0.25}
    with pytest.raises(TypeError, match="at_least='0.9' must be a finite number or None"):
        claim("x", 0.95, at_least="0.9")
    with pytest.raises(TypeError, match="must be a number to compare"):
        claim("y", "high", at_most=1.0)


def test_claim_limits_are_data_beside_the_notebooks():
    from qhelpers.course.record import claim_limits

    assert claim_limits("concepts", "default")["sqnr_db_per_bit"] == {"at_least": 5.5, "at_most": 6.5}
    # YAML merge keys: a configuration inherits the shared limits and overrides its own
    assert claim_limits("resnet18", "quick")["int8_size_ratio"] == {"at_least": 3.9, "at_most": 4.0}
    assert claim_limits("resnet18", "quick")["int8_tol_pp"] == 3.0 and claim_limits("resnet18", "mnist")["int8_tol_pp"] == 0.3
    with pytest.raises(ValueError, match="no configuration 'smoke'; choose one of"):
        claim_limits("resnet18", "smoke")
    with pytest.raises(ValueError, match="no limits for chapter 'gpt'"):
        claim_limits("gpt", "full")


def _chapter_sources() -> dict[str, str]:
    """Chapter id -> the code of its notebook, from book.yml."""
    import nbformat

    from qhelpers.course.book import load_book

    return {c.id: "\n".join(cell.source for cell in nbformat.read(c.notebook, as_version=4).cells if cell.cell_type == "code")
            for c in load_book(ROOT / "book.yml").chapters}


def test_every_limit_is_read_by_its_chapter_and_every_read_limit_exists():
    """One way to state a checked result: the notebooks' CLAIMS["name"] and limits.yml name the same limits."""
    import re

    import yaml

    from qhelpers.course.record import claim_limits

    table = yaml.safe_load((ROOT / "notebooks" / "limits.yml").read_text(encoding="utf-8"))
    for chapter, source in _chapter_sources().items():
        read = set(re.findall(r'"(\w+)"', source))  # CLAIMS["name"], or a name chosen by a condition
        if chapter not in table:
            assert "CLAIMS" not in source, f"{chapter} reads CLAIMS but limits.yml has no entry for it"
            continue
        keys = [set(claim_limits(chapter, configuration)) for configuration in table[chapter]]
        assert all(k == keys[0] for k in keys), f"{chapter}: its configurations in limits.yml name different limits: {keys}"
        unused = keys[0] - read
        assert not unused, f"limits.yml: {chapter} has limits its notebook never reads: {sorted(unused)}"
        missing = {k for k in re.findall(r'CLAIMS\[\s*"(\w+)"\s*\]', source)} - keys[0]
        assert not missing, f"{chapter}'s notebook reads limits that limits.yml lacks: {sorted(missing)}"


def test_notebooks_state_checked_results_through_claim():
    """No `if FULL:` blocks of asserts: a configuration's limits are null where a claim does not hold (limits.yml)."""
    import re

    for chapter, source in _chapter_sources().items():
        assert not re.search(r"^\s*if\s+(not\s+)?FULL\b", source, re.M), (
            f"{chapter}: an `if FULL:` block; state the result with course.claim and a null limit in the quick configuration")
