"""Record builders and small VM helpers (pure, or over a fake session)."""

import json

import pytest

import virtdriver
from virtdriver.common import exceptions as exc
from virtdriver.common.model import ExtraSpecs
from virtdriver.common.power_state import PowerState
from virtdriver.xen import vm_utils

from .fakes import FakeSession, failure

UUID = "11111111-2222-4333-8444-555555555555"


def instance(**extra):
    flavor = virtdriver.Flavor(vcpus=2, memory_mb=512, root_gb=1,
                               extra_specs={"quota:vcpu_weight": "64"})
    return virtdriver.Instance(uuid=UUID, name="inst", flavor=flavor, **extra)


def image(**props):
    return virtdriver.ImageMeta(id=UUID, disk_format="raw", properties=props)


def test_vm_record_from_flavor_and_specs():
    inst = instance()
    record = vm_utils.vm_record(inst, image(), ExtraSpecs.from_flavor(inst.flavor), "pv",
                                "linux", "inst", {})
    assert record["memory_static_max"] == record["memory_dynamic_min"] == str(512 * 2 ** 20)
    assert record["VCPUs_max"] == record["VCPUs_at_startup"] == "2"
    assert record["VCPUs_params"] == {"weight": "64"}
    assert record["other_config"]["nova_uuid"] == UUID
    assert record["PV_bootloader"] == "pygrub" and record["HVM_boot_policy"] == ""


def test_hvm_record():
    inst = instance()
    record = vm_utils.vm_record(inst, image(), ExtraSpecs(), "hvm", "windows", "inst", {})
    assert record["HVM_boot_policy"] == "BIOS order"
    assert record["HVM_boot_params"] == {"order": "dc"}
    assert record["platform"]["viridian"] == "true"


@pytest.mark.parametrize("props, instance_os, expected", [
    ({"vm_mode": "xen"}, None, "pv"),
    ({"vm_mode": "hvm"}, None, "hvm"),
    ({"os_type": "windows"}, None, "hvm"),
    ({}, "windows", "hvm"),
    ({}, None, "pv"),
])
def test_vm_mode(props, instance_os, expected):
    assert vm_utils.vm_mode(image(**props), instance(os_type=instance_os), "linux") == expected


def test_bad_vm_mode_is_invalid_input():
    with pytest.raises(exc.InvalidInput):
        vm_utils.vm_mode(image(vm_mode="exotic"), instance(), "linux")


def test_metadata_xenstore():
    vif = virtdriver.VIF(id=UUID, address="FA:16:3E:00:00:0A", network="net",
                         fixed_ips=["10.0.0.1", "fe80::1"])
    data = vm_utils.metadata_xenstore(instance(metadata={"a b": "c"}), [vif], "host")
    assert json.loads(data["vm-data/user-metadata/a_b"]) == "c"
    blob = json.loads(data["vm-data/networking/fa163e00000a"])
    assert blob["ips"] == [{"ip": "10.0.0.1", "enabled": "1"}]
    assert blob["ip6s"] == [{"ip": "fe80::1", "enabled": "1"}]
    assert data["vm-data/hostname"] == "host"


def test_power_states():
    assert vm_utils.power_state_of("Halted") is PowerState.SHUTDOWN
    assert vm_utils.power_state_of("Suspended") is PowerState.SUSPENDED
    assert vm_utils.power_state_of("weird") is PowerState.NOSTATE


def test_where_literal_escapes_quotes():
    assert vm_utils.where_literal('a"b') == '"a\\"b"'


def test_find_vm_ignores_other_instances_vms():
    session = FakeSession({"VM.get_all_records_where": {
        "OpaqueRef:a": {"other_config": {"nova_uuid": "someone-else"}},
        "OpaqueRef:b": {"other_config": {"nova_uuid": UUID}}}})
    assert vm_utils.find_vm(session, "inst", UUID)[0] == "OpaqueRef:b"
    assert session.calls[0][1][0] == ('field "name__label" = "inst" and '
                                      'field "is_a_template" = "false"')


def test_find_vm_duplicates_are_instance_exists():
    session = FakeSession({"VM.get_all_records_where": {
        "OpaqueRef:a": {"other_config": {}}, "OpaqueRef:b": {"other_config": {}}}})
    with pytest.raises(exc.InstanceExists):
        vm_utils.find_vm(session, "inst")


def test_hard_shutdown_of_halted_vm_is_fine():
    session = FakeSession({"VM.hard_shutdown": failure("VM_BAD_POWER_STATE", "vm",
                                                             "running", "halted")})
    vm_utils.hard_shutdown(session, "vm")


def test_bootlock_blocks_start_and_start_on():
    session = FakeSession({"VM.get_blocked_operations": {"clone": "x"},
                           "VM.set_blocked_operations": None,
                           "VM.remove_from_blocked_operations": None})
    vm_utils.set_bootlock(session, "vm", True)
    blocked = session.calls[1][1][1]
    assert set(blocked) == {"clone", "start", "start_on"}
    vm_utils.set_bootlock(session, "vm", False)
    removed = [args[1] for method, args in session.calls
               if method == "VM.remove_from_blocked_operations"]
    assert removed == ["start", "start_on"]


def test_destroy_vm_gone_is_noop():
    session = FakeSession({"VM.get_record": failure("HANDLE_INVALID", "VM", "vm")})
    vm_utils.destroy_vm(session, "vm")
    assert session.methods() == ["VM.get_record"]


def test_destroy_vm_deletes_vm_then_disks_except_kept():
    session = FakeSession({
        "VM.get_record": {"power_state": "Halted", "suspend_VDI": "OpaqueRef:NULL"},
        "VBD.get_all_records_where": {"v1": {"VDI": "d1"}, "v2": {"VDI": "d2"},
                                      "v3": {"VDI": "OpaqueRef:NULL"}},
        "VM.destroy": None, "VDI.destroy": None})
    vm_utils.destroy_vm(session, "vm", keep_vdis={"d2"})
    assert session.methods() == ["VM.get_record", "VBD.get_all_records_where", "VM.destroy",
                                 "VDI.destroy"]
    assert session.calls[-1][1] == ("d1",)


def test_write_xenstore_live_when_running():
    session = FakeSession({"VM.remove_from_xenstore_data": None,
                           "VM.add_to_xenstore_data": None, "VM.get_domid": "7",
                           "host.call_plugin": ""})
    vm_utils.write_xenstore(session, "vm", "vm-data/x", "1", running=True)
    plugin = session.calls[-1][1]
    assert plugin[1:3] == ("xenstore.py", "write_record")
    assert plugin[3] == {"dom_id": "7", "path": "vm-data/x", "value": "1"}
