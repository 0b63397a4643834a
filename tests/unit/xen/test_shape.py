"""The Xen backend's shape: imports go one way (vmops -> concern modules -> backend ->
helpers), with no circle; the face keeps the names other code reads."""

import ast
import pathlib

import virtdriver.xen
from virtdriver.xen.vmops import XenVMOps

from .fakes import FakeSession
from .test_vmops import make_ops

XEN = pathlib.Path(virtdriver.xen.__file__).parent
CONCERNS = {"spawn", "build", "power", "rescue", "snapshot", "migrate", "live_migrate",
            "network", "guest", "facts", "host", "volumes"}


def xen_imports() -> dict[str, set[str]]:
    """Module stem -> stems of the ``virtdriver.xen`` modules it imports (simulator aside)."""
    graph = {}
    for path in XEN.glob("*.py"):
        found = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module == "virtdriver.xen":
                found |= {alias.name for alias in node.names}
            elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith(
                    "virtdriver.xen."):
                found.add(node.module.split(".")[2])
            elif isinstance(node, ast.Import):
                found |= {alias.name.split(".")[2] for alias in node.names
                          if alias.name.startswith("virtdriver.xen.")}
        graph[path.stem] = found - {"simulator"}
    return graph


def test_only_the_face_imports_concern_modules_and_nothing_imports_the_face():
    graph = xen_imports()
    assert set(graph) >= CONCERNS
    assert not [name for name, deps in graph.items() if "vmops" in deps]
    assert not graph["backend"] & (CONCERNS | {"vmops"})
    helpers = set(graph) - CONCERNS - {"vmops", "backend", "__init__"}
    assert not [name for name in helpers if graph[name] & (CONCERNS | {"backend"})]


def test_no_import_circle():
    graph = xen_imports()

    def reaches(start: str, target: str, seen: set[str]) -> bool:
        for dep in graph.get(start, ()):
            if dep == target or (dep not in seen and reaches(dep, target, seen | {dep})):
                return True
        return False

    assert [name for name in graph if reaches(name, name, set())] == []


def test_face_keeps_the_names_other_code_uses():
    ops = make_ops({})
    assert ops.stats is ops.session.stats
    assert ops.xen is ops.conf.xenserver


def test_session_given_is_shared_with_its_statistics():
    session = FakeSession({})
    conf = make_ops({}).conf
    ops = XenVMOps(conf, session=session)
    assert ops.session is session and ops.stats is session.stats
