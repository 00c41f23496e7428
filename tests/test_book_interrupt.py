"""Stopping a run with Ctrl-C or SIGTERM: one line, exit 130/143, the kernel shut down, nothing stale (real kernels; slow)."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from book_fixtures import write_notebook


def sleepy_book(root: Path) -> Path:
    """One chapter whose second cell writes its kernel's pid to $MARKER and sleeps ``secs`` seconds."""
    write_notebook(root / "notebooks" / "01_sleepy.ipynb", "secs = 0  # seconds to sleep",
                   "import os, pathlib, time\npathlib.Path(os.environ['MARKER']).write_text(str(os.getpid()))\ntime.sleep(secs)",
                   "print('woke up')")
    (root / "book.yml").write_text(yaml.safe_dump({"title": "Sleepy", "profiles": {"smoke": "s"}, "chapters": [{
        "id": "sleepy", "title": "Sleepy", "notebook": "notebooks/01_sleepy.ipynb", "summary": "sleeps",
        "parameters": {"secs": {"type": "int", "default": 0, "help": "seconds to sleep"}}}]}))
    return root / "book.yml"


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def stop_while_sleeping(argv: list[str], marker: Path, signum: int) -> tuple[int, str, float, int]:
    """Start the CLI, wait for the kernel's marker, send ``signum``; (exit code, stderr, seconds to stop, kernel pid)."""
    marker.unlink(missing_ok=True)
    env = dict(os.environ, MARKER=str(marker))
    # A shell without job control starts background jobs with SIGINT ignored (`cmd &`, nohup), and an ignored signal
    # stays ignored through exec: Python would then never raise KeyboardInterrupt. Give the CLI the default handler
    # a terminal's Ctrl-C meets, whatever ran this test.
    proc = subprocess.Popen([sys.executable, "-m", "qhelpers.course.book", *argv], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    try:
        deadline = time.monotonic() + 120
        while not (marker.is_file() and marker.read_text()):
            assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()
            time.sleep(0.1)
        sent = time.monotonic()
        proc.send_signal(signum)
        _, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:  # a failed test leaves no run (and no kernel) behind
            proc.kill()
            proc.communicate()
            if marker.is_file() and marker.read_text():
                with contextlib.suppress(ProcessLookupError):
                    os.kill(int(marker.read_text()), signal.SIGKILL)
    return proc.returncode, err, time.monotonic() - sent, int(marker.read_text())


@pytest.mark.parametrize("signum, code, name", [(signal.SIGINT, 130, "Ctrl-C"), (signal.SIGTERM, 143, "SIGTERM")])
def test_stopped_rerun_is_marked_interrupted_and_its_kernel_shut_down(tmp_path, signum, code, name):
    book = sleepy_book(tmp_path)
    marker = tmp_path / "marker"
    first = subprocess.run([sys.executable, "-m", "qhelpers.course.book", "--book", str(book), "run", "--no-progress", "--no-html"],
                           env=dict(os.environ, MARKER=str(marker)), capture_output=True, text=True, timeout=300)
    assert first.returncode == 0, first.stderr
    out = tmp_path / "build" / "full"
    assert json.loads((out / "run.json").read_text())["chapters"]["sleepy"]["status"] == "ok"

    rc, err, took, kernel = stop_while_sleeping(["--book", str(book), "run", "--no-progress", "-p", "secs=120"], marker, signum)
    assert rc == code
    assert err.startswith(f"interrupted ({name}): chapter 'sleepy' was stopped") and err.count("\n") == 1, err
    assert took < 60  # not after the 120 s cell
    time.sleep(0.5)
    assert not alive(kernel)
    assert json.loads((out / "run.json").read_text())["chapters"]["sleepy"]["status"] == "interrupted"
    index = (out / "book" / "index.html").read_text()  # the book built for what did run
    assert "INTERRUPTED" in index and "Not every chapter ran to the end" in index
    outputs = json.dumps([c.get("outputs", []) for c in json.loads((out / "01_sleepy.ipynb").read_text())["cells"]])
    assert "KeyboardInterrupt" in outputs and "woke up" not in outputs  # the partial notebook shows where it stopped


def test_interrupted_execute_in_place_leaves_the_notebook_unchanged(tmp_path):
    book = sleepy_book(tmp_path)
    nb = tmp_path / "notebooks" / "01_sleepy.ipynb"
    text = nb.read_text().replace("secs = 0", "secs = 120")
    nb.write_text(text)
    raw = yaml.safe_load(book.read_text())
    raw["chapters"][0]["parameters"]["secs"]["default"] = 120
    book.write_text(yaml.safe_dump(raw))
    rc, err, took, kernel = stop_while_sleeping(["--book", str(book), "execute-in-place", str(nb)], tmp_path / "marker", signal.SIGINT)
    assert rc == 130 and err == "interrupted (Ctrl-C): 01_sleepy.ipynb was left as it was and its kernel shut down\n"
    assert took < 60
    time.sleep(0.5)
    assert not alive(kernel)
    assert nb.read_text() == text
    assert [p.name for p in nb.parent.iterdir()] == ["01_sleepy.ipynb"]


def test_the_kernels_own_log_stays_out_of_the_terminal_and_cell_output_stays_in_the_notebook(tmp_path):
    """What the kernel process logs to its own stderr (e.g. tornado's traceback from a shutdown race after Ctrl-C)
    is not printed under the CLI's messages; what a cell writes to sys.stderr is in the notebook."""
    book = sleepy_book(tmp_path)
    nb = tmp_path / "notebooks" / "01_sleepy.ipynb"
    write_notebook(nb, "secs = 0  # seconds to sleep",
                   "import os, sys\nsys.__stderr__.write('KERNEL-LOG-LINE\\n'); sys.__stderr__.flush()\n"
                   "os.write(2, b'CELL-FD-LINE\\n')\nprint('CELL-PY-LINE', file=sys.stderr)\n"
                   "import pathlib; pathlib.Path(os.environ['MARKER']).write_text(str(os.getpid()))")
    env = dict(os.environ, MARKER=str(tmp_path / "marker"))
    proc = subprocess.run([sys.executable, "-m", "qhelpers.course.book", "--book", str(book), "execute-in-place", str(nb)],
                          env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "KERNEL-LOG-LINE" not in proc.stderr + proc.stdout and "CELL-FD-LINE" not in proc.stderr + proc.stdout
    outputs = json.dumps([c.get("outputs", []) for c in json.loads(nb.read_text())["cells"]])
    assert "CELL-PY-LINE" in outputs
