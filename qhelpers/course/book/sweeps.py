"""``sweep``: run one chapter over a grid of parameter values and tabulate and plot what it records.

Layout under ``build/sweeps/<chapter>/`` (``<--out>/sweeps/<chapter>/``)::

    <notebook stem>__bits=2.ipynb ...   one executed notebook per grid point
    results/<point>.json                what each point recorded
    results.csv                         one row per point: its parameters, status, then the recorded numbers
    results.png                         each recorded number against the first swept parameter
"""

from __future__ import annotations

import itertools
import re
import time
from pathlib import Path
from typing import Any, Mapping, Sequence

from ..record import RESULTS_ENV, read_results
from .files import build_dir, write_text
from .kernel import Interrupted, NotebookFailed, execute_papermill
from .manifest import FULL, Book, BookError, Chapter, did_you_mean

__all__ = ["grid_points", "sweep", "flatten", "write_table", "plot_sweep"]


def grid_points(chapter: Chapter, grid: Mapping[str, Sequence[str]], profile: str = FULL) -> list[dict[str, Any]]:
    """Every combination of the (parsed, checked) values of ``grid``, first parameter varying slowest.

    Each point must also keep the chapter's ``requires:`` rules (on top of ``profile``).
    """
    problems, parsed = [], {}
    for key, texts in grid.items():
        name = key.removeprefix(f"{chapter.id}.")
        if name not in chapter.parameters:
            problems.append(f"-p {key}: chapter {chapter.id} has no parameter {name!r}{did_you_mean(name, chapter.parameters)}; "
                            f"its parameters: {', '.join(chapter.parameters) or 'none'}")
            continue
        values: list[Any] = []
        for t in texts:
            try:
                value = chapter.parameters[name].parse(t)
            except BookError as exc:
                problems.append(f"-p {key}: {exc}; {chapter.parameters[name].describe()}")
                continue
            if any(repr(v) == repr(value) for v in values):
                problems.append(f"-p {key}: the value {value!r} is given twice; list each value once")
            values.append(value)
        parsed[name] = values
    if problems:
        raise BookError(problems)
    names = list(parsed)
    points = [dict(zip(names, combo)) for combo in itertools.product(*parsed.values())]
    problems = list(dict.fromkeys(f"chapter {chapter.id} at {_slug(p)}: {r}" for p in points for r in chapter.rule_problems(profile, p)))
    if problems:
        raise BookError(problems)
    return points


def _slug(point: Mapping[str, Any]) -> str:
    return "__".join(f"{k}={re.sub(r'[^A-Za-z0-9.+-]+', '-', str(v))}" for k, v in point.items()) or "defaults"


def flatten(results: Mapping[str, Any]) -> dict[str, Any]:
    """Recorded values as table columns: scalars as is, a flat dict as ``name.key`` columns, the rest dropped."""
    out: dict[str, Any] = {}
    for name, value in results.items():
        if isinstance(value, dict):
            for k, v in value.items():
                if not isinstance(v, (dict, list)):
                    out[f"{name}.{k}"] = v
        elif not isinstance(value, list):
            out[name] = value
    return out


def write_table(rows: list[dict[str, Any]], folder: Path):
    """``results.csv`` of the sweep; returns the pandas DataFrame."""
    import pandas as pd

    table = pd.DataFrame(rows)
    write_text(folder / "results.csv", table.to_csv(index=False))
    return table


