"""``book.yml``: the course's table of contents, each chapter's parameters and the named run profiles.

Schema (all keys required unless marked optional)::

    title: Quantizing PyTorch models
    profiles:                      # every profile a chapter may use; `full` is implicit
      smoke: small values that run each chapter in seconds
    chapters:
      - id: mnist-cnn              # unique, lowercase, used by --only and in results.json
        title: PTQ and QAT on a small CNN
        notebook: notebooks/04_mnist_ptq_qat.ipynb   # relative to book.yml
        summary: one line
        parameters:                # exactly the names of the notebook's `parameters` cell
          bits:
            type: int              # int | float | str | bool
            default: 8             # must equal the notebook's default
            choices: [2, 3, 4, 6, 8]   # optional: allowed values
            range: [1, 16]         # optional: inclusive [lo, hi] for int/float (null = unbounded)
            nullable: false        # optional: whether None is allowed (true when the default is None)
            help: bit-width of the weights
        profiles:                  # optional: overrides per profile; `full` = the notebook defaults
          smoke: {bits: 4}

``load_book`` checks all of it against the notebooks and raises one
``BookError`` listing every problem with what to do about it.
"""

from __future__ import annotations

import ast
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Mapping

import nbformat
import yaml

__all__ = [
    "BookError", "Parameter", "Chapter", "Book", "load_book", "find_book",
    "notebook_parameters", "parse_value", "parse_assignments", "stanza", "FULL", "TYPES",
]

FULL = "full"
TYPES: dict[str, type] = {"int": int, "float": float, "str": str, "bool": bool}
_ID = re.compile(r"^[a-z0-9][a-z0-9_-]*$")
_TRUE, _FALSE = {"true", "yes", "1", "on"}, {"false", "no", "0", "off"}
_NULL = {"none", "null"}


class BookError(ValueError):
    """book.yml, a notebook or a requested run is inconsistent; the message lists every problem."""

    def __init__(self, problems: str | Iterable[str]):
        self.problems = [problems] if isinstance(problems, str) else list(problems)
        super().__init__("\n".join(f"- {p}" for p in self.problems) if len(self.problems) > 1 else self.problems[0])


@dataclass(frozen=True)
class Parameter:
    """One papermill parameter of a chapter, as declared in book.yml."""

    name: str
    type: str
    default: Any
    help: str = ""
    choices: tuple | None = None
    range: tuple | None = None
    nullable: bool = False

    def problem(self, value: Any) -> str | None:
        """Why ``value`` is not acceptable for this parameter, or ``None`` if it is."""
        if value is None:
            return None if self.nullable else f"{self.name} must not be None (it is a {self.type})"
        kind = TYPES[self.type]
        if isinstance(value, bool) and kind is not bool or not isinstance(value, kind) and not (
            kind is float and isinstance(value, int) and not isinstance(value, bool)
        ):
            return f"{self.name} = {value!r} has type {type(value).__name__}, expected {self.type}"
        if self.choices is not None and value not in self.choices:
            return f"{self.name} = {value!r} is not allowed; choose one of {', '.join(map(repr, self.choices))}"
        if self.range is not None:
            lo, hi = self.range
            if (lo is not None and value < lo) or (hi is not None and value > hi):
                return f"{self.name} = {value!r} is out of range [{lo}, {hi}]"
        return None

    def parse(self, text: str) -> Any:
        """The value of a command-line string (``"4"``, ``"mnist"``, ``"true"``) for this parameter, checked."""
        value = parse_value(text, self.type, nullable=self.nullable)
        problem = self.problem(value)
        if problem:
            raise BookError(problem)
        return value

    def describe(self) -> str:
        allowed = (
            f" one of {', '.join(map(str, self.choices))}" if self.choices is not None
            else f" in [{self.range[0]}, {self.range[1]}]" if self.range is not None else ""
        )
        return f"{self.name} ({self.type}{allowed}; default {self.default!r}): {self.help}"


@dataclass(frozen=True)
class Chapter:
    """One chapter: a notebook, its parameters and its per-profile overrides."""

    id: str
    title: str
    notebook: Path
    summary: str
    parameters: dict[str, Parameter] = field(default_factory=dict)
    profiles: dict[str, dict[str, Any]] = field(default_factory=dict)

    def values(self, profile: str = FULL, overrides: Mapping[str, Any] | None = None) -> dict[str, Any]:
        """The parameter values of a run: the overrides of ``profile``, then ``overrides`` (only non-defaults)."""
        values = dict(self.profiles.get(profile, {}))
        values.update(overrides or {})
        return values

    def effective(self, profile: str = FULL, overrides: Mapping[str, Any] | None = None) -> dict[str, Any]:
        """All parameters of a run: notebook defaults updated by :meth:`values`."""
        out = {name: p.default for name, p in self.parameters.items()}
        out.update(self.values(profile, overrides))
        return out


