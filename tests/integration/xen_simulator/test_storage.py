"""Storage with real bytes: HTTP import/export, VDI operations, snapshot chains, VM copies."""

from __future__ import annotations

import os
import struct
import time
import urllib.error
import urllib.request
from typing import Any

import pytest

from virtdriver.xen.simulator import Simulator

from .conftest import failure, new_vm

MIB = 1024 * 1024


@pytest.fixture(scope="module")
def sim_options() -> dict[str, Any]:
    """Chains coalesce 0.3 s after they become coalescable."""
    return {"coalesce_delay": 0.3}


def sr_of(xapi: Any) -> str:
    """The default SR."""
    return xapi.pool.get_default_SR(xapi.pool.get_all()[0])


def make_vdi(xapi: Any, size: int = 8 * MIB, name: str = "d") -> str:
    """A user VDI on the default SR."""
    return xapi.VDI.create({"SR": sr_of(xapi), "virtual_size": str(size), "type": "User",
                            "name_label": name, "sharable": False, "read_only": False,
                            "other_config": {}})


def put(sim: Simulator, session: str, vdi: str, data: bytes, fmt: str = "raw") -> int:
    """PUT /import_raw_vdi; returns the HTTP status."""
    req = urllib.request.Request(
        f"{sim.url}/import_raw_vdi?session_id={session}&vdi={vdi}&format={fmt}", data=data,
        method="PUT")
    try:
        with urllib.request.urlopen(req, timeout=30) as resp:
            return resp.status
    except urllib.error.HTTPError as err:
        return err.code


def get(sim: Simulator, session: str, vdi: str, fmt: str = "raw") -> bytes:
    """GET /export_raw_vdi."""
    url = f"{sim.url}/export_raw_vdi?session_id={session}&vdi={vdi}&format={fmt}"
    with urllib.request.urlopen(url, timeout=30) as resp:
        return resp.read()


def pattern(size: int) -> bytes:
    """Some non-trivial bytes with holes."""
    data = bytearray(size)
    data[0:4096] = os.urandom(4096)
    data[3 * MIB:3 * MIB + 100] = b"x" * 100
    data[-512:] = os.urandom(512)
    return bytes(data)


def test_import_export_raw_byte_for_byte(sim: Simulator, session: Any, xapi: Any) -> None:
    """What goes in comes out; sessions are checked; unknown VDIs are 404."""
    vdi = make_vdi(xapi)
    data = pattern(8 * MIB)
    assert put(sim, session._session, vdi, data) == 200
    assert get(sim, session._session, vdi) == data
    uuid = xapi.VDI.get_uuid(vdi)
    assert get(sim, session._session, uuid) == data
    assert put(sim, "OpaqueRef:bad", vdi, b"zz") == 403
    with pytest.raises(urllib.error.HTTPError) as info:
        get(sim, "OpaqueRef:bad", vdi)
    assert info.value.code == 403
    assert put(sim, session._session, "OpaqueRef:none", b"zz") == 404
    assert put(sim, session._session, vdi, b"z" * (9 * MIB)) == 400


def test_vhd_round_trip(sim: Simulator, session: Any, xapi: Any) -> None:
    """format=vhd exports a dynamic VHD that imports back to the same bytes."""
    src, dst = make_vdi(xapi), make_vdi(xapi)
    data = pattern(8 * MIB)
    put(sim, session._session, src, data)
    vhd = get(sim, session._session, src, "vhd")
    assert vhd[:8] == b"conectix" and vhd[-512:-504] == b"conectix"
    check_dynamic_vhd(vhd, 8 * MIB)
    assert len(vhd) < len(data)  # sparse: only non-empty blocks
    assert put(sim, session._session, dst, vhd, "vhd") == 200
    assert get(sim, session._session, dst) == data


def _ones_complement_ok(block: bytes, at: int) -> bool:
    stored = struct.unpack(">I", block[at:at + 4])[0]
    zeroed = block[:at] + b"\0\0\0\0" + block[at + 4:]
    return stored == (~sum(zeroed)) & 0xFFFFFFFF


def check_dynamic_vhd(vhd: bytes, size: int) -> None:
    """Footer and header checksums, disk type 3 (dynamic), sizes and BAT bounds."""
    footer = vhd[-512:]
    assert footer == vhd[:512] and _ones_complement_ok(footer, 64)
    assert struct.unpack(">Q", footer[48:56])[0] == size
    assert struct.unpack(">I", footer[60:64])[0] == 3
    header_at = struct.unpack(">Q", footer[16:24])[0]
    header = vhd[header_at:header_at + 1024]
    assert header[:8] == b"cxsparse" and _ones_complement_ok(header, 36)
    bat_at, entries, block = struct.unpack(">QII", header[16:24] + header[28:36])
    assert entries * block >= size and block == 2 * MIB
    bat = struct.unpack(f">{entries}I", vhd[bat_at:bat_at + 4 * entries])
    for sector in bat:
        assert sector == 0xFFFFFFFF or sector * 512 + 512 + block <= len(vhd) - 512


