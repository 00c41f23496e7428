"""``requires:`` rules between a chapter's parameters: validated in book.yml, enforced before any kernel starts."""

from __future__ import annotations

import pytest
import yaml

from book_fixtures import tiny_book, write_notebook
from qhelpers.course.book import BookError, Rule, load_book, plan
from qhelpers.course.book.sweeps import grid_points


@pytest.fixture
def book_path(tmp_path):
    """The tiny book plus a chapter shaped like resnet18: weights=imagenet needs imagenet_dir."""
    path = tiny_book(tmp_path)
    write_notebook(tmp_path / "notebooks" / "03_gamma.ipynb", """
        weights = "none"  # which weights
        imagenet_dir = ""  # folder
        tag = None  # label
        """)
    raw = yaml.safe_load(path.read_text())
    raw["chapters"].append({
        "id": "gamma", "title": "G", "notebook": "notebooks/03_gamma.ipynb", "summary": "g",
        "parameters": {
            "weights": {"type": "str", "default": "none", "choices": ["none", "imagenet"], "help": "which weights"},
            "imagenet_dir": {"type": "str", "default": "", "help": "folder"},
            "tag": {"type": "str", "default": None, "help": "label"},
        },
        "requires": [{"if": {"weights": "imagenet"}, "then": "imagenet_dir", "message": "pass -p imagenet_dir=PATH"}],
    })
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    return path


def with_rules(path, rules, chapter=2):
    raw = yaml.safe_load(path.read_text())
    raw["chapters"][chapter]["requires"] = rules
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    return path


def test_rule_is_loaded_and_enforced_before_a_kernel_starts(book_path):
    book = load_book(book_path)
    gamma = book.chapter("gamma")
    assert gamma.requires == (Rule(when={"weights": ("imagenet",)}, then={"imagenet_dir": None}, message="pass -p imagenet_dir=PATH"),)
    with pytest.raises(BookError) as info:
        plan(book, only=["gamma"], params={"weights": "imagenet"})
    assert str(info.value) == "chapter gamma: with weights='imagenet', imagenet_dir must be set (it is ''): pass -p imagenet_dir=PATH"
    assert plan(book, only=["gamma"], params={"weights": "imagenet", "imagenet_dir": "/data/val"})[0][1] == {
        "weights": "imagenet", "imagenet_dir": "/data/val"}
    assert plan(book, only=["gamma"])[0][1] == {}  # the default weights=none needs nothing


def test_rule_applies_to_every_sweep_point(book_path):
    gamma = load_book(book_path).chapter("gamma")
    with pytest.raises(BookError, match="chapter gamma at weights=imagenet: with weights='imagenet', imagenet_dir must be set"):
        grid_points(gamma, {"weights": ["none", "imagenet"]})
    assert len(grid_points(gamma, {"weights": ["none", "imagenet"], "imagenet_dir": ["/data"]})) == 2


@pytest.mark.parametrize("values, broken", [
    ({"weights": "imagenet", "imagenet_dir": "", "tag": None}, True),
    ({"weights": "imagenet", "imagenet_dir": "x", "tag": None}, False),
    ({"weights": "none", "imagenet_dir": "", "tag": None}, False),
])
def test_rule_semantics(values, broken):
    rule = Rule(when={"weights": ("imagenet",)}, then={"imagenet_dir": None})
    assert (rule.problem(values) is not None) == broken


def test_rule_with_values_and_lists():
    rule = Rule(when={"bits": (2, 3), "fast": (True,)}, then={"epochs": (1, 2)}, message="few epochs")
    assert rule.problem({"bits": 2, "fast": True, "epochs": 5}) == "with bits in (2, 3) and fast=True, epochs must be one of 1, 2 (it is 5): few epochs"
    assert rule.problem({"bits": 2, "fast": True, "epochs": 2}) is None
    assert rule.problem({"bits": 4, "fast": True, "epochs": 5}) is None
    assert rule.problem({"bits": 2, "fast": 1, "epochs": 5}) is None  # 1 is not True


@pytest.mark.parametrize("rules, expected", [
    ({"if": {"weights": "imagenet"}, "then": "imagenet_dir"}, "requires must be a list"),
    ([{"if": {"weights": "imagenet"}}], "requires[0]: write {if:"),
    ([{"if": {"weights": "imagenet"}, "then": "imagenet_dir", "unless": 1}], "requires[0]: write {if:"),
    ([{"if": "weights", "then": "imagenet_dir"}], "`if` must be a mapping parameter -> value"),
    ([{"if": {}, "then": "imagenet_dir"}], "`if` must be a mapping parameter -> value"),
    ([{"if": {"weight": "imagenet"}, "then": "imagenet_dir"}], "`if` names 'weight', which is not a parameter of this chapter; did you mean 'weights'?"),
    ([{"if": {"weights": "imagenett"}, "then": "imagenet_dir"}], "`if`: weights = 'imagenett' is not allowed"),
    ([{"if": {"weights": "imagenet"}, "then": "imagenet_folder"}], "`then` names 'imagenet_folder'"),
    ([{"if": {"weights": "imagenet"}, "then": {"imagenet_dir": 5}}], "`then`: imagenet_dir = 5 has type int, expected str"),
    ([{"if": {"weights": "imagenet"}, "then": "imagenet_dir", "message": ["x"]}], "message must be a string"),
    ([{"if": {"weights": "none"}, "then": "imagenet_dir"}], "profile full: with weights='none', imagenet_dir must be set (it is '')"),
])
def test_bad_rules_are_refused(book_path, rules, expected):
    with pytest.raises(BookError) as info:
        load_book(with_rules(book_path, rules))
    assert expected in str(info.value)


def test_then_name_must_be_a_parameter_that_can_be_missing(book_path):
    raw = yaml.safe_load(book_path.read_text())
    raw["chapters"][1]["requires"] = [{"if": {"fail": True}, "then": "seed"}]
    book_path.write_text(yaml.safe_dump(raw, sort_keys=False))
    with pytest.raises(BookError, match=r"`then: seed` asks for a value to be set, which only a str or nullable parameter can miss"):
        load_book(book_path)


def test_a_profile_that_breaks_a_rule_is_refused(book_path):
    raw = yaml.safe_load(book_path.read_text())
    raw["chapters"][2]["profiles"] = {"smoke": {"weights": "imagenet"}}
    book_path.write_text(yaml.safe_dump(raw, sort_keys=False))
    with pytest.raises(BookError, match="chapter 'gamma': profile smoke: with weights='imagenet', imagenet_dir must be set"):
        load_book(book_path)


def test_nullable_parameter_can_be_required(book_path):
    book = load_book(with_rules(book_path, [{"if": {"weights": "imagenet"}, "then": ["imagenet_dir", "tag"]}]))
    with pytest.raises(BookError, match="tag must be set"):
        plan(book, only=["gamma"], params={"weights": "imagenet", "imagenet_dir": "/x"})
    assert plan(book, only=["gamma"], params={"weights": "imagenet", "imagenet_dir": "/x", "tag": "t"})
