"""The results dashboard: each chapter's headline comparison as one table and one figure, and the run's environment.

A chapter's ``headline:`` in book.yml names recorded values (``qhelpers.course.record``)::

    headline:
      columns: [test accuracy, file size (bytes)]
      rows:                                   # row label -> one recorded name (or null) per column
        FP32: [fp32_accuracy, fp32_size_bytes]
        INT8 PTQ (eager): [int8_ptq_accuracy, int8_size_bytes]
        "PTQ at {lowbit_bits} bits": [lowbit_ptq_accuracy, null]   # {name} is replaced by a recorded value
      note: one sentence, e.g. what a latency's baseline is
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any, Mapping, Sequence

from .manifest import Book, BookError, Chapter, read_notebook

__all__ = ["check_headline", "headline_names", "headline_table", "headline_figure", "dashboard_page", "printed_results",
           "status_of"]

_RECORD_LINE = re.compile(r"^\[record\] ([a-z][a-z0-9_]*) = (.*)$")
_PLACEHOLDER = re.compile(r"\{([a-z][a-z0-9_]*)\}")


def check_headline(chapter: Chapter) -> list[str]:
    """What is wrong with ``chapter.headline`` (empty list: fine, or no headline)."""
    h = chapter.headline
    if not h:
        return []
    where = f"chapter {chapter.id}: headline"
    problems = [f"{where}: unknown key {k!r}; allowed: columns, rows, note" for k in h if k not in ("columns", "rows", "note")]
    cols, rows = h.get("columns"), h.get("rows")
    if not isinstance(cols, list) or not cols or not all(isinstance(c, str) for c in cols):
        return problems + [f"{where}: columns must be a non-empty list of column titles"]
    if not isinstance(rows, dict) or not rows:
        return problems + [f"{where}: rows must map each row label to a list of recorded names, one per column"]
    for label, names in rows.items():
        if not isinstance(names, list) or len(names) != len(cols) or not all(n is None or isinstance(n, str) for n in names):
            problems.append(f"{where}: row {label!r} must list {len(cols)} recorded names (or null), one per column")
    if "note" in h and not isinstance(h["note"], str):
        problems.append(f"{where}: note must be a string")
    return problems


def headline_names(chapter: Chapter) -> set[str]:
    """Every recorded name the chapter's headline uses (cells and label placeholders)."""
    h = chapter.headline or {}
    names = {n for row in (h.get("rows") or {}).values() for n in row if n}
    names |= {m for label in (h.get("rows") or {}) for m in _PLACEHOLDER.findall(str(label))}
    return names


def headline_table(chapter: Chapter, results: Mapping[str, Any]) -> tuple[list[str], list[tuple[str, list[Any]]]]:
    """``(columns, [(row label, values)])`` of the chapter's headline; a value not recorded is ``None``."""
    problems = check_headline(chapter)
    if problems:
        raise BookError(problems)
    h = chapter.headline
    rows = []
    for label, names in h["rows"].items():
        label = _PLACEHOLDER.sub(lambda m: _fmt(results.get(m.group(1), "?")), str(label))
        rows.append((label, [results.get(n) if n else None for n in names]))
    return list(h["columns"]), rows


def _fmt(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:,.4g}" if abs(value) < 1e6 else f"{value:,.0f}"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value) if not isinstance(value, (dict, list)) else json.dumps(value)


