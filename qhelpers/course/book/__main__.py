"""Command line of the book: ``python -m qhelpers.course.book {run,sweep,html,lab,execute-in-place,check,sync,list,stanza}``."""

from __future__ import annotations

import os
import signal
import sys


def _interrupted_while_loading(signum: int, frame: object) -> None:
    """Ctrl-C before :func:`main` is running (the modules below still loading): one line, exit 130, no traceback."""
    os.write(2, b"interrupted (Ctrl-C)\n")
    os._exit(128 + signum)


if __name__ == "__main__":
    signal.signal(signal.SIGINT, _interrupted_while_loading)

import argparse  # noqa: E402
import re  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import NoReturn  # noqa: E402

from .manifest import FULL, Book, BookError, did_you_mean, find_book, load_book, parse_assignments, stanza  # noqa: E402

EPILOG = """examples:
  python -m qhelpers.course.book run --profile smoke
  python -m qhelpers.course.book run --only mnist-cnn -p bits=4 -p dataset=fashion-mnist
  python -m qhelpers.course.book sweep mnist-cnn -p bits=2,3,4,6,8 --profile smoke
  python -m qhelpers.course.book html --committed      # the book from the committed notebooks, without running them
  python -m qhelpers.course.book lab                   # JupyterLab on notebooks/, with the course's kernel
  python -m qhelpers.course.book execute-in-place notebooks/01_concepts.ipynb
  python -m qhelpers.course.book sync                  # write the notebooks' parameters cells from book.yml
"""


class _UsageError(Exception):
    """A command line argparse refused; the message is one line."""


class _Parser(argparse.ArgumentParser):
    """argparse, but a bad command line is one line on stderr (and exit code 2) instead of usage text."""

    def error(self, message: str) -> NoReturn:
        choice = re.search(r"invalid choice: '([^']*)' \(choose from (.*)\)", message)
        if choice:
            message += did_you_mean(choice.group(1), re.findall(r"'([^']*)'", choice.group(2)))
        raise _UsageError(f"{message}; see `{self.prog} --help`")


def _folder(text: str) -> Path:
    """A folder path given on the command line; an empty one (``--out ''``) would silently mean the working directory."""
    if not text.strip():
        raise argparse.ArgumentTypeError(f"{text!r} is empty: give a folder path (e.g. --out build), or leave the option out "
                                         "for the default")
    return Path(text)


