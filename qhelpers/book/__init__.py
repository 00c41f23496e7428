"""The book: ``book.yml`` and the command line that runs, sweeps and renders the course's chapters.

``python -m qhelpers.book run [--profile P] [--only ID ...] [-p name=value ...]``
executes the chapters with papermill into ``build/<profile>/`` and renders them
as a book (``build/<profile>/book/index.html``, see :mod:`qhelpers.book.site`);
``python -m qhelpers.book --help`` lists the other commands (sweep, html,
execute-in-place, check, list, stanza, lab). :func:`check_parameters` is a
notebook's validation cell: it checks the parameters with book.yml's rules.
"""

from .manifest import (
    FULL, Book, BookError, Chapter, Parameter, Rule, check_parameters, find_book, load_book, notebook_parameters, stanza,
)
from .kernel import Interrupted, NotebookFailed
from .runner import execute_all_in_place, plan, run
from .sweep import sweep
from .site import build_book

__all__ = [
    "check_parameters",
    "FULL", "Book", "BookError", "Chapter", "Parameter", "Rule", "NotebookFailed", "Interrupted",
    "find_book", "load_book", "notebook_parameters", "stanza",
    "plan", "run", "sweep", "build_book", "execute_all_in_place",
]
