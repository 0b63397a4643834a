"""A Nova-style driver flow end to end (xapi.md sections 1-2), with the records Nova sends."""

from __future__ import annotations

import urllib.request
import uuid as _uuid
from typing import Any

from .conftest import failure

MIB = 1024 * 1024


def nova_vm_record(name: str, host: str, nova_uuid: str) -> dict[str, Any]:
    """The VM.create record shape Nova's create_vm built."""
    mem = str(512 * MIB)
    return {
        "actions_after_crash": "destroy", "actions_after_reboot": "restart",
        "actions_after_shutdown": "destroy", "affinity": host, "blocked_operations": {},
        "ha_always_run": False, "ha_restart_priority": "", "HVM_boot_params": {"order": "dc"},
        "HVM_boot_policy": "BIOS order", "is_a_template": False, "memory_dynamic_min": mem,
        "memory_dynamic_max": mem, "memory_static_min": "0", "memory_static_max": mem,
        "memory_target": mem, "name_description": "", "name_label": name,
        "other_config": {"nova_uuid": nova_uuid}, "PCI_bus": "", "platform": {
            "acpi": "true", "apic": "true", "pae": "true", "viridian": "true",
            "timeoffset": "0"}, "PV_args": "", "PV_bootloader": "", "PV_bootloader_args": "",
        "PV_kernel": "", "PV_legacy_args": "", "PV_ramdisk": "", "recommendations": "",
        "tags": [], "user_version": "0", "VCPUs_at_startup": "2", "VCPUs_max": "2",
        "VCPUs_params": {"weight": "256", "cap": "0"},
        "xenstore_data": {"vm-data/allowvssprovider": "false"},
    }


def test_spawn_snapshot_reboot_rescue_destroy(sim: Any, session: Any, xapi: Any) -> None:
    """spawn, list_instances, snapshot + upload, reboot fallbacks, rescue bootlock, destroy."""
    host = xapi.session.get_this_host(session._session)
    assert xapi.VM.get_by_name_label("instance-1") == []
    assert int(xapi.host.compute_free_memory(host)) >= 512 * MIB
    pool = xapi.pool.get_all()[0]
    sr = xapi.pool.get_default_SR(pool)
    vdi = xapi.VDI.create({"name_label": "instance-1 root", "name_description": "root",
                           "SR": sr, "virtual_size": str(8 * MIB), "type": "User",
                           "sharable": False, "read_only": False, "xenstore_data": {},
                           "other_config": {}, "sm_config": {}, "tags": []})
    xapi.VDI.add_to_other_config(vdi, "nova_disk_type", "root")
    nova_uuid = str(_uuid.uuid4())
    vm = xapi.VM.create(nova_vm_record("instance-1", host, nova_uuid))
    xapi.VBD.create({"VM": vm, "VDI": vdi, "userdevice": "0", "bootable": True, "mode": "RW",
                     "type": "disk", "unpluggable": True, "empty": False, "other_config": {},
                     "qos_algorithm_type": "", "qos_algorithm_params": {},
                     "qos_supported_algorithms": []})
    nets = xapi.network.get_all_records_where(
        'field "name__label" = "net-x" or field "bridge" = "xenbr0"')
    (net,) = nets
    xapi.VIF.create({"device": xapi.VM.get_allowed_VIF_devices(vm)[0], "network": net,
                     "VM": vm, "MAC": "fa:16:3e:00:00:01", "MTU": "1500",
                     "qos_algorithm_type": "", "qos_algorithm_params": {},
                     "other_config": {"neutron-port-id": "p1"}})
    xapi.VM.remove_from_xenstore_data(vm, "vm-data/hostname")
    xapi.VM.add_to_xenstore_data(vm, "vm-data/hostname", "instance-1")
    xapi.VM.start_on(vm, host, False, False)
    listed = xapi.VM.get_all_records_where(
        'field "is_control_domain"="false" and field "is_a_template"="false" and '
        f'field "resident_on"="{host}"')
    assert listed[vm]["other_config"]["nova_uuid"] == nova_uuid
    assert xapi.VM.get_power_state(vm) == "Running"

    # snapshot: VDI.snapshot, SR.scan, walk the chain, export the leaf as VHD, delete it
    snap = xapi.VDI.snapshot(vdi, {})
    xapi.SR.scan(sr)
    parent = xapi.VDI.get_record(snap)["sm_config"]["vhd-parent"]
    assert xapi.VDI.get_record(xapi.VDI.get_by_uuid(parent))["managed"] is False
    task = xapi.task.create("export", "")
    url = (f"{sim.url}/export_raw_vdi?session_id={session._session}&task_id={task}"
           f"&vdi={snap}&format=vhd")
    with urllib.request.urlopen(url, timeout=10) as resp:
        assert resp.read()[:8] == b"conectix"
    assert xapi.task.get_status(task) == "success"
    xapi.task.destroy(task)
    xapi.VDI.destroy(snap)

    # reboot: soft reboot of a halted VM fails with ...'halted' and Nova falls back to start
    xapi.VM.hard_shutdown(vm)
    details = failure(xapi.VM.clean_reboot, vm)
    assert details[0] == "VM_BAD_POWER_STATE" and details[-1] == "halted"
    xapi.VM.start_on(vm, host, False, False)

    # rescue: hard stop + bootlock blocks start (not start_on)
    xapi.VM.hard_shutdown(vm)
    xapi.VM.set_blocked_operations(vm, {"start": ""})
    assert failure(xapi.VM.start, vm, False, False) == ["OPERATION_BLOCKED", vm, ""]
    xapi.VM.remove_from_blocked_operations(vm, "start")

    # destroy: shutdown skipped when halted, VDIs destroyed, then the VM
    for vbd in xapi.VM.get_VBDs(vm):
        disk = xapi.VBD.get_VDI(vbd)
        xapi.VDI.destroy(disk)
    xapi.VM.destroy(vm)
    assert xapi.VM.get_by_name_label("instance-1") == []
