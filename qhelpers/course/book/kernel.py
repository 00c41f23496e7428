"""Executing one notebook in a kernel of *this* Python (no kernelspec surprises), with papermill or in place."""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import subprocess
import sys
import threading
import time
import weakref
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Mapping, TypeVar

import ipykernel.kernelspec
import nbformat
import zmq
from jupyter_client.kernelspec import KernelSpecManager
from jupyter_client.manager import KernelManager
from traitlets import default

from .files import write_text
from .manifest import BookError, read_notebook

__all__ = ["CourseKernelSpecManager", "CurrentEnvKernelManager", "NotebookFailed", "Interrupted", "execute_papermill", "execute_in_place", "environ",
           "sigterm_interrupts"]

KERNEL_NAME = "python3"
TIMEOUT = 1800  # seconds per cell, as in nbval's configuration
GRACE = 10.0  # seconds an interrupted kernel gets to stop (and nbclient to shut it down) before it is killed
T = TypeVar("T")
_KERNELS: "weakref.WeakSet[CurrentEnvKernelManager]" = weakref.WeakSet()


class CourseKernelSpecManager(KernelSpecManager):
    """One kernel, ``python3``: ipykernel on ``sys.executable``, whatever kernelspecs are installed; every name resolves to it.

    The runner's kernels use it, and so does JupyterLab under ``python -m qhelpers.course.book lab``
    (``--ServerApp.kernel_spec_manager_class``), so a learner's notebook runs in the course's environment.
    """

    def get_kernel_spec(self, kernel_name: str):  # noqa: D102
        spec = ipykernel.kernelspec.get_kernel_dict()
        spec["display_name"] = "Python 3 (qcourse)"
        return self.kernel_spec_class(resource_dir=ipykernel.kernelspec.RESOURCES, **spec)

    def find_kernel_specs(self) -> dict[str, str]:  # noqa: D102
        return {KERNEL_NAME: ipykernel.kernelspec.RESOURCES}

    def get_all_specs(self) -> dict[str, Any]:  # noqa: D102
        return {KERNEL_NAME: {"resource_dir": ipykernel.kernelspec.RESOURCES, "spec": self.get_kernel_spec(KERNEL_NAME).to_dict()}}


class CurrentEnvKernelManager(KernelManager):
    """A kernel manager whose kernel is the running interpreter, whatever kernelspecs are installed."""

    @default("kernel_spec_manager")
    def _default_specs(self) -> KernelSpecManager:
        return CourseKernelSpecManager(data_dir=self.data_dir)

    @default("transport_encryption")
    def _default_encryption(self) -> str:
        return "auto" if zmq.has("curve") else "disabled"  # CurveZMQ when available: no plain-TCP warning

    def __init__(self, **kwargs: Any):
        super().__init__(**kwargs)
        _KERNELS.add(self)  # so that an interrupted run can stop the kernel it started

    async def _async_pre_start_kernel(self, **kw: Any) -> tuple[list[str], dict[str, Any]]:
        # The kernel process's own stderr is its log, not the notebook's output (cells' sys.stdout/sys.stderr come
        # over ZMQ). Inherited, it printed e.g. tornado's "Uncaught exception in ZMQStream callback" traceback from a
        # shutdown race after Ctrl-C into the terminal, under our one-line message. (Raw writes to file descriptor 2
        # by C code in a cell went there too and are dropped now; as in JupyterLab, they never reach the notebook.)
        # (Here and not in _async_start_kernel: the synchronous start_kernel is bound to the base class's.)
        kw.setdefault("stderr", subprocess.DEVNULL)
        return await super()._async_pre_start_kernel(**kw)

    async def _async_interrupt_kernel(self) -> None:
        # jupyter_client interrupts a kernel before every shutdown. After an interrupted cell that second SIGINT can
        # land while ipykernel is still replying, and it logs "KeyboardInterrupt caught in kernel" to the terminal.
        # A shutdown needs no interrupt: ipykernel answers shutdown_request on its control thread, and jupyter_client
        # kills a kernel that does not stop in time.
        if getattr(self, "shutting_down", False):
            return
        await super()._async_interrupt_kernel()


class Interrupted(KeyboardInterrupt):
    """The run was stopped (Ctrl-C, or SIGTERM under :func:`sigterm_interrupts`); the message says what was left where."""

    def __init__(self, message: str = "", signum: int = signal.SIGINT):
        super().__init__(message)
        self.signum = signum

    @classmethod
    def wrap(cls, exc: KeyboardInterrupt, message: str) -> "Interrupted":
        return cls(message, getattr(exc, "signum", signal.SIGINT))


@contextlib.contextmanager
def sigterm_interrupts() -> Iterator[None]:
    """Within the block SIGTERM raises :class:`Interrupted` like Ctrl-C does (main thread only; elsewhere a no-op)."""
    def handler(signum: int, frame: Any) -> None:
        raise Interrupted(signum=signum)

    try:
        old = signal.signal(signal.SIGTERM, handler)
    except ValueError:  # not the main thread
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, old)


