"""``run``: execute the chapters of a profile in order into ``build/<profile>/`` and collect their results.

Layout of a run::

    build/<profile>/<notebook>.ipynb        executed copies (partial on failure)
    build/<profile>/results/<chapter>.json  what each chapter's ``qhelpers.course.record`` calls saved
    build/<profile>/results.json            {chapter_id: {name: value}}
    build/<profile>/run.json                the run's environment; parameters, status and wall time of each chapter
    build/<profile>/book/index.html         the book (see ``site.py``)
"""

from __future__ import annotations

import datetime as dt
import sys
import time
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

from ..record import RESULTS_ENV, read_results
from .dashboard import headline_names
from .files import build_dir, read_json, update_json, write_json
from .kernel import Interrupted, NotebookFailed, execute_in_place, execute_papermill
from .manifest import FULL, Book, BookError, Chapter, did_you_mean

__all__ = ["plan", "run", "execute_all_in_place", "resolve_overrides"]


def resolve_overrides(chapters: Sequence[Chapter], raw: Mapping[str, str]) -> dict[str, dict[str, Any]]:
    """Parse ``-p`` strings for each chapter: ``name=value`` applies to every chapter with that parameter,
    ``chapter.name=value`` to that chapter only (and wins over ``name=value``). Unknown names and bad values raise ``BookError``."""
    out: dict[str, dict[str, Any]] = {c.id: {} for c in chapters}
    problems = []
    ids = {c.id: c for c in chapters}
    for key, text in sorted(raw.items(), key=lambda kv: "." in kv[0]):  # chapter.name after name
        cid, dot, name = key.rpartition(".")
        if dot:
            if cid not in ids:
                problems.append(f"-p {key}: {cid!r} is not a chapter of this run{did_you_mean(cid, ids)} (chapters: {', '.join(ids)})")
                continue
            if name not in ids[cid].parameters:
                problems.append(f"-p {key}: chapter {cid} has no parameter {name!r}{did_you_mean(name, ids[cid].parameters)}; "
                                f"its parameters: {', '.join(ids[cid].parameters) or 'none'}")
                continue
            targets = [ids[cid]]
        else:
            targets = [c for c in chapters if name in c.parameters]
        if not targets:
            known = sorted({p for c in chapters for p in c.parameters})
            problems.append(f"-p {key}: no chapter of this run has a parameter {name!r}{did_you_mean(name, known)}; known parameters: "
                            f"{', '.join(known) or 'none'} (`python -m qhelpers.course.book list` shows them per chapter)")
            continue
        for c in targets:
            try:
                out[c.id][name] = c.parameters[name].parse(text)
            except BookError as exc:
                several = " (to run several values, use `sweep`)" if "," in text and c.parameters[name].type != "str" else ""
                problems.append(f"-p {key} for chapter {c.id}: {exc}{several}; {c.parameters[name].describe()}")
    if problems:
        raise BookError(problems)
    return out


def plan(book: Book, profile: str = FULL, only: Iterable[str] = (), params: Mapping[str, str] | None = None) -> list[tuple[Chapter, dict[str, Any]]]:
    """The chapters to run, in book order, with the parameter values to inject; everything is checked here."""
    book.check_profile(profile)
    only = list(only)
    problems = [f"--only: {book.unknown_chapter(cid)}" for cid in only if cid not in {c.id for c in book.chapters}]
    if problems:
        raise BookError(problems)
    chapters = [c for c in book.chapters if not only or c.id in only]
    overrides = resolve_overrides(chapters, params or {})
    problems = [f"chapter {c.id}: {p}" for c in chapters for p in c.rule_problems(profile, overrides[c.id])]
    if problems:
        raise BookError(problems)
    return [(c, c.values(profile, overrides[c.id])) for c in chapters]


def _say(msg: str) -> None:
    print(msg, flush=True)


