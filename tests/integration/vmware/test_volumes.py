"""Cinder ``vmdk`` volumes on vcsim: attach, detach, swap, extend, boot from volume, destroy.

Cinder's side (a shadow VM per volume) is played by the test with its own pyvmomi
connection (:class:`Cinder`); every assertion reads the server through that connection or
the Inspector, never through virtdriver.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from pyVmomi import vim

from tests.integration.vmware.helpers import (
    devices,
    extra_config,
    image_store,
    inspector,
    make_instance,
    make_vif,
    ops,
)
from tests.integration.vmware.volume_helpers import Cinder
from virtdriver.common import exceptions

__all__ = ["image_store", "inspector", "ops"]

DATA = b"volume bytes survive " * 1000


@pytest.fixture(scope="module")
def vcsim_flags() -> dict[str, Any]:
    """Two datastores: a volume can move from one to the other."""
    return {"ds": 2}


@pytest.fixture(scope="module")
def cinder(inspector: Any) -> Cinder:
    return Cinder(inspector)


@pytest.fixture
def inst(ops: Any, image_store: Any) -> Iterator[Any]:
    instance = make_instance(root_gb=1)
    ops.spawn(None, instance, image_store.disk, [], None, [make_vif(0x31)])
    yield instance
    ops.destroy(instance)


def volume_disks(inspector: Any, instance: Any) -> list[Any]:
    """The instance's disks that are not in its own folder (volumes)."""
    vm = inspector.vm(instance.uuid)
    return [d for d in devices(vm, vim.vm.device.VirtualDisk)
            if f"] {instance.uuid}/" not in d.backing.fileName]


def test_attach_and_detach_a_vmdk_volume_on_a_running_instance(ops: Any, inst: Any,
                                                               inspector: Any,
                                                               cinder: Cinder) -> None:
    volume_id, info, shadow = cinder.create_volume()
    path = cinder.disk(shadow).backing.fileName
    cinder.write(path, DATA)

    ops.attach_volume(None, info, inst, "/dev/sdb")
    vm = inspector.vm(inst.uuid)
    assert vm["runtime.powerState"] == "poweredOn"
    disk, = volume_disks(inspector, inst)
    assert isinstance(disk.backing, vim.vm.device.VirtualDisk.FlatVer2BackingInfo)
    assert disk.backing.fileName == path and disk.backing.diskMode == "persistent"
    controller = next(d for d in vm["config.hardware"].device if d.key == disk.controllerKey)
    assert isinstance(controller, vim.vm.device.VirtualSCSIController)
    assert extra_config(vm)[f"volume-{volume_id}"] == volume_id  # the disk's uuid

    ops.detach_volume(None, info, inst, "/dev/sdb")
    assert volume_disks(inspector, inst) == []
    assert extra_config(inspector.vm(inst.uuid))[f"volume-{volume_id}"] == ""
    assert cinder.disk(shadow).backing.fileName == path  # the shadow VM keeps it
    assert cinder.read(path) == DATA
    cinder.delete(shadow)


def test_attach_to_a_stopped_instance_and_start_it(ops: Any, inst: Any, inspector: Any,
                                                   cinder: Cinder) -> None:
    volume_id, info, shadow = cinder.create_volume()
    ops.power_off(inst)
    ops.attach_volume(None, info, inst, "/dev/sdb")
    ops.power_on(inst)
    ops.reboot(inst, reboot_type="HARD")
    assert inspector.vm(inst.uuid)["runtime.powerState"] == "poweredOn"
    assert len(volume_disks(inspector, inst)) == 1  # power cycles keep it
    ops.detach_volume(None, info, inst, None)
    assert volume_disks(inspector, inst) == []
    cinder.delete(shadow)


def test_ide_takes_a_volume_only_while_stopped(ops: Any, inst: Any, inspector: Any,
                                              cinder: Cinder) -> None:
    volume_id, info, shadow = cinder.create_volume()
    calls = ops.stats.total_calls
    before = inspector.vm(inst.uuid)["config.hardware"].device
    with pytest.raises(exceptions.InstanceInvalidState, match="IDE"):
        ops.attach_volume(None, info, inst, "/dev/hdb", disk_bus="ide")
    assert len(inspector.vm(inst.uuid)["config.hardware"].device) == len(before)
    assert ops.stats.total_calls - calls <= 3  # reads only: no reconfigure
    ops.power_off(inst)
    ops.attach_volume(None, info, inst, "/dev/hdb", disk_bus="ide")
    disk, = volume_disks(inspector, inst)
    vm = inspector.vm(inst.uuid)
    controller = next(d for d in vm["config.hardware"].device if d.key == disk.controllerKey)
    assert isinstance(controller, vim.vm.device.VirtualIDEController)
    ops.power_on(inst)
    with pytest.raises(exceptions.InstanceInvalidState):
        ops.detach_volume(None, info, inst, "/dev/hdb")
    assert len(volume_disks(inspector, inst)) == 1
    ops.power_off(inst)
    ops.detach_volume(None, info, inst, "/dev/hdb")
    assert volume_disks(inspector, inst) == []
    cinder.delete(shadow)


