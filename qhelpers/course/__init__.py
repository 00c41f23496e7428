"""qhelpers.course: the machinery that runs the course, beside the teaching modules it runs.

The teaching modules (``qhelpers/<concept>.py``) read top-down as the lessons do and never import this
package; it imports them. What it holds:

- ``record``: ``record`` a result for the book, ``claim`` a checked one, ``claim_limits`` from
  ``notebooks/limits.yml`` (standard library only: the book's kernels load it by file path);
- ``repro``: ``setup``, the first call of every chapter (seeds, threads, quantized engine, warning filters);
- ``datasets``: finding, checking and installing the data files (MNIST, Fashion-MNIST, Tiny Shakespeare),
  ``loaders`` over them, ``char_splits`` of a text (``python -m qhelpers.course.datasets NAME...``);
- ``cache``: the checkpoint cache (``cached``, ``train_or_load``, ``code_key``);
- ``zoo``: every trained model the chapters share, each trained once and then loaded from the cache;
- ``exercises``: checkers of the learner's answers; ``solutions``: the reference answers (never imported by
  a notebook, run by the tests);
- ``book``: ``book.yml`` (the one declaration of each parameter, ``check_parameters``), the runner, the
  sweeps and the rendered book (``python -m qhelpers.course.book``).

``record``, ``claim``, ``claim_limits`` and ``setup`` are names of this package (``course.claim(...)``); the
modules above load on first use (``course.zoo``), so that a chapter importing this package, or
``python -m qhelpers.course.book``, does not wait for torch before it needs it.
"""

from importlib import import_module

from .record import claim, claim_limits, record

__all__ = ["claim", "claim_limits", "record", "setup"]

# Modules loaded on first use as attributes of the package (``course.book.check_parameters``).
_MODULES = ("book", "cache", "datasets", "exercises", "repro", "zoo")


def __getattr__(name: str):
    """``setup`` is loaded on first use: it imports torch (about 2 s), which ``python -m qhelpers.course.book`` must not
    wait for before it can answer Ctrl-C or a bad command line with one line. So are the modules of ``_MODULES``."""
    if name == "setup":
        from .repro import setup

        globals()["setup"] = setup
        return setup
    if name in _MODULES:
        return import_module(f".{name}", __name__)  # (importing a submodule also sets it as an attribute here)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
