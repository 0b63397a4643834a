"""The import graph of ``virtdriver/`` has no circle (issue 12).

Every module is parsed with :mod:`ast`, not imported: an import under ``if TYPE_CHECKING:``
or inside a function counts like any other, since a circle a reader must untangle is a
circle whether Python hits it at import time or not. ``from virtdriver.a import b`` is an
edge to ``virtdriver.a.b`` when that is a module, else to ``virtdriver.a``.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[3]
PACKAGE = ROOT / "virtdriver"

#: The packages whose modules must be on no circle: the whole tree. A circle is reported
#: when any of its modules is in one of these.
CHECKED = ["virtdriver"]


def module_name(path: Path) -> str:
    """``virtdriver/vmware/vmops.py`` -> ``virtdriver.vmware.vmops`` (a package: its name)."""
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def all_modules() -> dict[str, Path]:
    """Every module of the package by dotted name."""
    return {module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def imports_of(name: str, path: Path, modules: dict[str, Path]) -> set[str]:
    """The ``virtdriver`` modules that ``name`` imports, wherever the import statement is."""
    is_package = path.name == "__init__.py"
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                # relative: level 1 is this module's package
                package = name.split(".") if is_package else name.split(".")[:-1]
                package = package[:len(package) - (node.level - 1)]
                base = ".".join(package + ([base] if base else []))
            # each imported name is a submodule, or a name defined in the module itself
            targets = [f"{base}.{alias.name}" if f"{base}.{alias.name}" in modules else base
                       for alias in node.names]
        else:
            continue
        for target in targets:
            # `import virtdriver.a.b.name` is not legal, but `import virtdriver.a.b` of a
            # package's module is: walk up to the nearest known module
            while target and target not in modules:
                target = target.rpartition(".")[0]
            if target.startswith("virtdriver") and target != name:
                found.add(target)
    return found


def import_graph() -> dict[str, set[str]]:
    """Module -> the virtdriver modules it imports."""
    modules = all_modules()
    return {name: imports_of(name, path, modules) for name, path in modules.items()}


def find_cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Each circle of ``graph`` once (as found by a depth-first search), as a closed path."""
    cycles: list[list[str]] = []
    seen_cycles: set[frozenset[str]] = set()
    state: dict[str, int] = {}  # 1: on the current path, 2: finished
    path: list[str] = []

    def visit(node: str) -> None:
        state[node] = 1
        path.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                cycle = path[path.index(nxt):] + [nxt]
                key = frozenset(cycle)
                if key not in seen_cycles:
                    seen_cycles.add(key)
                    cycles.append(cycle)
            elif nxt not in state:
                visit(nxt)
        path.pop()
        state[node] = 2

    for node in sorted(graph):
        if node not in state:
            visit(node)
    return cycles


def in_checked(module: str) -> bool:
    """Whether ``module`` is in one of the :data:`CHECKED` packages."""
    return any(module == p.replace("/", ".") or module.startswith(p.replace("/", ".") + ".")
               for p in CHECKED)


def test_no_module_of_virtdriver_is_on_an_import_circle() -> None:
    circles = [c for c in find_cycles(import_graph()) if any(in_checked(m) for m in c)]
    assert not circles, "import circles:\n" + "\n".join(" -> ".join(c) for c in circles)


def test_the_graph_sees_every_kind_of_import() -> None:
    """The parser resolves the forms the package uses, so a missing edge cannot hide a circle."""
    graph = import_graph()
    # `from virtdriver.vmware import power, spawn`: submodules
    assert {"virtdriver.vmware.power", "virtdriver.vmware.spawn"} <= \
        graph["virtdriver.vmware.vmops"]
    # `from virtdriver.vmware.backend import VMwareBackend`: a name in a module
    assert "virtdriver.vmware.backend" in graph["virtdriver.vmware.power"]
    # the root package's re-exports
    assert "virtdriver.common.base" in graph["virtdriver"]


@pytest.mark.parametrize("source, expected", [
    ("from virtdriver.vmware import power", {"virtdriver.vmware.power"}),
    ("from virtdriver.vmware.power import reboot", {"virtdriver.vmware.power"}),
    ("import virtdriver.vmware.power", {"virtdriver.vmware.power"}),
    ("from . import power", {"virtdriver.vmware.power"}),
    ("from .power import reboot", {"virtdriver.vmware.power"}),
    ("from ..common import model", {"virtdriver.common.model"}),
    ("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n"
     "    from virtdriver.vmware.power import reboot", {"virtdriver.vmware.power"}),
    ("def f():\n    from virtdriver.vmware import power", {"virtdriver.vmware.power"}),
    ("import os\nfrom pyVmomi import vim", set()),
])
def test_imports_are_resolved(tmp_path: Path, source: str, expected: set[str]) -> None:
    modules = all_modules()
    path = tmp_path / "probe.py"
    path.write_text(source)
    assert imports_of("virtdriver.vmware.probe", path, modules) == expected


def test_a_circle_is_found_and_named() -> None:
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}, "e": set()}
    assert find_cycles(graph) == [["a", "b", "c", "a"]]
    assert find_cycles({"a": {"b"}, "b": set()}) == []
