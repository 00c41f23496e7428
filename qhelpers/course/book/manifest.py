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
        parameters:                # in the order of the notebook's `parameters` cell, which `sync` writes from them
          bits:
            type: int              # int | float | str | bool
            default: 8             # the notebook's default
            choices: [2, 3, 4, 6, 8]   # optional: allowed values
            range: [1, 16]         # optional: inclusive [lo, hi] for int/float (null = unbounded)
            path: folder           # optional, str only: folder | file, which must exist when the value is not ""
            nullable: false        # optional: whether None is allowed (true when the default is None)
            help: bit-width of the weights   # one line, no '=' (papermill reads the cell line by line)
          epochs:
            type: int
            default: 3
            size: true             # optional, int/float only: a size of the run; the chapter's claims hold at the
                                   # default or beyond (`configuration` is "full" when every size is), or with
                                   # size: all-is-0, 0 means "all" (above any other value; the help says "0 for all")
            full_from: 2           # optional, with size: the smallest full value if below the default
            help: training epochs
        profiles:                  # optional: overrides per profile; `full` = the notebook defaults
          smoke: {bits: 4}
        requires:                  # optional: rules between parameters, checked before a kernel starts
          - if: {weights: imagenet}          # when every named parameter has this value (or one of a list)
            then: imagenet_dir               # these str/nullable parameters must be set (not "" / None) ...
            message: pass -p imagenet_dir=PATH   # optional: what to do, shown with the refusal
          - {if: {mode: fast}, then: {bits: [4, 8]}}  # ... or must take one of these values

``load_book`` checks all of it against the notebooks and raises one
``BookError`` listing every problem with what to do about it.

book.yml is the one declaration of each parameter. A notebook's ``parameters``
cell is generated from it (:func:`parameters_cell`: one ``name = default  # help``
line per parameter, in book.yml's order; ``python -m qhelpers.course.book sync``
writes it), and ``load_book`` reports any drift of name, order, default, type or
help (:func:`parameters_drift`). The command line checks ``-p`` values with
:meth:`Parameter.problem`, and a notebook checks its own parameters with the same
rules in one call, right after its parameters cell, then asks whether its run is
the full one its claims are stated for (the ``size:`` parameters)::

    course.book.check_parameters("mnist-cnn", globals())  # (from qhelpers import course)
    FULL = course.book.configuration("mnist-cnn", globals()) == "full"
