"""The import rules of docs/architecture.md, read from the source: layers point down, no cycle, viz/cli only from
display methods, no private name across packages; and the public export list agrees with the modules."""

from __future__ import annotations

import ast
import importlib
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

import attrflow

SRC = Path(attrflow.__file__).resolve().parent

# lower number = lower layer; a module may import its own package and anything of an equal or lower rank
RANK = {
    "errors": 0,
    "dependencies": 1,
    "_optional": 1,
    "validation": 1,
    "storage": 1,
    "memory": 1,
    "results": 2,
    "flow": 2,
    "data": 2,
    "runner": 2,
    "models": 3,
    "zoo": 3,
    "methods": 4,
    "testing": 5,
    "analysis": 5,
    "viz": 7,
    "explore": 8,
    "demo": 8,
    "cli": 9,
    "__main__": 10,
}
# methods through which a result hands itself to the rendering layer (imports inside them may point up)
# modules exempt from the rules while they move (none now)
PENDING: set[str] = set()
DISPLAY = {"to_html", "_repr_html_", "plot", "plot_aopc", "to_svg", "explore", "export", "_default_tree", "_page"}


@dataclass(frozen=True)
class Import:
    source: str  # importing module, dotted
    target: str  # imported module, dotted
    name: str | None  # imported name (from X import name)
    function: tuple[str, ...]  # enclosing function/class names (empty: module level)
    type_only: bool  # inside `if TYPE_CHECKING:`


def _modules() -> dict[str, Path]:
    out = {}
    for path in SRC.rglob("*.py"):
        parts = list(path.relative_to(SRC.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join(parts)] = path
    return out


def _imports(module: str, path: Path) -> Iterator[Import]:
    package = module if path.name == "__init__.py" else module.rsplit(".", 1)[0]

    def walk(node: ast.AST, where: tuple[str, ...], type_only: bool) -> Iterator[Import]:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.If) and "TYPE_CHECKING" in ast.unparse(child.test):
                for statement in child.body:
                    yield from walk_statement(statement, where, True)
                continue
            yield from walk_statement(child, where, type_only)

    def walk_statement(node: ast.AST, where: tuple[str, ...], type_only: bool) -> Iterator[Import]:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            yield from walk(node, (*where, node.name), type_only)
        elif isinstance(node, ast.Import):
            for alias in node.names:
                yield Import(module, alias.name, None, where, type_only)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            for alias in node.names:
                yield Import(module, target, alias.name, where, type_only)
        else:
            yield from walk(node, where, type_only)

    yield from walk(ast.parse(path.read_text(encoding="utf-8")), (), False)


def _package(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else parts[0]


@pytest.fixture(scope="module")
def graph() -> list[Import]:
    return [
        imp
        for module, path in _modules().items()
        for imp in _imports(module, path)
        if imp.target == "attrflow" or imp.target.startswith("attrflow.")
    ]


def test_every_package_has_a_rank(graph):
    unranked = {_package(m) for m in _modules()} - set(RANK) - {"attrflow", "__init__"}
    assert not unranked, f"add {sorted(unranked)} to RANK (and to docs/architecture.md)"


def test_imports_point_down_the_layers(graph):
    violations = []
    for imp in graph:
        if imp.type_only or imp.target == "attrflow" or imp.source in PENDING:
            continue
        source, target = _package(imp.source), _package(imp.target)
        if source == target or RANK.get(target, 0) <= RANK.get(source, 0):
            continue
        if imp.function and imp.function[-1] in DISPLAY and target in ("viz", "analysis", "explore"):
            continue  # a display method handing its result to the rendering layer
        violations.append(f"{imp.source} ({'/'.join(imp.function) or 'module level'}) imports {imp.target}")
    assert not violations, "imports that point up the layers:\n" + "\n".join(sorted(set(violations)))


def test_module_level_imports_have_no_cycle(graph):
    edges: dict[str, set[str]] = defaultdict(set)
    modules = set(_modules())
    for imp in graph:
        if imp.function or imp.type_only:
            continue
        target = imp.target
        if imp.name and f"{target}.{imp.name}" in modules:
            target = f"{target}.{imp.name}"  # from package import submodule
        if target in modules and target != imp.source:
            edges[imp.source].add(target)
    # a package __init__ that re-exports its own submodules is not a cycle with them
    for source in list(edges):
        edges[source] = {t for t in edges[source] if not (t.startswith(source + ".") and source in modules)}
    state: dict[str, int] = {}
    stack: list[str] = []
    cycles = []

    def visit(node: str) -> None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(edges.get(node, ())):
            if state.get(nxt) == 1:
                cycles.append([*stack[stack.index(nxt) :], nxt])
            elif nxt not in state:
                visit(nxt)
        stack.pop()
        state[node] = 2

    for node in sorted(edges):
        if node not in state:
            visit(node)
    assert not cycles, "import cycles:\n" + "\n".join(" -> ".join(c) for c in cycles)


def test_no_private_name_is_imported_across_packages(graph):
    violations = []
    for imp in graph:
        private_module = any(p.startswith("_") and not p.startswith("__") for p in imp.target.split(".")[1:])
        private_name = imp.name is not None and imp.name.startswith("_") and not imp.name.startswith("__")
        if imp.source in PENDING:
            continue
        if (private_module or private_name) and _package(imp.source) != _package(imp.target):
            what = f"{imp.target}.{imp.name}" if imp.name else imp.target
            violations.append(f"{imp.source} imports {what}")
    assert not violations, "private names used across packages:\n" + "\n".join(sorted(set(violations)))


def test_the_public_exports_agree_with_the_modules():
    exports = attrflow._EXPORTS
    assert set(attrflow.__all__) == {"__version__", *exports}
    for name, module in exports.items():
        value = getattr(importlib.import_module(module), name)
        assert getattr(attrflow, name) is value
        declared = getattr(importlib.import_module(module), "__all__", None)
        assert declared is None or name in declared, f"{module}.__all__ lacks {name}"
    for module in _modules():
        if module.startswith("attrflow.testing") or ".__main__" in module:
            continue
        loaded = importlib.import_module(module)
        for name in getattr(loaded, "__all__", ()):
            assert hasattr(loaded, name), f"{module}.__all__ names {name}, which it does not define"
