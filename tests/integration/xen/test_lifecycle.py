"""spawn, destroy and the power operations against the XAPI simulator, checked with a
plain XenAPI client."""

from __future__ import annotations

import json

import pytest

import virtdriver
from virtdriver.common import exceptions as exc
from virtdriver.common.power_state import PowerState

from .conftest import (
    IMAGE_BYTES,
    disks_of,
    instance_vdis,
    make_instance,
    make_vif,
    vm_of,
)

pytestmark = pytest.mark.integration

GiB = 1024 ** 3
MiB = 1024 ** 2


@pytest.fixture
def spawned(ops, image):
    instance = make_instance()
    ops.spawn(None, instance, image, [], None, [make_vif(1)])
    yield instance
    ops.destroy(instance)


def test_spawn_builds_the_vm_from_flavor_image_and_network(ops, image, xapi, read_vdi,
                                                           progress):
    flavor = virtdriver.Flavor(vcpus=2, memory_mb=512, root_gb=2, ephemeral_gb=1, swap=64,
                               extra_specs={"quota:vcpu_weight": "128",
                                            "quota:vcpu_cap": "50"})
    instance = make_instance(flavor=flavor, metadata={"role": "db", "tier": "gold"})
    vifs = [make_vif(1, fixed_ips=["10.0.0.5"]), make_vif(2)]
    progress.clear()
    ops.spawn(None, instance, image, [], None, vifs)
    try:
        ref, vm = vm_of(xapi, instance)
        assert vm["power_state"] == "Running"
        assert vm["memory_static_max"] == str(512 * MiB)
        assert vm["memory_dynamic_max"] == str(512 * MiB)
        assert vm["VCPUs_max"] == vm["VCPUs_at_startup"] == "2"
        assert vm["VCPUs_params"] == {"weight": "128", "cap": "50"}
        assert vm["other_config"]["nova_uuid"] == instance.uuid
        assert vm["PV_bootloader"] == "pygrub"  # linux default: PV
        xs = vm["xenstore_data"]
        assert json.loads(xs["vm-data/user-metadata/role"]) == "db"
        assert xs["vm-data/hostname"] == instance.name
        net = json.loads(xs["vm-data/networking/fa163e000001"])
        assert net["mac"] == "fa:16:3e:00:00:01"
        assert net["ips"] == [{"ip": "10.0.0.5", "enabled": "1"}]

        disks = disks_of(xapi, ref)
        assert sorted(disks) == ["0", "2", "4"]
        assert disks["0"]["virtual_size"] == str(2 * GiB)
        assert disks["0"]["vbd"]["bootable"] is True
        assert disks["2"]["virtual_size"] == str(64 * MiB)
        assert disks["4"]["virtual_size"] == str(1 * GiB)
        assert read_vdi(disks["0"]["ref"], len(IMAGE_BYTES)) == IMAGE_BYTES

        vifs_on_vm = {xapi.VIF.get_MAC(v): xapi.VIF.get_record(v) for v in vm["VIFs"]}
        assert set(vifs_on_vm) == {"fa:16:3e:00:00:01", "fa:16:3e:00:00:02"}
        first = vifs_on_vm["fa:16:3e:00:00:01"]
        assert xapi.network.get_bridge(first["network"]) == "xenbr0"
        assert first["locking_mode"] == "locked"
        assert first["ipv4_allowed"] == ["10.0.0.5"]

        steps = [step for _, step in progress]
        assert steps[0] == "check_no_vm" and steps[-1] == "configure_booted_instance"
        assert progress[-1][0] == 100
        assert ops.get_info(instance).state == PowerState.RUNNING
    finally:
        ops.destroy(instance)
    assert vm_of(xapi, instance) is None
    assert instance_vdis(xapi, instance.uuid) == {}


def test_image_is_cached_once_per_sr_and_cloned(ops, image, xapi):
    first, second = make_instance(), make_instance()
    ops.spawn(None, first, image, [], None, [])
    ops.spawn(None, second, image, [], None, [])
    try:
        cached = [rec for rec in xapi.VDI.get_all_records().values()
                  if rec["other_config"].get("image-id") == image.id]
        assert len(cached) == 1
        roots = [disks_of(xapi, vm_of(xapi, inst)[0])["0"] for inst in (first, second)]
        assert roots[0]["uuid"] != roots[1]["uuid"] != cached[0]["uuid"]
    finally:
        ops.destroy(first)
        ops.destroy(second)
    # destroy keeps the image cache
    assert [rec for rec in xapi.VDI.get_all_records().values()
            if rec["other_config"].get("image-id") == image.id]


