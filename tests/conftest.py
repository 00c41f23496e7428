"""Fixtures shared by several test files."""

import sys

import pytest
import torch
from book_fixtures import tiny_book


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


@pytest.fixture
def book_path(tmp_path, monkeypatch):
    """A tiny book.yml whose chapters must never execute: the CLI tests check what happens before a kernel starts."""
    path = tiny_book(tmp_path)

    def no_kernel(*args, **kwargs):
        raise AssertionError("a notebook would have been executed")

    import qhelpers.course.book.runner  # noqa: F401  (loaded on first use by the CLI)
    import qhelpers.course.book.sweeps  # noqa: F401

    monkeypatch.setattr("qhelpers.course.book.runner.execute_papermill", no_kernel)
    monkeypatch.setattr("qhelpers.course.book.runner.execute_in_place", no_kernel)
    monkeypatch.setattr(sys.modules["qhelpers.course.book.sweeps"], "execute_papermill", no_kernel)
    return path