def run(
    book: Book, profile: str = FULL, only: Iterable[str] = (), params: Mapping[str, str] | None = None, *,
    out: Path | None = None, progress: bool = True, log_output: bool = False, html: bool = True, environment: bool = True,
) -> dict[str, dict[str, Any]]:
    """Execute the selected chapters in order; returns ``{chapter_id: {name: value}}`` of this run.

    Each chapter is marked ``running`` in run.json (its old results and executed
    notebook removed) before its kernel starts, then ``ok``, ``failed`` or
    ``interrupted``: no book shows an earlier run's status beside a new notebook.
    With ``environment`` the machine (CPU, kernels' ISA, threads, versions) is
    measured in a child process while the chapters run and kept in run.json for the dashboard; with ``html`` the book is
    built at the end. Stops at the first failing chapter with :class:`NotebookFailed`,
    with :class:`BookError` at the first chapter that ran but did not record every
    name its headline in book.yml shows, or on Ctrl-C with :class:`Interrupted` (after writing results, run.json and the
    book for what did run).
    """
    todo = plan(book, profile, only, params)
    outdir = build_dir(book, profile, out=out)
    (outdir / "results").mkdir(exist_ok=True)
    run_file, results_file = outdir / "run.json", outdir / "results.json"
    state = read_json(run_file)
    state.update(title=book.title, profile=profile, book=str(book.path))
    state.setdefault("chapters", {})
    if environment:
        state.pop("environment", None)  # an earlier run's machine is not this one's: measured below
    write_json(run_file, state)
    read_json(results_file)  # a corrupt file is reported now, not after the first chapter
    probe = None
    if environment:  # a child process that finishes during the first chapter's start (it times nothing)
        from .environment import start_capture

        _say("measuring this machine (CPU, INT8 kernels, versions) for the results dashboard")
        probe = start_capture()
    collected: dict[str, dict[str, Any]] = {}
    failure: BaseException | None = None
    total = time.perf_counter()
    for i, (ch, values) in enumerate(todo, 1):
        shown = " ".join(f"{k}={v!r}" for k, v in values.items()) or "notebook defaults"
        _say(f"[{i}/{len(todo)}] {ch.id}: {ch.notebook.name} ({shown})")
        chapter_results = outdir / "results" / f"{ch.id}.json"
        output = outdir / ch.notebook.name
        status: dict[str, Any] = {
            "notebook": ch.notebook.name, "parameters": ch.effective(profile, values), "overrides": values,
            "started": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"), "status": "running",
        }
        update_json(run_file, ch.id, status, key="chapters")
        update_json(results_file, ch.id, {})
        chapter_results.unlink(missing_ok=True)
        output.unlink(missing_ok=True)
        began = time.perf_counter()
        try:
            seconds = execute_papermill(ch.notebook, output, values, label=f"chapter {ch.id!r} ({ch.notebook.name})",
                                        env={RESULTS_ENV: str(chapter_results.resolve())}, progress=progress, log_output=log_output)
            status.update(status="ok", seconds=round(seconds, 1))
            _say(f"      done in {seconds:.1f} s -> {output}")
        except NotebookFailed as exc:
            failure = exc
            status.update(status="failed", error=f"cell {exc.cell}: {exc.ename}: {exc.evalue}")
        except KeyboardInterrupt as exc:
            failure = Interrupted.wrap(exc, f"chapter {ch.id!r} was stopped after {time.perf_counter() - began:.0f} s, its kernel shut down; "
                                            f"{run_file} marks it 'interrupted'")
            status.update(status="interrupted")
        except Exception as exc:  # e.g. the kernel did not start: recorded, then raised as it is
            failure = exc
            status.update(status="failed", error=f"{type(exc).__name__}: {exc}")
        if failure:
            status["seconds"] = round(time.perf_counter() - began, 1)
        collected[ch.id] = read_results(chapter_results)
        missing = sorted(headline_names(ch) - set(collected[ch.id])) if not failure else []
        if missing:  # the book's headline would show empty cells: a chapter that skipped its records is not done
            failure = BookError(f"chapter {ch.id!r} ({ch.notebook.name}) ran but recorded no {', '.join(missing)}: its headline "
                                f"in {book.path.name} shows them, so a cell that calls course.record(...) for them was skipped "
                                f"or renamed; the executed notebook is {output}")
            status.update(status="failed", error=str(failure))
            _say(f"      but it recorded no {', '.join(missing)}")
        update_json(results_file, ch.id, collected[ch.id])
        update_json(run_file, ch.id, status, key="chapters")
        if failure:
            break
    if probe is not None:
        update_json(run_file, "environment", probe.result())
    _say(f"{len(collected)} chapter(s) in {time.perf_counter() - total:.1f} s; results in {results_file}")
    if html:
        from .site import BOOK, build_book

        began = time.perf_counter()
        try:
            _say(f"book: {build_book(book, profile, out=out)} ({time.perf_counter() - began:.1f} s)")
        except KeyboardInterrupt as exc:
            import shutil

            shutil.rmtree(outdir / BOOK, ignore_errors=True)  # better no book than a stale one
            failure = failure if isinstance(failure, Interrupted) else Interrupted.wrap(
                exc, f"the book was not built; `python -m qhelpers.course.book html --profile {profile}` builds it")
        except BookError as exc:
            failure = failure or exc
    if failure:
        raise failure
    return collected


