"""Fixtures for the network-fault tests: a simulator of each backend per module, and a
:class:`tests.support.faultproxy.FaultProxy` in front of it per test."""

from __future__ import annotations

import pathlib
from collections.abc import Iterator
from typing import Any

import pytest

from tests.support.faultproxy import FaultProxy

HERE = pathlib.Path(__file__).resolve().parent


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Mark every test under this directory as an integration test."""
    for item in items:
        if HERE in pathlib.Path(str(item.fspath)).resolve().parents:
            item.add_marker(pytest.mark.integration)


@pytest.fixture(scope="module")
def vcsim() -> Iterator[Any]:
    """The project's vcsim launcher (TLS, test CA, fault injection) for this module."""
    from virtdriver.vmware.simulator import Vcsim

    sim = Vcsim()  # the launcher, built into the user's cache on first use
    sim.start()
    try:
        yield sim
    finally:
        sim.stop()


@pytest.fixture(scope="module")
def xapi_sim() -> Iterator[Any]:
    """The XAPI simulator (plain HTTP on loopback) for this module."""
    from virtdriver.xen.simulator import Simulator

    sim = Simulator(host="127.0.0.1", port=0, username="root", password="secret").start()
    try:
        yield sim
    finally:
        sim.stop()


@pytest.fixture
def vcsim_proxy(vcsim: Any) -> Iterator[FaultProxy]:
    """A fault proxy in front of vcsim; injection rules cleared after the test."""
    with FaultProxy(vcsim.host, vcsim.port) as proxy:
        try:
            yield proxy
        finally:
            vcsim.clear_faults()


@pytest.fixture
def xapi_proxy(xapi_sim: Any) -> Iterator[FaultProxy]:
    """A fault proxy in front of the XAPI simulator."""
    from urllib.parse import urlsplit

    parsed = urlsplit(xapi_sim.url)
    with FaultProxy(parsed.hostname or "127.0.0.1", parsed.port or 80) as proxy:
        yield proxy