def _signal_kernels(kernels: Iterable[CurrentEnvKernelManager], signum: int) -> set[CurrentEnvKernelManager]:
    """Send ``signum`` to the running kernels among ``kernels``; returns those that got it."""
    sent = set()
    for km in kernels:
        prov = getattr(km, "provisioner", None)
        proc = getattr(prov, "process", None)
        if proc is None or proc.poll() is not None:
            continue
        with contextlib.suppress(OSError):
            if getattr(prov, "pgid", None):
                os.killpg(prov.pgid, signum)  # the kernel's own session: its subprocesses (e.g. data loaders) too
            else:
                proc.send_signal(signum)
            sent.add(km)
    return sent


def _interruptible(work: Callable[[], T]) -> T:
    """Run ``work`` (which starts a kernel) in a worker thread, so that Ctrl-C reaches this thread at once.

    On ``KeyboardInterrupt`` (including :class:`Interrupted`) the kernels started
    meanwhile are interrupted (the cell raises KeyboardInterrupt, which the partial
    notebook shows) and get :data:`GRACE` seconds to stop and be shut down by
    nbclient; a kernel still alive then is killed; the interrupt is raised again.
    (Run in the main thread, nbclient would catch Ctrl-C itself and carry on with the cell.)
    """
    before = set(_KERNELS)
    outcome: dict[str, Any] = {}
    done = threading.Event()  # not Thread.is_alive(): a join() cut by KeyboardInterrupt can leave it wrongly False

    def target() -> None:
        try:
            outcome["value"] = work()
        except BaseException as exc:  # handed to the calling thread
            outcome["error"] = exc
        finally:
            done.set()

    threading.Thread(target=target, name="qhelpers-book-kernel", daemon=True).start()
    try:
        while not done.wait(0.1):
            pass
    except KeyboardInterrupt:
        signalled: set[CurrentEnvKernelManager] = set()
        deadline = time.monotonic() + GRACE
        try:
            while not done.is_set() and time.monotonic() < deadline:  # (a kernel may still be starting)
                signalled |= _signal_kernels([km for km in list(_KERNELS) if km not in before and km not in signalled], signal.SIGINT)
                done.wait(0.1)
        except KeyboardInterrupt:
            pass  # asked twice: do not wait
        if not done.is_set():
            _signal_kernels([km for km in list(_KERNELS) if km not in before], signal.SIGKILL)
            done.wait(GRACE / 2)  # a little time for nbclient to clean up; the run is marked interrupted either way
        raise
    if "error" in outcome:
        raise outcome["error"]
    return outcome["value"]


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
            _interruptible(lambda: papermill.execute_notebook(
                str(notebook), str(output), parameters=dict(parameters), kernel_name=KERNEL_NAME, language="python",
                progress_bar=progress, log_output=log_output, stdout_file=sys.stdout if log_output else None,
                stderr_file=sys.stderr if log_output else None, cwd=str(notebook.parent), execution_timeout=timeout,
                kernel_manager_class=CurrentEnvKernelManager,
            ))
    except PapermillExecutionError as exc:
        cell = _source_cell_number(output, exc.cell_index)
        raise NotebookFailed(label, cell, exc.exec_count, exc.ename, exc.evalue, exc.source, output) from None
    except (CellTimeoutError, DeadKernelError) as exc:  # a cell ran past `timeout`, or the kernel died (e.g. out of memory)
        raise NotebookFailed(label, None, None, type(exc).__name__, str(exc).strip().splitlines()[0], "", output) from None
    return time.perf_counter() - start


def execute_in_place(notebook: Path, *, failed_dir: Path, env: Mapping[str, str | None] | None = None, timeout: int = TIMEOUT) -> float:
    """Re-execute ``notebook`` with its own defaults and overwrite it with the outputs (like ``nbconvert --execute --inplace``).

    On a failing cell (or an interrupt) the committed notebook is left untouched;
    the partial one of a failure is written to ``failed_dir``; raises :class:`NotebookFailed`.
    """
    from nbclient import NotebookClient
    from nbclient.exceptions import CellExecutionError

    nb = read_notebook(notebook)
    client = NotebookClient(
        nb, timeout=timeout, kernel_name=KERNEL_NAME, kernel_manager_class=CurrentEnvKernelManager,
        resources={"metadata": {"path": str(notebook.parent)}},
    )
    start = time.perf_counter()
    try:
        with environ(**(env or {})):
            _interruptible(client.execute)
    except CellExecutionError as exc:
        failed_dir.mkdir(parents=True, exist_ok=True)
        partial = write_text(failed_dir / notebook.name, nbformat.writes(nb))
        index = next((i for i, c in enumerate(nb.cells) if any(o.get("output_type") == "error" for o in c.get("outputs", []))), None)
        cell = nb.cells[index] if index is not None else None
        raise NotebookFailed(
            str(notebook), None if index is None else index + 1, cell.get("execution_count") if cell else None,
            exc.ename, exc.evalue, cell.source if cell else "", partial,
        ) from None
    seconds = time.perf_counter() - start
    # Merge each cell's stream pieces and keep only what a terminal would show after each carriage return: a
    # progress bar is committed as its final line, not as hundreds of redraws.
    from nbconvert.preprocessors import CoalesceStreamsPreprocessor

    CoalesceStreamsPreprocessor().preprocess(nb, {})
    write_text(notebook, nbformat.writes(nb))  # atomic: an interrupt never leaves a half-written committed notebook
    return seconds
