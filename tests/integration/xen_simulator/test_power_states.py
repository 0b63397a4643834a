"""Every row of the VM power-state table (xapi.md 3.3), with xapi's check order."""

from __future__ import annotations

from typing import Any

import pytest

from .conftest import failure, new_vm

STATES = ("Halted", "Paused", "Suspended", "Running")

# op -> (allowed from, resulting state)
ROWS: dict[str, tuple[tuple[str, ...], str | None]] = {
    "start": (("Halted",), "Running"),
    "start_on": (("Halted",), "Running"),
    "pause": (("Running",), "Paused"),
    "unpause": (("Paused",), "Running"),
    "suspend": (("Running",), "Suspended"),
    "resume": (("Suspended",), "Running"),
    "resume_on": (("Suspended",), "Running"),
    "clean_shutdown": (("Running",), "Halted"),
    "clean_reboot": (("Running",), "Running"),
    "hard_shutdown": (("Paused", "Suspended", "Running"), "Halted"),
    "hard_reboot": (("Paused", "Running"), "Running"),
    "shutdown": (("Paused", "Suspended", "Running"), "Halted"),
}


def put_in_state(xapi: Any, vm: str, state: str) -> None:
    """Drive a halted VM into ``state``."""
    if state == "Halted":
        return
    xapi.VM.start(vm, state == "Paused", False)
    if state == "Suspended":
        xapi.VM.suspend(vm)


def invoke(xapi: Any, op: str, vm: str, host: str) -> None:
    """Call ``VM.<op>`` with its usual parameters."""
    fn = getattr(xapi.VM, op)
    if op in ("start",):
        fn(vm, False, False)
    elif op in ("start_on", "resume_on"):
        fn(vm, host, False, False)
    elif op == "resume":
        fn(vm, False, False)
    else:
        fn(vm)


@pytest.mark.parametrize("op", sorted(ROWS))
@pytest.mark.parametrize("state", STATES)
def test_power_table(xapi: Any, op: str, state: str) -> None:
    """Allowed transitions land in the right state; others give VM_BAD_POWER_STATE."""
    allowed, result = ROWS[op]
    host = xapi.host.get_all()[0]
    vm = new_vm(xapi, f"{op}-{state}")
    put_in_state(xapi, vm, state)
    if state in allowed:
        invoke(xapi, op, vm, host)
        rec = xapi.VM.get_record(vm)
        assert rec["power_state"] == result
        live = result in ("Running", "Paused")
        assert (rec["domid"] != "-1") == live
        assert (rec["resident_on"] != "OpaqueRef:NULL") == live
    else:
        details = failure(invoke, xapi, op, vm, host)
        assert details == ["VM_BAD_POWER_STATE", vm, ", ".join(s.lower() for s in allowed),
                           state.lower()]
        assert xapi.VM.get_power_state(vm) == state
    if xapi.VM.get_power_state(vm) != "Halted":
        xapi.VM.hard_shutdown(vm)
    xapi.VM.destroy(vm)