def test_bad_connection_info_is_refused_before_any_call(ops: Any, inst: Any,
                                                        cinder: Cinder) -> None:
    calls = ops.stats.total_calls
    with pytest.raises(exceptions.UnsupportedOperation, match="'fake'"):
        ops.attach_volume(None, {"driver_volume_type": "fake", "data": {}}, inst, "/dev/sdb")
    with pytest.raises(exceptions.InvalidInput, match="connection_info.data.volume"):
        ops.attach_volume(None, {"driver_volume_type": "vmdk",
                                 "data": {"volume_id": "x"}}, inst, "/dev/sdb")
    with pytest.raises(exceptions.InvalidInput, match="disk_bus"):
        ops.attach_volume(None, {"driver_volume_type": "vmdk", "data": {
            "volume": "vm-1", "volume_id": "x"}}, inst, "/dev/sdb", disk_bus="virtio")
    assert ops.stats.total_calls == calls


def test_detach_of_a_volume_not_attached_is_volume_not_found(ops: Any, inst: Any,
                                                              cinder: Cinder) -> None:
    volume_id, info, shadow = cinder.create_volume()
    with pytest.raises(exceptions.VolumeNotFound):
        ops.detach_volume(None, info, inst, "/dev/sdb")
    cinder.delete(shadow)


def test_attaching_twice_is_refused(ops: Any, inst: Any, inspector: Any,
                                    cinder: Cinder) -> None:
    volume_id, info, shadow = cinder.create_volume()
    ops.attach_volume(None, info, inst, "/dev/sdb")
    with pytest.raises(exceptions.InvalidInput, match="already attached"):
        ops.attach_volume(None, info, inst, "/dev/sdc")
    assert len(volume_disks(inspector, inst)) == 1
    ops.detach_volume(None, info, inst, "/dev/sdb")
    cinder.delete(shadow)


def test_a_failed_attach_leaves_vm_and_volume_as_they_were(ops: Any, inst: Any,
                                                           inspector: Any, cinder: Cinder,
                                                           vcsim_faults: Any) -> None:
    volume_id, info, shadow = cinder.create_volume()
    path = cinder.disk(shadow).backing.fileName
    cinder.write(path, DATA)
    before = inspector.vm(inst.uuid)
    vcsim_faults.inject("ReconfigVM_Task", "taskfault", fault="GenericVmConfigFault",
                        moref=before["ref"]._moId)
    with pytest.raises(exceptions.TaskFailed):
        ops.attach_volume(None, info, inst, "/dev/sdb")
    after = inspector.vm(inst.uuid)
    assert len(after["config.hardware"].device) == len(before["config.hardware"].device)
    assert f"volume-{volume_id}" not in extra_config(after)
    assert cinder.disk(shadow).backing.fileName == path and cinder.read(path) == DATA
    cinder.delete(shadow)


def test_a_volume_gone_from_the_vm_is_volume_not_found(ops: Any, inst: Any, inspector: Any,
                                                        cinder: Cinder) -> None:
    volume_id, info, shadow = cinder.create_volume()
    ops.attach_volume(None, info, inst, "/dev/sdb")
    # someone removed the disk behind our back (vSphere client)
    disk, = volume_disks(inspector, inst)
    ref = inspector.vm(inst.uuid)["ref"]
    from pyVim.task import WaitForTask
    WaitForTask(ref.ReconfigVM_Task(vim.vm.ConfigSpec(deviceChange=[
        vim.vm.device.VirtualDeviceSpec(operation="remove", device=disk)])))
    with pytest.raises(exceptions.VolumeNotFound):
        ops.detach_volume(None, info, inst, "/dev/sdb")
    cinder.delete(shadow)