"""

from __future__ import annotations

import ast
import difflib
import keyword
import math
import os
import re
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterable, Mapping

import yaml

if TYPE_CHECKING:
    import nbformat

__all__ = [
    "BookError", "Parameter", "Rule", "Chapter", "Book", "load_book", "find_book",
    "notebook_parameters", "parse_value", "parse_assignments", "stanza", "check_parameters", "configuration",
    "parameters_cell", "parameters_drift", "sync", "FULL", "QUICK",
]

FULL = "full"
QUICK = "quick"  # the configuration of a run with a size parameter below its full value (see Parameter.size)
ALL_IS_0 = "all-is-0"  # `size: all-is-0`: a size parameter whose 0 means "all" (above any other value)
SYNC = "python -m qhelpers.course.book sync"
_SYNC_HINT = f"book.yml is the source: `{SYNC}` rewrites the notebook's parameters cell from it"
TYPES: dict[str, type] = {"int": int, "float": float, "str": str, "bool": bool}
_ID = re.compile(r"^[a-z0-9][a-z0-9_-]*$")
_TRUE, _FALSE = {"true", "yes", "1", "on"}, {"false", "no", "0", "off"}
_NULL = {"none", "null"}
# Numbers on the command line: ASCII digits only (Python's int()/float() also read other scripts' digits and '_').
_ASCII_INT = re.compile(r"[ \t]*[+-]?[0-9]+[ \t]*", re.ASCII)
_ASCII_FLOAT = re.compile(r"[ \t]*[+-]?(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?[ \t]*", re.ASCII)
_FLOAT_WORDS = {"inf", "infinity", "nan"}  # read, then refused as not finite
_ASCII_ONLY = "write numbers with the ASCII digits 0-9 only (no '_' separators, no digits of other scripts)"
_ASSIGNED = re.compile(r"^(?:[a-z0-9][a-z0-9_-]*\.)?[A-Za-z_]\w*$")  # name or chapter.name of -p


class BookError(ValueError):
    """book.yml, a notebook or a requested run is inconsistent; the message lists every problem."""

    def __init__(self, problems: str | Iterable[str]):
        self.problems = [problems] if isinstance(problems, str) else list(problems)
        super().__init__("\n".join(f"- {p}" for p in self.problems) if len(self.problems) > 1 else self.problems[0])


def did_you_mean(word: str, options: Iterable[Any]) -> str:
    """``"; did you mean 'x'?"`` for the option closest to ``word``, or ``""``."""
    close = difflib.get_close_matches(str(word), [str(o) for o in options], n=1, cutoff=0.6)
    return f"; did you mean {close[0]!r}?" if close else ""


def _same(a: Any, b: Any) -> bool:
    """Equal and both or neither a bool (``True == 1`` is not a match for a parameter)."""
    return a == b and isinstance(a, bool) == isinstance(b, bool)


def _show(values: Iterable[Any]) -> str:
    return ", ".join(map(repr, values))


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
    path: str | None = None  # "folder" or "file": a str parameter naming one (checked to exist when set, not "")
    size: str | None = None  # None, "true" or "all-is-0": a size of the run (see `full`), 0 meaning all with all-is-0
    full_from: Any = None  # with size: the smallest value of a full run (None: the default)

    def magnitude(self, value: Any) -> int | float:
        """``value`` of a size parameter as a number to compare: 0 is infinite with ``size: all-is-0``."""
        return math.inf if self.size == ALL_IS_0 and value == 0 else value

    def full(self, value: Any) -> bool:
        """Whether ``value`` of this size parameter is a full run's: at least ``full_from`` (or the default)."""
        threshold = self.default if self.full_from is None else self.full_from
        return self.size is None or self.magnitude(value) >= self.magnitude(threshold)

    def cell_value(self) -> Any:
        """The default as the notebook's parameters cell writes it (a float parameter's ``1`` as ``1.0``)."""
        if self.type == "float" and isinstance(self.default, int) and not isinstance(self.default, bool):
            return float(self.default)
        return self.default

    def cell_line(self) -> str:
        """This parameter's line of the notebook's parameters cell: ``name = <literal>  # help``."""
        return f"{self.name} = {literal(self.cell_value())}  # {self.help}"

    def problem(self, value: Any) -> str | None:
        """Why ``value`` is not acceptable for this parameter, or ``None`` if it is."""
        if value is None:
            return None if self.nullable else f"{self.name} must not be None (it is a {self.type})"
        kind = TYPES[self.type]
        if isinstance(value, bool) and kind is not bool or not isinstance(value, kind) and not (
            kind is float and isinstance(value, int) and not isinstance(value, bool)
        ):
            return f"{self.name} = {value!r} has type {type(value).__name__}, expected {self.type}"
        if isinstance(value, float) and not math.isfinite(value):
            return f"{self.name} = {value!r} is not a finite number; give a finite {self.type}"
        if self.choices is not None and not any(_same(value, c) for c in self.choices):
            return f"{self.name} = {value!r} is not allowed; choose one of {_show(self.choices)}"
        if self.range is not None:
            lo, hi = self.range
            if (lo is not None and value < lo) or (hi is not None and value > hi):
                return f"{self.name} = {value!r} is out of range [{lo}, {hi}]"
        if self.path is not None and isinstance(value, str) and value != "":
            where = Path(value).expanduser()
            if not where.exists():
                return (f"{self.name} = {value!r}: {where.absolute()} does not exist; give the path of an existing "
                        f"{self.path} ({self.help or 'see `python -m qhelpers.course.book list`'})")
            if self.path == "folder" and not where.is_dir():
                return f"{self.name} = {value!r}: {where.absolute()} is a file, not a folder; give the folder's path"
            if self.path == "file" and not where.is_file():
                return f"{self.name} = {value!r}: {where.absolute()} is a folder, not a file; give the file's path"
        return None

    def parse(self, text: str) -> Any:
        """The value of a command-line string (``"4"``, ``"mnist"``, ``"true"``) for this parameter, checked.

        A path parameter's relative path is made absolute here, from the working directory of the command line
        (the notebook's kernel runs in the notebook's folder).
        """
        value = parse_value(text, self.type, nullable=self.nullable)
        if self.path is not None and isinstance(value, str) and value.strip():
            value = str(Path(value).expanduser().absolute())
        problem = self.problem(value)
        if problem:
            raise BookError(problem)
        return value

    def describe(self) -> str:
        allowed = (
            f" one of {', '.join(map(str, self.choices))}" if self.choices is not None
            else f" in [{self.range[0]}, {self.range[1]}]" if self.range is not None else ""
        )
        kind = f"{self.type}, the path of a {self.path}" if self.path else self.type
        size = ""
        if self.size is not None:
            threshold = self.default if self.full_from is None else self.full_from
            size = ("; a size of the run: full at 0 = all" if self.magnitude(threshold) == math.inf else
                    f"; a size of the run: full from {threshold!r}" + ("; 0 = all" if self.size == ALL_IS_0 else ""))
        return f"{self.name} ({kind}{allowed}; default {self.default!r}{size}): {self.help}"


@dataclass(frozen=True)
class Rule:
    """A ``requires:`` entry: when every ``when`` parameter has one of its values, each ``then`` parameter
    must be set (``None`` in ``then``: not ``""``/``None``) or have one of its values."""

    when: dict[str, tuple]
    then: dict[str, tuple | None]
    message: str = ""

    def problem(self, values: Mapping[str, Any]) -> str | None:
        """Why the (complete) parameter ``values`` break this rule, or ``None``."""
        if not all(any(_same(values.get(n), v) for v in vs) for n, vs in self.when.items()):
            return None
        for name, allowed in self.then.items():
            value = values.get(name)
            ok = value not in (None, "") if allowed is None else any(_same(value, v) for v in allowed)
            if not ok:
                cond = " and ".join(f"{n}={vs[0]!r}" if len(vs) == 1 else f"{n} in ({_show(vs)})" for n, vs in self.when.items())
                need = "must be set" if allowed is None else f"must be one of {_show(allowed)}"
                return f"with {cond}, {name} {need} (it is {value!r})" + (f": {self.message}" if self.message else "")
        return None


