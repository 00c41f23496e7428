"""Fixtures shared by several test files."""

import pytest
import torch


@pytest.fixture
def torch_home(tmp_path, monkeypatch):
    """An empty $TORCH_HOME; any download attempt fails the test."""
    home = tmp_path / "torch_home"
    monkeypatch.setenv("TORCH_HOME", str(home))
    monkeypatch.setattr(torch.hub, "_hub_dir", None)

    def no_network(*args, **kwargs):
        raise AssertionError(f"tried to download {args[:1]}")

    monkeypatch.setattr(torch.hub, "download_url_to_file", no_network)
    return home
