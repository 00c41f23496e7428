"""Open built HTML pages in headless Chromium (Playwright driving Debian's ``chromium``) and say what a reader would see wrong.

Used by tests/test_book_browser.py; ``python tests/book_browser.py FOLDER [SHOTS]`` checks a built book by hand.
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path
from urllib.parse import unquote, urlparse

CHROMIUM_NAMES = ("chromium", "chromium-browser", "google-chrome")

# Text a reader would see as LaTeX source: $$, \( \) \[ \], \begin{...}, or $...\command...$ outside code.
_PAGE_PROBE = r"""
async () => {
  if (window.MathJax && MathJax.startup && MathJax.startup.promise) await MathJax.startup.promise;  // MathJax 3
  else if (window.MathJax && MathJax.Hub) await new Promise(done => MathJax.Hub.Queue(done));  // MathJax 2
  const skip = el => el.closest('pre, code, script, style, textarea, mjx-container, .MathJax, .MathJax_Display, .MathJax_Preview, .highlight, .output');
  const raw = [];
  const walker = document.createTreeWalker(document.body, NodeFilter.SHOW_TEXT);
  const tex = /\$\$|\\\(|\\\)|\\\[|\\\]|\\begin\{|\$[^$\s][^$]*\\[a-zA-Z]+[^$]*\$/;
  for (let n = walker.nextNode(); n; n = walker.nextNode()) {
    if (!n.parentElement || skip(n.parentElement)) continue;
    if (n.parentElement.offsetParent === null && getComputedStyle(n.parentElement).position !== 'fixed') continue;  // hidden
    if (tex.test(n.textContent)) raw.push(n.textContent.trim().slice(0, 80));
  }
  const maths = [...document.querySelectorAll('.math, div.math, span.math')];
  const untypeset = maths.filter(m => !m.querySelector('.MathJax, .MathJax_Display, .MathJax_SVG, .MathJax_CHTML, mjx-container'))
                         .map(m => m.textContent.trim().slice(0, 80));
  const errors = [...document.querySelectorAll('.MathJax .merror, .MathJax_Error, [data-mjx-error], mjx-merror')].map(e => e.textContent.slice(0, 80));
  const images = [...document.images].map(i => ({src: i.currentSrc || i.src, ok: i.complete && i.naturalWidth > 0}));
  const links = [...document.querySelectorAll('a[href]')].map(a => a.href);
  const ids = [...document.querySelectorAll('[id]')].map(e => e.id).concat([...document.querySelectorAll('a[name]')].map(a => a.name));
  return {raw, maths: maths.length, untypeset, errors, images, links, ids, title: document.title};
}
"""


def find_chromium() -> str | None:
    """Path of the system Chromium, or None."""
    return next((p for p in map(shutil.which, CHROMIUM_NAMES) if p), None)


def _file(url: str) -> Path | None:
    parsed = urlparse(url)
    return Path(unquote(parsed.path)) if parsed.scheme == "file" else None


def inspect_book(folder: Path, shots: Path | None = None, *, pages: list[Path] | None = None,
                 width: int = 1280, height: int = 900) -> dict[str, list[str]]:
    """``{page: [problems]}`` for every HTML page of ``folder`` (except Sphinx's search and index pages);
    with ``shots``, a screenshot of each page is saved there as ``<page>.png``."""
    from playwright.sync_api import sync_playwright

    chromium = find_chromium()
    if chromium is None:
        raise RuntimeError("no Chromium found (apt-get install chromium)")
    folder = folder.resolve()
    pages = pages or sorted(p for p in folder.glob("*.html") if p.name not in ("search.html", "genindex.html"))
    if shots:
        shots.mkdir(parents=True, exist_ok=True)
    found: dict[str, list[str]] = {}
    ids_of: dict[Path, set[str]] = {}
    links_of: dict[Path, list[str]] = {}
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=chromium, headless=True, args=["--no-sandbox"])
        try:
            context = browser.new_context(viewport={"width": width, "height": height})
            remote: list[str] = []

            def route(r):  # every request: local files load, anything else is recorded and refused
                if r.request.url.startswith(("file:", "data:", "blob:", "about:")):
                    r.continue_()
                else:
                    remote.append(r.request.url)
                    r.abort()

            context.route("**/*", route)
            page = context.new_page()
            failed: list[str] = []
            page.on("requestfailed", lambda req: failed.append(req.url) if req.url.startswith("file:") else None)
            console: list[str] = []
            page.on("pageerror", lambda exc: console.append(str(exc)[:120]))
            for path in pages:
                problems = found.setdefault(path.name, [])
                remote.clear(), failed.clear(), console.clear()
                page.goto(path.as_uri(), wait_until="load")
                info = page.evaluate(_PAGE_PROBE)
                page.wait_for_timeout(100)
                if shots:
                    page.screenshot(path=str(shots / f"{path.stem}.png"))
                problems += [f"raw TeX shown: {t!r}" for t in info["raw"]]
                problems += [f"math not typeset: {t!r}" for t in info["untypeset"]]
                problems += [f"MathJax error: {t!r}" for t in info["errors"]]
                problems += [f"image does not load: {i['src']}" for i in info["images"] if not i["ok"]]
                problems += [f"network request: {u}" for u in dict.fromkeys(remote)]
                problems += [f"local file missing: {u}" for u in dict.fromkeys(failed)]
                problems += [f"script error: {e}" for e in console]
                ids_of[path] = set(info["ids"])
                links_of[path] = info["links"]
        finally:
            browser.close()
    for path, links in links_of.items():
        for url in dict.fromkeys(links):
            target = _file(url)
            if target is None:
                if not url.startswith(("mailto:", "javascript:")):
                    found[path.name].append(f"link leaves the book: {url}")
                continue
            if not target.exists():
                found[path.name].append(f"broken link: {url}")
                continue
            fragment = urlparse(url).fragment
            if fragment and target.suffix == ".html":
                if target not in ids_of:
                    ids_of[target] = _ids(target)
                if unquote(fragment) not in ids_of[target]:
                    found[path.name].append(f"broken anchor: {target.name}#{fragment}")
    return found


def _ids(page: Path) -> set[str]:
    import re

    text = page.read_text(encoding="utf-8", errors="replace")
    return set(re.findall(r'\bid="([^"]+)"', text)) | set(re.findall(r'\bname="([^"]+)"', text))


if __name__ == "__main__":
    book = Path(sys.argv[1])
    result = inspect_book(book, Path(sys.argv[2]) if len(sys.argv) > 2 else None)
    for name, problems in result.items():
        print(f"{name}: {'OK' if not problems else ''}")
        for p in problems:
            print(f"  {p}")
    sys.exit(any(result.values()))
