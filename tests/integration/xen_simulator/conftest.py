"""Fixtures for the XAPI simulator conformance suite: one Simulator per test module.

A module may override ``sim_options`` (module scope) to pass keyword arguments to
``Simulator``.  ``xapi`` is a logged-in ``XenAPI.Session``'s ``xenapi`` proxy.
"""

from __future__ import annotations

import contextlib
import os
import pathlib
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
import XenAPI

from tests.support.markers import mark_integration_under
from virtdriver.xen.simulator import Simulator

HERE = pathlib.Path(__file__).resolve().parent


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Mark every test under this directory as an integration test."""
    mark_integration_under(HERE, items)


@pytest.fixture(scope="module")
def sim_options() -> dict[str, Any]:
    """Keyword arguments for the module's Simulator."""
    return {}


@pytest.fixture(scope="module")
def sim(sim_options: dict[str, Any]) -> Iterator[Simulator]:
    """A running simulator for the module; afterwards its temp dir and threads are gone."""
    before = set(threading.enumerate())
    simulator = Simulator(**sim_options).start()
    try:
        yield simulator
    finally:
        workdir = simulator.workdir  # reset() may have replaced it
        simulator.stop()
    assert not os.path.exists(workdir)
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        leaked = [t for t in set(threading.enumerate()) - before if t.is_alive()]
        if not leaked:
            break
        time.sleep(0.05)
    assert not leaked, leaked


@pytest.fixture
def session(sim: Simulator) -> Iterator[XenAPI.Session]:
    """A logged-in XenAPI session (logged out afterwards)."""
    ses = XenAPI.Session(sim.url)
    ses.xenapi.login_with_password("root", "secret", "2.1", "pytest")
    yield ses
    with contextlib.suppress(Exception):
        ses.xenapi.session.logout()


@pytest.fixture
def xapi(session: XenAPI.Session) -> Any:
    """The ``xenapi`` proxy of a logged-in session."""
    return session.xenapi


def failure(fn: Any, *args: Any) -> list[str]:
    """Call and return the XAPI error description (fails the test if no error)."""
    with pytest.raises(XenAPI.Failure) as info:
        fn(*args)
    return info.value.details


def new_vm(xapi: Any, name: str = "vm", memory: int = 256 * 1024 * 1024,
           disk: int | None = None, vif: bool = False) -> str:
    """A halted VM, optionally with a disk on the default SR and a VIF."""
    vm = xapi.VM.create({"name_label": name, "memory_static_max": str(memory),
                         "memory_dynamic_max": str(memory), "memory_dynamic_min": str(memory),
                         "memory_static_min": str(memory), "VCPUs_max": "1",
                         "VCPUs_at_startup": "1", "other_config": {}})
    if disk is not None:
        pool = xapi.pool.get_all()[0]
        sr = xapi.pool.get_default_SR(pool)
        vdi = xapi.VDI.create({"SR": sr, "virtual_size": str(disk), "type": "user",
                               "name_label": name + "-disk", "sharable": False,
                               "read_only": False, "other_config": {}})
        xapi.VBD.create({"VM": vm, "VDI": vdi, "userdevice": "0", "bootable": True,
                         "mode": "RW", "type": "Disk", "unpluggable": True, "empty": False,
                         "other_config": {}, "qos_algorithm_type": "",
                         "qos_algorithm_params": {}})
    if vif:
        net = xapi.network.get_all_records_where('field "bridge" = "xenbr0"')
        xapi.VIF.create({"VM": vm, "network": next(iter(net)), "device": "0", "MAC": "",
                         "MTU": "1500", "other_config": {}, "qos_algorithm_type": "",
                         "qos_algorithm_params": {}})
    return vm
