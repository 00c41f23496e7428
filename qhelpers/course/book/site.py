"""The book a learner reads: the executed chapters, a results dashboard and a glossary, rendered to HTML.

Built with Sphinx + myst-nb + sphinx-book-theme, the engine of Jupyter Book 1,
fed from ``book.yml`` (no ``_toc.yml``): the chapters' executed notebooks are
rendered as they are (execution off), with a table of contents, previous/next
links, and each chapter's parameters and run status at its top. Math is
typeset by MathJax 3 (SVG output) from the ``django-static-mathjax`` package,
copied into the book, so the pages need no network::

    build/<profile>/book/index.html          the book (opens from the file system)
    build/<profile>/book/dashboard.html      headline results and the run's environment
    build/<profile>/book/glossary.html       English-Chinese glossary
    build/committed/book/...                 the same from the committed notebooks (``--committed``)
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Mapping

import nbformat

from .dashboard import dashboard_page, printed_results, status_of
from .files import build_dir, read_json, write_text
from .glossary import glossary_page, load_glossary
from .manifest import FULL, Book, BookError, Chapter, read_notebook

__all__ = ["build_book", "COMMITTED", "BOOK", "mathjax_folder"]

COMMITTED = "committed"  # build folder of a book made from the committed notebooks
BOOK = "book"  # the HTML folder inside a build folder

# MathJax 3 as the `django-static-mathjax` package ships it (no Django needed: it only holds MathJax's files). Its
# SVG output draws every glyph as a path, so no web font is fetched (Chromium refuses fonts from file:// pages).
_MATHJAX_FILES = ("tex-svg.js", "input", "ui", "a11y")  # the component, and the TeX extensions and menu it may load
_MATHJAX_CONFIG = {"options": {"enableMenu": False}, "svg": {"fontCache": "global"}}


def mathjax_folder() -> Path:
    """MathJax's ES5 build as the ``django-static-mathjax`` package installs it."""
    import mathjax

    folder = Path(mathjax.__file__).parent / "static" / "mathjax" / "es5"
    if not (folder / "tex-svg.js").is_file():
        raise BookError(f"MathJax is missing from {folder}; reinstall the course (`pip install -e .` installs django-static-mathjax)")
    return folder


def _copy_mathjax(target: Path) -> None:
    target.mkdir(parents=True)
    for name in _MATHJAX_FILES:
        source = mathjax_folder() / name
        (shutil.copytree if source.is_dir() else shutil.copy2)(source, target / name)


def _conf(book: Book) -> str:
    settings: dict[str, Any] = {
        "project": book.title,
        "author": "qcourse",
        "copyright": "qcourse",
        "extensions": ["myst_nb"],
        "html_theme": "sphinx_book_theme",
        "html_title": book.title,
        "html_theme_options": {"home_page_in_toc": True, "show_navbar_depth": 1, "show_toc_level": 2,
                               "use_download_button": False, "use_fullscreen_button": False},
        "html_static_path": ["_static"],
        "html_copy_source": False,
        "html_show_sourcelink": False,
        "html_last_updated_fmt": None,
        "nb_execution_mode": "off",
        "nb_output_stderr": "remove",  # warnings and progress-bar redraws; the pages show what a learner needs
        "nb_merge_streams": True,
        "myst_enable_extensions": ["dollarmath", "amsmath", "colon_fence", "deflist"],
        "myst_heading_anchors": 3,
        "mathjax_path": "mathjax/tex-svg.js",
        "mathjax3_config": _MATHJAX_CONFIG,
        "exclude_patterns": ["_build", "**.ipynb_checkpoints"],
        "suppress_warnings": ["mystnb.unknown_mime_type", "myst.header"],
        "language": "en",
    }
    return "# Written by qhelpers.course.book.site for this build; edit qhelpers/course/book/site.py instead.\n" + "".join(
        f"{k} = {v!r}\n" for k, v in settings.items())


def _md_escape(text: str) -> str:
    return text.replace("|", "\\|")