def headline_figure(title: str, columns: Sequence[str], rows: Sequence[tuple[str, Sequence[Any]]], path: Path) -> Path | None:
    """One panel per column of numbers: a horizontal bar per row, labelled with its value; None if nothing is numeric."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    from matplotlib.figure import Figure

    numeric = [j for j in range(len(columns))
               if any(isinstance(v[j], (int, float)) and not isinstance(v[j], bool) for _, v in rows)]
    if not numeric:
        return None
    fig = Figure(figsize=(3.6 * len(numeric) + 1.2, 0.42 * len(rows) + 1.3))
    axes = fig.subplots(1, len(numeric), squeeze=False)[0]
    labels = [label for label, _ in rows]
    for ax, j in zip(axes, numeric):
        values = [v[j] if isinstance(v[j], (int, float)) and not isinstance(v[j], bool) else None for _, v in rows]
        ys = range(len(rows))
        ax.barh(list(ys), [v or 0 for v in values], color=["#4c72b0" if i == 0 else "#dd8452" for i in ys])
        top = max(abs(v) for v in values if v is not None) or 1
        for y, v in zip(ys, values):
            ax.text((v or 0) + top * 0.02, y, "n/a" if v is None else _fmt(v), va="center", fontsize=8)
        ax.set_xlim(0, top * 1.35)
        ax.set_yticks(list(ys), labels if ax is axes[0] else [""] * len(rows), fontsize=8)
        ax.invert_yaxis()
        ax.set_title(columns[j], fontsize=9)
        ax.tick_params(axis="x", labelsize=7)
        ax.grid(axis="x", alpha=0.3)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    return path


def printed_results(notebook: Path) -> dict[str, Any]:
    """The values a notebook's ``qhelpers.course.record`` calls printed (``[record] name = value`` lines), as printed.

    Floats are printed to 4 significant digits; the runner's results.json has them in full.
    """
    try:
        nb = read_notebook(notebook)
    except BookError:
        return {}
    out: dict[str, Any] = {}
    for cell in nb.cells:
        for o in cell.get("outputs", []):
            if o.get("output_type") != "stream" or o.get("name") != "stdout":
                continue
            text = o.get("text", "")
            for line in ("".join(text) if isinstance(text, list) else text).splitlines():
                m = _RECORD_LINE.match(line.strip())
                if m:
                    try:
                        out[m.group(1)] = json.loads(m.group(2))
                    except ValueError:
                        out[m.group(1)] = m.group(2)
    return out


def status_of(info: Mapping[str, Any], committed: bool = False) -> dict[str, Any]:
    """A chapter's run status for the pages: ``ok`` (bool), ``short``, ``title`` and ``detail`` (markdown)."""
    if committed:
        return {"ok": True, "short": "committed", "title": "Committed notebook",
                "detail": "These are the committed outputs, executed in place with the notebook's defaults (`make notebooks`)."}
    if not info:
        return {"ok": False, "short": "not run", "title": "Not run in this build",
                "detail": "This chapter was not part of this run (`--only`?); `python -m qhelpers.course.book run` runs every chapter."}
    status = str(info.get("status", "?"))
    seconds = f" in {info['seconds']:.1f} s" if isinstance(info.get("seconds"), (int, float)) else ""
    started = f", started {info['started']}" if info.get("started") else ""
    if status == "ok":
        return {"ok": True, "short": "ok", "title": f"Ran to the end{seconds}", "detail": f"Executed with papermill{started}."}
    error = str(info.get("error", "")).replace("\n", " ")
    what = {
        "failed": ("FAILED", f"This chapter FAILED{seconds}: {error}. The page shows the notebook up to the failing cell."),
        "interrupted": ("INTERRUPTED", f"This chapter was INTERRUPTED{seconds} (Ctrl-C or SIGTERM) before its end; its numbers "
                                       "are incomplete. Run it again."),
        "running": ("NO RESULT", f"This chapter was started{started} but never finished (the run was killed, or is still "
                                 "going); there is no result yet."),
    }.get(status, (status.upper(), f"Unknown status {status!r}."))
    return {"ok": False, "short": what[0], "title": f"{what[0]}", "detail": what[1]}


def _md_table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    esc = [[str(c).replace("|", "\\|") for c in r] for r in [header, *rows]]
    return "\n".join(["| " + " | ".join(esc[0]) + " |", "|" + "---|" * len(header)] + ["| " + " | ".join(r) + " |" for r in esc[1:]])


