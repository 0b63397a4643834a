"""Fixtures for the network-fault tests: a simulator of each backend per module, and a
:class:`tests.support.faultproxy.FaultProxy` in front of it per test."""

from __future__ import annotations

import pathlib
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest

from tests.support.faultproxy import FaultProxy
from tests.support.markers import mark_integration_under
from tests.support.xapi import running_simulator

HERE = pathlib.Path(__file__).resolve().parent


def run_bounded(function: Any, limit: float) -> tuple[Any, BaseException | None, float]:
    """Run ``function`` in a thread for at most ``limit`` s: (result, error, seconds).

    A call that is still blocked at the limit fails the test instead of hanging it.
    """
    outcome: dict[str, Any] = {}

    def target() -> None:
        try:
            outcome["result"] = function()
        except BaseException as error:  # noqa: BLE001 - handed to the test
            outcome["error"] = error

    thread = threading.Thread(target=target, daemon=True, name="bounded-call")
    start = time.monotonic()
    thread.start()
    thread.join(limit)
    took = time.monotonic() - start
    if thread.is_alive():
        pytest.fail(f"the call was still blocked after {limit:.0f} s")
    return outcome.get("result"), outcome.get("error"), took


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Mark every test under this directory as an integration test."""
    mark_integration_under(HERE, items)


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
    with running_simulator() as sim:
        yield sim


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
