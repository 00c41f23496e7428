"""The files of the book runner: the one build folder, atomic writes with normal permissions, JSON state."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from ..record import atomic_open
from .manifest import Book, BookError

__all__ = ["build_dir", "write_text", "write_json", "read_json", "update_json"]


def write_text(path: Path, text: str | bytes) -> Path:
    """Write ``text`` (UTF-8 if a str) to ``path`` atomically with :func:`qhelpers.course.record.atomic_open`.

    A reader (or an interrupted run) sees the old file or the new one, never half of
    one. The file gets the usual permissions (0666 minus the umask).
    """
    path = Path(path)
    with atomic_open(path, "wb") as f:
        f.write(text.encode("utf-8") if isinstance(text, str) else text)
    return path


def write_json(path: Path, data: Any) -> Path:
    """``data`` as indented JSON, written atomically (see :func:`write_text`)."""
    return write_text(path, json.dumps(data, indent=2, default=str) + "\n")


def read_json(path: Path) -> dict[str, Any]:
    """The JSON object in ``path`` ({} if the file does not exist); ``BookError`` if it is not one."""
    if not path.is_file():
        return {}
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (ValueError, OSError) as exc:
        raise BookError(f"{path} is unreadable ({exc}); delete it and run again") from None
    if not isinstance(data, dict):
        raise BookError(f"{path} does not hold a JSON object; delete it and run again")
    return data


def update_json(path: Path, name: str, value: Any, key: str | None = None) -> None:
    """Set ``data[name]`` (or ``data[key][name]``) of the JSON object in ``path``; written atomically."""
    data = read_json(path)
    (data.setdefault(key, {}) if key else data)[name] = value
    write_json(path, data)


def build_dir(book: Book, *parts: str, out: Path | str | None = None, create: bool = True) -> Path:
    """The folder ``<out>/<parts...>``, by default ``<book root>/build/<parts...>``: every output of the book goes here.

    With ``create`` the folder is made and checked writable. Refused with a
    ``BookError``: a folder inside a notebooks folder (outputs would mix with the
    course), a path through a file, a folder that cannot be created or written.
    """
    base = Path(out) if out is not None else book.root / "build"
    folder = base.joinpath(*parts)
    what = f"--out {out}" if out is not None else f"the build folder {folder}"
    resolved = folder.resolve()
    for nb_dir in sorted({c.notebook.parent.resolve() for c in book.chapters}):
        if resolved == nb_dir or nb_dir in resolved.parents:
            raise BookError(f"{what}: {folder} is inside the notebooks folder {nb_dir}; "
                            "put the build outputs elsewhere (default: build/ beside book.yml)")
    existing = next(p for p in (resolved, *resolved.parents) if p.exists())
    if not existing.is_dir():
        raise BookError(f"{what}: {existing} is a file, not a folder; pass a folder path")
    if not create:
        return folder
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise BookError(f"{what}: cannot create {folder} ({exc.strerror}); pass a folder you can write to") from None
    if not os.access(folder, os.W_OK | os.X_OK):
        raise BookError(f"{what}: {folder} is not writable; pass a folder you can write to")
    return folder
