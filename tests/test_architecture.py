"""Imports point one way: the entry points (main.py, functions.py) import the package, never back,
and the package's modules import each other without a cycle (ARCHITECTURE.md)."""

from __future__ import annotations

import ast

from tests.helpers import ROOT

ENTRY_POINTS = {"main", "functions"}
PACKAGE = {path.stem: path for path in (ROOT / "digits").glob("*.py")}


def imported(name: str) -> set[str]:
    """Every module `digits/<name>.py` imports, at its top or inside a function."""
    found = set()
    for node in ast.walk(ast.parse(PACKAGE[name].read_text())):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module == "digits":
            found |= {f"digits.{alias.name}" for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            found.add(node.module)
    return found


def package_imports(name: str) -> set[str]:
    modules = {m.split(".")[1] for m in imported(name) if m.startswith("digits.")}
    return (modules & set(PACKAGE)) - {name}


def test_the_package_never_imports_an_entry_point():
    for name in PACKAGE:
        assert not imported(name) & ENTRY_POINTS, f"digits/{name}.py imports an entry point"


def test_the_package_has_no_import_cycle():
    graph = {name: package_imports(name) for name in PACKAGE}
    done: set[str] = set()

    def visit(name: str, path: tuple[str, ...]) -> None:
        assert name not in path, f"import cycle: {' -> '.join((*path, name))}"
        if name not in done:
            for dependency in graph[name]:
                visit(dependency, (*path, name))
            done.add(name)

    for name in graph:
        visit(name, ())