@dataclass(frozen=True)
class Book:
    """The loaded, validated book.yml."""

    path: Path
    title: str
    chapters: list[Chapter]
    profiles: dict[str, str]

    @property
    def root(self) -> Path:
        return self.path.parent

    def chapter(self, chapter_id: str) -> Chapter:
        for ch in self.chapters:
            if ch.id == chapter_id:
                return ch
        raise BookError(f"unknown chapter id {chapter_id!r}; the chapters are: {', '.join(c.id for c in self.chapters)}")

    def check_profile(self, profile: str) -> None:
        if profile not in self.profiles:
            raise BookError(f"unknown profile {profile!r}; choose one of {', '.join(self.profiles)} (declared under `profiles:` in {self.path.name})")


def parse_value(text: str, type_name: str, *, nullable: bool = False) -> Any:
    """Convert a command-line string to a value of ``type_name`` (int, float, str, bool)."""
    if nullable and text.strip().lower() in _NULL:
        return None
    try:
        if type_name == "int":
            return int(text)
        if type_name == "float":
            return float(text)
        if type_name == "bool":
            low = text.strip().lower()
            if low in _TRUE | _FALSE:
                return low in _TRUE
            raise ValueError(text)
    except ValueError:
        raise BookError(f"{text!r} is not a valid {type_name}") from None
    return text


def parse_assignments(items: Iterable[str], *, lists: bool = False) -> dict[str, str | list[str]]:
    """``["bits=4", "dataset=mnist"]`` → ``{"bits": "4", ...}``; with ``lists`` split values on commas."""
    out: dict[str, Any] = {}
    for item in items:
        name, sep, value = item.partition("=")
        name = name.strip()
        if not sep or not name:
            raise BookError(f"-p {item!r}: write parameters as name=value (e.g. -p bits=4)")
        if name in out:
            raise BookError(f"-p {name} is given twice; give each parameter once" + (" with comma-separated values" if lists else ""))
        out[name] = [v.strip() for v in value.split(",")] if lists else value
        if lists and any(v == "" for v in out[name]):
            raise BookError(f"-p {item!r}: empty value in the list; write e.g. -p {name}=2,4,8")
    return out


def notebook_parameters(path: Path) -> dict[str, tuple[Any, str]]:
    """``{name: (default, help comment)}`` of a notebook's cell tagged ``parameters``.

    The cell is read with Python's own parser (papermill's line parser trips on
    comments containing ``=`` or quotes). Raises ``BookError`` if the notebook has
    no (or several) such cells, the cell is not valid Python, or a default is not
    a literal.
    """
    import io
    import tokenize

    nb = nbformat.read(path, as_version=4)
    tagged = [c for c in nb.cells if "parameters" in c.get("metadata", {}).get("tags", [])]
    if len(tagged) != 1:
        raise BookError(f"{path}: has {len(tagged)} cells tagged 'parameters'; tag exactly one (its first code cell)")
    source = tagged[0].source
    try:
        tree = ast.parse(source)
        comments = {t.start[0]: t.string.lstrip("#").strip()
                    for t in tokenize.generate_tokens(io.StringIO(source).readline) if t.type == tokenize.COMMENT}
    except (SyntaxError, tokenize.TokenError) as exc:
        raise BookError(f"{path}: the parameters cell is not valid Python ({exc})") from None
    out = {}
    for node in tree.body:
        target = node.targets[0] if isinstance(node, ast.Assign) and len(node.targets) == 1 else getattr(node, "target", None)
        if not isinstance(node, (ast.Assign, ast.AnnAssign)) or not isinstance(target, ast.Name) or node.value is None:
            raise BookError(f"{path}: line {node.lineno} of the parameters cell is not a plain `name = value  # help` assignment")
        try:
            default = ast.literal_eval(node.value)
        except ValueError:
            raise BookError(f"{path}: parameter {target.id} = {ast.unparse(node.value)} is not a literal; write a plain value (number, string, bool, None)") from None
        out[target.id] = (default, comments.get(node.end_lineno, comments.get(node.lineno, "")))
    return out


