"""Tiny notebooks and book.yml files for the book tests (written into tmp_path with nbformat)."""

from __future__ import annotations

import textwrap
from pathlib import Path

import nbformat


def write_notebook(path: Path, parameters: str, *cells: str) -> Path:
    """A notebook with a markdown title, a cell tagged ``parameters`` and the given code cells."""
    nb = nbformat.v4.new_notebook()
    params = nbformat.v4.new_code_cell(textwrap.dedent(parameters).strip())
    params.metadata["tags"] = ["parameters"]
    nb.cells = [nbformat.v4.new_markdown_cell(f"# {path.stem}"), params] + [nbformat.v4.new_code_cell(textwrap.dedent(c).strip()) for c in cells]
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    path.parent.mkdir(parents=True, exist_ok=True)
    nbformat.write(nb, path)
    return path


# Chapter "alpha" records values (and which Python and results file its kernel saw); "beta" fails on request.
# `qhelpers.course.record` is imported from its module file only, to keep the kernels light (no torch import).
RECORD = "import importlib.util, sys; s = importlib.util.spec_from_file_location('rec', {path!r}); rec = importlib.util.module_from_spec(s); s.loader.exec_module(rec); record = rec.record"


def tiny_book(root: Path) -> Path:
    """A two-chapter book under ``root``; returns the path of its book.yml."""
    import importlib.util

    load = RECORD.format(path=importlib.util.find_spec("qhelpers.course.record").origin)
    write_notebook(root / "notebooks" / "01_alpha.ipynb",
                   """
                   bits = 8  # bit-width
                   dataset = "mnist"  # which data
                   """,
                   load,
                   """
                   import os, sys
                   record('err', 2.0 ** -bits)
                   record('bits_seen', bits)
                   record('python', sys.executable)
                   record('results_file', os.environ.get('QHELPERS_RESULTS', ''))
                   record('per_bits', {'w': bits, 'a': 8})
                   print('deterministic line')
                   """)
    write_notebook(root / "notebooks" / "02_beta.ipynb",
                   """
                   seed = 0  # random seed
                   fail = False  # raise on purpose
                   """,
                   load,
                   "record('seed', seed)",
                   """
                   if fail:
                       raise RuntimeError('asked to fail')
                   """,
                   "record('after', 1)")
    book = root / "book.yml"
    book.write_text(textwrap.dedent("""
        title: Tiny book
        profiles:
          smoke: fast
        chapters:
          - id: alpha
            title: Chapter A
            notebook: notebooks/01_alpha.ipynb
            summary: first
            summary_zh: 第一章
            headline:
              columns: [error, bits]
              rows:
                "at {bits_seen} bits": [err, bits_seen]
            parameters:
              bits: {type: int, default: 8, choices: [2, 4, 8], help: bit-width}
              dataset: {type: str, default: mnist, choices: [mnist, fashion-mnist], help: which data}
            profiles:
              smoke: {bits: 4}
          - id: beta
            title: Chapter B
            notebook: notebooks/02_beta.ipynb
            summary: second
            parameters:
              seed: {type: int, default: 0, range: [0, 1000], help: random seed}
              fail: {type: bool, default: false, help: raise on purpose}
        """))
    return book