def test_spawn_hvm_for_windows_images(ops, store, image, xapi, tmp_path):
    path = tmp_path / "win.raw"
    path.write_bytes(b"\0" * 4096)
    win = store.import_file(path, disk_format="raw", name="win",
                            properties={"os_type": "windows"})
    instance = make_instance()
    ops.spawn(None, instance, win, [], None, [])
    try:
        _, vm = vm_of(xapi, instance)
        assert vm["HVM_boot_policy"] == "BIOS order"
        assert vm["platform"]["viridian"] == "true"
        assert vm["PV_bootloader"] == ""
    finally:
        ops.destroy(instance)


def test_list_instances_and_uuids_in_one_call(ops, spawned):
    ops.session.stats.reset()
    assert spawned.name in ops.list_instances()
    assert spawned.uuid in ops.list_instance_uuids()
    assert ops.session.stats.snapshot() == {"VM.get_all_records_where": 2}


def test_get_info_costs_one_call(ops, spawned):
    ops.session.stats.reset()
    ops.get_info(spawned)
    ops.get_info(spawned)
    assert ops.session.stats.snapshot() == {"VM.get_power_state": 2}


def power(xapi, instance):
    return vm_of(xapi, instance)[1]["power_state"]


@pytest.mark.parametrize("kind", ["SOFT", "HARD"])
def test_reboot(ops, spawned, xapi, kind):
    domid = xapi.VM.get_domid(vm_of(xapi, spawned)[0])
    ops.reboot(spawned, reboot_type=kind)
    _, vm = vm_of(xapi, spawned)
    assert vm["power_state"] == "Running"
    assert vm["domid"] != domid


def test_reboot_halted_vm_starts_it(ops, spawned, xapi):
    ops.power_off(spawned)
    ops.reboot(spawned, reboot_type="HARD")
    assert power(xapi, spawned) == "Running"


def test_suspend_resume_with_bootlock(ops, spawned, xapi):
    ops.suspend(spawned)
    _, vm = vm_of(xapi, spawned)
    assert vm["power_state"] == "Suspended"
    assert "start" in vm["blocked_operations"]
    ops.resume(spawned)
    _, vm = vm_of(xapi, spawned)
    assert vm["power_state"] == "Running"
    assert vm["blocked_operations"] == {}


def test_soft_delete_and_restore(ops, spawned, xapi):
    ops.soft_delete(spawned)
    ref, vm = vm_of(xapi, spawned)
    assert vm["power_state"] == "Halted"
    assert set(vm["blocked_operations"]) >= {"start", "start_on"}
    with pytest.raises(Exception, match="OPERATION_BLOCKED"):
        xapi.VM.start(ref, False, False)
    ops.restore(spawned)
    _, vm = vm_of(xapi, spawned)
    assert vm["power_state"] == "Running"
    assert vm["blocked_operations"] == {}


def test_set_bootable(ops, spawned, xapi):
    ops.power_off(spawned)
    ops.set_bootable(spawned, False)
    assert "start" in vm_of(xapi, spawned)[1]["blocked_operations"]
    with pytest.raises(exc.BackendError) as caught:
        ops.power_on(spawned)
    assert caught.value.code == "OPERATION_BLOCKED"
    ops.set_bootable(spawned, True)
    ops.power_on(spawned)
    assert power(xapi, spawned) == "Running"


def test_vm_deleted_behind_our_back_is_instance_not_found(ops, image, xapi):
    instance = make_instance()
    ops.spawn(None, instance, image, [], None, [])
    ref, _ = vm_of(xapi, instance)
    ops.get_info(instance)  # cached now
    xapi.VM.hard_shutdown(ref)
    xapi.VM.destroy(ref)
    with pytest.raises(exc.InstanceNotFound):
        ops.pause(instance)
    ops.destroy(instance)


def test_backend_stats_are_the_sessions(ops, spawned):
    assert ops.stats is ops.session.stats
    ops.stats.reset()
    ops.get_info(spawned)
    assert ops.stats.snapshot() == {"VM.get_power_state": 1}