def find_book(start: Path | str | None = None) -> Path:
    """The nearest ``book.yml`` in ``start`` (default: the working directory) or its parents."""
    here = Path(start or Path.cwd()).resolve()
    for d in (here, *here.parents):
        if (d / "book.yml").is_file():
            return d / "book.yml"
    raise BookError(f"no book.yml in {here} or its parents; run from the course checkout or pass --book PATH")


def _parameter(where: str, name: str, spec: Any, problems: list[str]) -> Parameter | None:
    if not isinstance(spec, dict):
        problems.append(f"{where}: parameter {name} must be a mapping with type, default, help")
        return None
    unknown = set(spec) - {"type", "default", "help", "choices", "range", "nullable"}
    if unknown:
        problems.append(f"{where}: parameter {name} has unknown keys {sorted(unknown)}; allowed: type, default, help, choices, range, nullable")
    type_name = spec.get("type")
    if type_name not in TYPES:
        problems.append(f"{where}: parameter {name} has type {type_name!r}; use one of {', '.join(TYPES)}")
        return None
    if "default" not in spec:
        problems.append(f"{where}: parameter {name} has no default; copy it from the notebook's parameters cell")
        return None
    choices = spec.get("choices")
    if choices is not None and not isinstance(choices, list):
        problems.append(f"{where}: parameter {name}: choices must be a list")
        choices = None
    rng = spec.get("range")
    if rng is not None and not (isinstance(rng, list) and len(rng) == 2 and type_name in ("int", "float")):
        problems.append(f"{where}: parameter {name}: range must be [lo, hi] and only for int/float parameters")
        rng = None
    p = Parameter(
        name=name, type=type_name, default=spec["default"], help=str(spec.get("help") or ""),
        choices=tuple(choices) if choices is not None else None,
        range=tuple(rng) if rng is not None else None,
        nullable=bool(spec.get("nullable", spec["default"] is None)),
    )
    if not p.help:
        problems.append(f"{where}: parameter {name} has no help text; add `help:` (one line)")
    for c in p.choices or ():
        bad = Parameter(name, p.type, None, nullable=p.nullable).problem(c)
        if bad:
            problems.append(f"{where}: choice of {bad}")
    bad = p.problem(p.default)
    if bad:
        problems.append(f"{where}: default {bad}")
    return p


def _chapter(book_dir: Path, i: int, raw: Any, profiles: Mapping[str, str], problems: list[str], check_notebooks: bool) -> Chapter | None:
    where = f"chapters[{i}]"
    if not isinstance(raw, dict):
        problems.append(f"{where}: must be a mapping with id, title, notebook, summary, parameters")
        return None
    cid = raw.get("id")
    if not isinstance(cid, str) or not _ID.match(cid):
        problems.append(f"{where}: id {cid!r} must be lowercase letters, digits, '-' or '_'")
        return None
    where = f"chapter {cid!r}"
    missing = [k for k in ("title", "notebook", "summary") if not raw.get(k)]
    if missing:
        problems.append(f"{where}: missing {', '.join(missing)}")
    unknown = set(raw) - {"id", "title", "notebook", "summary", "parameters", "profiles"}
    if unknown:
        problems.append(f"{where}: unknown keys {sorted(unknown)}")
    params = {}
    raw_params = raw.get("parameters") or {}
    if not isinstance(raw_params, dict):
        problems.append(f"{where}: parameters must be a mapping name -> {{type, default, help}}")
        raw_params = {}
    for name, spec in raw_params.items():
        p = _parameter(where, str(name), spec, problems)
        if p is not None:
            params[p.name] = p
    notebook = book_dir / str(raw.get("notebook", ""))
    if check_notebooks and raw.get("notebook"):
        if not notebook.is_file():
            problems.append(f"{where}: notebook {raw['notebook']} does not exist (paths are relative to book.yml); fix the path or add the notebook")
        else:
            try:
                in_nb = notebook_parameters(notebook)
            except BookError as exc:
                problems.extend(f"{where}: {p}" for p in exc.problems)
            else:
                for name in params.keys() - in_nb.keys():
                    problems.append(f"{where}: parameter {name} is not in the parameters cell of {raw['notebook']}; remove it from book.yml or add it to the notebook")
                for name in in_nb.keys() - raw_params.keys():
                    problems.append(f"{where}: the notebook's parameter {name} = {in_nb[name][0]!r} is missing from book.yml; add it (`python -m qhelpers.book stanza {raw['notebook']}` prints an entry)")
                for name in params.keys() & in_nb.keys():
                    nb_default, p = in_nb[name][0], params[name]
                    if nb_default != p.default or type(nb_default) is not type(p.default) and not (p.type == "float" and isinstance(nb_default, (int, float))):
                        problems.append(f"{where}: parameter {name}: book.yml default {p.default!r} differs from the notebook's {nb_default!r}; make them equal")
    chapter_profiles = {}
    raw_profiles = raw.get("profiles") or {}
    if not isinstance(raw_profiles, dict):
        problems.append(f"{where}: profiles must be a mapping profile -> {{parameter: value}}")
        raw_profiles = {}
    for prof, values in raw_profiles.items():
        if prof not in profiles:
            problems.append(f"{where}: unknown profile {prof!r}; declare it under the top-level `profiles:` (known: {', '.join(profiles)})")
            continue
        if prof == FULL and values:
            problems.append(f"{where}: profile `full` means the notebook defaults and takes no values; change the defaults instead")
            continue
        if not isinstance(values, dict):
            problems.append(f"{where}: profile {prof} must be a mapping parameter -> value")
            continue
        for name, value in values.items():
            if name not in params:
                problems.append(f"{where}: profile {prof} sets {name}, which is not a parameter of this chapter")
            elif (bad := params[name].problem(value)) is not None:
                problems.append(f"{where}: profile {prof}: {bad}")
        chapter_profiles[prof] = dict(values)
    return Chapter(id=cid, title=str(raw.get("title", "")), notebook=notebook, summary=str(raw.get("summary", "")),
                   parameters=params, profiles=chapter_profiles)


