"""Chapter 5's cell with the article's `pretrained=True`, as torchvision spells it today
(`resnet18(weights=ResNet18_Weights.IMAGENET1K_V1)`): the exact source of that cell, run against a
temporary $TORCH_HOME. With a checkpoint under torchvision's file name it loads that file; without it,
it prints one line saying what is missing and how to get it, and tries no download."""

import contextlib
import io
import json
from pathlib import Path

import pytest
import torch
from torchvision import models as tv_models

import qhelpers
import qhelpers.models

NOTEBOOK = Path(__file__).resolve().parents[1] / "notebooks" / "05_resnet18.ipynb"
CALL = "resnet18(weights=ResNet18_Weights.IMAGENET1K_V1)"


def cell_source() -> str:
    cells = [c for c in json.loads(NOTEBOOK.read_text())["cells"] if c["cell_type"] == "code" and CALL in "".join(c["source"])]
    assert len(cells) == 1, f"expected one code cell of {NOTEBOOK.name} calling {CALL}, found {len(cells)}"
    return "".join(cells[0]["source"])


def run_cell() -> tuple[dict, str]:
    namespace = {"qhelpers": qhelpers}
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        exec(compile(cell_source(), f"{NOTEBOOK.name}:pretrained", "exec"), namespace)
    return namespace, out.getvalue()


def test_the_cell_makes_the_current_call_not_pretrained():
    source = cell_source()
    assert "pretrained=True" not in source.replace("# the article's resnet18(pretrained=True)", "")
    assert "ResNet18_Weights" in source and "checkpoint_path()" in source


def test_the_cell_loads_the_checkpoint_from_torch_home(torch_home):
    torch.manual_seed(0)
    state = tv_models.resnet18(weights=None).state_dict()  # random weights under the real file name
    path = torch_home / "hub" / "checkpoints" / Path(tv_models.ResNet18_Weights.IMAGENET1K_V1.url).name
    assert path.name == "resnet18-f37072fd.pth"
    path.parent.mkdir(parents=True)
    torch.save(state, path)
    namespace, printed = run_cell()
    loaded = namespace["article_model"].state_dict()
    assert loaded.keys() == state.keys() and all(torch.equal(loaded[k], v) for k, v in state.items())
    assert not namespace["article_model"].training
    assert printed.startswith("loaded ResNet18_Weights.IMAGENET1K_V1") and "resnet18-f37072fd.pth" in printed
    assert str(torch_home) not in printed  # no machine paths in the notebook's output


def test_without_the_checkpoint_one_line_says_what_is_missing(torch_home):
    namespace, printed = run_cell()
    assert "article_model" not in namespace
    assert printed.count("\n") == 1 and printed.startswith("skipped resnet18(weights=ResNet18_Weights.IMAGENET1K_V1)")
    assert "resnet18-f37072fd.pth" in printed and "$TORCH_HOME/hub/checkpoints/" in printed
    assert tv_models.ResNet18_Weights.IMAGENET1K_V1.url in printed
    assert str(torch_home) not in printed
    with pytest.raises(qhelpers.models.WeightsUnavailableError):  # the chapter's weights="imagenet" path agrees
        qhelpers.models.load_resnet18("imagenet")
