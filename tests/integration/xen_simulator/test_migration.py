"""Migration: pool_migrate inside a 2-host pool; migrate_receive + migrate_send across pools."""

from __future__ import annotations

import os
import urllib.request
from collections.abc import Iterator
from typing import Any

import pytest
import XenAPI

from virtdriver.xen.simulator import Simulator

from .conftest import failure, new_vm


@pytest.fixture(scope="module")
def sim_options() -> dict[str, Any]:
    """A two-host pool."""
    return {"hosts": 2}


@pytest.fixture(scope="module")
def dest_sim() -> Iterator[Simulator]:
    """A second, independent pool."""
    with Simulator(pool_name="dest") as sim:
        yield sim


@pytest.fixture
def dest(dest_sim: Simulator) -> Iterator[Any]:
    """Logged-in session on the destination pool."""
    ses = XenAPI.Session(dest_sim.url)
    ses.xenapi.login_with_password("root", "secret", "2.1", "t")
    yield ses.xenapi
    ses.xenapi.session.logout()


def test_pool_migrate(xapi: Any) -> None:
    """A running VM moves between the two hosts; memory accounting follows."""
    h0, h1 = sorted(xapi.host.get_all(), key=lambda h: xapi.host.get_name_label(h))
    vm = new_vm(xapi, "mover", vif=True)
    assert failure(xapi.VM.pool_migrate, vm, h1, {"live": "true"})[0] == "VM_BAD_POWER_STATE"
    xapi.VM.start_on(vm, h0, False, False)
    free1 = int(xapi.host.compute_free_memory(h1))
    xapi.VM.pool_migrate(vm, h1, {"live": "true"})
    assert xapi.VM.get_resident_on(vm) == h1 and vm in xapi.host.get_resident_VMs(h1)
    assert vm not in xapi.host.get_resident_VMs(h0)
    assert int(xapi.host.compute_free_memory(h1)) == free1 - 256 * 1024 * 1024
    addr = xapi.host.get_address(h1)
    rfb = [c for c in xapi.VM.get_consoles(vm) if xapi.console.get_protocol(c) == "rfb"]
    assert xapi.console.get_location(rfb[0]).startswith(f"https://{addr}/")
    xapi.VM.hard_shutdown(vm)


def test_migrate_receive_shape(dest: Any) -> None:
    """migrate_receive returns session, host, SR, master URL and xenops/SM URLs."""
    host = dest.host.get_all()[0]
    net = next(iter(dest.network.get_all_records_where('field "bridge" = "xenbr0"')))
    data = dest.host.migrate_receive(host, net, {})
    assert data["host"] == host and data["session_id"].startswith("OpaqueRef:")
    assert data["SR"] == dest.pool.get_default_SR(dest.pool.get_all()[0])
    assert data["master"].startswith("http://") and "xenops" in data["xenops"]


def test_migrate_send_across_pools(sim: Simulator, session: Any, xapi: Any,
                                   dest_sim: Simulator, dest: Any) -> None:
    """The VM, its VBD/VIF and disk bytes arrive at the destination, running; source cleared."""
    vm = new_vm(xapi, "traveller", disk=2 * 1024 * 1024, vif=True)
    uuid = xapi.VM.get_uuid(vm)
    vdi = xapi.VBD.get_VDI(xapi.VM.get_VBDs(vm)[0])
    data = os.urandom(2 * 1024 * 1024)
    req = urllib.request.Request(
        f"{sim.url}/import_raw_vdi?session_id={session._session}&vdi={vdi}&format=raw",
        data=data, method="PUT")
    urllib.request.urlopen(req, timeout=10).close()
    xapi.VM.start(vm, False, False)
    dhost = dest.host.get_all()[0]
    net = next(iter(dest.network.get_all_records_where('field "bridge" = "xenbr0"')))
    receive = dest.host.migrate_receive(dhost, net, {})
    dsr = receive["SR"]
    assert failure(xapi.VM.assert_can_migrate, vm, {**receive, "SR": ""}, True, {}, {}, {}) \
        == ["VDI_NOT_IN_MAP", vdi]
    xapi.VM.assert_can_migrate(vm, receive, True, {vdi: dsr}, {}, {})
    xapi.VM.migrate_send(vm, receive, True, {vdi: dsr}, {}, {})
    assert vm not in xapi.VM.get_all() and vdi not in xapi.VDI.get_all()
    new = dest.VM.get_by_uuid(uuid)
    rec = dest.VM.get_record(new)
    assert rec["power_state"] == "Running" and rec["resident_on"] == dhost
    assert len(rec["VIFs"]) == 1 and len(rec["VBDs"]) == 1
    new_vdi = dest.VBD.get_VDI(rec["VBDs"][0])
    assert dest.VDI.get_SR(new_vdi) == dsr
    url = (f"{dest_sim.url}/export_raw_vdi?session_id={receive['session_id']}&vdi={new_vdi}"
           "&format=raw")
    with urllib.request.urlopen(url, timeout=10) as resp:
        assert resp.read() == data


def test_migrate_send_unreachable(xapi: Any) -> None:
    """An unreachable destination gives VM_MIGRATE_FAILED and leaves the VM in place."""
    vm = new_vm(xapi, "stay")
    bogus = {"master": "http://127.0.0.1:9/", "session_id": "OpaqueRef:x",
             "host": "OpaqueRef:h", "SR": "OpaqueRef:s"}
    assert failure(xapi.VM.migrate_send, vm, bogus, True, {}, {}, {})[0] == "VM_MIGRATE_FAILED"
    assert xapi.VM.get_power_state(vm) == "Halted"