def test_start_sets_live_fields(xapi: Any) -> None:
    """domid, resident_on, metrics, VBD/VIF currently_attached, consoles, guest metrics."""
    vm = new_vm(xapi, "live", disk=1024 * 1024, vif=True)
    host = xapi.host.get_all()[0]
    free_before = int(xapi.host.compute_free_memory(host))
    xapi.VM.start_on(vm, host, False, False)
    rec = xapi.VM.get_record(vm)
    assert rec["power_state"] == "Running" and int(rec["domid"]) > 0
    assert rec["resident_on"] == host and vm in xapi.host.get_resident_VMs(host)
    assert xapi.VM_metrics.get_memory_actual(rec["metrics"]) == rec["memory_static_max"]
    assert all(xapi.VBD.get_currently_attached(v) for v in rec["VBDs"])
    assert xapi.VBD.get_device(rec["VBDs"][0]) == "xvda"
    assert all(xapi.VIF.get_currently_attached(v) for v in rec["VIFs"])
    consoles = [xapi.console.get_record(c) for c in rec["consoles"]]
    rfb = [c for c in consoles if c["protocol"] == "rfb"]
    assert rfb and rfb[0]["location"].startswith("https://") and "console?ref=" in \
        rfb[0]["location"]
    gm = xapi.VM_guest_metrics.get_record(rec["guest_metrics"])
    assert gm["PV_drivers_detected"] is True and gm["networks"]["0/ip"]
    assert int(xapi.host.compute_free_memory(host)) == free_before - 256 * 1024 * 1024
    old_domid = rec["domid"]
    xapi.VM.clean_reboot(vm)
    assert xapi.VM.get_domid(vm) != old_domid
    xapi.VM.hard_shutdown(vm)
    rec = xapi.VM.get_record(vm)
    assert rec["domid"] == "-1" and rec["resident_on"] == "OpaqueRef:NULL"
    assert rec["consoles"] == [] and rec["guest_metrics"] == "OpaqueRef:NULL"
    assert not any(xapi.VBD.get_currently_attached(v) for v in rec["VBDs"])
    assert int(xapi.host.compute_free_memory(host)) == free_before


def test_suspend_creates_and_resume_deletes_suspend_vdi(xapi: Any) -> None:
    """suspend_VDI lifecycle; hard_shutdown from Suspended drops it."""
    vm = new_vm(xapi, "susp")
    xapi.VM.start(vm, False, False)
    xapi.VM.suspend(vm)
    vdi = xapi.VM.get_suspend_VDI(vm)
    assert xapi.VDI.get_type(vdi) == "suspend"
    xapi.VM.resume(vm, False, False)
    assert xapi.VM.get_suspend_VDI(vm) == "OpaqueRef:NULL"
    assert vdi not in xapi.VDI.get_all()
    xapi.VM.suspend(vm)
    vdi = xapi.VM.get_suspend_VDI(vm)
    xapi.VM.hard_shutdown(vm)
    assert vdi not in xapi.VDI.get_all()
    assert xapi.VM.get_power_state(vm) == "Halted"


def test_start_paused(xapi: Any) -> None:
    """start(vm, True, False) leaves the VM Paused."""
    vm = new_vm(xapi, "paused")
    xapi.VM.start(vm, True, False)
    assert xapi.VM.get_power_state(vm) == "Paused"
    xapi.VM.unpause(vm)
    assert xapi.VM.get_power_state(vm) == "Running"
    xapi.VM.hard_shutdown(vm)


def test_check_order_blocked_before_power_state(xapi: Any) -> None:
    """OPERATION_BLOCKED wins over VM_BAD_POWER_STATE; start_on is not blocked by start."""
    vm = new_vm(xapi, "blocked")
    xapi.VM.set_blocked_operations(vm, {"start": "bootlock", "pause": "nope"})
    assert failure(xapi.VM.start, vm, False, False) == ["OPERATION_BLOCKED", vm, "bootlock"]
    assert failure(xapi.VM.pause, vm) == ["OPERATION_BLOCKED", vm, "nope"]
    assert "start" not in xapi.VM.get_allowed_operations(vm)
    xapi.VM.start_on(vm, xapi.host.get_all()[0], False, False)
    xapi.VM.remove_from_blocked_operations(vm, "start")
    xapi.VM.remove_from_blocked_operations(vm, "start")  # idempotent
    assert xapi.VM.get_blocked_operations(vm) == {"pause": "nope"}
    xapi.VM.hard_shutdown(vm)


