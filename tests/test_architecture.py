"""The package's import rules (ARCHITECTURE.md), checked on the source: two wings, layers, no private name across modules."""

from __future__ import annotations

import ast
import json
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "qhelpers"

# ARCHITECTURE.md's two wings. The teaching modules (qhelpers/<concept>.py), in layers bottom up: a module may import
# from its own layer and the layers below, and never from the course wing.
TEACHING = {
    "checks": 0, "hardware": 0,
    "quant": 1, "ranges": 1, "formats": 1, "packing": 1,
    "data": 2, "models": 2, "transformer": 2,
    "train": 3,
    "ptq": 4, "qat": 4, "convert": 4, "sensitivity": 4,
    "weight_only": 4, "codebook": 4, "activations": 4, "activation_aware": 4, "smoothing": 4, "gptq": 4,
    "bench": 5, "plots": 5, "fidelity": 5, "roofline": 5,
    "serialization": 6, "runtimes": 6,
}
# The course wing (qhelpers/course/), above every teaching module: it may import any of them, and the course modules
# of its own layer and below.
COURSE = {
    "record": 0, "repro": 0,
    "datasets": 1,
    "cache": 2,
    "zoo": 3, "exercises": 3, "solutions": 3,
    "book": 4,
}
COURSE_WING = max(TEACHING.values()) + 1  # the course wing's place above the teaching layers


def _module_of(path: Path) -> str:
    """``qhelpers.x``, ``qhelpers.course.y`` or ``qhelpers.course.book.z`` for a file of the package."""
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {_module_of(p) for p in PACKAGE.rglob("*.py")}  # every module and package of qhelpers


def _target(module: str, is_package: bool, node: ast.ImportFrom) -> str | None:
    """The absolute module an ``ImportFrom`` reads from, or None outside qhelpers."""
    if node.level == 0:
        return node.module if node.module and node.module.split(".")[0] == "qhelpers" else None
    base = module.split(".") if is_package else module.split(".")[:-1]
    base = base[: len(base) - (node.level - 1)]
    return ".".join(base + ([node.module] if node.module else []))


def _place(module: str) -> tuple[str, int] | None:
    """(wing, layer) of a qhelpers module: ``("teaching", 2)`` for ``qhelpers.data``, ``("course", 4)`` for
    ``qhelpers.course.book.runner``; None for the packages ``qhelpers`` and ``qhelpers.course`` themselves."""
    parts = module.split(".")
    if len(parts) < 2 or parts[:2] == ["qhelpers", "course"] and len(parts) < 3:
        return None
    if parts[1] == "course":
        return ("course", COURSE[parts[2]]) if parts[2] in COURSE else ("course", -1)
    return ("teaching", TEACHING[parts[1]]) if parts[1] in TEACHING else ("teaching", -1)


def _imports(tree: ast.AST, module: str, is_package: bool):
    """(imported module, names, line) for every import of a qhelpers module, at any depth (lazy imports too)."""
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            target = _target(module, is_package, node)
            if target is None:
                continue
            for alias in node.names:
                sub = f"{target}.{alias.name}"
                if sub in MODULES:
                    yield sub, [], node.lineno  # `from qhelpers import quant`: the module itself
                else:
                    yield target, [alias.name], node.lineno
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.split(".")[0] == "qhelpers":
                    yield alias.name, [], node.lineno


def _private_attributes(tree: ast.AST, module_aliases: set[str]):
    """``alias._name`` uses where ``alias`` is an imported qhelpers module."""
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id in module_aliases:
            if node.attr.startswith("_") and not node.attr.startswith("__"):
                yield node.value.id, node.attr, node.lineno


def _module_aliases(tree: ast.AST, module: str = "notebook", is_package: bool = False) -> set[str]:
    """The names ``tree`` binds to qhelpers modules (``from qhelpers import quant``, ``import qhelpers.data``)."""
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            target = _target(module, is_package, node)
            if target is not None:
                names |= {alias.asname or alias.name for alias in node.names if f"{target}.{alias.name}" in MODULES}
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.startswith("qhelpers"):
                    names.add(alias.asname or alias.name.split(".")[0])
    return names


def _sources():
    for path in sorted(PACKAGE.rglob("*.py")):
        yield str(path.relative_to(ROOT)), ast.parse(path.read_text()), _module_of(path), path.name == "__init__.py"


def _notebook_sources():
    for path in sorted((ROOT / "notebooks").glob("*.ipynb")):
        cells = json.loads(path.read_text())["cells"]
        code = "\n".join(
            "\n".join(line for line in "".join(c["source"]).splitlines() if not line.lstrip().startswith(("%", "!")))
            for c in cells if c["cell_type"] == "code"
        )
        yield str(path.relative_to(ROOT)), ast.parse(code), "notebook", False


