"""``run``: execute the chapters of a profile in order into ``build/<profile>/`` and collect their results.

Layout of a run::

    build/<profile>/<notebook>.ipynb        executed copies (partial on failure)
    build/<profile>/results/<chapter>.json  what each chapter's ``qhelpers.record`` calls saved
    build/<profile>/results.json            {chapter_id: {name: value}}
    build/<profile>/run.json                parameters, status and wall time of each chapter
    build/<profile>/index.html              the report (see ``report.py``)
"""

from __future__ import annotations

import datetime as dt
import json
import sys
import time
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping, Sequence

from ..record import RESULTS_ENV, read_results
from .kernel import NotebookFailed, execute_in_place, execute_papermill
from .manifest import FULL, Book, BookError, Chapter

__all__ = ["plan", "run", "execute_all_in_place", "build_dir", "resolve_overrides"]


def build_dir(book: Book, profile: str, base: Path | None = None) -> Path:
    """``<book root>/build/<profile>`` (or ``base/<profile>``)."""
    return (base or book.root / "build") / profile


def resolve_overrides(chapters: Sequence[Chapter], raw: Mapping[str, str]) -> dict[str, dict[str, Any]]:
    """Parse ``-p`` strings for each chapter: ``name=value`` applies to every chapter with that parameter,
    ``chapter.name=value`` to that chapter only. Unknown names and bad values raise ``BookError``."""
    out: dict[str, dict[str, Any]] = {c.id: {} for c in chapters}
    problems = []
    ids = {c.id: c for c in chapters}
    for key, text in raw.items():
        cid, dot, name = key.rpartition(".")
        if dot:
            if cid not in ids:
                problems.append(f"-p {key}: {cid!r} is not a chapter of this run (chapters: {', '.join(ids)})")
                continue
            if name not in ids[cid].parameters:
                problems.append(f"-p {key}: chapter {cid} has no parameter {name!r}; its parameters: {', '.join(ids[cid].parameters) or 'none'}")
                continue
            targets = [ids[cid]]
        else:
            targets = [c for c in chapters if name in c.parameters]
        if not targets:
            known = sorted({p for c in chapters for p in c.parameters})
            problems.append(f"-p {key}: no chapter of this run has a parameter {name!r}; known parameters: {', '.join(known) or 'none'} "
                            "(`python -m qhelpers.book list` shows them per chapter)")
            continue
        for c in targets:
            try:
                out[c.id][name] = c.parameters[name].parse(text)
            except BookError as exc:
                problems.append(f"-p {key} for chapter {c.id}: {exc}; {c.parameters[name].describe()}")
    if problems:
        raise BookError(problems)
    return out


def plan(book: Book, profile: str = FULL, only: Iterable[str] = (), params: Mapping[str, str] | None = None) -> list[tuple[Chapter, dict[str, Any]]]:
    """The chapters to run, in book order, with the parameter values to inject; everything is checked here."""
    book.check_profile(profile)
    only = list(only)
    problems = [f"--only {cid}: unknown chapter id; the chapters are: {', '.join(c.id for c in book.chapters)}"
                for cid in only if cid not in {c.id for c in book.chapters}]
    if problems:
        raise BookError(problems)
    chapters = [c for c in book.chapters if not only or c.id in only]
    overrides = resolve_overrides(chapters, params or {})
    return [(c, c.values(profile, overrides[c.id])) for c in chapters]


def _update_json(path: Path, update: Callable[[dict], None]) -> None:
    data = json.loads(path.read_text()) if path.is_file() else {}
    update(data)
    path.write_text(json.dumps(data, indent=2, sort_keys=False, default=str) + "\n")


def _say(msg: str) -> None:
    print(msg, flush=True)