def plot_sweep(table, swept: Sequence[str], title: str = ""):
    """One panel per recorded number against the first swept parameter, one line per value of the others."""
    import pandas as pd
    from matplotlib.figure import Figure

    x = swept[0]
    metrics = [c for c in table.columns if c not in swept and c != "status" and pd.api.types.is_numeric_dtype(table[c])
               and not pd.api.types.is_bool_dtype(table[c])]
    if not metrics:
        return None
    cols = min(3, len(metrics))
    rows = -(-len(metrics) // cols)
    fig = Figure(figsize=(4.2 * cols, 3.0 * rows))
    axes = fig.subplots(rows, cols, squeeze=False)
    numeric_x = pd.api.types.is_numeric_dtype(table[x]) and not pd.api.types.is_bool_dtype(table[x])
    positions = {v: i for i, v in enumerate(dict.fromkeys(table[x]))}
    groups = table.groupby(list(swept[1:]), sort=False) if len(swept) > 1 else [((), table)]
    for ax, m in zip(axes.flat, metrics):
        for key, part in groups:
            key = key if isinstance(key, tuple) else (key,)
            label = ", ".join(f"{n}={v}" for n, v in zip(swept[1:], key)) or None
            xs = part[x] if numeric_x else [positions[v] for v in part[x]]
            ax.plot(xs, part[m], marker="o", label=label)
        if not numeric_x:
            ax.set_xticks(list(positions.values()), [str(v) for v in positions])
        ax.set_xlabel(x)
        ax.set_title(m, fontsize=10)
        ax.grid(alpha=0.3)
        if len(swept) > 1:
            ax.legend(fontsize=7)
    for ax in list(axes.flat)[len(metrics):]:
        ax.set_visible(False)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig


def sweep(
    book: Book, chapter_id: str, grid: Mapping[str, Sequence[str]], *, profile: str = FULL,
    out: Path | None = None, progress: bool = True, keep_going: bool = False,
):
    """Run chapter ``chapter_id`` at every point of ``grid`` (on top of ``profile``); returns the results table.

    Values are checked before anything runs. A failing point stops the sweep
    (or, with ``keep_going``, is marked ``failed`` in the table); the table
    and plot are written for the points that ran, then the first failure is raised.
    """
    book.check_profile(profile)
    chapter = book.chapter(chapter_id)
    if not grid:
        raise BookError(f"give the grid with -p, e.g. -p {next(iter(chapter.parameters), 'name')}=v1,v2,v3")
    points = grid_points(chapter, grid, profile)
    swept = [k.removeprefix(f"{chapter.id}.") for k in grid]
    folder = build_dir(book, "sweeps", chapter.id, out=out)
    (folder / "results").mkdir(exist_ok=True)
    rows, failures = [], []
    stopped: Interrupted | None = None
    start = time.perf_counter()
    for i, point in enumerate(points, 1):
        slug = _slug(point)
        print(f"[{i}/{len(points)}] {chapter.id}: {', '.join(f'{k}={v!r}' for k, v in point.items())}", flush=True)
        res_file = folder / "results" / f"{slug}.json"
        res_file.unlink(missing_ok=True)
        output = folder / f"{chapter.notebook.stem}__{slug}.ipynb"
        output.unlink(missing_ok=True)
        row: dict[str, Any] = dict(point)
        try:
            seconds = execute_papermill(chapter.notebook, output, chapter.values(profile, point),
                                        label=f"chapter {chapter.id!r} at {slug}", env={RESULTS_ENV: str(res_file.resolve())}, progress=progress)
            row.update(status="ok", seconds=round(seconds, 1))
            print(f"      done in {seconds:.1f} s", flush=True)
        except NotebookFailed as exc:
            failures.append(exc)
            row.update(status="failed")
            print(f"      {exc}", flush=True)
        except KeyboardInterrupt as exc:
            stopped = Interrupted.wrap(exc, f"the sweep was stopped at point {i} of {len(points)} ({slug}), its kernel shut down; "
                                            f"the table {folder / 'results.csv'} marks it 'interrupted'")
            row.update(status="interrupted")
        for k, v in flatten(read_results(res_file)).items():
            if k in row and row[k] == v:
                continue  # the notebook recorded a swept parameter back
            row[f"{k} (recorded)" if k in row else k] = v
        rows.append(row)
        if stopped or failures and not keep_going:
            break
    table = write_table(rows, folder)
    fig = plot_sweep(table.drop(columns=["seconds"], errors="ignore"), swept, title=f"{chapter.id}: sweep over {', '.join(swept)}")
    (folder / "results.png").unlink(missing_ok=True)
    if fig is not None:
        fig.savefig(folder / "results.png", dpi=110)
    print(f"{len(rows)} point(s) in {time.perf_counter() - start:.1f} s; table {folder / 'results.csv'}, plot {folder / 'results.png'}", flush=True)
    if stopped:
        raise stopped
    if failures:
        raise failures[0]
    return table
