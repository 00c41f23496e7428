"""The run report: ``build/<profile>/index.html`` (chapters) and ``results.html`` (recorded values, tables, figures).

Everything is a local file: the notebooks are rendered with nbconvert's ``lab``
template minus its CDN scripts (require.js, MathJax, mermaid), so the pages
open offline. The price: formulas show as their LaTeX source (``$x^2$``).
"""

from __future__ import annotations

import base64
import datetime as dt
import html
import json
from pathlib import Path
from typing import Any

from .files import build_dir, read_json, write_text
from .manifest import Book, BookError, read_notebook

__all__ = ["render_notebook", "write_report", "format_value", "page"]

_OFFLINE_TEMPLATE = """{%- extends 'lab/index.html.j2' -%}
{%- block html_head_js -%}{%- endblock html_head_js -%}
{%- block html_head_js_mathjax -%}{%- endblock html_head_js_mathjax -%}
{%- block html_head_js_mermaidjs -%}{%- endblock html_head_js_mermaidjs -%}
"""

_CSS = """
body { font-family: system-ui, sans-serif; max-width: 60rem; margin: 2rem auto; padding: 0 1rem; color: #222; line-height: 1.45; }
table { border-collapse: collapse; margin: .5rem 0 1rem; } td, th { border: 1px solid #ccc; padding: .2rem .6rem; text-align: left; vertical-align: top; }
th { background: #f3f3f3; } td.num { text-align: right; font-variant-numeric: tabular-nums; }
.ok { color: #1a7f37; } .failed, .interrupted, .running { color: #cf222e; font-weight: bold; } .muted { color: #777; }
img { max-width: 100%; border: 1px solid #eee; margin: .3rem 0; } code { background: #f6f6f6; padding: 0 .2rem; }
"""


def page(title: str, body: str) -> str:
    """A complete, self-contained HTML page."""
    return (f"<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>{html.escape(title)}</title>"
            f"<style>{_CSS}</style></head><body>\n{body}\n</body></html>\n")


def render_notebook(notebook: Path, target: Path) -> Path:
    """Render an executed notebook to a standalone HTML file that needs no network."""
    import jinja2
    from nbconvert import HTMLExporter

    exporter = HTMLExporter(template_name="lab", extra_loaders=[jinja2.DictLoader({"offline.html.j2": _OFFLINE_TEMPLATE})],
                            template_file="offline.html.j2")
    body, _ = exporter.from_notebook_node(read_notebook(notebook))
    target.parent.mkdir(parents=True, exist_ok=True)
    return write_text(target, body)


def format_value(value: Any) -> str:
    """HTML for one recorded value: numbers to 4 significant digits, a flat dict as a small table."""
    if isinstance(value, bool) or value is None:
        return html.escape(json.dumps(value))
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, (int, str)):
        return html.escape(str(value))
    if isinstance(value, dict) and all(not isinstance(v, (dict, list)) for v in value.values()):
        rows = "".join(f"<tr><th>{html.escape(str(k))}</th><td class=num>{format_value(v)}</td></tr>" for k, v in value.items())
        return f"<table>{rows}</table>"
    return f"<code>{html.escape(json.dumps(value))}</code>"


def _outputs(notebook: Path, folder: Path, prefix: str) -> tuple[list[Path], list[str]]:
    """The PNG figures (saved as files) and HTML tables (e.g. DataFrames) an executed notebook displays."""
    figures, tables = [], []
    nb = read_notebook(notebook)
    for cell in nb.cells:
        for o in cell.get("outputs", []):
            data = o.get("data", {})
            if data.get("image/png"):
                png = data["image/png"]
                folder.mkdir(parents=True, exist_ok=True)
                path = folder / f"{prefix}-{len(figures) + 1}.png"
                path.write_bytes(base64.b64decode(png if isinstance(png, str) else "".join(png)))
                figures.append(path)
            table = data.get("text/html")
            table = table if isinstance(table, str) else "".join(table or [])
            if "<table" in table and "<script" not in table:
                tables.append(table)
    return figures, tables


# What a chapter's status in run.json means, for the report.
_STATUS = {
    "ok": "ok",
    "failed": "failed",
    "interrupted": "interrupted (stopped before the end; re-run it)",
    "running": "running, or stopped without a trace (e.g. killed); no result yet",
}


