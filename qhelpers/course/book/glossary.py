"""The English-Chinese glossary (中文术语表): ``glossary.yml`` beside book.yml, rendered as the book's glossary page.

Each term links to the section of the chapter that teaches it: ``chapter`` is a
chapter id of book.yml, ``section`` the start of one of that notebook's headings.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Mapping

import yaml

from .manifest import Book, BookError, read_notebook

__all__ = ["Term", "load_glossary", "glossary_page", "headings"]

_KEYS = ("en", "zh", "def_en", "def_zh", "chapter", "section")


@dataclass(frozen=True)
class Term:
    en: str
    zh: str
    def_en: str
    def_zh: str
    chapter: str
    section: str  # the full heading text it links to
    anchor: str  # that heading's id on the chapter's page


def headings(notebook: Path) -> list[str]:
    """The text of every markdown heading of a notebook, in order (as myst renders it: code spans without backticks)."""
    out = []
    for cell in read_notebook(notebook).cells:
        if cell.cell_type != "markdown":
            continue
        fence = False
        for line in cell.source.splitlines():
            fence ^= line.lstrip().startswith("```")
            if not fence and line.startswith("#"):
                out.append(line.lstrip("#").strip())
    return out


def _anchor(heading: str, taken: set[str]) -> str:
    from myst_parser.slugs import github_slugify, unique_slug

    return unique_slug(github_slugify(heading.replace("`", "")), taken)


def load_glossary(book: Book, path: Path | None = None) -> list[Term]:
    """Read and check ``glossary.yml``: every field present, a known chapter, a section that names one heading."""
    path = path or book.root / "glossary.yml"
    if not path.is_file():
        return []
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as exc:
        raise BookError(f"{path}: invalid YAML ({exc}); fix it") from None
    items = raw.get("terms") if isinstance(raw, dict) else None
    if not isinstance(items, list):
        raise BookError(f"{path}: expected `terms:`, a list of {{{', '.join(_KEYS)}}}")
    chapters = {c.id: c for c in book.chapters}
    anchors: dict[str, list[tuple[str, str]]] = {}
    for cid, ch in chapters.items():
        taken: set[str] = set()
        pairs = []
        for h in headings(ch.notebook) if ch.notebook.is_file() else []:
            a = _anchor(h, taken)
            taken.add(a)
            pairs.append((h, a))
        anchors[cid] = pairs
    terms, problems, seen = [], [], set()
    for i, item in enumerate(items):
        where = f"{path.name}: term {i + 1}"
        if not isinstance(item, dict) or any(not isinstance(item.get(k), str) or not item[k].strip() for k in _KEYS):
            problems.append(f"{where}: needs the strings {', '.join(_KEYS)}")
            continue
        where += f" ({item['en']})"
        if item["en"].lower() in seen:
            problems.append(f"{where}: given twice")
        seen.add(item["en"].lower())
        if item["chapter"] not in chapters:
            problems.append(f"{where}: unknown chapter {item['chapter']!r}; chapters: {', '.join(chapters)}")
            continue
        found = [(h, a) for h, a in anchors[item["chapter"]] if h.startswith(item["section"])]
        if len(found) != 1:
            problems.append(f"{where}: section {item['section']!r} matches {len(found)} headings of {chapters[item['chapter']].notebook.name}; "
                            "give the start of exactly one heading")
            continue
        terms.append(Term(**{k: item[k].strip() for k in _KEYS[:5]}, section=found[0][0], anchor=found[0][1]))
    if problems:
        raise BookError(problems)
    return terms


def glossary_page(terms: list[Term], book: Book, docs: Mapping[str, str]) -> str:
    """The markdown of ``glossary.md``: one entry per term, in English and Chinese, with a link to its section."""
    titles = {c.id: f"{i:02d} · {c.title}" for i, c in enumerate(book.chapters, 1)}
    lines = ["# Glossary · 中文术语表", "",
             "The course's terms with a one-line definition in English and in Chinese, and the section that teaches each.",
             "本页列出课程中的术语，每个术语附英文和中文的一句话定义，以及讲解它的章节。", ""]
    for t in sorted(terms, key=lambda t: t.en.lower()):
        lines += [f"**{t.en}** · **{t.zh}**",
                  f": {t.def_en}", "", f"  {t.def_zh}", "",
                  f"  Taught in · 讲解章节：[{titles[t.chapter]} › {t.section.replace('`', '')}]({docs[t.chapter]}#{t.anchor})", ""]
    return "\n".join(lines)