def _parameter_rows(chapter: Chapter, info: Mapping[str, Any], profile: str) -> list[str]:
    values = info.get("parameters") if isinstance(info.get("parameters"), dict) else {n: p.default for n, p in chapter.parameters.items()}
    overrides = info.get("overrides") if isinstance(info.get("overrides"), dict) else {}
    from_profile = chapter.profiles.get(profile, {})
    rows = ["| parameter | value | set by | meaning |", "|---|---|---|---|"]
    for name, value in values.items():
        p = chapter.parameters.get(name)
        by = "default"  # run.json's overrides are the profile's values updated by -p
        if name in overrides:
            by = f"profile {profile}" if name in from_profile and overrides[name] == from_profile[name] else "-p"
        rows.append(f"| `{name}` | `{value!r}` | {by} | {_md_escape(p.help if p else '')} |")
    return rows if len(rows) > 2 else ["This chapter has no parameters."]


def _header(chapter: Chapter, info: Mapping[str, Any], profile: str, committed: bool) -> str:
    """The markdown cell put under a chapter's title: summary in English and Chinese, run status, parameters."""
    status = status_of(info, committed)
    lines = [f"*{chapter.summary}*", "", f"*{chapter.summary_zh}*" if chapter.summary_zh else "", ""]
    kind = "note" if status["ok"] else "error"
    lines += [f":::{{admonition}} {status['title']}", f":class: {kind}", "", status["detail"], ""]
    lines += _parameter_rows(chapter, info, profile)
    lines += [":::", ""]
    return "\n".join(lines)


def _chapter_page(chapter: Chapter, n: int, source: Path | None, info: Mapping[str, Any], profile: str,
                  committed: bool, src: Path) -> str:
    """Write the chapter's page into ``src``; returns its file name there."""
    header = _header(chapter, info, profile, committed)
    if source is not None and source.is_file():
        try:
            nb = read_notebook(source)
        except BookError:
            nb = None
        if nb is not None:
            first = next((i for i, c in enumerate(nb.cells) if c.cell_type == "markdown"), None)
            if first is not None and nb.cells[first].source.startswith("# "):  # right under the title
                title, _, rest = nb.cells[first].source.partition("\n")
                nb.cells[first:first + 1] = [nbformat.v4.new_markdown_cell(f"{title}\n\n{header}"),
                                             *([nbformat.v4.new_markdown_cell(rest)] if rest.strip() else [])]
            else:
                nb.cells.insert(0, nbformat.v4.new_markdown_cell(f"# {n:02d} · {chapter.title}\n\n{header}"))
            for c in nb.cells:  # papermill's own tags and the injected parameters are shown in the header instead
                if "injected-parameters" in c.metadata.get("tags", []):
                    c.metadata.setdefault("tags", []).append("remove-cell")
            nbformat.write(nb, src / chapter.notebook.name)
            return chapter.notebook.name
    why = "its executed notebook is missing or unreadable" if info else "it was not run in this build"
    write_text(src / f"{chapter.notebook.stem}.md",
               f"# {n:02d} · {chapter.title}\n\n{header}\n:::{{admonition}} No page for this chapter\n:class: error\n\nThis chapter has no page: {why}.\n:::\n")
    return f"{chapter.notebook.stem}.md"


def _index_page(book: Book, docs: list[tuple[Chapter, str]], statuses: Mapping[str, dict], profile: str, committed: bool) -> str:
    lines = [f"# {book.title}", ""]
    bad = [ch for ch, _ in docs if not statuses[ch.id]["ok"]]
    if bad:
        lines += [":::{admonition} Not every chapter ran to the end", ":class: error", "",
                  "".join(f"- [{ch.title}]({doc}): {statuses[ch.id]['title']}\n" for ch, doc in docs if not statuses[ch.id]["ok"]),
                  ":::", ""]
    source = ("the committed notebooks (`make notebooks` executed them with their defaults)" if committed
              else f"the run of profile **{profile}** in `build/{profile}/`")
    lines += [f"A Jupyter course on quantizing PyTorch models. This book shows {source}: every number on its pages was",
              "produced by the code beside it. The [results dashboard](dashboard) puts each chapter's headline numbers side by side,",
              "with the machine they were measured on; the [glossary](glossary) gives each term in English and Chinese",
              "(中文术语表).", "", "| # | chapter | what it teaches | 内容 | status |", "|---|---|---|---|---|"]
    for n, (ch, doc) in enumerate(docs, 1):
        s = statuses[ch.id]
        lines.append(f"| {n:02d} | [{_md_escape(ch.title)}]({doc}) | {_md_escape(ch.summary)} | {_md_escape(ch.summary_zh)} | "
                     f"{'' if s['ok'] else '**'}{s['short']}{'' if s['ok'] else '**'} |")
    entries = "\n".join(f"{n:02d} · {ch.title}{'' if statuses[ch.id]['ok'] else ' (' + statuses[ch.id]['short'] + ')'} <{Path(doc).stem}>"
                        for n, (ch, doc) in enumerate(docs, 1))
    lines += ["", "```{toctree}", ":caption: Chapters", ":hidden:", "", entries, "```", "",
              "```{toctree}", ":caption: Results and terms", ":hidden:", "", "dashboard", "glossary", "```", ""]
    return "\n".join(lines)


