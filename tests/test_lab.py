"""JupyterLab, the way learners use it: `python -m qhelpers.course.book lab` (`make lab`) serves the course with its own kernel;
chapter 01 is opened in headless Chromium, every cell is run from Lab's menu command, and no cell may end in an error.

Runs on a copy of the notebooks (Lab autosaves), marked browser (~2 min: it executes chapter 01).
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import secrets
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from test_book_browser import need_chromium

ROOT = Path(__file__).resolve().parents[1]
CHAPTER = "01_concepts.ipynb"
pytestmark = pytest.mark.browser


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    """JupyterLab started as `make lab` starts it, on a copy of the course; yields (base url, token, notebooks folder)."""
    tmp_path = tmp_path_factory.mktemp("lab")
    course = tmp_path / "course"
    shutil.copytree(ROOT / "notebooks", course / "notebooks", ignore=shutil.ignore_patterns(".ipynb_checkpoints", "__pycache__"))
    shutil.copy(ROOT / "book.yml", course / "book.yml")
    port, token = free_port(), secrets.token_hex(16)
    log = open(tmp_path / "lab.log", "w")
    proc = subprocess.Popen(
        [sys.executable, "-m", "qhelpers.course.book", "--book", str(course / "book.yml"), "lab", "--no-browser", f"--port={port}",
         "--ServerApp.ip=127.0.0.1", f"--IdentityProvider.token={token}", "--LabApp.expose_app_in_browser=True",
         f"--ServerApp.runtime_dir={tmp_path / 'runtime'}"],
        stdout=log, stderr=subprocess.STDOUT, env={**os.environ, "JUPYTER_CONFIG_DIR": str(tmp_path / "config")},
        start_new_session=True)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                urllib.request.urlopen(f"{base}/api/status?token={token}", timeout=5)
                break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    pytest.fail(f"JupyterLab did not start:\n{(tmp_path / 'lab.log').read_text()[-2000:]}")
                time.sleep(0.5)
        yield base, token, course / "notebooks"
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, 15)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, 9)
        log.close()


def test_lab_serves_only_the_course_kernel(lab):
    base, token, _ = lab
    specs = json.load(urllib.request.urlopen(f"{base}/api/kernelspecs?token={token}"))
    assert specs["default"] == "python3" and list(specs["kernelspecs"]) == ["python3"]
    assert specs["kernelspecs"]["python3"]["spec"]["argv"][0] == sys.executable


def run_all_in_lab(base: str, token: str, notebook: str, screenshot: Path | None = None) -> list[str]:
    """Open ``notebook`` in JupyterLab in Chromium, run all cells with Lab's command, save; returns the rendered
    text of the outputs that show a progress bar."""
    need_chromium()
    from playwright.sync_api import sync_playwright

    from book_browser import find_chromium

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=find_chromium(), headless=True, args=["--no-sandbox"])
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            # a workspace of its own, reset: Lab opens this notebook only (not the tabs of an earlier test)
            page.goto(f"{base}/lab/workspaces/{Path(notebook).stem}/tree/{notebook}?reset&token={token}")
            find = f"""[...jupyterapp.shell.widgets('main')].find(w => w.context && w.context.path === {json.dumps(notebook)})"""
            page.wait_for_function(f"window.jupyterapp && {find} && document.querySelector('.jp-Notebook .jp-Cell')", timeout=120_000)
            # wait for the kernel, then Lab's own "Run All Cells" command (what the Run menu does)
            page.wait_for_function(f"""() => {{ const w = {find};
                return w.sessionContext && w.sessionContext.session && w.sessionContext.session.kernel
                       && w.sessionContext.session.kernel.status === 'idle'; }}""", timeout=120_000)
            page.evaluate(f"() => {{ const w = {find}; jupyterapp.shell.activateById(w.id); "
                          "return jupyterapp.commands.execute('notebook:run-all-cells'); }")
            page.wait_for_function(f"""() => {{ const w = {find};
                const cells = [...w.content.widgets].filter(c => c.model.type === 'code');
                const failed = cells.some(c => c.model.outputs.toJSON().some(o => o.output_type === 'error'));
                const busy = [...w.node.querySelectorAll('.jp-InputArea-prompt')].some(p => p.textContent.includes('*'));
                return !busy && w.sessionContext.session.kernel.status === 'idle'
                       && (failed || cells.every(c => c.model.executionCount !== null)); }}""", timeout=900_000, polling=2000)
            page.evaluate("jupyterapp.commands.execute('docmanager:save')")
            page.wait_for_timeout(2000)
            bars = page.evaluate("""[...document.querySelectorAll('.jp-OutputArea-output')].map(o => o.innerText)
                                    .filter(t => t.includes('%|'))""")
            if screenshot is not None:
                screenshot.parent.mkdir(parents=True, exist_ok=True)
                page.screenshot(path=str(screenshot))
        finally:
            browser.close()
    return bars


def test_chapter_01_runs_in_jupyterlab_without_errors(lab):
    base, token, notebooks = lab
    bars = run_all_in_lab(base, token, CHAPTER, ROOT / "build" / "screenshots" / "jupyterlab-01.png")
    nb = json.loads((notebooks / CHAPTER).read_text())
    code = [c for c in nb["cells"] if c["cell_type"] == "code"]
    assert all(c["execution_count"] for c in code), "every code cell ran"
    errors = [(i, o.get("ename"), o.get("evalue")) for i, c in enumerate(code, 1) for o in c["outputs"] if o["output_type"] == "error"]
    assert not errors, f"cells that ended in an error: {errors}"
    stderr = "".join("".join(o["text"]) for c in code for o in c["outputs"] if o.get("name") == "stderr")
    assert not re.search(r"Warning|Traceback", stderr), f"warning noise on stderr: {stderr[:500]}"
    for text in bars:  # a progress bar is drawn in place: its final state, not one line per update
        lines = [ln for ln in text.splitlines() if "%|" in ln]
        assert len(lines) == len({ln.split("%|")[0].rsplit(":", 1)[0] for ln in lines}), f"progress bar redrawn as new lines: {lines[:3]}"


def test_a_progress_bar_is_drawn_in_place_in_jupyterlab(lab):
    """The course's progress bar (qhelpers.train.progress) in Lab: one line at 100 %, not one line per update."""
    import nbformat

    base, token, notebooks = lab
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell("import time\nfrom qhelpers.train import progress\n"
                                          "for _ in progress(range(150), desc='demo'):\n    time.sleep(0.02)")]
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbformat.write(nb, notebooks / "progress_demo.ipynb")
    bars = run_all_in_lab(base, token, "progress_demo.ipynb")
    assert len(bars) == 1, bars
    lines = [ln for ln in bars[0].splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("demo: 100%") and "150/150" in lines[0], lines
