"""``record(name, value)``: a notebook's key results, shown and saved for the book runner; ``claim``: one checked.

Each call prints one line ``[record] name = value`` and, when the environment
variable ``QHELPERS_RESULTS`` names a JSON file (the book runner sets it for
each chapter), merges ``{name: value}`` into that file. Values are kept at full
precision in the file; the printed line rounds floats to 4 significant digits.

``claim(name, value, at_least=..., at_most=...)`` records a result, prints
whether it lies within the stated limits, and stops the notebook with an
``AssertionError`` if it does not: a claim of the text, checked on every run.
The limits of a chapter's claims are data, in ``notebooks/limits.yml``
(:func:`claim_limits`), not numbers scattered through its cells.

This module uses the standard library only (and PyYAML in :func:`claim_limits`): the
book runner's kernels load it by file path, without importing torch.
"""

from __future__ import annotations

import json
import math
import os
import re
import secrets
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Iterator, Union

__all__ = ["record", "claim", "claim_limits", "RESULTS_ENV", "read_results", "atomic_open"]

RESULTS_ENV = "QHELPERS_RESULTS"
Value = Union[bool, int, float, str, list, dict, None]
_NAME = re.compile(r"^[a-z][a-z0-9_]*$")


@contextmanager
def atomic_open(path: Path | str, mode: str = "w") -> Iterator[IO]:
    """Write ``path`` all at once: a temporary file beside it replaces it only if the block succeeds.

    The file gets the permissions a plain ``open()`` gives (0666 minus the
    umask, e.g. 0644), not tempfile's 0600. On any failure, including Ctrl-C,
    the temporary file is removed and ``path`` is left as it was.
    """
    if not isinstance(path, (str, os.PathLike)) or not str(path).strip():
        raise TypeError(f"atomic_open: path={path!r} must be a file path (str or Path)")
    if mode not in ("w", "wb", "wt"):
        raise ValueError(f"atomic_open: mode={mode!r} must be 'w', 'wt' or 'wb': it only writes (a read mode would "
                         "replace the file by an empty one)")
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}-{secrets.token_hex(4)}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)  # the kernel applies the umask
    try:
        with os.fdopen(fd, mode) as fh:
            yield fh
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def _check(value: object, name: str, where: str = "value") -> None:
    """JSON-ready values only, checked all the way down (json.dumps would turn ``{1: 2}`` into ``{"1": 2}``)."""
    if isinstance(value, float) and not math.isfinite(value):
        raise ValueError(f"record({name!r}): {where} {value} is not finite; record a finite number (or None)")
    if isinstance(value, (list, tuple)):
        for i, item in enumerate(value):
            _check(item, name, f"{where}[{i}]")
    elif isinstance(value, dict):
        for key, item in value.items():
            if not isinstance(key, str):
                raise TypeError(f"record({name!r}): {where} has the key {key!r} of type {type(key).__name__}; "
                                "JSON keys are strings: use str(key)")
            _check(item, name, f"{where}[{key!r}]")
    elif value is not None and not isinstance(value, (bool, int, float, str)):
        raise TypeError(
            f"record({name!r}): {where} of type {type(value).__name__} is not JSON-serializable; "
            "pass a number, string, bool, or a list/dict of them (use float(t) for a tensor)"
        )


def _plain(name: object, value: object) -> Value:
    """``value`` checked for recording under ``name``: a 0-d tensor or NumPy scalar as a Python number, JSON-ready."""
    if not isinstance(name, str) or not _NAME.fullmatch(name):
        raise ValueError(f"record name {name!r} must be snake_case: lowercase letters, digits and '_'")
    if hasattr(value, "item") and not isinstance(value, (list, dict, str)):
        try:
            value = value.item()  # a 0-d tensor or NumPy scalar
        except (ValueError, RuntimeError) as exc:
            size = getattr(value, "size", None)
            count = value.numel() if hasattr(value, "numel") else size
            raise TypeError(f"record({name!r}): value is a {type(value).__name__} of {count} elements, not one "
                            "number; record one element, or value.tolist() for a list") from None
    _check(value, name)
    return value  # type: ignore[return-value]


def _fmt(value: Value) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return json.dumps(value)


def read_results(path: Path | str) -> dict[str, Value]:
    """The ``{name: value}`` results saved in ``path`` ({} if the file does not exist).

    Raises ``ValueError`` when ``path`` is a folder or does not hold a JSON object.
    """
    if not isinstance(path, (str, os.PathLike)) or not str(path).strip():
        raise TypeError(f"read_results: path={path!r} must be the path of a .json file (str or Path)")
    path = Path(path)
    if path.is_dir():
        raise ValueError(f"results file {path} is a folder; give the path of a .json file")
    if not path.exists():
        return {}
    try:
        results = json.loads(path.read_text())
    except ValueError as exc:  # JSONDecodeError, UnicodeDecodeError
        raise ValueError(f"results file {path} is not valid JSON ({exc}); delete it, it is rewritten on the next run") from exc
    if not isinstance(results, dict):
        raise ValueError(f"results file {path} holds a JSON {type(results).__name__}, not an object of results; delete it")
    return results