@dataclass(frozen=True)
class Chapter:
    """One chapter: a notebook, its parameters, its per-profile overrides and the rules between its parameters."""

    id: str
    title: str
    notebook: Path
    summary: str
    parameters: dict[str, Parameter] = field(default_factory=dict)
    profiles: dict[str, dict[str, Any]] = field(default_factory=dict)
    requires: tuple[Rule, ...] = ()
    summary_zh: str = ""  # the summary in Chinese, shown in the book beside `summary`
    headline: dict[str, Any] = field(default_factory=dict)  # the results dashboard's table (checked by dashboard.py)

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

    def rule_problems(self, profile: str = FULL, overrides: Mapping[str, Any] | None = None) -> list[str]:
        """The ``requires:`` rules that the parameters of a run break (checked before its kernel starts)."""
        values = self.effective(profile, overrides)
        return [p for r in self.requires if (p := r.problem(values))]

    def configuration(self, values: Mapping[str, Any]) -> str:
        """``"full"`` if every size parameter (``size:`` in book.yml) of ``values`` is a full run's, else ``"quick"``.

        ``values`` holds every parameter (e.g. :meth:`effective`); a chapter without size parameters is always full.
        """
        return FULL if all(p.full(values[p.name]) for p in self.parameters.values() if p.size is not None) else QUICK


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
        raise BookError(self.unknown_chapter(chapter_id))

    def unknown_chapter(self, text: str) -> str:
        """What to say about a chapter id that is not one (also matching a notebook's file name, e.g. ``04_mnist``)."""
        by_file = [c.id for c in self.chapters if text in (c.notebook.name, c.notebook.stem, str(c.notebook.relative_to(self.root)))
                   or c.notebook.stem.startswith(f"{text}_")]
        hint = f"; the chapter of that notebook is {by_file[0]!r}" if by_file else did_you_mean(text, [c.id for c in self.chapters])
        return f"unknown chapter id {text!r}{hint}; the chapters are: {', '.join(c.id for c in self.chapters)}"

    def check_profile(self, profile: str) -> None:
        if profile not in self.profiles:
            raise BookError(f"unknown profile {profile!r}{did_you_mean(profile, self.profiles)}; choose one of "
                            f"{', '.join(self.profiles)} (declared under `profiles:` in {self.path.name})")


def literal(value: Any) -> str:
    """``value`` as a Python literal of a parameters cell: ``repr``, but a string in double quotes when it can be."""
    text = repr(value)
    if isinstance(value, str) and '"' not in value and text.startswith("'"):
        text = f'"{text[1:-1]}"'  # (no ' inside either: repr would have used double quotes)
    return text


def parameters_cell(parameters: Iterable[Parameter]) -> str:
    """The source of a notebook's ``parameters`` cell: one ``name = default  # help`` line per parameter, in order."""
    return "\n".join(p.cell_line() for p in parameters)


def parameters_drift(parameters: Mapping[str, Parameter], source: str, *, notebook: str = "the notebook",
                     declared: Iterable[str] | None = None, hint: bool = True) -> list[str]:
    """How a notebook's ``parameters`` cell ``source`` differs from book.yml's ``parameters`` (``[]``: it does not).

    Each problem names the kind of drift (a name, the order, a default, a type, a help text, or else the layout)
    and, with ``hint``, ends with what to run. ``declared`` lists every name book.yml declares (default: the keys
    of ``parameters``); a declared name missing from ``parameters`` (its declaration is broken, which the loader
    reports) is left out of the comparison of defaults and help.
    """
    declared = list(parameters if declared is None else declared)
    try:
        found = _parse_parameters_cell(source, notebook)
    except BookError as exc:
        return [f"{p}; or let `{SYNC}` write the cell from book.yml" if hint else p for p in exc.problems]
    problems = []
    for name in declared:
        if name not in found:
            problems.append(f"parameter {name} is not in the parameters cell of {notebook}")
    for name, (value, _) in found.items():
        if name not in declared:
            problems.append(f"the notebook's parameter {name} = {value!r} is missing from book.yml; declare it there "
                            f"(`python -m qhelpers.course.book stanza {notebook}` prints an entry), or let sync remove it")
    in_book = [n for n in declared if n in found]
    in_cell = [n for n in found if n in declared]
    if in_book != in_cell:
        problems.append(f"the parameters cell of {notebook} lists {', '.join(in_cell)}; book.yml's order is {', '.join(in_book)}")
    for name, p in parameters.items():
        if name not in found:
            continue
        value, help_ = found[name]
        expected = p.cell_value()
        if value is not None and expected is not None and type(value) is not type(expected):
            problems.append(f"parameter {name}: the notebook's default {value!r} has type {type(value).__name__}, "
                            f"book.yml's {expected!r} type {p.type}")
        elif not _same(value, expected):
            problems.append(f"parameter {name}: book.yml default {p.default!r} differs from the notebook's {value!r}")
        if help_ != p.help:
            problems.append(f"parameter {name}: the notebook's help {help_!r} differs from book.yml's {p.help!r}")
    if not problems and list(parameters) == declared and source != parameters_cell(parameters.values()):
        problems.append(f"the parameters cell of {notebook} is not laid out as book.yml writes it (one "
                        "`name = default  # help` line per parameter, nothing else)")
    return [f"{p}; {_SYNC_HINT}" if hint else p for p in problems]