def run(
    book: Book, profile: str = FULL, only: Iterable[str] = (), params: Mapping[str, str] | None = None, *,
    out: Path | None = None, progress: bool = True, log_output: bool = False, report: bool = True,
) -> dict[str, dict[str, Any]]:
    """Execute the selected chapters in order; returns ``{chapter_id: {name: value}}`` of this run.

    Stops at the first failing chapter with :class:`NotebookFailed` (after
    writing results, run.json and the report for what did run).
    """
    todo = plan(book, profile, only, params)
    outdir = build_dir(book, profile, out)
    (outdir / "results").mkdir(parents=True, exist_ok=True)
    run_file, results_file = outdir / "run.json", outdir / "results.json"

    def start(d: dict) -> None:
        d.update(title=book.title, profile=profile, book=str(book.path))
        d.setdefault("chapters", {})

    _update_json(run_file, start)
    collected: dict[str, dict[str, Any]] = {}
    failure: NotebookFailed | None = None
    total = time.perf_counter()
    for i, (ch, values) in enumerate(todo, 1):
        shown = " ".join(f"{k}={v!r}" for k, v in values.items()) or "notebook defaults"
        _say(f"[{i}/{len(todo)}] {ch.id}: {ch.notebook.name} ({shown})")
        chapter_results = outdir / "results" / f"{ch.id}.json"
        chapter_results.unlink(missing_ok=True)
        output = outdir / ch.notebook.name
        status: dict[str, Any] = {
            "notebook": ch.notebook.name, "parameters": ch.effective(profile, values), "overrides": values,
            "started": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        }
        began = time.perf_counter()
        try:
            seconds = execute_papermill(ch.notebook, output, values, label=f"chapter {ch.id!r} ({ch.notebook.name})",
                                        env={RESULTS_ENV: str(chapter_results.resolve())}, progress=progress, log_output=log_output)
            status.update(status="ok", seconds=round(seconds, 1))
            _say(f"      done in {seconds:.1f} s -> {output}")
        except NotebookFailed as exc:
            failure = exc
            status.update(status="failed", seconds=round(time.perf_counter() - began, 1), error=f"cell {exc.cell}: {exc.ename}: {exc.evalue}")
        collected[ch.id] = read_results(chapter_results)
        _update_json(results_file, lambda d: d.update({ch.id: collected[ch.id]}))
        _update_json(run_file, lambda d: d["chapters"].update({ch.id: status}))
        if failure:
            break
    _say(f"{len(collected)} chapter(s) in {time.perf_counter() - total:.1f} s; results in {results_file}")
    if report:
        from .report import write_report

        _say(f"report: {write_report(book, profile, out=out)}")
    if failure:
        raise failure
    return collected


def execute_all_in_place(book: Book, paths: Sequence[Path] = (), *, failed_dir: Path | None = None) -> dict[Path, float]:
    """Re-execute the committed notebooks (all of ``notebooks/`` in book order, or ``paths``) in place with their defaults.

    Notebooks of the folder that book.yml does not list come last, with a note.
    ``QHELPERS_RESULTS`` is unset so that nothing is written outside the notebook.
    """
    listed = [c.notebook.resolve() for c in book.chapters]
    if paths:
        chosen = [Path(p).resolve() for p in paths]
        missing = [str(p) for p in chosen if not p.is_file()]
        if missing:
            raise BookError(f"no such notebook: {', '.join(missing)}")
        chosen.sort(key=lambda p: listed.index(p) if p in listed else len(listed))
    else:
        folder = book.chapters[0].notebook.parent if book.chapters else book.root / "notebooks"
        extra = sorted(p.resolve() for p in folder.glob("*.ipynb") if p.resolve() not in listed)
        for p in extra:
            print(f"note: {p.name} is not listed in {book.path.name}; executing it last", file=sys.stderr)
        chosen = [p for p in listed if p.is_file()] + extra
    times = {}
    for i, nb in enumerate(chosen, 1):
        _say(f"[{i}/{len(chosen)}] {nb.name}: executing in place")
        times[nb] = execute_in_place(nb, failed_dir=failed_dir or book.root / "build" / "failed", env={RESULTS_ENV: None})
        _say(f"      done in {times[nb]:.1f} s")
    return times
