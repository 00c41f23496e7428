"""The book: ``book.yml`` and the command line that runs, sweeps and renders the course's chapters.

``python -m qhelpers.course.book run [--profile P] [--only ID ...] [-p name=value ...]``
executes the chapters with papermill into ``build/<profile>/`` and renders them
as a book (``build/<profile>/book/index.html``, see :mod:`qhelpers.course.book.site`);
``python -m qhelpers.course.book --help`` lists the other commands (sweep, html,
execute-in-place, check, sync, list, stanza, lab). :func:`check_parameters` is a
notebook's validation cell: it checks the parameters with book.yml's rules;
:func:`configuration` says whether the run is the full one (book.yml's ``size:``
parameters). ``python -m qhelpers.course.book sync`` writes the notebooks'
parameters cells from book.yml.
"""

from importlib import import_module
from typing import TYPE_CHECKING, Any

from .manifest import (
    FULL, QUICK, Book, BookError, Chapter, Parameter, Rule, check_parameters, configuration, find_book, load_book,
    notebook_parameters, parameters_cell, stanza, sync,
)

if TYPE_CHECKING:
    from .kernel import Interrupted, NotebookFailed
    from .runner import execute_all_in_place, plan, run
    from .site import build_book
    from .sweeps import sweep

# Every chapter imports this package for `check_parameters`; the runner's kernel client (jupyter_client, zmq,
# nbformat and its JSON-schema validator) and the book's renderer load only when one of their names is used:
# about a second less per chapter.
_LAZY = {"Interrupted": "kernel", "NotebookFailed": "kernel", "execute_all_in_place": "runner", "plan": "runner",
         "run": "runner", "sweep": "sweeps", "build_book": "site"}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        value = getattr(import_module(f".{_LAZY[name]}", __name__), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

__all__ = [
    "check_parameters", "configuration",
    "FULL", "QUICK", "Book", "BookError", "Chapter", "Parameter", "Rule", "NotebookFailed", "Interrupted",
    "find_book", "load_book", "notebook_parameters", "parameters_cell", "stanza", "sync",
    "plan", "run", "sweep", "build_book", "execute_all_in_place",
]