def sync(book: Book, *, write: bool = True) -> list[tuple[Chapter, list[str]]]:
    """Write each chapter's ``parameters`` cell from book.yml (:func:`parameters_cell`) where it differs.

    Only the source of those cells changes: outputs, metadata and every other cell are written back as they
    were read, each notebook atomically. Returns ``(chapter, drift)`` for every cell that differed (rewritten
    unless ``write`` is false). A notebook that cannot be read, or that has no or several parameters cells, is
    a ``BookError`` raised before anything is written.
    """
    import nbformat

    from .files import write_text

    pending, problems = [], []
    for chapter in book.chapters:
        rel = chapter.notebook.relative_to(book.root)
        try:
            nb = read_notebook(chapter.notebook)
            cell = parameters_cell_of(nb, rel)
        except BookError as exc:
            problems.extend(f"chapter {chapter.id!r}: {p}" for p in exc.problems)
            continue
        source = parameters_cell(chapter.parameters.values())
        if cell.source != source:
            drift = parameters_drift(chapter.parameters, cell.source, notebook=str(rel), hint=False)
            cell.source = source
            pending.append((chapter, nb, drift))
    if problems:
        raise BookError(problems)
    if write:
        for chapter, nb, _ in pending:
            write_text(chapter.notebook, nbformat.writes(nb))
    return [(chapter, drift) for chapter, _, drift in pending]


def parse_value(text: str, type_name: str, *, nullable: bool = False) -> Any:
    """Convert a command-line string to a value of ``type_name`` (int, float, str, bool)."""
    if nullable and text.strip().lower() in _NULL:
        return None
    try:
        if type_name == "int":
            value = int(text)
            if not _ASCII_INT.fullmatch(text):  # int() also reads '٨', '１６' and '1_0'
                raise BookError(f"{text!r} is not a valid int: {_ASCII_ONLY}, e.g. 8")
            return value
        if type_name == "float":
            value = float(text)
            if not _ASCII_FLOAT.fullmatch(text) and text.strip().lower().lstrip("+-") not in _FLOAT_WORDS:
                raise BookError(f"{text!r} is not a valid float: {_ASCII_ONLY}, e.g. 0.5 or 1e-3")
            if not math.isfinite(value):
                raise BookError(f"{text!r} is not a finite number; give a finite float")
            return value
        if type_name == "bool":
            low = text.strip().lower()
            if low in _TRUE | _FALSE:
                return low in _TRUE
            raise ValueError(text)
    except BookError:
        raise
    except ValueError:
        kind = {"int": "a whole number", "float": "a number", "bool": "true/false, yes/no, on/off or 1/0"}[type_name]
        raise BookError(f"{text!r} is not a valid {type_name} ({kind})") from None
    return text


def parse_assignments(items: Iterable[str], *, lists: bool = False) -> dict[str, str | list[str]]:
    """``["bits=4", "dataset=mnist"]`` → ``{"bits": "4", ...}``; with ``lists`` split values on commas."""
    out: dict[str, Any] = {}
    example = "V1,V2,V3" if lists else "VALUE"
    for item in items:
        name, sep, value = item.partition("=")
        name = name.strip()
        if not sep or not name:
            raise BookError(f"-p {item!r}: write parameters as name=value (e.g. -p bits={example})")
        if not _ASSIGNED.match(name):
            raise BookError(f"-p {item!r}: {name!r} is not a parameter name; write name=value or chapter.name=value")
        if name in out:
            raise BookError(f"-p {name} is given twice; give each parameter once" + (" with comma-separated values" if lists else ""))
        if not value.strip():
            raise BookError(f"-p {item!r}: no value after '='; write e.g. -p {name}={example}, or leave it out to keep the default")
        out[name] = [v.strip() for v in value.split(",")] if lists else value
        if lists and any(v == "" for v in out[name]):
            raise BookError(f"-p {item!r}: empty value in the list; write e.g. -p {name}={example}")
    return out


def read_notebook(path: Path | str) -> nbformat.NotebookNode:
    """The notebook at ``path`` (as nbformat 4); ``BookError`` saying why if it cannot be read or is not a notebook."""
    import nbformat  # here, not at the top: chapters import this module and need no notebook reader

    path = Path(path)
    if path.is_dir():
        raise BookError(f"{path} is a folder; give the path of a .ipynb notebook")
    if not path.is_file():
        raise BookError(f"{path} does not exist; give the path of a .ipynb notebook")
    errors: dict[str, Exception] = {}
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # e.g. MissingIDFieldWarning: noise for a notebook that is only read
            nb = nbformat.read(path, as_version=4, capture_validation_error=errors)
    except OSError as exc:
        raise BookError(f"{path}: cannot read it ({exc.strerror})") from None
    except Exception as exc:  # nbformat raises NotJSONError, UnicodeDecodeError, AttributeError, ... for a non-notebook
        first = str(exc).strip().splitlines()[0][:120] if str(exc).strip() else type(exc).__name__
        raise BookError(f"{path} is not a Jupyter notebook ({first}); give the path of a .ipynb notebook") from None
    if "ValidationError" in errors:
        first = str(errors["ValidationError"]).strip().splitlines()[0][:120]
        raise BookError(f"{path} is not a valid Jupyter notebook ({first}); open and save it in JupyterLab to repair it")
    return nb