def load_book(path: Path | str | None = None, *, check_notebooks: bool | Iterable[str] = True) -> Book:
    """Read and validate ``book.yml`` (found with :func:`find_book` when ``path`` is None).

    With ``check_notebooks`` every notebook must exist and its ``parameters``
    cell must declare exactly the parameters of book.yml with the same defaults;
    given chapter ids, only those chapters' notebooks are checked (``run --only``).
    """
    only = None if isinstance(check_notebooks, bool) else set(check_notebooks)
    path = Path(path) if path is not None else find_book()
    if not path.is_file():
        raise BookError(f"{path} does not exist; pass the path of the course's book.yml")
    try:
        raw = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        raise BookError(f"{path} is not valid YAML: {exc}") from None
    if not isinstance(raw, dict):
        raise BookError(f"{path}: expected a mapping with title, profiles, chapters")
    problems: list[str] = []
    if not raw.get("title"):
        problems.append("missing `title:` (the course title)")
    profiles = raw.get("profiles") or {}
    if not isinstance(profiles, dict):
        problems.append("`profiles:` must be a mapping name -> one-line description")
        profiles = {}
    profiles = {FULL: "the notebook defaults", **{str(k): str(v) for k, v in profiles.items()}}
    raw_chapters = raw.get("chapters")
    if not isinstance(raw_chapters, list) or not raw_chapters:
        problems.append("`chapters:` must be a non-empty list")
        raw_chapters = []
    chapters: list[Chapter] = []
    for i, rc in enumerate(raw_chapters):
        check = bool(check_notebooks) if only is None else isinstance(rc, dict) and rc.get("id") in only
        ch = _chapter(path.parent, i, rc, profiles, problems, check)
        if ch is None:
            continue
        if any(c.id == ch.id for c in chapters):
            problems.append(f"chapter {ch.id!r}: duplicate id; each chapter needs its own id")
            continue
        if any(c.notebook == ch.notebook for c in chapters):
            problems.append(f"chapter {ch.id!r}: notebook {ch.notebook.name} is already used by another chapter")
        chapters.append(ch)
    if problems:
        raise BookError([f"{path.name}: {p}" for p in problems])
    return Book(path=path.resolve(), title=str(raw["title"]), chapters=chapters, profiles=profiles)


def stanza(notebook: Path | str, chapter_id: str = "", root: Path | str | None = None) -> str:
    """A book.yml chapter entry for ``notebook``, read from its parameters cell (types and help inferred)."""
    notebook = Path(notebook)
    rel = notebook.resolve().relative_to(Path(root).resolve()) if root else notebook
    params = {}
    for name, (default, help_) in notebook_parameters(notebook).items():
        type_name = "str" if default is None else type(default).__name__
        entry: dict[str, Any] = {"type": type_name if type_name in TYPES else "str", "default": default, "help": help_ or "TODO"}
        params[name] = entry
    entry = {
        "id": chapter_id or re.sub(r"^\d+_", "", notebook.stem).replace("_", "-"),
        "title": "TODO", "notebook": str(rel), "summary": "TODO",
        "parameters": params, "profiles": {"smoke": {}},
    }
    return yaml.safe_dump([entry], sort_keys=False, allow_unicode=True, width=1000)