def _environment(run: Mapping[str, Any]) -> list[str]:
    env = run.get("environment") if isinstance(run.get("environment"), dict) else {}
    if not env:
        return ["The run did not record its environment (a run of an older qhelpers)."]
    if env.get("error"):
        return [f"The run could not measure its environment: {env['error']}."]
    versions = env.get("versions") or {}
    caps = env.get("isa_caps") or {}
    rows = [
        ("date (UTC)", env.get("date", "?")),
        ("CPU", env.get("cpu_model", "unknown")),
        ("CPU features", env.get("cpu", "?")),
        ("INT8 kernels", env.get("kernels", "?")),
        ("threads", env.get("threads", "?")),
        ("kernel caps set", ", ".join(f"{k}={v}" for k, v in caps.items()) or "none (each library uses the best this CPU has)"),
        *((name, v) for name, v in versions.items()),
    ]
    return [_md_table(["", "this run"], [(k, _fmt(v)) for k, v in rows])]


def dashboard_page(book: Book, docs: Sequence[tuple[Chapter, str]], run: Mapping[str, Any], results: Mapping[str, Any],
                   statuses: Mapping[str, Mapping[str, Any]], figures: Path, *, committed: bool = False,
                   has_results_json: bool = True) -> str:
    """The markdown of ``dashboard.md``; writes the chapters' figures into ``figures``."""
    lines = ["# Results dashboard", ""]
    bad = [(ch, doc) for ch, doc in docs if not statuses[ch.id]["ok"]]
    if bad:
        lines += [f":::{{admonition}} {len(bad)} of {len(docs)} chapters did not run to the end", ":class: error", "",
                  *(f"- [{ch.title}]({doc}): **{statuses[ch.id]['short']}**. {statuses[ch.id]['detail']}" for ch, doc in bad),
                  ":::", ""]
    if committed:
        lines += ["These numbers are those the committed notebooks printed (`[record]` lines, 4 significant digits), executed",
                  "with each notebook's defaults. The machine that executed them is not recorded: `make course` runs every",
                  "chapter here and rebuilds this page with this machine's environment.", ""]
    else:
        chapters = run.get("chapters") if isinstance(run.get("chapters"), dict) else {}
        overrides = [f"{cid}: " + ", ".join(f"{k}={v!r}" for k, v in c["overrides"].items())
                     for cid, c in chapters.items() if isinstance(c, dict) and c.get("overrides")]
        lines += ["## This run", "", _md_table(["", ""], [
            ("profile", run.get("profile", "?")),
            ("parameters set (profile and -p)", "; ".join(overrides) or "none: the notebooks' defaults"),
        ]), "", "## The machine", "", *_environment(run), ""]
        if has_results_json:
            lines += ["Every recorded value, at full precision: [results.json](path:results.json).", ""]
    for n, (ch, doc) in enumerate(docs, 1):
        s = statuses[ch.id]
        lines += [f"## {n:02d} · {ch.title}", ""]
        if not s["ok"]:
            lines += [f":::{{admonition}} {s['title']}", ":class: error", "", s["detail"], ":::", ""]
        recorded = results.get(ch.id) if isinstance(results.get(ch.id), dict) else {}
        if not ch.headline:
            lines += ["*No headline comparison for this chapter.*", ""]
            continue
        columns, rows = headline_table(ch, recorded)
        if not any(v is not None for _, vals in rows for v in vals):
            lines += ["*Nothing recorded for this chapter.*", ""]
            continue
        lines += [_md_table(["", *columns], [(label, *(_fmt(v) if v is not None else "–" for v in vals)) for label, vals in rows]), ""]
        if ch.headline.get("note"):
            lines += [ch.headline["note"], ""]
        fig = headline_figure(f"{n:02d} · {ch.title}", columns, rows, figures / f"{ch.id}.png")
        if fig is not None:
            lines += [f"![{ch.title}: headline comparison](figures/{fig.name})", ""]
        lines += [f"[Read the chapter]({doc})", ""]
    return "\n".join(lines)