def _parser() -> argparse.ArgumentParser:
    ap = _Parser(prog="python -m qhelpers.course.book", description=__doc__, epilog=EPILOG,
                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--book", type=_folder, help="path of book.yml (default: the nearest one from the working directory)")
    sub = ap.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def common(p: argparse.ArgumentParser) -> None:
        p.add_argument("--profile", default=FULL, help="named parameter set from book.yml (default: full = notebook defaults)")
        p.add_argument("--out", type=_folder, help="build folder (default: build/ next to book.yml)")
        p.add_argument("--no-progress", action="store_true", help="no per-cell progress bar")

    r = sub.add_parser("run", help="execute chapters in order into build/<profile>/ and build the book")
    common(r)
    r.add_argument("--only", nargs="+", default=[], metavar="ID", help="run only these chapter ids (still in book order)")
    r.add_argument("-p", "--param", action="append", default=[], metavar="NAME=VALUE",
                   help="override a parameter in every chapter that has it; CHAPTER.NAME=VALUE for one chapter")
    r.add_argument("--log-output", action="store_true", help="stream the notebooks' output to this terminal")
    r.add_argument("--no-html", action="store_true", help="do not build the book (build/<profile>/book/)")

    s = sub.add_parser("sweep", help="run one chapter over a grid of parameter values; table and plot of the results")
    common(s)
    s.add_argument("chapter", metavar="ID")
    s.add_argument("-p", "--param", action="append", default=[], metavar="NAME=V1,V2,...", help="values of a swept parameter (repeat for a grid)")
    s.add_argument("--keep-going", action="store_true", help="run the remaining points after a failure")

    h = sub.add_parser("html", help="build the book (build/<profile>/book/index.html) from the last run, or from the committed notebooks")
    h.add_argument("--profile", default=FULL)
    h.add_argument("--out", type=_folder)
    h.add_argument("--committed", action="store_true", help="render the committed notebooks into build/committed/book/ (nothing is run)")

    lab = sub.add_parser("lab", help="open the course's notebooks in JupyterLab with the course's kernel (this Python)")
    lab.add_argument("jupyter_args", nargs="*", metavar="...", help="passed on to `jupyter lab` (e.g. --no-browser --port=8890)")

    e = sub.add_parser("execute-in-place", help="re-execute committed notebooks in place with their defaults (to commit the outputs)")
    e.add_argument("notebooks", nargs="*", type=Path, help="default: every notebook of notebooks/, in book order")

    sub.add_parser("check", help="validate book.yml against the notebooks (their parameters cells included)")
    sy = sub.add_parser("sync", help="write the notebooks' parameters cells from book.yml, where they differ")
    sy.add_argument("--check", action="store_true", help="only list the cells that differ (exit code 1 if any), write nothing")
    sub.add_parser("list", help="chapters, their parameters and profiles")
    st = sub.add_parser("stanza", help="print a book.yml entry for a notebook, read from its parameters cell")
    st.add_argument("notebook", type=Path)
    st.add_argument("--id", default="")
    return ap


def _stanza_root(book: Path | None) -> Path | None:
    """The folder of book.yml, to write the stanza's notebook path relative to it (None if there is no book)."""
    try:
        found = book if book is not None else find_book()
    except BookError:
        return None
    return found if found.is_dir() else found.parent


def main(argv: list[str] | None = None) -> int:
    """Run the command line; Ctrl-C (or SIGTERM) at any moment, even while the modules load, is one line and 128 + signal."""
    if signal.getsignal(signal.SIGINT) is _interrupted_while_loading:
        signal.signal(signal.SIGINT, signal.default_int_handler)  # from here on Ctrl-C is a KeyboardInterrupt
    try:
        return _main(argv)
    except KeyboardInterrupt as exc:
        signum = getattr(exc, "signum", signal.SIGINT)
        how = "Ctrl-C" if signum == signal.SIGINT else signal.Signals(signum).name
        print(f"interrupted ({how})" + (f": {exc}" if str(exc) else ""), file=sys.stderr)
        return 128 + signum


def _main(argv: list[str] | None) -> int:
    # The runner's kernel client (jupyter_client, zmq, nbformat: about 1.5 s) loads here, inside main's Ctrl-C handling.
    from .kernel import NotebookFailed, sigterm_interrupts

    try:
        parser = _parser()
        args, unknown = parser.parse_known_args(argv)
        if args.command == "lab":  # everything after `lab` is jupyter's
            args.jupyter_args = [*args.jupyter_args, *unknown]
        elif unknown:
            parser.error(f"unrecognized arguments: {' '.join(unknown)}")
    except _UsageError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except SystemExit as exc:  # --help
        return exc.code if isinstance(exc.code, int) else 0
    try:
        with sigterm_interrupts():
            return _command(args)
    except NotebookFailed as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except BookError as exc:
        print(f"error: {exc}" if len(exc.problems) == 1 else f"error:\n{exc}", file=sys.stderr)
        return 2
    except OSError as exc:  # e.g. the disk filled up while writing the build folder
        print(f"error: {exc.strerror or exc}" + (f": {exc.filename}" if exc.filename else ""), file=sys.stderr)
        return 1


def _notebooks_to_check(args: argparse.Namespace) -> bool | list[str]:
    """Which chapters' notebooks ``load_book`` checks against book.yml: those a command executes or renders.

    ``run --only`` and ``sweep`` check just their chapters (the others may be work in progress); ``list``,
    ``html`` of a run (its executed copies are what it renders) and ``execute-in-place`` of given notebooks
    need only the table of contents.
    """
    if args.command in ("lab", "sync"):  # (sync compares the cells itself: it is what repairs them)
        return False
    if args.command == "run" and args.only:
        return list(args.only)
    if args.command == "sweep":
        return [args.chapter]
    if args.command == "list" or args.command == "html" and not args.committed or args.command == "execute-in-place" and args.notebooks:
        return False
    return True


def lab_command(book: Book, extra: list[str] = ()) -> list[str]:
    """The ``jupyter lab`` command line of :func:`_lab`: the notebooks' folder, only the course's kernel."""
    folders = sorted({c.notebook.parent.resolve() for c in book.chapters})
    return [sys.executable, "-m", "jupyter", "lab", f"--ServerApp.root_dir={folders[0] if len(folders) == 1 else book.root}",
            "--ServerApp.kernel_spec_manager_class=qhelpers.course.book.kernel.CourseKernelSpecManager",
            *(["--allow-root"] if hasattr(os, "geteuid") and os.geteuid() == 0 else []), *extra]  # containers and CI run as root


def _lab(book: Book, extra: list[str]) -> int:
    """Replace this process by JupyterLab (so that Ctrl-C and a kill reach the server itself)."""
    cmd = lab_command(book, [a for a in extra if a != "--"])
    print(f"starting JupyterLab on {cmd[4].split('=', 1)[1]} (Ctrl-C twice stops it)", flush=True)
    os.execv(cmd[0], cmd)
    return 0  # not reached


def _sync(book: Book, check_only: bool) -> int:
    """``sync``: rewrite the parameters cells that differ from book.yml (``--check``: list them, exit code 1)."""
    from .manifest import SYNC, sync

    drifted = sync(book, write=not check_only)
    for chapter, drift in drifted:
        rel = chapter.notebook.relative_to(book.root)
        print(f"{rel} ({chapter.id}): " + ("parameters cell differs from book.yml" if check_only else "rewrote the parameters cell"))
        for line in drift:
            print(f"  - {line}")
    if not drifted:
        print(f"{len(book.chapters)} parameters cells: all as book.yml writes them")
    elif check_only:
        print(f"{len(drifted)} of {len(book.chapters)} parameters cells differ from book.yml; run `{SYNC}` to rewrite them")
        return 1
    else:
        print(f"rewrote {len(drifted)} of {len(book.chapters)} parameters cells (only their source; outputs and other cells untouched)")
    return 0


def _command(args: argparse.Namespace) -> int:
    if args.command == "stanza":
        print(stanza(args.notebook, args.id, root=_stanza_root(args.book)), end="")
        return 0
    book = load_book(args.book, check_notebooks=_notebooks_to_check(args))
    if args.command == "check":
        print(f"{book.path}: {len(book.chapters)} chapters, profiles {', '.join(book.profiles)}: OK")
    elif args.command == "sync":
        return _sync(book, check_only=args.check)
    elif args.command == "list":
        for c in book.chapters:
            print(f"{c.id}: {c.title}  [{c.notebook.relative_to(book.root)}]\n  {c.summary}" + (f"\n  {c.summary_zh}" if c.summary_zh else ""))
            for p in c.parameters.values():
                print(f"    {p.describe()}")
            sized = any(p.size is not None for p in c.parameters.values())
            for prof, values in c.profiles.items():
                print(f"    profile {prof}: {', '.join(f'{k}={v!r}' for k, v in values.items()) or 'defaults'}"
                      + (f"  ({c.configuration(c.effective(prof))} configuration)" if sized else ""))
    elif args.command == "run":
        from .runner import run

        run(book, args.profile, args.only, parse_assignments(args.param), out=args.out,
            progress=not args.no_progress, log_output=args.log_output, html=not args.no_html)
    elif args.command == "sweep":
        from .sweeps import sweep

        sweep(book, args.chapter, parse_assignments(args.param, lists=True), profile=args.profile, out=args.out,
              progress=not args.no_progress, keep_going=args.keep_going)
    elif args.command == "html":
        from .site import build_book

        print(build_book(book, args.profile, out=args.out, committed=args.committed))
    elif args.command == "lab":
        return _lab(book, args.jupyter_args)
    elif args.command == "execute-in-place":
        from .runner import execute_all_in_place

        execute_all_in_place(book, args.notebooks)
    return 0


if __name__ == "__main__":
    code = main()
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the work is done: a Ctrl-C while Python shuts down changes nothing
    sys.exit(code)
