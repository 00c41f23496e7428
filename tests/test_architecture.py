"""The package's import rules (ARCHITECTURE.md), checked on the source: layers, and no private name across modules."""

from __future__ import annotations

import ast
import json
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "qhelpers"

# ARCHITECTURE.md's layers, bottom up: a module may import from its own layer and the layers below.
LAYERS = {
    "checks": 0, "record": 0, "repro": 0, "hardware": 0,
    "quant": 1, "ranges": 1, "formats": 1, "packing": 1,
    "data": 2, "models": 2, "transformer": 2,
    "train": 3, "zoo": 3,
    "ptq": 4, "qat": 4, "convert": 4, "sensitivity": 4,
    "weight_only": 4, "codebook": 4, "activations": 4, "activation_aware": 4, "smoothing": 4,
    "bench": 5, "plots": 5, "exercises": 5,
    "book": 6, "solutions": 6,
}


def _module_of(path: Path) -> str:
    """``qhelpers.x`` or ``qhelpers.book.y`` for a file of the package."""
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _target(module: str, is_package: bool, node: ast.ImportFrom) -> str | None:
    """The absolute module an ``ImportFrom`` reads from, or None outside qhelpers."""
    if node.level == 0:
        return node.module if node.module and node.module.split(".")[0] == "qhelpers" else None
    base = module.split(".") if is_package else module.split(".")[:-1]
    base = base[: len(base) - (node.level - 1)]
    return ".".join(base + ([node.module] if node.module else []))


def _concept(module: str) -> str:
    """The layer key of a module: ``qhelpers.book.runner`` -> ``book``, ``qhelpers.quant`` -> ``quant``."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else ""


def _imports(tree: ast.AST, module: str, is_package: bool):
    """(imported module, names, line) for every import of a qhelpers module, at any depth (lazy imports too)."""
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            target = _target(module, is_package, node)
            if target is None:
                continue
            for alias in node.names:
                sub = f"{target}.{alias.name}"
                if _concept(sub) in LAYERS and target in ("qhelpers", "qhelpers.book") and sub.count(".") == target.count(".") + 1:
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


def _module_aliases(tree: ast.AST) -> set[str]:
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and (node.level > 0 or (node.module or "").startswith("qhelpers")):
            for alias in node.names:
                if alias.name in LAYERS or alias.name in ("book", "manifest", "runner", "report", "sweep", "sweeps", "files", "kernel"):
                    names.add(alias.asname or alias.name)
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.startswith("qhelpers"):
                    names.add((alias.asname or alias.name).split(".")[0])
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
    modules = {_concept(_module_of(p)) for p in PACKAGE.glob("*.py") if p.name not in ("__init__.py",)}
    assert modules | {"book", "solutions"} == set(LAYERS), "add the module to LAYERS here and to ARCHITECTURE.md"


def test_notebooks_do_not_import_the_solutions():
    """The exercises ship stubs: a notebook that imported qhelpers.solutions would pass them without work."""
    for where, tree, _, _ in _notebook_sources():
        for node in ast.walk(tree):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else (
                [node.module or ""] + [f"{node.module}.{a.name}" for a in node.names] if isinstance(node, ast.ImportFrom) else [])
            assert not any("solutions" in n for n in names), f"{where} imports the reference solutions"


def test_modules_import_only_their_layer_and_below():
    wrong = []
    for where, tree, module, is_package in _sources():
        own = _concept(module)
        if own not in LAYERS:
            continue  # qhelpers/__init__.py re-exports from the base layer
        for target, _, line in _imports(tree, module, is_package):
            other = _concept(target)
            if other in LAYERS and LAYERS[other] > LAYERS[own]:
                wrong.append(f"{where}:{line}: {own} (layer {LAYERS[own]}) imports {other} (layer {LAYERS[other]})")
    assert not wrong, "imports upward, against ARCHITECTURE.md:\n" + "\n".join(wrong)


@pytest.mark.parametrize("sources", [_sources, _notebook_sources], ids=["qhelpers", "notebooks"])
def test_no_private_name_is_imported_across_modules(sources):
    wrong = []
    for where, tree, module, is_package in sources():
        for target, names, line in _imports(tree, module, is_package):
            if target == module:
                continue
            wrong += [f"{where}:{line}: imports {n} from {target}" for n in names if n.startswith("_") and not n.startswith("__")]
        for alias, attr, line in _private_attributes(tree, _module_aliases(tree)):
            wrong.append(f"{where}:{line}: uses {alias}.{attr}")
    assert not wrong, "private names used outside their module (make them public or move them):\n" + "\n".join(wrong)


def test_no_module_is_named_after_a_chapter():
    assert not [p.name for p in PACKAGE.glob("*.py") if p.stem in ("dynamic", "fakequant", "imagenet", "flows", "calibration")]


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
    submodule, and ``from qhelpers.book import sweep`` then depended on test order. Import every submodule
    first, then every exported name must still be what the package exports, not a module."""
    import importlib
    import pkgutil
    import types

    import qhelpers

    packages = [qhelpers] + [importlib.import_module(f"qhelpers.{m.name}")
                             for m in pkgutil.iter_modules(qhelpers.__path__) if m.ispkg]
    for package in packages:
        for m in pkgutil.iter_modules(package.__path__):
            if m.name != "__main__":
                importlib.import_module(f"{package.__name__}.{m.name}")
    shadowed = [f"{package.__name__}.{name}" for package in packages for name in getattr(package, "__all__", [])
                if isinstance(getattr(package, name), types.ModuleType)]
    assert not shadowed, f"exported names that became submodules: {shadowed}"
