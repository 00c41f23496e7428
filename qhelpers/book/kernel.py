"""Executing one notebook in a kernel of *this* Python (no kernelspec surprises), with papermill or in place."""

from __future__ import annotations

import contextlib
import logging
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, Mapping

import ipykernel.kernelspec
import nbformat
import zmq
from jupyter_client.kernelspec import KernelSpecManager
from jupyter_client.manager import KernelManager
from traitlets import default

from .manifest import BookError

__all__ = ["CurrentEnvKernelManager", "NotebookFailed", "execute_papermill", "execute_in_place", "environ"]

KERNEL_NAME = "python3"
TIMEOUT = 1800  # seconds per cell, as in nbval's configuration


class _CurrentEnvSpecs(KernelSpecManager):
    """Every kernel name resolves to ipykernel running on ``sys.executable``."""

    def get_kernel_spec(self, kernel_name: str):  # noqa: D102
        return self.kernel_spec_class(resource_dir=ipykernel.kernelspec.RESOURCES, **ipykernel.kernelspec.get_kernel_dict())


class CurrentEnvKernelManager(KernelManager):
    """A kernel manager whose kernel is the running interpreter, whatever kernelspecs are installed."""

    @default("kernel_spec_manager")
    def _default_specs(self) -> KernelSpecManager:
        return _CurrentEnvSpecs(data_dir=self.data_dir)

    @default("transport_encryption")
    def _default_encryption(self) -> str:
        return "auto" if zmq.has("curve") else "disabled"  # CurveZMQ when available: no plain-TCP warning


class NotebookFailed(BookError):
    """A cell raised: which notebook, which cell, what error, and where the partial notebook is."""

    def __init__(self, label: str, cell: int | None, exec_count: int | None, ename: str, evalue: str, source: str, output: Path | None):
        self.label, self.cell, self.exec_count, self.ename, self.evalue, self.output = label, cell, exec_count, ename, evalue, output
        first = next((ln for ln in source.splitlines() if ln.strip() and not ln.lstrip().startswith("#")), source.strip()[:80])
        where = f"cell {cell}" if cell is not None else "a cell"
        if exec_count is not None:
            where += f" (In [{exec_count}])"
        msg = f"{label} failed in {where}: {ename}: {evalue}\n    cell starts with: {first.strip()}"
        if output is not None:
            msg += f"\n    partial notebook kept at {output}"
        super().__init__(msg)


@contextlib.contextmanager
def environ(**values: str | None) -> Iterator[None]:
    """Set (or with ``None`` unset) environment variables for the block; kernels started inside inherit them."""
    old = {k: os.environ.get(k) for k in values}
    try:
        for k, v in values.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
        yield
    finally:
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def _source_cell_number(nb_path: Path, cell_index: int) -> int:
    """1-based number, in the source notebook, of the failing cell of papermill's output (which adds cells)."""
    added = {"injected-parameters", "papermill-error-cell-tag"}
    try:
        cells = nbformat.read(nb_path, as_version=4).cells
        failing = next(i for i, c in enumerate(cells) if any(o.get("output_type") == "error" for o in c.get("outputs", [])))
    except Exception:  # unreadable partial notebook: fall back to papermill's index
        return cell_index + 1
    return sum(not added & set(c.metadata.get("tags", [])) for c in cells[:failing]) + 1


def execute_papermill(
    notebook: Path, output: Path, parameters: Mapping[str, Any], *, label: str, env: Mapping[str, str | None] | None = None,
    progress: bool = True, log_output: bool = False, timeout: int = TIMEOUT,
) -> float:
    """Execute ``notebook`` into ``output`` with papermill; returns the wall time in seconds.

    The working directory is the notebook's folder (as in JupyterLab and
    nbval). On a failing cell raises :class:`NotebookFailed`, ``output``
    keeps the partial notebook.
    """
    import papermill
    from nbclient.exceptions import CellTimeoutError, DeadKernelError
    from papermill.exceptions import PapermillExecutionError

    output.parent.mkdir(parents=True, exist_ok=True)
    # Papermill's own parameter-cell parser warns about comments with "=" or quotes and about names it could not
    # parse; the names and values were already checked against book.yml, so only its errors are shown.
    logging.getLogger("papermill").setLevel(logging.INFO if log_output else logging.ERROR)
    start = time.perf_counter()
    try:
        with environ(**(env or {})):
            papermill.execute_notebook(
                str(notebook), str(output), parameters=dict(parameters), kernel_name=KERNEL_NAME, language="python",
                progress_bar=progress, log_output=log_output, stdout_file=sys.stdout if log_output else None,
                stderr_file=sys.stderr if log_output else None, cwd=str(notebook.parent), execution_timeout=timeout,
                kernel_manager_class=CurrentEnvKernelManager,
            )
    except PapermillExecutionError as exc:
        cell = _source_cell_number(output, exc.cell_index)
        raise NotebookFailed(label, cell, exc.exec_count, exc.ename, exc.evalue, exc.source, output) from None
    except (CellTimeoutError, DeadKernelError) as exc:  # a cell ran past `timeout`, or the kernel died (e.g. out of memory)
        raise NotebookFailed(label, None, None, type(exc).__name__, str(exc).strip().splitlines()[0], "", output) from None
    return time.perf_counter() - start


def execute_in_place(notebook: Path, *, failed_dir: Path, env: Mapping[str, str | None] | None = None, timeout: int = TIMEOUT) -> float:
    """Re-execute ``notebook`` with its own defaults and overwrite it with the outputs (like ``nbconvert --execute --inplace``).

    On a failing cell the committed notebook is left untouched and the partial
    one is written to ``failed_dir``; raises :class:`NotebookFailed`.
    """
    from nbclient import NotebookClient
    from nbclient.exceptions import CellExecutionError

    nb = nbformat.read(notebook, as_version=4)
    client = NotebookClient(
        nb, timeout=timeout, kernel_name=KERNEL_NAME, kernel_manager_class=CurrentEnvKernelManager,
        resources={"metadata": {"path": str(notebook.parent)}},
    )
    start = time.perf_counter()
    try:
        with environ(**(env or {})):
            client.execute()
    except CellExecutionError as exc:
        failed_dir.mkdir(parents=True, exist_ok=True)
        partial = failed_dir / notebook.name
        nbformat.write(nb, partial)
        index = next((i for i, c in enumerate(nb.cells) if any(o.get("output_type") == "error" for o in c.get("outputs", []))), None)
        cell = nb.cells[index] if index is not None else None
        raise NotebookFailed(
            str(notebook), None if index is None else index + 1, cell.get("execution_count") if cell else None,
            exc.ename, exc.evalue, cell.source if cell else "", partial,
        ) from None
    seconds = time.perf_counter() - start
    nbformat.write(nb, notebook)
    return seconds