def test_destroy_detaches_volumes_and_never_deletes_them(ops: Any, image_store: Any,
                                                         inspector: Any,
                                                         cinder: Cinder) -> None:
    volume_id, info, shadow = cinder.create_volume()
    path = cinder.disk(shadow).backing.fileName
    cinder.write(path, DATA)
    instance = make_instance(root_gb=1)
    ops.spawn(None, instance, image_store.disk, [], None, [])
    ops.attach_volume(None, info, instance, "/dev/sdb")
    bdi = {"block_device_mapping": [{"connection_info": info, "mount_device": "/dev/sdb",
                                     "boot_index": None, "delete_on_termination": True}]}
    ops.destroy(instance, None, bdi, destroy_disks=True)
    assert instance.uuid not in inspector.vms()
    assert cinder.disk(shadow).backing.fileName == path
    assert cinder.read(path) == DATA
    cinder.delete(shadow)


def bdm(info: dict[str, Any], mount: str = "/dev/sda", boot_index: int | None = 0,
        **extra: Any) -> dict[str, Any]:
    return {"connection_info": info, "mount_device": mount, "boot_index": boot_index,
            "disk_bus": None, "device_type": "disk", "delete_on_termination": False, **extra}


def test_boot_from_volume_copies_no_image(ops: Any, inspector: Any, cinder: Cinder) -> None:
    volume_id, info, shadow = cinder.create_volume(size_kb=2048)
    path = cinder.disk(shadow).backing.fileName
    cinder.write(path, DATA)
    data_id, data_info, data_shadow = cinder.create_volume()
    instance = make_instance(root_gb=1, ephemeral_gb=0)
    files_before = inspector.files()
    calls = ops.stats.snapshot()
    ops.spawn(None, instance, None, [], None, [make_vif(0x32)],
              block_device_info={"root_device_name": "/dev/sda", "block_device_mapping": [
                  bdm(data_info, "/dev/sdb", None), bdm(info)]})
    vm = inspector.vm(instance.uuid)
    assert vm["runtime.powerState"] == "poweredOn"
    disks = devices(vm, vim.vm.device.VirtualDisk)
    assert [d.backing.fileName for d in disks] == [path, cinder.disk(data_shadow).backing.fileName]
    assert disks[0].unitNumber == 0  # the boot volume is the first disk...
    order = vm["config.bootOptions"].bootOrder
    assert [o.deviceKey for o in order] == [disks[0].key]  # ...and the boot disk
    new_files = inspector.files() - files_before
    assert not any("_base" in f or f.endswith(".vmdk") for f in new_files), new_files
    assert calls.get("CopyVirtualDisk_Task", 0) == ops.stats.snapshot().get(
        "CopyVirtualDisk_Task", 0)  # no image copied
    ops.destroy(instance, None, {"block_device_mapping": [bdm(info), bdm(data_info, "/dev/sdb",
                                                                          None)]})
    assert instance.uuid not in inspector.vms()
    assert cinder.disk(shadow).backing.fileName == path and cinder.read(path) == DATA
    cinder.delete(shadow)
    cinder.delete(data_shadow)


def test_a_failed_spawn_detaches_its_volumes_and_leaves_them(ops: Any, inspector: Any,
                                                             cinder: Cinder,
                                                             vcsim_faults: Any) -> None:
    volume_id, info, shadow = cinder.create_volume()
    path = cinder.disk(shadow).backing.fileName
    cinder.write(path, DATA)
    instance = make_instance(root_gb=1)
    vcsim_faults.inject("PowerOnVM_Task", "taskfault", fault="InsufficientResourcesFault")
    with pytest.raises(exceptions.TaskFailed):
        ops.spawn(None, instance, None, [], None, [],
                  block_device_info={"block_device_mapping": [bdm(info)]})
    assert instance.uuid not in inspector.vms()
    assert cinder.disk(shadow).backing.fileName == path and cinder.read(path) == DATA
    cinder.delete(shadow)


def test_destroy_without_block_device_info_still_keeps_the_volume(ops: Any, image_store: Any,
                                                                  inspector: Any,
                                                                  cinder: Cinder) -> None:
    volume_id, info, shadow = cinder.create_volume()
    path = cinder.disk(shadow).backing.fileName
    instance = make_instance(root_gb=1)
    ops.spawn(None, instance, image_store.disk, [], None, [])
    ops.attach_volume(None, info, instance, "/dev/sdb")
    ref = inspector.vm(instance.uuid)["ref"]
    ops.destroy(instance)
    assert instance.uuid not in inspector.vms()
    assert cinder.disk(shadow).backing.fileName == path
    assert cinder.read(path) is not None
    del ref
    cinder.delete(shadow)


