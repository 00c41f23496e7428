"""The runner's files: atomic writes, the one build folder, and run.json bookkeeping around a stopped chapter
(the kernel is replaced by a stub here; test_book_interrupt.py stops real ones)."""

from __future__ import annotations

import json
import os
import re
import stat
from types import SimpleNamespace

import nbformat
import pytest

from book_fixtures import tiny_book
from qhelpers.course.book import BookError, Interrupted, load_book, run
from qhelpers.course.book.dashboard import status_of
from qhelpers.course.book.files import build_dir, read_json, write_json, write_text


def test_write_json_is_atomic_with_normal_permissions(tmp_path):
    target = write_json(tmp_path / "run.json", {"a": 1})
    assert json.loads(target.read_text()) == {"a": 1}
    umask = os.umask(0o022)
    os.umask(umask)
    assert stat.S_IMODE(target.stat().st_mode) == 0o666 & ~umask
    write_text(target, "{}\n")
    assert target.read_text() == "{}\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run.json"]  # no temporary file left behind


def test_a_failed_write_leaves_the_old_file_and_no_temporary(tmp_path):
    target = write_json(tmp_path / "run.json", {"a": 1})
    with pytest.raises(TypeError):
        write_text(target, 5)  # type: ignore[arg-type]
    assert json.loads(target.read_text()) == {"a": 1}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run.json"]


def test_read_json_refuses_a_corrupt_file(tmp_path):
    assert read_json(tmp_path / "missing.json") == {}
    (tmp_path / "bad.json").write_text("{oops")
    with pytest.raises(BookError, match="bad.json is unreadable .*; delete it and run again"):
        read_json(tmp_path / "bad.json")
    (tmp_path / "list.json").write_text("[1]")
    with pytest.raises(BookError, match="does not hold a JSON object"):
        read_json(tmp_path / "list.json")


def test_build_dir_is_the_one_place(tmp_path):
    book = load_book(tiny_book(tmp_path))
    assert build_dir(book, "smoke") == book.root / "build" / "smoke" and (book.root / "build" / "smoke").is_dir()
    assert build_dir(book, "sweeps", "alpha", out=tmp_path / "o") == tmp_path / "o" / "sweeps" / "alpha"
    assert build_dir(book, "failed", create=False) == book.root / "build" / "failed" and not (book.root / "build" / "failed").exists()
    with pytest.raises(BookError, match="is inside the notebooks folder"):
        build_dir(book, "full", out=tmp_path / "notebooks")
    (tmp_path / "f").write_text("x")
    with pytest.raises(BookError, match="is a file, not a folder"):
        build_dir(book, "full", out=tmp_path / "f", create=False)


@pytest.fixture
def stubbed(tmp_path, monkeypatch):
    """The tiny book with a fake kernel: ``behaviour[chapter]`` is "ok" (writes outputs and a record) or an exception."""
    book = load_book(tiny_book(tmp_path))
    behaviour: dict[str, object] = {}
    seen: dict[str, dict] = {}

    def fake(notebook, output, parameters, *, label, env, **kwargs):
        cid = next(c.id for c in book.chapters if c.notebook == notebook)
        seen[cid] = json.loads((output.parent / "run.json").read_text())["chapters"][cid]  # what run.json said meanwhile
        assert not output.exists()  # the earlier run's notebook is gone
        what = behaviour.get(cid, "ok")
        nb = nbformat.read(notebook, as_version=4)
        nb.cells[-1].outputs = [nbformat.v4.new_output("stream", text=f"{cid} ran\n")] if what == "ok" else []
        nbformat.write(nb, output)
        if what != "ok":
            raise what  # type: ignore[misc]
        write_json(output.parent / "results" / f"{cid}.json", {"value": 1, "err": 0.0625, "bits_seen": 4})  # alpha's headline
        return 0.1

    monkeypatch.setattr("qhelpers.course.book.runner.execute_papermill", fake)
    monkeypatch.setattr("qhelpers.course.book.environment.start_capture", lambda: SimpleNamespace(result=lambda: {"date": "stubbed"}))
    return book, behaviour, seen


@pytest.mark.parametrize("stop", [KeyboardInterrupt(), Interrupted(signum=15)])
def test_interrupted_rerun_never_leaves_a_stale_ok(stubbed, stop):
    book, behaviour, seen = stubbed
    run(book, progress=False, html=False)
    out = book.root / "build" / "full"
    assert {c["status"] for c in read_json(out / "run.json")["chapters"].values()} == {"ok"}
    assert read_json(out / "run.json")["environment"] == {"date": "stubbed"}

    behaviour["beta"] = stop
    with pytest.raises(Interrupted) as info:
        run(book, progress=False, html=False)
    assert info.value.signum == getattr(stop, "signum", 2)
    assert "chapter 'beta' was stopped" in str(info.value) and "marks it 'interrupted'" in str(info.value)
    assert seen["beta"]["status"] == "running"  # marked before its kernel started
    chapters = read_json(out / "run.json")["chapters"]
    assert chapters["alpha"]["status"] == "ok" and chapters["beta"]["status"] == "interrupted"
    assert read_json(out / "results.json")["beta"] == {}  # the earlier run's results are not shown beside the new notebook
    shown = status_of(chapters["beta"])  # what the book shows (tests/test_book_site.py renders it)
    assert not shown["ok"] and shown["short"] == "INTERRUPTED" and "incomplete" in shown["detail"]


def test_a_killed_run_shows_running_not_ok(stubbed):
    book, behaviour, _ = stubbed
    run(book, progress=False, html=False)
    behaviour["alpha"] = SystemExit(9)  # stands for SIGKILL: nothing after it runs
    with pytest.raises(SystemExit):
        run(book, progress=False, html=False)
    out = book.root / "build" / "full"
    assert read_json(out / "run.json")["chapters"]["alpha"]["status"] == "running"
    shown = status_of(read_json(out / "run.json")["chapters"]["alpha"])
    assert not shown["ok"] and shown["short"] == "NO RESULT" and "never finished" in shown["detail"]


def test_an_unexpected_error_is_recorded_as_failed_then_raised(stubbed):
    book, behaviour, _ = stubbed
    behaviour["alpha"] = RuntimeError("Kernel died before replying to kernel_info")
    with pytest.raises(RuntimeError):
        run(book, progress=False, html=False)
    info = read_json(book.root / "build" / "full" / "run.json")["chapters"]["alpha"]
    assert info["status"] == "failed" and "Kernel died" in info["error"]


def test_cli_interrupt_is_one_line_with_exit_code_130(stubbed, capsys):
    book, behaviour, _ = stubbed
    from qhelpers.course.book.__main__ import main

    behaviour["alpha"] = KeyboardInterrupt()
    assert main(["--book", str(book.path), "run", "--no-progress", "--no-html"]) == 130
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("interrupted (Ctrl-C): chapter 'alpha' was stopped") and "Traceback" not in err
    behaviour["alpha"] = Interrupted(signum=15)
    assert main(["--book", str(book.path), "run", "--no-progress", "--no-html"]) == 143
    assert capsys.readouterr().err.startswith("interrupted (SIGTERM): chapter 'alpha'")


def test_the_environment_probe_runs_beside_the_caller_and_reports_its_own_failures():
    from qhelpers.course.book.environment import start_capture

    probe = start_capture()  # returns at once: the child imports torch while the caller goes on
    env = probe.result()
    assert env["versions"]["torch"] and env["threads"] >= 1 and re.search(r"\bAVX2 (yes|no|unknown)\b", env["cpu"])
    assert start_capture(timeout=0.01).result() == {"error": "the environment probe took more than 0 s"}
