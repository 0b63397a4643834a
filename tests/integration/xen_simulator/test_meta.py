"""Package-level checks: coverage document current, error codes declared once, standalone
imports, the RRD endpoint and the session cap."""

from __future__ import annotations

import pathlib
import re
import urllib.request
import xmlrpc.client
from typing import Any

from virtdriver.xen import simulator as simpkg
from virtdriver.xen.simulator import Simulator
from virtdriver.xen.simulator.coverage import render
from virtdriver.xen.simulator.errors import declared
from virtdriver.xen.simulator.sessions import Sessions

from .conftest import new_vm

PKG = pathlib.Path(simpkg.__file__).resolve().parent
SOURCES = sorted(PKG.rglob("*.py"))


def test_coverage_document_is_current() -> None:
    """IMPLEMENTATION_COVERAGE.md equals what coverage.py renders."""
    assert (PKG / "IMPLEMENTATION_COVERAGE.md").read_text() == render()


def test_every_raised_code_is_declared() -> None:
    """Every XapiError("CODE", ...) in the sources is in the declared table."""
    codes = set()
    for path in SOURCES:
        codes |= set(re.findall(r'XapiError\(\s*"([A-Z0-9_]+)"', path.read_text()))
    assert codes and all(declared(c) for c in codes), sorted(c for c in codes if not declared(c))


def test_standalone_imports() -> None:
    """The simulator imports nothing from the rest of virtdriver."""
    for path in SOURCES:
        text = path.read_text()
        assert not re.search(r"^\s*(from|import)\s+virtdriver", text, re.M), path
        depth = len(path.relative_to(PKG).parts)
        assert not re.search(rf"^\s*from\s+\.{{{depth + 1},}}", text, re.M), path


def test_vm_rrd(sim: Simulator, session: Any, xapi: Any) -> None:
    """GET /vm_rrd returns an RRD document with the VM's data sources."""
    vm = new_vm(xapi, "rrd", vif=True)
    xapi.VM.start(vm, False, False)
    url = f"{sim.url}/vm_rrd?session_id={session._session}&uuid={xapi.VM.get_uuid(vm)}"
    with urllib.request.urlopen(url, timeout=10) as resp:
        body = resp.read().decode()
    assert body.startswith("<rrd>") and "<name>cpu0</name>" in body
    assert "<name>vif_0_rx</name>" in body
    xapi.VM.hard_shutdown(vm)


def test_oldest_session_dropped_above_cap(sim: Simulator) -> None:
    """Above MAX_SESSIONS logins the oldest session becomes invalid."""
    proxy = xmlrpc.client.ServerProxy(sim.url)
    first = proxy.session.login_with_password("root", "secret")["Value"]
    for _ in range(Sessions.MAX_SESSIONS):
        proxy.session.login_with_password("root", "secret")
    assert proxy.VM.get_all(first)["ErrorDescription"] == ["SESSION_INVALID", first]
