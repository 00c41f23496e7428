"""A run's configuration, "full" or "quick", from book.yml's `size:` parameters (no per-notebook formula)."""

from __future__ import annotations

import itertools
import textwrap
from pathlib import Path

import pytest
import yaml

from book_fixtures import write_notebook
from qhelpers.course.book import BookError, configuration, load_book
from qhelpers.course.book.__main__ import main

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def sized(tmp_path) -> Path:
    """A chapter with the three kinds of size parameter (and one that is not a size)."""
    for name in ("01_sized", "02_plain"):
        write_notebook(tmp_path / "notebooks" / f"{name}.ipynb", """
            images = 0  # training images; 0 for all of them
            epochs = 3  # training epochs
            windows = 256  # evaluation windows
            bits = 4  # bit-width
            """)
    path = tmp_path / "book.yml"
    path.write_text(textwrap.dedent("""
        title: Sized
        profiles: {smoke: fast}
        chapters:
          - id: sized
            title: Sized
            notebook: notebooks/01_sized.ipynb
            summary: s
            parameters:
              images: {type: int, default: 0, range: [0, 60000], size: all-is-0, help: training images; 0 for all of them}
              epochs: {type: int, default: 3, range: [1, 50], size: true, help: training epochs}
              windows: {type: int, default: 256, range: [16, 1024], size: true, full_from: 128, help: evaluation windows}
              bits: {type: int, default: 4, choices: [2, 4, 8], help: bit-width}
            profiles:
              smoke: {images: 1000, epochs: 1}
          - id: plain
            title: Plain
            notebook: notebooks/02_plain.ipynb
            summary: the same notebook, nothing declared a size
            parameters:
              images: {type: int, default: 0, range: [0, 60000], help: training images; 0 for all of them}
              epochs: {type: int, default: 3, range: [1, 50], help: training epochs}
              windows: {type: int, default: 256, range: [16, 1024], help: evaluation windows}
              bits: {type: int, default: 4, choices: [2, 4, 8], help: bit-width}
        """))
    return path


DEFAULTS = {"images": 0, "epochs": 3, "windows": 256, "bits": 4}


@pytest.mark.parametrize("change, expected", [
    ({}, "full"),
    ({"bits": 2}, "full"),  # not a size
    ({"epochs": 4, "windows": 1024}, "full"),  # beyond the defaults
    ({"windows": 128}, "full"),  # full_from
    ({"windows": 127}, "quick"),
    ({"epochs": 2}, "quick"),
    ({"images": 60000}, "quick"),  # 0 is all: any other count is fewer
    ({"images": 1}, "quick"),
])
def test_configuration_is_full_when_every_size_is_at_least_its_default(sized, change, expected):
    assert configuration("sized", {**DEFAULTS, **change, "unrelated": object()}, book=sized) == expected
    assert configuration("plain", {**DEFAULTS, **change}, book=sized) == "full"  # no size parameter: always full


def test_a_chapters_profiles_have_a_configuration(sized, capsys):
    chapter = load_book(sized).chapter("sized")
    assert chapter.configuration(chapter.effective("full")) == "full"
    assert chapter.configuration(chapter.effective("smoke")) == "quick"
    assert main(["--book", str(sized), "list"]) == 0
    out = capsys.readouterr().out
    assert "profile smoke: images=1000, epochs=1  (quick configuration)" in out
    assert "images (int in [0, 60000]; default 0; a size of the run: full at 0 = all)" in out
    assert "windows (int in [16, 1024]; default 256; a size of the run: full from 128)" in out


def test_configuration_checks_the_size_parameters_like_check_parameters(sized):
    with pytest.raises(ValueError, match="parameter epochs is not defined"):
        configuration("sized", {"images": 0, "windows": 256}, book=sized)
    with pytest.raises(ValueError, match=r"parameter epochs = '3' has type str, expected int"):
        configuration("sized", {**DEFAULTS, "epochs": "3"}, book=sized)
    with pytest.raises(ValueError, match=r"parameter windows = 2000 is out of range \[16, 1024\]"):
        configuration("sized", {**DEFAULTS, "windows": 2000}, book=sized)
    assert configuration("sized", {k: v for k, v in DEFAULTS.items() if k != "bits"}, book=sized) == "full"  # only sizes read
    with pytest.raises(TypeError, match="namespace must be the notebook's globals()"):
        configuration("sized", [("epochs", 3)], book=sized)
    with pytest.raises(BookError, match="unknown chapter id 'size'; did you mean 'sized'"):
        configuration("size", DEFAULTS, book=sized)


