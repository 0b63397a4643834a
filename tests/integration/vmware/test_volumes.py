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