def test_every_module_has_a_layer():
    teaching = {p.stem for p in PACKAGE.glob("*.py")} - {"__init__"}
    assert teaching == set(TEACHING), "add the module to TEACHING here and to ARCHITECTURE.md's teaching table"
    course = {p.stem for p in (PACKAGE / "course").glob("*.py")} - {"__init__"}
    course |= {p.name for p in (PACKAGE / "course").iterdir() if (p / "__init__.py").is_file()}
    assert course == set(COURSE), "add the module to COURSE here and to ARCHITECTURE.md's course table"
    assert not [p.name for p in PACKAGE.iterdir() if (p / "__init__.py").is_file() and p.name != "course"], (
        "the teaching wing is flat (qhelpers/<concept>.py); course machinery goes under qhelpers/course/")


def test_notebooks_do_not_import_the_solutions():
    """The exercises ship stubs: a notebook that imported qhelpers.course.solutions would pass them without work."""
    for where, tree, _, _ in _notebook_sources():
        for node in ast.walk(tree):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else (
                [node.module or ""] + [f"{node.module}.{a.name}" for a in node.names] if isinstance(node, ast.ImportFrom) else [])
            assert not any("solutions" in n for n in names), f"{where} imports the reference solutions"


def test_modules_import_only_their_layer_and_below():
    wrong = []
    for where, tree, module, is_package in _sources():
        own = _place(module)
        if own is None:
            continue  # qhelpers/__init__.py and qhelpers/course/__init__.py: the packages' own names
        for target, _, line in _imports(tree, module, is_package):
            other = _place(target)
            if other is None or other[0] == "teaching" and own[0] == "course":
                continue  # the course wing may import every teaching module
            if other[0] != own[0]:
                wrong.append(f"{where}:{line}: the teaching module {module} imports the course wing ({target})")
            elif other[1] > own[1]:
                wrong.append(f"{where}:{line}: {module} ({own[0]} layer {own[1]}) imports {target} (layer {other[1]})")
    assert not wrong, "imports upward, against ARCHITECTURE.md:\n" + "\n".join(wrong)


def test_no_teaching_module_imports_the_course_wing():
    """Not at the top, not lazily inside a function, not through the package (``from qhelpers import course``): a
    teaching module reads without the course machinery. A function that needs the checkpoint cache takes it as an
    argument (``qat.qat_lowbit(..., cache=course.cache.cached)``)."""
    wrong = []
    for where, tree, module, is_package in _sources():
        if module == "qhelpers" or module.startswith("qhelpers.course"):
            continue
        for target, _, line in _imports(tree, module, is_package):
            if target == "qhelpers.course" or target.startswith("qhelpers.course."):
                wrong.append(f"{where}:{line}: imports {target}")
        course_modules = {m for m in MODULES if m.startswith("qhelpers.course")}
        wrong += [f"{where}:{n.lineno}: names the module {n.value!r} (importlib?)" for n in ast.walk(tree)
                  if isinstance(n, ast.Constant) and n.value in course_modules]
    assert not wrong, "teaching modules that import the course wing:\n" + "\n".join(wrong)