def execute_all_in_place(book: Book, paths: Sequence[Path] = (), *, failed_dir: Path | None = None) -> dict[Path, float]:
    """Re-execute the committed notebooks (all of ``notebooks/`` in book order, or ``paths``) in place with their defaults.

    ``paths`` must be notebooks of the book's notebooks folder(s). Notebooks of the
    folder that book.yml does not list come last, with a note. ``QHELPERS_RESULTS``
    is unset so that nothing is written outside the notebook. An interrupted
    notebook is left as it was.
    """
    listed = [c.notebook.resolve() for c in book.chapters]
    folders = sorted({p.parent for p in listed}) or [(book.root / "notebooks").resolve()]
    if paths:
        chosen, problems = [], []
        for given in map(Path, paths):
            p = given.resolve()
            if p.is_dir() or not p.is_file() or p.suffix != ".ipynb":
                problems.append(f"{given}: " + ("a folder, not a notebook" if p.is_dir() else "no such notebook") +
                                "; give .ipynb files (`python -m qhelpers.course.book list` shows the chapters' notebooks), or none for all")
            elif p.parent not in folders:
                problems.append(f"{given} is not in the book's notebooks folder ({', '.join(str(f) for f in folders)}); "
                                "execute-in-place only re-executes the course's notebooks")
            chosen.append(p)
        if problems:
            raise BookError(problems)
        chosen.sort(key=lambda p: listed.index(p) if p in listed else len(listed))
    else:
        extra = sorted(p.resolve() for f in folders for p in f.glob("*.ipynb") if p.resolve() not in listed)
        for p in extra:
            print(f"note: {p.name} is not listed in {book.path.name}; executing it last", file=sys.stderr)
        chosen = [p for p in listed if p.is_file()] + extra
    failed_dir = failed_dir or build_dir(book, "failed", create=False)
    times = {}
    for i, nb in enumerate(chosen, 1):
        _say(f"[{i}/{len(chosen)}] {nb.name}: executing in place")
        try:
            times[nb] = execute_in_place(nb, failed_dir=failed_dir, env={RESULTS_ENV: None})
        except KeyboardInterrupt as exc:
            raise Interrupted.wrap(exc, f"{nb.name} was left as it was and its kernel shut down"
                                        + (f"; {i - 1} notebook(s) before it were re-executed" if i > 1 else "")) from None
        _say(f"      done in {times[nb]:.1f} s")
    return times