def _replace_folder(new: Path, target: Path) -> None:
    """Put the folder ``new`` at ``target``, replacing what was there (an old book is never mixed with a new one)."""
    old = target.with_name(f".{target.name}.old")
    shutil.rmtree(old, ignore_errors=True)
    if target.exists():
        os.replace(target, old)
    os.replace(new, target)
    shutil.rmtree(old, ignore_errors=True)


def build_book(book: Book, profile: str = FULL, *, out: Path | None = None, committed: bool = False, quiet: bool = True) -> Path:
    """Render the book of a run (``build/<profile>/``) or of the committed notebooks; returns its index.html.

    Raises ``BookError`` when there is no run of ``profile`` yet, or Sphinx fails
    (its warnings are kept in ``<folder>/book-warnings.txt``).
    """
    name = COMMITTED if committed else profile
    if not committed:
        book.check_profile(profile)
        if not (build_dir(book, profile, out=out, create=False) / "run.json").is_file():
            raise BookError(f"no run of profile {profile!r} in {build_dir(book, profile, out=out, create=False)} yet; "
                            f"`python -m qhelpers.course.book run --profile {profile}` runs it, or `python -m qhelpers.course.book html --committed` "
                            "renders the committed notebooks")
    folder = build_dir(book, name, out=out)
    run = {} if committed else read_json(folder / "run.json")
    chapters = run.get("chapters") if isinstance(run.get("chapters"), dict) else {}
    if committed:
        results = {ch.id: printed_results(ch.notebook) for ch in book.chapters if ch.notebook.is_file()}
    else:
        results = read_json(folder / "results.json")
    start = time.perf_counter()
    src = folder / ".book-src"
    shutil.rmtree(src, ignore_errors=True)
    (src / "_static").mkdir(parents=True)
    _copy_mathjax(src / "_static" / "mathjax")
    docs, statuses = [], {}
    for n, ch in enumerate(book.chapters, 1):
        info = chapters.get(ch.id) if isinstance(chapters.get(ch.id), dict) else {}
        source = ch.notebook if committed else (folder / ch.notebook.name if info else None)
        statuses[ch.id] = status_of(info, committed)
        docs.append((ch, _chapter_page(ch, n, source, info, profile, committed, src)))
    write_text(src / "index.md", _index_page(book, docs, statuses, profile, committed))
    write_text(src / "dashboard.md", dashboard_page(book, docs, run, results, statuses, src / "figures", committed=committed,
                                                    has_results_json=not committed))
    write_text(src / "glossary.md", glossary_page(load_glossary(book), book, dict((ch.id, doc) for ch, doc in docs)))
    write_text(src / "conf.py", _conf(book))
    html_new = folder / f".{BOOK}.new"
    shutil.rmtree(html_new, ignore_errors=True)
    warnings_file = folder / "book-warnings.txt"
    cmd = [sys.executable, "-m", "sphinx", "-b", "html", "-E", "-q", "-w", str(warnings_file), "-d", str(folder / ".doctrees"),
           str(src), str(html_new)]
    proc = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, "PYTHONWARNINGS": "ignore"})
    if proc.returncode != 0:
        shutil.rmtree(html_new, ignore_errors=True)
        tail = (proc.stderr.strip() or warnings_file.read_text(errors="replace").strip() if warnings_file.is_file() else "").splitlines()[-5:]
        raise BookError(f"Sphinx could not build the book (exit {proc.returncode}): " + " | ".join(tail))
    if not committed and (folder / "results.json").is_file():
        shutil.copy2(folder / "results.json", html_new / "results.json")
    _replace_folder(html_new, folder / BOOK)
    for scratch in (folder / ".doctrees", src, folder / "jupyter_execute"):  # myst-nb's extracted outputs, now in _images
        shutil.rmtree(scratch, ignore_errors=True)
    if not quiet:
        print(f"book: {folder / BOOK / 'index.html'} ({time.perf_counter() - start:.1f} s)", flush=True)
    return folder / BOOK / "index.html"