def test_vdi_operations(sim: Simulator, session: Any, xapi: Any) -> None:
    """clone, copy, resize, resize_online, forget/introduce keep bytes; VDI_IN_USE rules."""
    vdi = make_vdi(xapi)
    data = pattern(8 * MIB)
    put(sim, session._session, vdi, data)
    assert xapi.VDI.get_type(vdi) == "user"
    clone = xapi.VDI.clone(vdi, {})
    copy = xapi.VDI.copy(vdi, sr_of(xapi))
    assert get(sim, session._session, clone) == data == get(sim, session._session, copy)
    xapi.VDI.resize(clone, str(16 * MIB))
    assert xapi.VDI.get_virtual_size(clone) == str(16 * MIB)
    assert get(sim, session._session, clone)[:8 * MIB] == data
    assert failure(xapi.VDI.resize, clone, str(MIB))[0] == "VDI_TOO_SMALL"
    uuid = xapi.VDI.get_uuid(copy)
    xapi.VDI.forget(copy)
    again = xapi.VDI.introduce(uuid, "back", "", sr_of(xapi), "user", False, False, {}, uuid,
                               {}, {}, True, "0", "0", "OpaqueRef:NULL", False,
                               "19700101T00:00:00Z", "OpaqueRef:NULL")
    assert get(sim, session._session, again) == data
    vm = new_vm(xapi, "inuse")
    vbd = xapi.VBD.create({"VM": vm, "VDI": vdi, "userdevice": "0", "bootable": True,
                           "mode": "RW", "type": "Disk", "unpluggable": True, "empty": False,
                           "other_config": {}})
    xapi.VM.start(vm, False, False)
    assert failure(xapi.VDI.destroy, vdi) == ["VDI_IN_USE", vdi, "destroy"]
    assert failure(xapi.VDI.resize, vdi, str(16 * MIB)) == ["VDI_IN_USE", vdi, "resize"]
    xapi.VDI.resize_online(vdi, str(16 * MIB))
    snap = xapi.VDI.snapshot(vdi, {})
    assert xapi.VDI.get_is_a_snapshot(snap) and xapi.VDI.get_snapshot_of(snap) == vdi
    xapi.VM.hard_shutdown(vm)
    xapi.VBD.destroy(vbd)
    xapi.VDI.destroy(vdi)
    assert vdi not in xapi.SR.get_VDIs(sr_of(xapi))


def test_snapshot_chain_and_coalesce(sim: Simulator, session: Any, xapi: Any) -> None:
    """VDI.snapshot records vhd-parent -> base copy; after deleting the snapshot and the
    coalesce delay, SR.scan collapses the chain."""
    vdi = make_vdi(xapi, name="leaf")
    data = pattern(8 * MIB)
    put(sim, session._session, vdi, data)
    snap = xapi.VDI.snapshot(vdi, {})
    parent_uuid = xapi.VDI.get_sm_config(vdi)["vhd-parent"]
    base = xapi.VDI.get_by_uuid(parent_uuid)
    assert xapi.VDI.get_managed(base) is False
    assert xapi.VDI.get_sm_config(snap)["vhd-parent"] == parent_uuid
    assert get(sim, session._session, snap) == data
    time.sleep(0.35)
    xapi.SR.scan(sr_of(xapi))  # two children: no coalesce
    assert xapi.VDI.get_sm_config(vdi)["vhd-parent"] == parent_uuid
    xapi.VDI.destroy(snap)
    time.sleep(0.1)
    xapi.SR.scan(sr_of(xapi))
    assert "vhd-parent" not in xapi.VDI.get_sm_config(vdi)
    assert base not in xapi.VDI.get_all()
    assert get(sim, session._session, vdi) == data


def test_vm_clone_copy_snapshot_with_disks(sim: Simulator, session: Any, xapi: Any) -> None:
    """VM.clone / VM.copy / VM.snapshot bring VBDs, VIFs and disk bytes along."""
    vm = new_vm(xapi, "src", disk=4 * MIB, vif=True)
    vdi = xapi.VBD.get_VDI(xapi.VM.get_VBDs(vm)[0])
    data = pattern(4 * MIB)
    put(sim, session._session, vdi, data)
    for new in (xapi.VM.clone(vm, "c1"), xapi.VM.copy(vm, "c2", sr_of(xapi)),
                xapi.VM.snapshot(vm, "s1")):
        vbds = xapi.VM.get_VBDs(new)
        assert len(vbds) == 1 and len(xapi.VM.get_VIFs(new)) == 1
        new_vdi = xapi.VBD.get_VDI(vbds[0])
        assert new_vdi != vdi
        assert get(sim, session._session, new_vdi) == data
    xapi.VM.start(vm, False, False)
    assert failure(xapi.VM.clone, vm, "nope")[0] == "VM_BAD_POWER_STATE"
    xapi.VM.hard_shutdown(vm)


def test_sr_full(xapi: Any) -> None:
    """SR_FULL [requested, maximum] when user disks would exceed the SR (thin: snapshots
    and base copies do not count)."""
    sr = sr_of(xapi)
    size = int(xapi.SR.get_physical_size(sr))
    details = failure(xapi.VDI.create, {"SR": sr, "virtual_size": str(size + 1), "type": "user",
                                        "name_label": "too big", "other_config": {}})
    assert details[0] == "SR_FULL" and details[2] == str(size)