def notebook_parameters(path: Path) -> dict[str, tuple[Any, str]]:
    """``{name: (default, help comment)}`` of a notebook's cell tagged ``parameters``.

    The cell is read with Python's own parser (papermill's line parser trips on
    comments containing ``=`` or quotes). Raises ``BookError`` if the notebook has
    no (or several) such cells, the cell is not valid Python, or a default is not
    a literal.
    """
    return _parse_parameters_cell(parameters_cell_of(read_notebook(path), path).source, path)


def parameters_cell_of(nb: nbformat.NotebookNode, path: Path | str) -> nbformat.NotebookNode:
    """The one cell of ``nb`` (read from ``path``) tagged ``parameters``; ``BookError`` if it has none or several."""
    tagged = [c for c in nb.cells if "parameters" in c.get("metadata", {}).get("tags", [])]
    if len(tagged) != 1:
        raise BookError(f"{path}: has {len(tagged)} cells tagged 'parameters'; tag exactly one (its first code cell)")
    return tagged[0]


def _parse_parameters_cell(source: str, path: Path | str) -> dict[str, tuple[Any, str]]:
    """``{name: (default, help comment)}`` of the source of a parameters cell (see :func:`notebook_parameters`)."""
    import io
    import tokenize

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


def _number(x: Any) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)


def _parameter(where: str, name: str, spec: Any, problems: list[str]) -> Parameter | None:
    if not name.isidentifier() or keyword.iskeyword(name):
        problems.append(f"{where}: parameter name {name!r} is not a Python variable name; use the name from the notebook's parameters cell")
        return None
    if not isinstance(spec, dict):
        problems.append(f"{where}: parameter {name} must be a mapping with type, default, help")
        return None
    unknown = set(spec) - {"type", "default", "help", "choices", "range", "nullable", "path", "size", "full_from"}
    if unknown:
        problems.append(f"{where}: parameter {name} has unknown keys {sorted(map(str, unknown))}; allowed: type, default, help, "
                        "choices, range, nullable, path, size, full_from")
    type_name = spec.get("type")
    if type_name not in TYPES:
        problems.append(f"{where}: parameter {name} has type {type_name!r}; use one of {', '.join(TYPES)}")
        return None
    if "default" not in spec:
        problems.append(f"{where}: parameter {name} has no default; copy it from the notebook's parameters cell")
        return None
    choices = spec.get("choices")
    if choices is not None and not (isinstance(choices, list) and choices):
        problems.append(f"{where}: parameter {name}: choices must be a non-empty list, e.g. [2, 4, 8]")
        choices = None
    elif choices is not None and len({repr(c) for c in choices}) != len(choices):
        problems.append(f"{where}: parameter {name}: choices list a value twice; list each once")
    rng = spec.get("range")
    if rng is not None:
        if not (isinstance(rng, list) and len(rng) == 2 and type_name in ("int", "float")):
            problems.append(f"{where}: parameter {name}: range must be [lo, hi] and only for int/float parameters")
            rng = None
        elif not all(x is None or _number(x) for x in rng):
            problems.append(f"{where}: parameter {name}: range {rng} must hold two finite numbers (or null for no bound), e.g. [2, 16]")
            rng = None
        elif None not in rng and rng[0] > rng[1]:
            problems.append(f"{where}: parameter {name}: range {rng} is empty (lo > hi); write [lo, hi] with lo <= hi")
            rng = None
    nullable = spec.get("nullable", spec["default"] is None)
    if not isinstance(nullable, bool):
        problems.append(f"{where}: parameter {name}: nullable must be true or false, not {nullable!r}")
        nullable = False
    path = spec.get("path")
    if path is not None and (path not in ("folder", "file") or type_name != "str"):
        problems.append(f"{where}: parameter {name}: path must be `folder` or `file`, and only for a str parameter (got {path!r})")
        path = None
    help_ = str(spec.get("help") or "").strip()
    if "\n" in help_ or "\r" in help_ or "=" in help_:
        problems.append(f"{where}: parameter {name}: help {help_!r} must be one line without '=' (it is the comment of the "
                        "notebook's parameters cell, which papermill reads line by line); write e.g. '0 for all', 'for weights \"none\"'")
    size = spec.get("size")
    if size is False:
        size = None
    elif size is True:
        size = "true"
    elif size is not None and size != ALL_IS_0:
        problems.append(f"{where}: parameter {name}: size must be true (a size of the run: the claims hold at the default "
                        f"or beyond) or {ALL_IS_0} (the same, 0 meaning all), not {size!r}")
        size = None
    if size is not None and (type_name not in ("int", "float") or nullable):
        problems.append(f"{where}: parameter {name}: size is only for an int or float parameter that is never None "
                        "(a count of images, epochs, steps...)")
        size = None
    if size == ALL_IS_0 and "0 for all" not in help_:
        problems.append(f"{where}: parameter {name}: size: {ALL_IS_0} means 0 is all; say so in its help ('... 0 for all ...')")
    elif size == "true" and "0 for all" in help_:
        problems.append(f"{where}: parameter {name}: its help says 0 is all: write size: {ALL_IS_0} (0 is then above any other value)")
    full_from = spec.get("full_from")
    if full_from is not None and size is None:
        problems.append(f"{where}: parameter {name}: full_from is the smallest full value of a size parameter; add `size: true`, "
                        "or remove full_from")
        full_from = None
    p = Parameter(
        name=name, type=type_name, default=spec["default"], help=help_,
        choices=tuple(choices) if choices is not None else None,
        range=tuple(rng) if rng is not None else None, nullable=nullable, path=path, size=size, full_from=full_from,
    )
    if not p.help:
        problems.append(f"{where}: parameter {name} has no help text; add `help:` (one line)")
    if full_from is not None:
        bad = p.problem(full_from) if _number(full_from) else f"{name} = {full_from!r} is not a number"
        if bad:
            problems.append(f"{where}: parameter {name}: full_from: {bad}")
        elif _number(p.default) and p.magnitude(full_from) > p.magnitude(p.default):
            problems.append(f"{where}: parameter {name}: full_from {full_from!r} is above the default {p.default!r}: the "
                            "default run is the full one, so full_from is at most the default (or leave it out)")
    if size == ALL_IS_0 and p.problem(0) is not None:
        problems.append(f"{where}: parameter {name}: size: {ALL_IS_0}, but 0 is not an allowed value ({p.problem(0)}); "
                        "write size: true")
    for c in p.choices or ():
        bad = Parameter(name, p.type, None, nullable=p.nullable, range=p.range).problem(c)
        if bad:
            problems.append(f"{where}: choice of {bad}")
    bad = p.problem(p.default)
    if bad:
        problems.append(f"{where}: default {bad}")
    return p