def test_template_and_snapshot_checks(xapi: Any) -> None:
    """VM_IS_TEMPLATE [vm, op] for templates; snapshots refuse start with VM_IS_SNAPSHOT."""
    vm = new_vm(xapi, "tmpl")
    xapi.VM.set_is_a_template(vm, True)
    assert failure(xapi.VM.start, vm, False, False) == ["VM_IS_TEMPLATE", vm, "start"]
    clone = xapi.VM.clone(vm, "from-template")
    assert xapi.VM.get_is_a_template(clone) is True
    xapi.VM.set_is_a_template(clone, False)
    xapi.VM.start(clone, False, False)
    snap = xapi.VM.snapshot(clone, "snap")
    assert xapi.VM.get_is_a_snapshot(snap) is True
    assert xapi.VM.get_snapshot_of(snap) == clone
    assert snap in xapi.VM.get_snapshots(clone)
    assert failure(xapi.VM.start, snap, False, False) == ["VM_IS_TEMPLATE", snap, "start"]
    xapi.VM.set_is_a_template(snap, False)
    assert failure(xapi.VM.start, snap, False, False) == ["VM_IS_SNAPSHOT", snap, "start"]
    xapi.VM.hard_shutdown(clone)


def test_not_enough_memory(sim: Any, xapi: Any) -> None:
    """HOST_NOT_ENOUGH_FREE_MEMORY [needed, available]."""
    host = xapi.host.get_all()[0]
    free = int(xapi.host.compute_free_memory(host))
    big = free + 1024 * 1024
    vm = new_vm(xapi, "huge", memory=big)
    assert failure(xapi.VM.start, vm, False, False) == [
        "HOST_NOT_ENOUGH_FREE_MEMORY", str(big), str(free)]
    assert xapi.VM.get_power_state(vm) == "Halted"
    xapi.VM.destroy(vm)


def test_destroy_removes_devices_not_vdis(xapi: Any) -> None:
    """VM.destroy deletes VBDs, VIFs and metrics but keeps VDIs."""
    vm = new_vm(xapi, "gone", disk=4096, vif=True)
    rec = xapi.VM.get_record(vm)
    vdi = xapi.VBD.get_VDI(rec["VBDs"][0])
    xapi.VM.start(vm, False, False)
    assert failure(xapi.VM.destroy, vm)[:2] == ["VM_BAD_POWER_STATE", vm]
    xapi.VM.hard_shutdown(vm)
    xapi.VM.destroy(vm)
    assert vm not in xapi.VM.get_all()
    assert rec["VBDs"][0] not in xapi.VBD.get_all()
    assert rec["VIFs"][0] not in xapi.VIF.get_all()
    assert rec["metrics"] not in xapi.VM_metrics.get_all()
    assert vdi in xapi.VDI.get_all() and xapi.VDI.get_VBDs(vdi) == []
    assert failure(xapi.VM.get_record, vm) == ["HANDLE_INVALID", "VM", vm]


def test_device_plug_rules(xapi: Any) -> None:
    """VBD/VIF plug needs Running; DEVICE_ALREADY_ATTACHED/DETACHED; VDI_IN_USE."""
    vm = new_vm(xapi, "dev", disk=4096, vif=True)
    vbd, vif = xapi.VM.get_VBDs(vm)[0], xapi.VM.get_VIFs(vm)[0]
    vdi = xapi.VBD.get_VDI(vbd)
    assert failure(xapi.VBD.plug, vbd) == ["VM_BAD_POWER_STATE", vm, "running", "halted"]
    assert failure(xapi.VIF.plug, vif) == ["VM_BAD_POWER_STATE", vm, "running", "halted"]
    xapi.VM.start(vm, False, False)
    assert failure(xapi.VBD.plug, vbd) == ["DEVICE_ALREADY_ATTACHED", vbd]
    assert failure(xapi.VIF.plug, vif) == ["DEVICE_ALREADY_ATTACHED", vif]
    assert failure(xapi.VDI.destroy, vdi) == ["VDI_IN_USE", vdi, "destroy"]
    xapi.VBD.unplug(vbd)
    assert xapi.VBD.get_currently_attached(vbd) is False
    assert failure(xapi.VBD.unplug, vbd) == ["DEVICE_ALREADY_DETACHED", vbd]
    xapi.VIF.unplug(vif)
    assert failure(xapi.VIF.unplug, vif) == ["DEVICE_ALREADY_DETACHED", vif]
    xapi.VBD.plug(vbd)
    xapi.VBD.set_unpluggable(vbd, False)
    assert failure(xapi.VBD.unplug, vbd) == ["VBD_NOT_UNPLUGGABLE", vbd]
    xapi.VBD.unplug_force(vbd)
    assert xapi.VM.get_allowed_VIF_devices(vm) == ["1", "2", "3", "4", "5", "6"]
    assert xapi.VM.get_allowed_VBD_devices(vm)[0] == "1"
    xapi.VM.hard_shutdown(vm)