def test_importing_every_teaching_module_loads_nothing_of_the_course_wing():
    import subprocess
    import sys

    code = ("import importlib, sys\n"
            f"for name in {sorted(TEACHING)!r}:\n"
            "    importlib.import_module(f'qhelpers.{name}')\n"
            "print(sorted(m for m in sys.modules if m.startswith('qhelpers.course')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT).stdout
    assert out.strip() == "[]"


@pytest.mark.parametrize("sources", [_sources, _notebook_sources], ids=["qhelpers", "notebooks"])
def test_no_private_name_is_imported_across_modules(sources):
    wrong = []
    for where, tree, module, is_package in sources():
        for target, names, line in _imports(tree, module, is_package):
            if target == module:
                continue
            wrong += [f"{where}:{line}: imports {n} from {target}" for n in names if n.startswith("_") and not n.startswith("__")]
        for alias, attr, line in _private_attributes(tree, _module_aliases(tree, module, is_package)):
            wrong.append(f"{where}:{line}: uses {alias}.{attr}")
    assert not wrong, "private names used outside their module (make them public or move them):\n" + "\n".join(wrong)


def test_the_package_docstrings_and_architecture_md_name_every_module():
    import re

    import qhelpers
    import qhelpers.course

    architecture = (ROOT / "ARCHITECTURE.md").read_text()
    for where, text, names in (("qhelpers/__init__.py", qhelpers.__doc__, TEACHING),
                               ("qhelpers/course/__init__.py", qhelpers.course.__doc__, COURSE),
                               ("ARCHITECTURE.md", architecture, {**TEACHING, **COURSE})):
        missing = sorted(n for n in names if not re.search(rf"``?{n}``?", text))
        assert not missing, f"{where} does not name {missing}"
    stale = sorted(set(re.findall(r"^\|[^|]*\| `(\w+)` \|", architecture, re.M)) - set(TEACHING) - set(COURSE))
    assert not stale, f"ARCHITECTURE.md lists modules that do not exist: {stale}"


# Names that two teaching modules may both export, each with the reason it is one meaning: none today. The same
# concept under two conventions gets names that say which (quant.choose_qparams follows torch.ao.quantization,
# weight_only.choose_qparams_affine torchao's quant_primitives, codebook.choose_qparams_codebook torchao's codebook
# ops), so `from qhelpers.x import name` can never bring in a different meaning than `from qhelpers.y import name`.
SHARED_NAMES: dict[str, str] = {}


def test_no_name_is_exported_by_two_teaching_modules():
    import importlib

    owners: dict[str, list[str]] = {}
    for module in sorted(TEACHING):
        exported = importlib.import_module(f"qhelpers.{module}").__dict__.get("__all__")
        assert exported is not None, f"qhelpers.{module} has no __all__: list the names it exports"
        for name in exported:
            owners.setdefault(name, []).append(module)
    twice = {name: where for name, where in owners.items() if len(where) > 1 and name not in SHARED_NAMES}
    assert not twice, ("one name exported by two teaching modules (give each meaning its own name, or add it to "
                       "SHARED_NAMES with the reason it means one thing): " + str(twice))
    stale = sorted(name for name in SHARED_NAMES if len(owners.get(name, [])) < 2)
    assert not stale, f"SHARED_NAMES lists names no longer exported twice: {stale}"


def test_the_shared_name_check_catches_a_second_meaning(monkeypatch):
    """Exporting ``quant_range`` from weight_only again (as before #20: ``(bits, symmetric)`` beside quant's
    ``(bits, signed)``) fails the check above."""
    import qhelpers.weight_only

    monkeypatch.setattr(qhelpers.weight_only, "__all__", [*qhelpers.weight_only.__all__, "quant_range"])
    with pytest.raises(AssertionError, match=r"'quant_range': \['quant', 'weight_only'\]"):
        test_no_name_is_exported_by_two_teaching_modules()


def test_no_module_is_named_after_a_chapter():
    assert not [p.name for p in PACKAGE.rglob("*.py") if p.stem in ("dynamic", "fakequant", "imagenet", "flows", "calibration")]


def _aliases(tree: ast.AST) -> list[str]:
    """``import qhelpers.x as y`` and ``from qhelpers(.x) import name as other`` in ``tree``."""
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] == "qhelpers" or \
                isinstance(node, ast.Import) and any(a.name.split(".")[0] == "qhelpers" for a in node.names):
            found += [f"{alias.name} as {alias.asname}" for alias in node.names if alias.asname and alias.asname != alias.name]
    return found


def test_notebooks_import_qhelpers_modules_by_their_full_names():
    assert _aliases(ast.parse("from qhelpers import quant as Q\nimport qhelpers.data as qdata")) == [
        "quant as Q", "qhelpers.data as qdata"]
    aliased = [f"{where}: {a}" for where, tree, _, _ in _notebook_sources() for a in _aliases(tree)]
    assert not aliased, "write qhelpers' names out in the notebooks (no D, C, Q ... aliases):\n" + "\n".join(aliased)


def test_no_public_name_of_a_package_is_shadowed_by_its_submodules():
    """Importing a submodule sets it as an attribute of its package: a lazily loaded function named like a
    submodule (``book.sweep`` beside ``book/sweep.py``) became the module once anything imported the
    submodule, and ``from qhelpers.course.book import sweep`` then depended on test order. Import every submodule
    first, then every exported name must still be what the package exports, not a module."""
    import importlib
    import types

    packages = [importlib.import_module(m) for m in sorted(MODULES)
                if (PACKAGE.parent / m.replace(".", "/") / "__init__.py").is_file()]
    for module in sorted(MODULES):
        if not module.endswith("__main__"):
            importlib.import_module(module)
    shadowed = [f"{package.__name__}.{name}" for package in packages for name in getattr(package, "__all__", [])
                if isinstance(getattr(package, name), types.ModuleType)]
    assert not shadowed, f"exported names that became submodules: {shadowed}"
