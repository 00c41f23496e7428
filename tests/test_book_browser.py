"""The book as a reader sees it: every page opened in headless Chromium (Debian's `chromium`, driven by Playwright).

Fails if a page shows raw TeX, has math MathJax did not typeset, a broken local link, anchor or image, or asks for
anything over the network. Screenshots of every page are saved in build/screenshots/committed/ for a person to look at.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from book_browser import find_chromium, inspect_book
from qhelpers.course.book import load_book
from qhelpers.course.book.site import build_book

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.browser


def need_chromium() -> None:
    if find_chromium() is None:
        why = "Chromium is not installed (`apt-get install chromium`; .ci/run installs it): the book's pages were not checked in a browser"
        if os.environ.get("CI"):
            pytest.fail(why)
        pytest.skip(why)


def test_the_checks_catch_what_they_look_for(tmp_path):
    need_chromium()
    (tmp_path / "bad.html").write_text(
        "<html><body><p>Raw: $$q = \\mathrm{round}(x/s)$$ and \\(x\\)</p><span class='math'>\\(y\\)</span>"
        "<img src='missing.png'><img src='https://example.org/a.png'><a href='nowhere.html'>x</a>"
        "<a href='bad.html#no-such-id'>y</a></body></html>")
    problems = "\n".join(inspect_book(tmp_path)["bad.html"])
    for expected in ("raw TeX shown", "math not typeset", "image does not load", "network request: https://example.org/a.png",
                     "broken link", "broken anchor: bad.html#no-such-id"):
        assert expected in problems, (expected, problems)


def test_every_page_of_the_book_reads_right_in_chromium():
    need_chromium()
    index = build_book(load_book(ROOT / "book.yml"), committed=True)  # the committed notebooks: nothing is executed
    shots = ROOT / "build" / "screenshots" / "committed"
    found = inspect_book(index.parent, shots)
    assert len(found) >= 8 and {"index.html", "dashboard.html", "glossary.html", "01_concepts.html"} <= found.keys()
    bad = {page: problems for page, problems in found.items() if problems}
    assert not bad, "\n".join(f"{page}:\n  " + "\n  ".join(p[:10]) for page, p in bad.items())
    assert all((shots / f"{Path(p).stem}.png").stat().st_size > 10_000 for p in found)
    print(f"screenshots in {shots}")
