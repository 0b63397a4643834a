"""Fixtures for VMware integration tests: one vCenter simulator per test module.

``vcsim`` (module scope) starts the project's launcher (``virtdriver/vmware/simulator``) on a
free loopback port, over TLS with a freshly generated test CA, with required
credentials, and stops it by PID after the module.  A module may override the
module-scoped ``vcsim_flags`` fixture to choose the inventory and options
(keyword arguments of ``virtdriver.vmware.simulator.Vcsim.start``)::

    @pytest.fixture(scope="module")
    def vcsim_flags():
        return {"ds": 2, "standalone_host": 1, "idle": "30s"}

When ``VCSIM_URL`` is set (with ``VCSIM_USERNAME``, ``VCSIM_PASSWORD`` and
optionally ``VCSIM_CA_FILE``), ``vcsim`` describes that server instead; its
``inject``/``expire_sessions`` raise ``FaultInjectionUnavailable``.
"""

from __future__ import annotations

import os
import pathlib
from collections.abc import Iterator
from typing import Any

import pytest

import virtdriver
from tests.integration.vmware.helpers import TWO_CLUSTERS, make_conf, require_launcher
from tests.support.markers import mark_integration_under
from virtdriver.vmware.simulator import RemoteVcsim, Vcsim, build_launcher

HERE = pathlib.Path(__file__).resolve().parent


#: Fixtures that only the project's launcher serves (fault injection, stand-ins).
LAUNCHER_FIXTURES = {"vcsim_faults", "array"}


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Mark every test under this directory as an integration test; with ``VCSIM_URL`` (a
    server that is not our launcher), deselect the tests that need the launcher, and say so.

    Deselected, never skipped: ``make test`` runs without ``VCSIM_URL``, so CI runs them all.
    """
    mark_integration_under(HERE, items)
    needs_launcher = []
    for item in items:
        if LAUNCHER_FIXTURES & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.needs_launcher)
        if item.path.is_relative_to(HERE) and item.get_closest_marker("needs_launcher"):
            needs_launcher.append(item)
    if os.environ.get("VCSIM_URL") and needs_launcher:
        config.hook.pytest_deselected(items=needs_launcher)
        items[:] = [item for item in items if item not in needs_launcher]
        reporter = config.pluginmanager.get_plugin("terminalreporter")
        if reporter is not None:
            reporter.write_line(f"VCSIM_URL is set: {len(needs_launcher)} VMware tests that "
                                "need the project's vcsim launcher are deselected")


@pytest.fixture(scope="session")
def vcsim_binary() -> pathlib.Path | None:
    """The launcher binary (built once per session); None with VCSIM_URL."""
    if os.environ.get("VCSIM_URL"):
        return None
    return build_launcher()


@pytest.fixture(scope="module")
def vcsim_flags() -> dict[str, Any]:
    """Keyword arguments for ``Vcsim.start``; override per module."""
    return {}


@pytest.fixture(scope="module")
def vcsim(
    vcsim_binary: pathlib.Path | None, vcsim_flags: dict[str, Any]
) -> Iterator[Vcsim | RemoteVcsim]:
    """A running simulator for this module (or the VCSIM_URL server)."""
    if os.environ.get("VCSIM_URL"):
        yield RemoteVcsim.from_env()
        return
    sim = Vcsim(vcsim_binary)
    sim.start(**vcsim_flags)
    try:
        yield sim
    finally:
        sim.stop()


@pytest.fixture
def vcsim_faults(vcsim: Vcsim | RemoteVcsim) -> Iterator[Vcsim | RemoteVcsim]:
    """The module's simulator, with every injection rule cleared after the test."""
    require_launcher(vcsim)
    try:
        yield vcsim
    finally:
        vcsim.clear_faults()


@pytest.fixture(scope="module")
def computes(vcsim: Vcsim | RemoteVcsim, image_store: Any) -> Iterator[tuple[Any, Any]]:
    """One backend per cluster of a two-cluster vcsim (a module's ``vcsim_flags`` asks for
    ``"cluster": 2``), as two nova-computes drive them; ``image_store`` is the module's."""
    pair = tuple(virtdriver.load_backend("vmware", make_conf(vcsim, cluster_name=name),
                                         image_store=image_store) for name in TWO_CLUSTERS)
    yield pair
    for backend in pair:
        backend.close()