def write_report(book: Book, profile: str, *, out: Path | None = None) -> Path:
    """Write ``index.html``, ``results.html`` and the chapters' HTML renderings for a run; returns index.html."""
    folder = build_dir(book, profile, out=out, create=False)
    if not (folder / "run.json").is_file():
        raise BookError(f"no run of profile {profile!r} in {folder} yet; `python -m qhelpers.book run --profile {profile}` runs it (and writes the report)")
    build_dir(book, profile, out=out)  # writable?
    run = read_json(folder / "run.json")
    chapters = run.get("chapters") if isinstance(run.get("chapters"), dict) else {}
    results = read_json(folder / "results.json")
    stamp = dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    items, sections = [], []
    for n, ch in enumerate(book.chapters, 1):
        info = chapters.get(ch.id)
        info = info if isinstance(info, dict) else None
        executed = folder / ch.notebook.name
        title = f"{n}. {html.escape(ch.title)}"
        readable = False
        if info:
            status, link, note = str(info.get("status", "?")), title, ""
            if executed.is_file():
                try:
                    rendered = render_notebook(executed, folder / "html" / f"{executed.stem}.html")
                    link, readable = f"<a href=\"html/{rendered.name}\">{title}</a>", True
                except BookError:
                    note = " (its executed notebook is unreadable)"
            detail = f"<span class=\"{html.escape(status)}\">{html.escape(_STATUS.get(status, status))}</span>{note}"
            if status == "running" and info.get("started"):
                detail += f" since {html.escape(str(info['started']))}"
            if isinstance(info.get("seconds"), (int, float)):
                detail += f", {info['seconds']:.1f} s"
            if info.get("error"):
                detail += f": {html.escape(str(info['error']))}"
            if isinstance(info.get("overrides"), dict) and info["overrides"]:
                detail += " &middot; " + html.escape(", ".join(f"{k}={v!r}" for k, v in info["overrides"].items()))
        else:
            link, detail = title, "<span class=muted>not run</span>"
        items.append(f"<li>{link} <span class=muted>({html.escape(ch.id)})</span><br>{html.escape(ch.summary)}<br><small>{detail}</small></li>")
        recorded = results.get(ch.id) if isinstance(results.get(ch.id), dict) else {}
        if recorded or readable:
            rows = "".join(f"<tr><th>{html.escape(k)}</th><td class=num>{format_value(v)}</td></tr>" for k, v in recorded.items())
            table = f"<table><tr><th>recorded</th><th>value</th></tr>{rows}</table>" if rows else "<p class=muted>no recorded values</p>"
            figs, tables = _outputs(executed, folder / "figures", ch.id) if readable else ([], [])
            imgs = "".join(f"<img src=\"figures/{f.name}\" alt=\"figure {i} of {html.escape(ch.id)}\"><br>" for i, f in enumerate(figs, 1))
            sections.append(f"<h2 id=\"{html.escape(ch.id)}\">{title}</h2>{table}{''.join(tables)}{imgs}")
    sweeps = sorted((folder.parent / "sweeps").glob("*/results.html"))
    if sweeps:
        links = "".join(f"<li><a href=\"../sweeps/{s.parent.name}/results.html\">{html.escape(s.parent.name)}</a></li>" for s in sweeps)
        sections.append(f"<h2>Parameter sweeps</h2><ul>{links}</ul>")
    header = f"<h1>{html.escape(book.title)}</h1><p class=muted>profile <b>{html.escape(profile)}</b> &middot; report written {stamp}</p>"
    write_text(folder / "results.html", page(f"{book.title}: results ({profile})",
        header + "<p><a href=\"index.html\">&larr; chapters</a></p>" + ("".join(sections) or "<p>No chapter has run yet.</p>")))
    return write_text(folder / "index.html", page(f"{book.title} ({profile})",
        header + f"<p><a href=\"results.html\">Results: recorded values and figures</a> &middot; <a href=\"results.json\">results.json</a></p>"
        f"<h2>Chapters</h2><ol style=\"list-style:none;padding-left:0\">{''.join(items)}</ol>"))