def record(name: str, value: Value) -> Value:
    """Show a key result and save it where the book runner collects it; returns ``value``."""
    value = _plain(name, value)
    target = os.environ.get(RESULTS_ENV)
    if target:
        path = Path(target)
        try:
            results = read_results(path)
        except ValueError as exc:
            raise ValueError(f"record({name!r}): {exc} ({RESULTS_ENV}={target})") from None
        results[name] = value
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            with atomic_open(path) as fh:
                json.dump(results, fh, indent=2, sort_keys=True)
        except OSError as exc:
            raise ValueError(f"record({name!r}): cannot write {RESULTS_ENV}={target} ({exc.strerror or exc}); "
                             f"point {RESULTS_ENV} at a writable .json file, or unset it") from exc
    print(f"[record] {name} = {_fmt(value)}")
    return value


def claim(name: str, value: float, *, at_least: float | None = None, at_most: float | None = None) -> None:
    """Record ``value`` as ``name``, print whether it lies in ``[at_least, at_most]``, and assert that it does.

    A limit of ``None`` is no limit (e.g. a claim that holds only in the full
    configuration); with neither limit the value is recorded and shown as not
    checked. Returns nothing, so that a claim ending a notebook cell displays only its line (its value, printed in
    full, would differ between CPUs).
    """
    for what, limit in (("at_least", at_least), ("at_most", at_most)):
        if limit is not None and (isinstance(limit, bool) or not isinstance(limit, (int, float)) or not math.isfinite(limit)):
            raise TypeError(f"claim({name!r}): {what}={limit!r} must be a finite number or None")
    if at_least is not None and at_most is not None and at_least > at_most:
        raise ValueError(f"claim({name!r}): at_least={at_least} is above at_most={at_most}: no value could hold; "
                         "swap them (check notebooks/limits.yml)")
    # Everything is checked before anything is recorded: a refused claim leaves the results file as it was.
    plain = _plain(name, value)
    if isinstance(plain, bool) or not isinstance(plain, (int, float)):
        raise TypeError(f"claim({name!r}): value {plain!r} must be a number to compare with the limits "
                        "(e.g. float(x) for a string or tensor)")
    value = record(name, plain)
    if at_least is None and at_most is None:
        print(f"[claim] {name}: no limit in this configuration, not checked")
        return
    if at_least is not None and at_most is not None:
        stated = f"in [{at_least:.4g}, {at_most:.4g}]"
    else:
        stated = f">= {at_least:.4g}" if at_least is not None else f"<= {at_most:.4g}"
    ok = (at_least is None or value >= at_least) and (at_most is None or value <= at_most)
    print(f"[claim] {name} {stated}: {'yes' if ok else 'NO'}")
    if not ok:
        raise AssertionError(f"claim {name}: {_fmt(value)} is not {stated}")


def claim_limits(chapter: str, configuration: str, path: Path | str | None = None) -> dict:
    """The limits of chapter ``chapter``'s claims in ``configuration``, from ``notebooks/limits.yml``.

    ``path`` defaults to the ``limits.yml`` in the working directory (a
    notebook runs in its own folder), else the course's ``notebooks/limits.yml``.
    """
    import yaml

    for what, value in (("chapter", chapter), ("configuration", configuration)):
        if not isinstance(value, str):
            raise TypeError(f"claim_limits: {what}={value!r} must be a str, e.g. claim_limits('mnist-cnn', 'full')")
    if path is not None and (not isinstance(path, (str, os.PathLike)) or not str(path).strip()):
        raise TypeError(f"claim_limits: path={path!r} must be the path of a limits.yml (str or Path), or None")
    if path is None:
        here = Path.cwd() / "limits.yml"
        path = here if here.is_file() else Path(__file__).resolve().parents[2] / "notebooks" / "limits.yml"
    path = Path(path)
    try:
        table = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except OSError as exc:
        raise ValueError(f"cannot read the claims' limits {path} ({exc.strerror or exc}); it lives beside the notebooks") from None
    if chapter not in table:
        raise ValueError(f"{path.name} has no limits for chapter {chapter!r}; it has {sorted(table)}")
    if configuration not in table[chapter]:
        raise ValueError(f"{path.name}: chapter {chapter!r} has no configuration {configuration!r}; "
                         f"choose one of {sorted(table[chapter])}")
    return dict(table[chapter][configuration])
