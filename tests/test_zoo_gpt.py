"""zoo.trained_gpt: trained once, then loaded from the checkpoint cache; a damaged checkpoint is retrained."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

from qhelpers.course import zoo

MIRROR = os.environ.get("QHELPERS_DATA_MIRROR")
pytestmark = pytest.mark.skipif(
    not MIRROR or not (Path(MIRROR) / "tinyshakespeare" / "input.txt").is_file(),
    reason="QHELPERS_DATA_MIRROR with tinyshakespeare not available",
)


@pytest.fixture
def data_folder(tmp_path, monkeypatch):
    monkeypatch.setenv("QHELPERS_DATA", str(tmp_path))
    monkeypatch.setenv("QHELPERS_PROGRESS", "0")
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield tmp_path
    torch.set_num_threads(before)


def test_trained_gpt_is_cached_and_reloaded(data_folder, capsys):
    tiny = dict(iters=4, seed=1, n_layer=1, n_embd=32, eval_windows=4)
    model, splits, history, cached = zoo.trained_gpt(**tiny)
    assert not cached and history.step == [1, 2, 3, 4] and len(history.val_loss) == 4
    assert len(splits.vocab) == 65 and model.config.n_layer == 1
    [checkpoint] = (data_folder / "checkpoints").glob("char_gpt-tinyshakespeare-*.pt")
    again, _, history2, cached2 = zoo.trained_gpt(**tiny)
    assert cached2 and history2 == history
    assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), again.state_dict().values()))
    _, _, _, other = zoo.trained_gpt(**{**tiny, "seed": 2})
    assert not other  # another seed is another checkpoint
    checkpoint.write_bytes(b"not a checkpoint")
    _, _, _, cached3 = zoo.trained_gpt(**tiny)
    assert not cached3 and "is unreadable" in capsys.readouterr().err


def test_trained_gpt_checks_its_arguments(data_folder):
    with pytest.raises(TypeError, match="iters=1.5 must be an int"):
        zoo.trained_gpt(iters=1.5)
    with pytest.raises(ValueError, match="seed=-1"):
        zoo.trained_gpt(seed=-1)
