"""The book's pages: headline tables, statuses, the glossary, and the rendered book of a run with a failed chapter."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from book_fixtures import tiny_book
from qhelpers.course.book import BookError, load_book
from qhelpers.course.book.dashboard import check_headline, headline_names, headline_table, printed_results, status_of
from qhelpers.course.book.files import read_json, write_json
from qhelpers.course.book.glossary import load_glossary
from qhelpers.course.book.site import build_book

ROOT = Path(__file__).resolve().parents[1]
CJK = re.compile(r"[\u4e00-\u9fff]")


@pytest.fixture(scope="module")
def course():
    return load_book(ROOT / "book.yml")


def test_every_chapter_has_a_chinese_summary_and_a_headline(course):
    for ch in course.chapters:
        assert CJK.search(ch.summary_zh), f"{ch.id}: summary_zh must be Chinese"
        assert ch.headline and not check_headline(ch), (ch.id, check_headline(ch))


def test_headlines_name_values_the_committed_notebooks_record(course):
    # The dashboard shows only recorded values: a renamed record() would leave its table empty.
    for ch in course.chapters:
        printed = printed_results(ch.notebook)
        missing = headline_names(ch) - printed.keys()
        assert not missing, f"{ch.id}: headline names {sorted(missing)} that {ch.notebook.name} does not record"
        columns, rows = headline_table(ch, printed)
        assert all(any(v is not None for _, vals in rows for v in [vals[j]]) for j in range(len(columns)))


def test_headline_problems_are_explained(tmp_path):
    book = load_book(tiny_book(tmp_path))
    alpha = book.chapter("alpha")
    assert headline_table(alpha, {"err": 0.25, "bits_seen": 2}) == (["error", "bits"], [("at 2 bits", [0.25, 2])])
    bad = type(alpha)(**{**alpha.__dict__, "headline": {"columns": ["a", "b"], "rows": {"x": ["one"]}, "colour": 1}})
    problems = check_headline(bad)
    assert any("unknown key 'colour'" in p for p in problems) and any("row 'x' must list 2 recorded names" in p for p in problems)
    with pytest.raises(BookError):
        headline_table(bad, {})


def test_printed_results_read_the_record_lines(tmp_path):
    import nbformat

    nb = nbformat.v4.new_notebook()
    cell = nbformat.v4.new_code_cell("...")
    cell.outputs = [nbformat.v4.new_output("stream", name="stdout", text='x\n[record] acc = 0.9912\n[record] name = "fc"\n'),
                    nbformat.v4.new_output("stream", name="stdout", text="[record] d = {\"a\": 3}\n")]
    nb.cells = [cell]
    nbformat.write(nb, tmp_path / "n.ipynb")
    assert printed_results(tmp_path / "n.ipynb") == {"acc": 0.9912, "name": "fc", "d": {"a": 3}}


@pytest.mark.parametrize("info, short", [
    ({"status": "ok", "seconds": 1.5}, "ok"), ({"status": "failed", "error": "cell 3: ValueError: x"}, "FAILED"),
    ({"status": "interrupted"}, "INTERRUPTED"), ({"status": "running", "started": "t"}, "NO RESULT"), ({}, "not run"),
])
def test_status_of_every_run_state(info, short):
    s = status_of(info)
    assert s["short"] == short and s["ok"] == (short == "ok")


def test_glossary_has_forty_terms_in_both_languages_each_linked_to_its_section(course):
    terms = load_glossary(course)  # checks that every section names exactly one heading of its chapter
    assert len(terms) >= 40
    for t in terms:
        # a term is Chinese, or a notation written the same in both (BF16（bfloat16）: full-width parentheses)
        assert CJK.search(t.zh) or t.zh.replace("（", " (").replace("）", ")") == t.en, t.en
        assert CJK.search(t.def_zh), t.en
        assert not CJK.search(t.def_en) and len(t.def_en) > 20, t.en
    ids = {c.id for c in course.chapters}
    assert {t.chapter for t in terms} == ids, "every chapter teaches some term"
    for must in ("量化", "反量化", "缩放因子", "零点", "对称量化", "非对称量化", "逐张量量化", "逐通道量化", "逐组量化", "校准", "观察器",
                 "伪量化", "直通估计器", "训练后量化", "量化感知训练", "算子融合", "动态量化", "静态量化", "混合精度", "饱和", "打包"):
        assert any(t.zh.startswith(must) for t in terms), must


def test_glossary_refuses_a_section_that_is_not_a_heading(course, tmp_path):
    bad = tmp_path / "glossary.yml"
    bad.write_text("terms:\n  - {en: x, zh: 量化, def_en: d, def_zh: 定义, chapter: concepts, section: No such heading}\n")
    with pytest.raises(BookError, match="matches 0 headings"):
        load_glossary(course, bad)


def test_the_book_of_a_run_with_a_failed_chapter(tmp_path, monkeypatch):
    """A stubbed run (alpha ok, beta failed), rendered: the failure is on the index, the dashboard and its page."""
    book = load_book(tiny_book(tmp_path))
    out = tmp_path / "build" / "full"
    out.mkdir(parents=True)
    import shutil

    shutil.copy(book.chapter("alpha").notebook, out / "01_alpha.ipynb")
    shutil.copy(book.chapter("beta").notebook, out / "02_beta.ipynb")
    write_json(out / "results.json", {"alpha": {"err": 0.0625, "bits_seen": 4}, "beta": {"seed": 0}})
    write_json(out / "run.json", {"profile": "full", "environment": {"cpu_model": "Test CPU 9000", "cpu": "AVX2 yes", "threads": 2,
                                                                      "versions": {"torch": "9.9.9"}},
                                  "chapters": {"alpha": {"status": "ok", "seconds": 1.0, "parameters": {"bits": 4, "dataset": "mnist"},
                                                         "overrides": {"bits": 4}},
                                               "beta": {"status": "failed", "error": "cell 5: RuntimeError: asked to fail",
                                                        "parameters": {"seed": 0, "fail": True}, "overrides": {"fail": True}}}})
    index = build_book(book, "full").read_text()
    html = out / "book"
    assert "Not every chapter ran to the end" in index and "FAILED" in index and "第一章" in index
    dashboard = (html / "dashboard.html").read_text()
    assert "Test CPU 9000" in dashboard and "9.9.9" in dashboard and "asked to fail" in dashboard and "0.0625" in dashboard
    assert "at 4 bits" in dashboard and re.search(r'<img [^>]*src="_images/alpha\.png"', dashboard) and (html / "_images" / "alpha.png").is_file()
    beta = (html / "02_beta.html").read_text()
    assert "This chapter FAILED" in beta and "asked to fail" in beta
    alpha = (html / "01_alpha.html").read_text()
    assert "Ran to the end" in alpha and "<code class=\"docutils literal notranslate\"><span class=\"pre\">4</span></code>" in alpha
    assert (html / "results.json").is_file() and read_json(html / "results.json")["alpha"]["err"] == 0.0625
    for page in html.glob("*.html"):
        assert not re.findall(r'<(?:script|link|img)[^>]+(?:src|href)="(?:https?:)?//', page.read_text()), page.name