def _values(where: str, key: str, raw: Any, params: Mapping[str, Parameter], problems: list[str]) -> dict[str, tuple] | None:
    """``{name: (value, ...)}`` of a rule's ``if``/``then`` mapping ``{name: value or [values]}``, checked."""
    if not isinstance(raw, dict) or not raw:
        problems.append(f"{where}: `{key}` must be a mapping parameter -> value (or list of values), e.g. {{weights: imagenet}}")
        return None
    out = {}
    for name, value in raw.items():
        if name not in params:
            problems.append(f"{where}: `{key}` names {name!r}, which is not a parameter of this chapter{did_you_mean(name, params)}")
            return None
        values = tuple(value) if isinstance(value, list) and value else (value,)
        bad = [b for v in values if (b := params[name].problem(v))]
        if bad:
            problems.append(f"{where}: `{key}`: {bad[0]}")
            return None
        out[str(name)] = values
    return out


def _rules(where: str, raw: Any, params: Mapping[str, Parameter], problems: list[str]) -> tuple[Rule, ...]:
    form = "{if: {parameter: value}, then: parameter or {parameter: [values]}, message: what to do}"
    if raw is None:
        return ()
    if not isinstance(raw, list):
        problems.append(f"{where}: requires must be a list of {form}")
        return ()
    rules = []
    for j, r in enumerate(raw):
        w = f"{where}: requires[{j}]"
        if not isinstance(r, dict) or "if" not in r or "then" not in r or set(r) - {"if", "then", "message"}:
            problems.append(f"{w}: write {form} (keys if, then and optionally message)")
            continue
        when = _values(w, "if", r["if"], params, problems)
        raw_then = [r["then"]] if isinstance(r["then"], str) else r["then"]
        then: dict[str, tuple | None] | None
        if isinstance(raw_then, list) and raw_then and all(isinstance(n, str) for n in raw_then):
            then = {}
            for n in raw_then:
                if n not in params:
                    problems.append(f"{w}: `then` names {n!r}, which is not a parameter of this chapter{did_you_mean(n, params)}")
                    then = None
                    break
                if params[n].type != "str" and not params[n].nullable:
                    problems.append(f"{w}: `then: {n}` asks for a value to be set, which only a str or nullable parameter can miss; "
                                    f"write then: {{{n}: [allowed values]}}")
                    then = None
                    break
                then[n] = None
        else:
            then = _values(w, "then", raw_then, params, problems)  # type: ignore[assignment]
        message = r.get("message", "")
        if not isinstance(message, str):
            problems.append(f"{w}: message must be a string")
            continue
        if when is not None and then is not None:
            rules.append(Rule(when=when, then=then, message=message.strip()))
    return tuple(rules)


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
    unknown = set(raw) - {"id", "title", "notebook", "summary", "summary_zh", "headline", "parameters", "profiles", "requires"}
    if unknown:
        problems.append(f"{where}: unknown keys {sorted(map(str, unknown))}; allowed: id, title, notebook, summary, summary_zh, headline, parameters, profiles, requires")
    for key, kind in (("summary_zh", str), ("headline", dict)):
        if key in raw and not isinstance(raw[key], kind):
            problems.append(f"{where}: {key} must be a {'string' if kind is str else 'mapping'}")
    params = {}
    raw_params = raw.get("parameters") or {}
    if not isinstance(raw_params, dict):
        problems.append(f"{where}: parameters must be a mapping name -> {{type, default, help}}")
        raw_params = {}
    for name, spec in raw_params.items():
        p = _parameter(where, str(name), spec, problems)
        if p is not None:
            params[p.name] = p
    rel = raw.get("notebook")
    notebook = book_dir / str(rel or "")
    if rel and (not isinstance(rel, str) or not rel.endswith(".ipynb") or Path(rel).is_absolute()
                or os.path.normpath(rel).startswith("..")):
        problems.append(f"{where}: notebook {rel!r} must be the path of a .ipynb file inside the book's folder, relative to book.yml")
    elif check_notebooks and rel:
        if not notebook.is_file():
            problems.append(f"{where}: notebook {rel} does not exist (paths are relative to book.yml); fix the path or add the notebook")
        else:
            try:
                cell = parameters_cell_of(read_notebook(notebook), rel)
            except BookError as exc:
                problems.extend(f"{where}: {p}" for p in exc.problems)
            else:
                problems.extend(f"{where}: {p}" for p in parameters_drift(params, cell.source, notebook=str(rel),
                                                                          declared=[str(n) for n in raw_params]))
    chapter_profiles = {}
    raw_profiles = raw.get("profiles") or {}
    if not isinstance(raw_profiles, dict):
        problems.append(f"{where}: profiles must be a mapping profile -> {{parameter: value}}")
        raw_profiles = {}
    for prof, values in raw_profiles.items():
        values = {} if values is None else values
        if prof not in profiles:
            problems.append(f"{where}: unknown profile {prof!r}{did_you_mean(prof, profiles)}; declare it under the top-level `profiles:` (known: {', '.join(profiles)})")
            continue
        if prof == FULL and values:
            problems.append(f"{where}: profile `full` means the notebook defaults and takes no values; change the defaults instead")
            continue
        if not isinstance(values, dict):
            problems.append(f"{where}: profile {prof} must be a mapping parameter -> value")
            continue
        for name, value in values.items():
            if name not in params:
                problems.append(f"{where}: profile {prof} sets {name}, which is not a parameter of this chapter{did_you_mean(name, params)}")
            elif (bad := params[name].problem(value)) is not None:
                problems.append(f"{where}: profile {prof}: {bad}")
        chapter_profiles[prof] = dict(values)
    chapter = Chapter(id=cid, title=str(raw.get("title", "")), notebook=notebook, summary=str(raw.get("summary", "")),
                      parameters=params, profiles=chapter_profiles, requires=_rules(where, raw.get("requires"), params, problems),
                      summary_zh=raw["summary_zh"] if isinstance(raw.get("summary_zh"), str) else "",
                      headline=raw["headline"] if isinstance(raw.get("headline"), dict) else {})
    for prof in dict.fromkeys([FULL, *chapter_profiles]):
        problems.extend(f"{where}: profile {prof}: {p}" for p in chapter.rule_problems(prof))
    return chapter