def test_swap_puts_the_new_volume_in_the_same_slot(ops: Any, inst: Any, inspector: Any,
                                                   cinder: Cinder) -> None:
    old_id, old, old_shadow = cinder.create_volume()
    new_id, new, new_shadow = cinder.create_volume(size_kb=4096)
    ops.attach_volume(None, old, inst, "/dev/sdb")
    before, = volume_disks(inspector, inst)
    ops.swap_volume(None, old, new, inst, "/dev/sdb", 4)
    after, = volume_disks(inspector, inst)
    assert after.backing.fileName == cinder.disk(new_shadow).backing.fileName
    assert (after.controllerKey, after.unitNumber) == (before.controllerKey, before.unitNumber)
    config = extra_config(inspector.vm(inst.uuid))
    assert config[f"volume-{old_id}"] == "" and config[f"volume-{new_id}"] == new_id
    assert cinder.disk(old_shadow).backing.fileName == before.backing.fileName
    ops.detach_volume(None, new, inst, "/dev/sdb")
    cinder.delete(old_shadow)
    cinder.delete(new_shadow)


def test_a_failed_swap_puts_the_old_volume_back(ops: Any, inst: Any, inspector: Any,
                                                cinder: Cinder) -> None:
    old_id, old, old_shadow = cinder.create_volume()
    new_id, new, new_shadow = cinder.create_volume()
    ops.attach_volume(None, old, inst, "/dev/sdb")
    before, = volume_disks(inspector, inst)
    cinder.delete(new_shadow)  # the new volume is gone before it can attach
    with pytest.raises(exceptions.VolumeNotFound):
        ops.swap_volume(None, old, new, inst, "/dev/sdb", 0)
    after, = volume_disks(inspector, inst)
    assert after.backing.fileName == before.backing.fileName
    assert (after.controllerKey, after.unitNumber) == (before.controllerKey, before.unitNumber)
    assert extra_config(inspector.vm(inst.uuid))[f"volume-{old_id}"] == old_id
    ops.detach_volume(None, old, inst, "/dev/sdb")
    cinder.delete(old_shadow)


def test_extend_makes_the_attached_disk_the_new_size(ops: Any, inst: Any, inspector: Any,
                                                     cinder: Cinder) -> None:
    volume_id, info, shadow = cinder.create_volume(size_kb=1024)
    ops.attach_volume(None, info, inst, "/dev/sdb")
    ops.extend_volume(None, info, inst, 3 * 1024 ** 2)
    disk, = volume_disks(inspector, inst)
    assert disk.capacityInKB == 3 * 1024
    with pytest.raises(exceptions.InvalidInput, match="smaller"):
        ops.extend_volume(None, info, inst, 1024 ** 2)
    ops.detach_volume(None, info, inst, "/dev/sdb")
    with pytest.raises(exceptions.VolumeNotFound):
        ops.extend_volume(None, info, inst, 4 * 1024 ** 2)
    cinder.delete(shadow)


def test_detach_hands_a_moved_volume_back_to_its_shadow_vm(ops: Any, inst: Any,
                                                           inspector: Any, cinder: Cinder,
                                                           vcsim: Any) -> None:
    from pyVim.task import WaitForTask

    volume_id, info, shadow = cinder.create_volume()
    old_path = cinder.disk(shadow).backing.fileName
    cinder.write(old_path, b"stale")
    ops.attach_volume(None, info, inst, "/dev/sdb")
    # a storage vMotion of the instance moved the volume's file to another datastore
    disk, = volume_disks(inspector, inst)
    moved = f"[LocalDS_1] moved-{volume_id}/volume.vmdk"
    manager = inspector.content.virtualDiskManager
    inspector.content.fileManager.MakeDirectory(f"[LocalDS_1] moved-{volume_id}", cinder.dc,
                                                True)
    WaitForTask(manager.CopyVirtualDisk_Task(old_path, cinder.dc, moved, cinder.dc))
    cinder.write(moved, DATA)
    disk.backing.fileName = moved
    disk.backing.datastore = None
    WaitForTask(inspector.vm(inst.uuid)["ref"].ReconfigVM_Task(vim.vm.ConfigSpec(
        deviceChange=[vim.vm.device.VirtualDeviceSpec(operation="edit", device=disk)])))

    ops.detach_volume(None, info, inst, "/dev/sdb")
    assert volume_disks(inspector, inst) == []
    assert cinder.disk(shadow).backing.fileName == moved
    # relocated to the file's datastore (vcsim moves no file, so it lists the .vmx's too)
    assert "LocalDS_1" in inspector.names(list(shadow.datastore))
    assert cinder.read(moved) == DATA
    cinder.delete(shadow)