@pytest.mark.parametrize("spec, expected", [
    ({"size": 3}, "size must be true (a size of the run: the claims hold at the default or beyond) or all-is-0"),
    ({"size": "all"}, "size must be true"),
    ({"size": True, "type": "str", "default": "3", "range": None}, "size is only for an int or float parameter that is never None"),
    ({"size": True, "nullable": True}, "size is only for an int or float parameter"),
    ({"size": "all-is-0"}, "size: all-is-0 means 0 is all; say so in its help"),
    ({"size": True, "help": "images; 0 for all"}, "its help says 0 is all: write size: all-is-0"),
    ({"size": "all-is-0", "help": "images; 0 for all", "range": [1, 50]}, "size: all-is-0, but 0 is not an allowed value"),
    ({"full_from": 2}, "full_from is the smallest full value of a size parameter; add `size: true`"),
    ({"size": True, "full_from": 4}, "full_from 4 is above the default 3"),
    ({"size": True, "full_from": 0}, "full_from: epochs = 0 is out of range [1, 50]"),
    ({"size": True, "full_from": "2"}, "full_from: epochs = '2' is not a number"),
    ({"sizes": True}, "unknown keys ['sizes']"),
])
def test_a_bad_size_declaration_is_refused_with_what_to_write(sized, spec, expected):
    raw = yaml.safe_load(sized.read_text())
    epochs = raw["chapters"][1]["parameters"]["epochs"]
    epochs.update(spec)
    for key in [k for k, v in epochs.items() if v is None]:
        del epochs[key]
    sized.write_text(yaml.safe_dump(raw, sort_keys=False))
    with pytest.raises(BookError) as info:
        load_book(sized, check_notebooks=False)
    assert expected in str(info.value)


# The formulas the notebooks computed before book.yml declared their sizes: configuration() must agree with each.
FORMULAS = {
    "mnist-cnn": lambda v: v["train_subset"] == 0 and v["epochs"] >= 3,
    "resnet18": lambda v: v["train_subset"] >= 24000 and not v["test_images"],  # (05 also asks weights == "none")
    "gpt-weight-only": lambda v: v["train_iters"] >= 800 and v["eval_windows"] >= 128 and v["calibration_windows"] >= 8,
    "deploy": lambda v: v["train_subset"] >= 24000 and v["eval_images"] >= 2000,
}
GRID = {"train_subset": [0, 1, 1000, 2048, 23999, 24000, 24001, 55000], "epochs": [1, 2, 3, 4, 20, 50],
        "test_images": [0, 1, 2000, 50000], "train_iters": [50, 799, 800, 801, 20000],
        "eval_windows": [16, 127, 128, 255, 256, 1716], "calibration_windows": [1, 7, 8, 15, 16, 256],
        "eval_images": [64, 256, 1999, 2000, 10000]}


@pytest.mark.parametrize("chapter_id", FORMULAS)
def test_the_courses_sizes_reproduce_the_notebooks_former_formulas(chapter_id):
    chapter = load_book(ROOT / "book.yml", check_notebooks=False).chapter(chapter_id)
    defaults = {name: p.default for name, p in chapter.parameters.items()}
    sizes = [name for name, p in chapter.parameters.items() if p.size is not None]
    assert set(sizes) <= set(GRID)
    for combo in itertools.product(*[[x for x in GRID[s] if chapter.parameters[s].problem(x) is None] for s in sizes]):
        values = {**defaults, **dict(zip(sizes, combo))}
        assert chapter.configuration(values) == ("full" if FORMULAS[chapter_id](values) else "quick"), values
    # what a notebook calls (it reads the course's book.yml), at the defaults and at the smoke profile
    assert configuration(chapter_id, chapter.effective("full")) == "full"
    assert configuration(chapter_id, chapter.effective("smoke")) == "quick"


def test_the_courses_sizes_are_declared_where_expected():
    book = load_book(ROOT / "book.yml", check_notebooks=False)
    declared = {c.id: {n: (p.size, p.full_from) for n, p in c.parameters.items() if p.size} for c in book.chapters}
    assert declared == {
        "concepts": {}, "fp16-int8": {}, "fake-quant": {},
        "mnist-cnn": {"epochs": ("true", None), "train_subset": ("all-is-0", None)},
        "resnet18": {"train_subset": ("true", None), "test_images": ("all-is-0", None)},
        "gpt-weight-only": {"train_iters": ("true", None), "eval_windows": ("true", 128), "calibration_windows": ("true", 8)},
        "deploy": {"train_subset": ("true", None), "eval_images": ("true", None)},
        "llm-speed": {"train_iters": ("true", None), "eval_windows": ("true", 128), "calibration_windows": ("true", 8),
                      "max_width": ("true", None), "depth": ("true", None)},
    }