def test_missing_pv_drivers(xapi: Any) -> None:
    """An HVM guest without PV drivers refuses clean ops with VM_MISSING_PV_DRIVERS [vm]."""
    vm = new_vm(xapi, "nopv")
    xapi.VM.add_to_other_config(vm, "sim-pv-drivers", "false")
    xapi.VM.start(vm, False, False)
    assert failure(xapi.VM.clean_shutdown, vm) == ["VM_MISSING_PV_DRIVERS", vm]
    assert failure(xapi.VM.clean_reboot, vm) == ["VM_MISSING_PV_DRIVERS", vm]
    xapi.VM.hard_shutdown(vm)


def test_dom0_exists(xapi: Any) -> None:
    """A control domain resident on the host with domid 0."""
    doms = xapi.VM.get_all_records_where('field "is_control_domain" = "true"')
    (rec,) = doms.values()
    assert rec["domid"] == "0" and rec["power_state"] == "Running"
    assert rec["resident_on"] == xapi.host.get_all()[0]


def test_vm_requires_sr(xapi: Any) -> None:
    """A disk on an SR not plugged on the host: VM_REQUIRES_SR [vm, sr]."""
    vm = new_vm(xapi, "needs-sr", disk=4096)
    sr = xapi.VDI.get_SR(xapi.VBD.get_VDI(xapi.VM.get_VBDs(vm)[0]))
    pbd = xapi.SR.get_PBDs(sr)[0]
    xapi.PBD.unplug(pbd)
    try:
        assert failure(xapi.VM.start, vm, False, False) == ["VM_REQUIRES_SR", vm, sr]
    finally:
        xapi.PBD.plug(pbd)
    xapi.VM.start(vm, False, False)
    xapi.VM.hard_shutdown(vm)


def test_cd_drive_rules(xapi: Any) -> None:
    """insert/eject: VBD_NOT_EMPTY, VBD_IS_EMPTY, VBD_NOT_REMOVABLE_MEDIA."""
    vm = new_vm(xapi, "cd", disk=4096)
    disk_vbd = xapi.VM.get_VBDs(vm)[0]
    iso_sr = next(iter(xapi.SR.get_all_records_where('field "content_type" = "iso"')))
    iso = xapi.VDI.create({"SR": iso_sr, "virtual_size": "4096", "type": "user",
                           "name_label": "tools.iso", "read_only": True, "sharable": True,
                           "other_config": {}})
    cd = xapi.VBD.create({"VM": vm, "VDI": "OpaqueRef:NULL", "userdevice": "3", "type": "CD",
                          "mode": "RO", "bootable": False, "empty": True, "unpluggable": True,
                          "other_config": {}})
    assert failure(xapi.VBD.eject, cd) == ["VBD_IS_EMPTY", cd]
    xapi.VBD.insert(cd, iso)
    assert xapi.VBD.get_VDI(cd) == iso and xapi.VBD.get_empty(cd) is False
    assert failure(xapi.VBD.insert, cd, iso) == ["VBD_NOT_EMPTY", cd]
    assert failure(xapi.VBD.eject, disk_vbd) == ["VBD_NOT_REMOVABLE_MEDIA", disk_vbd]
    xapi.VBD.eject(cd)
    assert xapi.VBD.get_empty(cd) is True and xapi.VBD.get_VDI(cd) == "OpaqueRef:NULL"