class _UniqueKeyLoader(yaml.SafeLoader):
    """YAML's safe loader, except that a key given twice in one mapping is an error (PyYAML keeps the last)."""


def _mapping(loader: _UniqueKeyLoader, node: yaml.MappingNode, deep: bool = False) -> dict:
    seen: dict[Any, int] = {}
    for key_node, _ in node.value:
        key = loader.construct_object(key_node, deep=True)
        try:
            first = seen.setdefault(key, key_node.start_mark.line)
        except TypeError:
            continue  # an unhashable key: construct_mapping reports it
        if first != key_node.start_mark.line:
            raise yaml.constructor.ConstructorError(None, None, f"duplicate key {key!r} (first given on line {first + 1})", key_node.start_mark)
    return loader.construct_mapping(node, deep=deep)


_UniqueKeyLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _mapping)


def _yaml_error(path: Path, exc: yaml.YAMLError) -> str:
    mark = getattr(exc, "problem_mark", None)
    where = f"{path} line {mark.line + 1}, column {mark.column + 1}" if mark is not None else str(path)
    problem = getattr(exc, "problem", None) or str(exc).strip().splitlines()[0]
    context = getattr(exc, "context", None)
    return f"{where}: invalid YAML: {problem}" + (f" ({context})" if context else "") + "; fix it (indentation, quotes, ':' after keys)"


def load_book(path: Path | str | None = None, *, check_notebooks: bool | Iterable[str] = True) -> Book:
    """Read and validate ``book.yml`` (found with :func:`find_book` when ``path`` is None; a folder means its book.yml).

    With ``check_notebooks`` every notebook must exist and its ``parameters``
    cell must declare exactly the parameters of book.yml with the same defaults;
    given chapter ids, only those chapters' notebooks are checked (``run --only``).
    """
    only = None if isinstance(check_notebooks, bool) else set(check_notebooks)
    path = Path(path) if path is not None else find_book()
    if path.is_dir():
        if not (path / "book.yml").is_file():
            raise BookError(f"{path} is a folder without a book.yml; pass the path of the course's book.yml")
        path = path / "book.yml"
    if not path.is_file():
        raise BookError(f"{path} does not exist; pass the path of the course's book.yml")
    path = path.resolve()  # chapters' notebook paths are absolute, whatever the working directory (--book book.yml)
    try:
        raw = yaml.load(path.read_text(encoding="utf-8"), Loader=_UniqueKeyLoader)
    except yaml.YAMLError as exc:
        raise BookError(_yaml_error(path, exc)) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise BookError(f"{path}: cannot read it ({getattr(exc, 'strerror', None) or exc}); book.yml must be a readable UTF-8 text file") from None
    if not isinstance(raw, dict):
        got = "it is empty" if raw is None else f"it holds a {type(raw).__name__}"
        raise BookError(f"{path}: expected a mapping with title, profiles, chapters ({got}); see the schema in qhelpers/course/book/manifest.py")
    problems: list[str] = []
    unknown = set(raw) - {"title", "profiles", "chapters"}
    if unknown:
        problems.append(f"unknown top-level keys {sorted(map(str, unknown))}; allowed: title, profiles, chapters")
    if not raw.get("title") or not isinstance(raw["title"], str):
        problems.append("missing `title:` (the course title, a string)")
    profiles = raw.get("profiles") or {}
    if not isinstance(profiles, dict):
        problems.append("`profiles:` must be a mapping name -> one-line description")
        profiles = {}
    for name in profiles:
        if not isinstance(name, str) or not _ID.match(name):
            problems.append(f"profile name {name!r} must be lowercase letters, digits, '-' or '_' (it names a build folder)")
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
        if any(c.notebook.name == ch.notebook.name for c in chapters):
            problems.append(f"chapter {ch.id!r}: a notebook named {ch.notebook.name} is already used by another chapter (the build folder holds them side by side)")
        chapters.append(ch)
    if problems:
        raise BookError([f"{path.name}: {p}" for p in problems])
    return Book(path=path.resolve(), title=str(raw["title"]), chapters=chapters, profiles=profiles)


