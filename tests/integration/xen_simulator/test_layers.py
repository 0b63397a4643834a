"""The simulator's modules import one way: declarations <- state <- context <- rules <-
dispatch <- wire <- test controls and the public facade (README "Layout").

Every import statement counts, including those inside functions and under TYPE_CHECKING,
so a circle cannot hide behind a lazy import.
"""

from __future__ import annotations

import ast
import pathlib

from virtdriver.xen import simulator as simpkg

PKG = pathlib.Path(simpkg.__file__).resolve().parent
NAME = simpkg.__name__

#: module (relative to the package) -> layer; a module may import only from layers <= its own.
LAYERS: dict[str, int] = {
    # 0 declarations: what XAPI is (surface, error codes, field tables, value codec)
    "surface": 0, "errors": 0, "schema": 0, "wire": 0, "where": 0, "templates": 0,
    # 1 state
    "db": 1, "storage_bytes": 1, "faults": 1, "sessions": 1, "guest": 1, "backend": 1,
    "iscsi_targets": 1,
    # 2 what a handler sees
    "context": 2,
    # 3 rules: XAPI objects and their behaviour, the guest side, canned inventory
    "models": 3, "agent": 3, "plugins": 3, "inventory": 3,
    # 4 dispatch: the one place calls are resolved, checked and run (in tasks)
    "tasks": 4, "dispatch": 4,
    # 5 wire: HTTP, XML-RPC and JSON-RPC
    "server": 5,
    # 6 test controls, the public facade, the CLI and the coverage document
    "controls": 6, "simulator": 6, "__init__": 6, "__main__": 6, "coverage": 6,
}


def _module(path: pathlib.Path) -> str:
    rel = path.relative_to(PKG).with_suffix("")
    return ".".join(rel.parts)


def _layer(module: str) -> int:
    return LAYERS[module.split(".")[0]]


def imports() -> dict[str, set[str]]:
    """module -> the package modules it imports (relative names, ``models.vm`` style)."""
    modules = {_module(p) for p in PKG.rglob("*.py")}
    graph: dict[str, set[str]] = {}
    for path in PKG.rglob("*.py"):
        mod = _module(path)
        is_pkg = path.name == "__init__.py"
        here = mod.removesuffix("__init__").rstrip(".") if is_pkg else mod.rpartition(".")[0]
        found: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text())):
            names: list[str] = []
            if isinstance(node, ast.Import):
                names = [a.name.removeprefix(NAME + ".") for a in node.names
                         if a.name.startswith(NAME + ".")]
            elif isinstance(node, ast.ImportFrom):
                if node.level:
                    parts = [p for p in here.split(".") if p]
                    base = parts[: max(0, len(parts) - node.level + 1)]
                    target = ".".join(base + ([node.module] if node.module else []))
                elif node.module and node.module.startswith(NAME):
                    target = node.module.removeprefix(NAME).lstrip(".")
                else:
                    continue
                for alias in node.names:
                    sub = f"{target}.{alias.name}" if target else alias.name
                    names.append(sub if sub in modules or f"{sub}.__init__" in modules
                                 else target)
            for name in names:
                name = name if name in modules else f"{name}.__init__"
                if name in modules and name != mod:
                    found.add(name)
        graph[mod] = found
    return graph


def test_every_module_has_a_layer() -> None:
    """A new module must be placed in a layer before it can import anything."""
    assert {m.split(".")[0] for m in imports()} <= set(LAYERS)


def test_imports_go_one_way() -> None:
    """No module imports from a higher layer."""
    upward = sorted(f"{m} -> {t}" for m, targets in imports().items() for t in targets
                    if _layer(t) > _layer(m))
    assert upward == []


def test_no_import_circle() -> None:
    """No circle among the package's modules, whatever their layers."""
    graph = imports()
    state: dict[str, int] = {}
    circles: list[list[str]] = []

    def visit(node: str, path: list[str]) -> None:
        state[node] = 1
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                circles.append(path[path.index(nxt):] + [nxt])
            elif nxt not in state:
                visit(nxt, [*path, nxt])
        state[node] = 2

    for start in sorted(graph):
        if start not in state:
            visit(start, [start])
    assert circles == []