def stanza(notebook: Path | str, chapter_id: str = "", root: Path | str | None = None) -> str:
    """A book.yml chapter entry for ``notebook``, read from its parameters cell (types and help inferred).

    The notebook path is written relative to ``root`` (the folder of book.yml) when it lies inside it.
    """
    notebook = Path(notebook)
    if chapter_id and not _ID.match(chapter_id):
        raise BookError(f"--id {chapter_id!r}: a chapter id must be lowercase letters, digits, '-' or '_' (e.g. mnist-cnn)")
    if notebook.suffix != ".ipynb" and not notebook.is_dir():
        raise BookError(f"{notebook} is not a .ipynb file; give the path of a notebook")
    found = notebook_parameters(notebook)
    rel = notebook
    if root is not None and Path(root).resolve() in notebook.resolve().parents:
        rel = notebook.resolve().relative_to(Path(root).resolve())
    params = {}
    for name, (default, help_) in found.items():
        type_name = "str" if default is None else type(default).__name__
        entry: dict[str, Any] = {"type": type_name if type_name in TYPES else "str", "default": default, "help": help_ or "TODO"}
        params[name] = entry
    entry = {
        "id": chapter_id or re.sub(r"^\d+_", "", notebook.stem).replace("_", "-").lower(),
        "title": "TODO", "notebook": str(rel), "summary": "TODO",
        "parameters": params, "profiles": {"smoke": {}},
    }
    return yaml.safe_dump([entry], sort_keys=False, allow_unicode=True, width=1000)


_HOW = "set it in the parameters cell, or pass e.g. `-p {name}=...` to `python -m qhelpers.course.book run`"


def _course_book() -> Path:
    """The book.yml of the course this package belongs to, else the nearest one from the working directory."""
    beside = Path(__file__).resolve().parents[3] / "book.yml"
    return beside if beside.is_file() else find_book()


def _checked_values(chapter_id: str, namespace: Mapping[str, Any], book: Path | str | None,
                    sizes_only: bool = False) -> tuple[Chapter, dict[str, Any]]:
    """The chapter and the values in ``namespace`` of its parameters (or only its size parameters), checked."""
    if not isinstance(namespace, Mapping):
        raise TypeError(f"namespace must be the notebook's globals(), not {type(namespace).__name__}")
    chapter = load_book(book if book is not None else _course_book(), check_notebooks=False).chapter(chapter_id)
    values = {}
    for name, parameter in chapter.parameters.items():
        if sizes_only and parameter.size is None:
            continue
        if name not in namespace:
            raise ValueError(f"parameter {name} is not defined: book.yml declares it for chapter {chapter_id!r}, so the "
                             "notebook's parameters cell must set it")
        problem = parameter.problem(namespace[name])
        if problem:
            raise ValueError(f"parameter {problem}; " + _HOW.format(name=name))
        values[name] = namespace[name]
    return chapter, values


def configuration(chapter_id: str, namespace: Mapping[str, Any], *, book: Path | str | None = None) -> str:
    """``"full"`` or ``"quick"``: whether a notebook's run is the full one its claims are stated for.

    Full when every size parameter of the chapter (``size:`` in book.yml) is at least its default (or its
    ``full_from``), where 0 is above any other value for ``size: all-is-0`` (0 means all); a chapter without
    size parameters is always full. Call it like :func:`check_parameters`, with the notebook's ``globals()``::

        FULL = course.book.configuration("mnist-cnn", globals()) == "full"

    A size parameter that is missing or not a valid value raises the ``ValueError`` of :func:`check_parameters`.
    """
    chapter, values = _checked_values(chapter_id, namespace, book, sizes_only=True)
    return chapter.configuration(values)


def check_parameters(chapter_id: str, namespace: Mapping[str, Any], *, book: Path | str | None = None) -> None:
    """Check a notebook's parameters with book.yml's rules: type, range, choices, and the chapter's ``requires:``.

    Call it right after the ``parameters`` cell with ``globals()``. A bad value
    raises a ``ValueError`` saying what was wrong and what to do; nothing is
    returned. ``book`` defaults to the course's book.yml.
    """
    chapter, values = _checked_values(chapter_id, namespace, book)
    for rule in chapter.requires:
        problem = rule.problem(values)
        if problem:
            raise ValueError(f"parameters: {problem}")
