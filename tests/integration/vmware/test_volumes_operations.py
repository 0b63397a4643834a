"""Volumes through the other VMware operations: snapshot, rescue, resize, live migration.

Bytes written to a volume before an operation read back the same after it (vcsim keeps
datastore file contents); the volume's disk is still on the VM with the same backing; the
instance's own disk is what snapshot and resize act on. The live-migration test with an
iSCSI volume goes through the launcher's STAND-INs (software iSCSI adapter, RescanHba).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

import pytest
from pyVmomi import vim

import virtdriver
from tests.integration.vmware.helpers import (
    IMAGE_BYTES,
    devices,
    image_store,
    inspector,
    make_conf,
    make_instance,
    make_vif,
    require_launcher,
)
from tests.integration.vmware.volume_helpers import Array, Cinder, iscsi_info
from virtdriver.common import exceptions
from virtdriver.common.model import Flavor

__all__ = ["image_store", "inspector"]

DATA = b"kept through every operation " * 500


@pytest.fixture(scope="module")
def ops(vcsim: Any, image_store: Any) -> Iterator[Any]:
    """Full copies of the image, so the root disk holds the image's bytes on vcsim."""
    backend = virtdriver.load_backend("vmware", make_conf(vcsim, use_linked_clone=False),
                                      image_store=image_store)
    yield backend
    backend.close()


@pytest.fixture(scope="module")
def cinder(inspector: Any) -> Cinder:
    return Cinder(inspector)


@pytest.fixture
def inst(ops: Any, image_store: Any) -> Iterator[Any]:
    instance = make_instance(root_gb=0)  # the disk keeps the image's size
    ops.spawn(None, instance, image_store.disk, [], None, [make_vif(0x51)])
    yield instance
    ops.destroy(instance)


@pytest.fixture
def volume(cinder: Cinder) -> Iterator[tuple[str, dict[str, Any], Any, str]]:
    volume_id, info, shadow = cinder.create_volume()
    path = cinder.disk(shadow).backing.fileName
    cinder.write(path, DATA)
    yield volume_id, info, shadow, path
    cinder.delete(shadow)


def volume_paths(inspector: Any, instance: Any) -> list[str]:
    vm = inspector.vm(instance.uuid)
    return [d.backing.fileName for d in devices(vm, vim.vm.device.VirtualDisk)
            if f"] {instance.uuid}/" not in d.backing.fileName]


def test_snapshot_uploads_only_the_instances_own_disk(ops: Any, inst: Any, inspector: Any,
                                                      image_store: Any, cinder: Cinder,
                                                      volume: Any) -> None:
    volume_id, info, shadow, path = volume
    ops.attach_volume(None, info, inst, "/dev/sdb")
    image = image_store.create(None, {"name": "snap-with-volume"})
    ops.snapshot(None, inst, image.id, lambda **kwargs: None)
    assert b"".join(image_store.download(None, image.id)) == IMAGE_BYTES
    assert volume_paths(inspector, inst) == [path]
    assert cinder.read(path) == DATA
    ops.detach_volume(None, info, inst, "/dev/sdb")


def test_rescue_keeps_the_volumes_attached(ops: Any, inst: Any, inspector: Any,
                                           image_store: Any, cinder: Cinder,
                                           volume: Any) -> None:
    volume_id, info, shadow, path = volume
    ops.attach_volume(None, info, inst, "/dev/sdb")
    ops.rescue(None, inst, [], image_store.disk)
    vm = inspector.vm(inst.uuid)
    assert vm["runtime.powerState"] == "poweredOn"
    disks = {d.key: d for d in devices(vm, vim.vm.device.VirtualDisk)}
    boot, = vm["config.bootOptions"].bootOrder
    assert disks[boot.deviceKey].backing.fileName.endswith("-rescue.vmdk")  # rescue boots
    assert volume_paths(inspector, inst) == [path]
    ops.unrescue(inst)
    assert volume_paths(inspector, inst) == [path]
    assert cinder.read(path) == DATA
    ops.detach_volume(None, info, inst, "/dev/sdb")


def test_resize_and_revert_leave_the_volume_as_it_was(ops: Any, inst: Any, inspector: Any,
                                                      cinder: Cinder, volume: Any,
                                                      vcsim: Any) -> None:
    volume_id, info, shadow, path = volume
    ops.attach_volume(None, info, inst, "/dev/sdb")
    before = next(d for d in devices(inspector.vm(inst.uuid), vim.vm.device.VirtualDisk)
                  if d.backing.fileName == path)
    disk_info = ops.migrate_disk_and_power_off(None, inst, "", Flavor(vcpus=2, memory_mb=512,
                                                                      root_gb=2))
    vm = inspector.vm(inst.uuid)
    own, = [d for d in devices(vm, vim.vm.device.VirtualDisk) if d.backing.fileName != path]
    assert own.capacityInKB == 2 * 1024 ** 2  # the instance's own disk grew...
    after = next(d for d in devices(vm, vim.vm.device.VirtualDisk)
                 if d.backing.fileName == path)
    assert after.capacityInKB == before.capacityInKB  # ...the volume did not
    volume_dir = os.path.dirname(cinder.flat(path).split("] ", 1)[1])
    assert not os.path.exists(os.path.join(vcsim.datastores["LocalDS_0"], volume_dir,
                                           "original.vmdk"))
    ops.finish_migration(None, None, inst, disk_info, [], None, True)
    assert volume_paths(inspector, inst) == [path]
    # a volume the VM lost on the way is attached again where the instance lands
    bdi = {"block_device_mapping": [{"connection_info": info, "mount_device": "/dev/sdb"}]}
    ops.detach_volume(None, info, inst, "/dev/sdb")
    inst.flavor = Flavor(vcpus=1, memory_mb=256, root_gb=0)  # as Nova sets it for a revert
    ops.finish_revert_migration(None, inst, [], bdi)
    assert volume_paths(inspector, inst) == [path]
    ops.finish_revert_migration(None, inst, [], bdi)  # nothing missing: nothing to do
    assert volume_paths(inspector, inst) == [path]
    assert inspector.vm(inst.uuid)["runtime.powerState"] == "poweredOn"
    assert cinder.read(path) == DATA
    ops.detach_volume(None, info, inst, "/dev/sdb")


def test_volume_backed_instance_resizes_without_touching_its_volume(
        ops: Any, inspector: Any, cinder: Cinder, volume: Any, image_store: Any) -> None:
    volume_id, info, shadow, path = volume
    instance = make_instance(root_gb=1)
    bdi = {"block_device_mapping": [{"connection_info": info, "mount_device": "/dev/sda",
                                     "boot_index": 0}]}
    ops.spawn(None, instance, None, [], None, [], block_device_info=bdi)
    capacity = cinder.disk(shadow).capacityInKB
    disk_info = ops.migrate_disk_and_power_off(None, instance, "", Flavor(
        vcpus=2, memory_mb=512, root_gb=0))  # a smaller root_gb: the root is the volume
    ops.finish_migration(None, None, instance, disk_info, [], None, True, bdi)
    disk, = devices(inspector.vm(instance.uuid), vim.vm.device.VirtualDisk)
    assert disk.backing.fileName == path and disk.capacityInKB == capacity
    with pytest.raises(exceptions.UnsupportedOperation, match="volume-backed"):
        ops.snapshot(None, instance, "x", lambda **kwargs: None)
    with pytest.raises(exceptions.UnsupportedOperation, match="volume-backed"):
        ops.rescue(None, instance, [], image_store.disk)
    ops.destroy(instance, None, bdi)
    assert cinder.read(path) == DATA


@pytest.mark.needs_launcher
def test_stand_in_live_migration_connects_iscsi_on_the_destination_first(
        ops: Any, inst: Any, inspector: Any, cinder: Cinder, volume: Any,
        vcsim: Any) -> None:
    require_launcher(vcsim)
    volume_id, info, shadow, path = volume
    portal, iqn = "192.0.2.20:3260", "iqn.2010-10.org.openstack:live"
    target = Array(vcsim).add_target(portal, iqn, {1: 32})
    lun_uuid = target["luns"][0]["uuid"]
    rdm = iscsi_info(portal, iqn)
    ops.attach_volume(None, info, inst, "/dev/sdb")
    ops.attach_volume(None, rdm, inst, "/dev/sdc")
    vm = inspector.vm(inst.uuid)
    (here,) = inspector.names([vm["runtime.host"]])
    hosts = inspector.objects(vim.HostSystem, ["name", "config.storageDevice"])
    other, storage = sorted((p["name"], p["config.storageDevice"]) for _, p in hosts.values()
                            if p["name"] != here and p["name"].startswith("DC0_C0"))[0]
    assert lun_uuid not in {lun.uuid for lun in storage.scsiLun}  # not seen there yet
    calls: list[str] = []
    ops.live_migrate(None, inst, other, lambda *a: calls.append("post"),
                     lambda *a: calls.append("recover"), migrate_data={})
    assert calls == ["post"]
    vm = inspector.vm(inst.uuid)
    assert inspector.names([vm["runtime.host"]]) == [other]
    storage = next(p["config.storageDevice"] for _, p in
                   inspector.objects(vim.HostSystem, ["name", "config.storageDevice"]).values()
                   if p["name"] == other)
    assert lun_uuid in {lun.uuid for lun in storage.scsiLun}
    lun_uuids = [d.backing.lunUuid for d in devices(vm, vim.vm.device.VirtualDisk)
                 if isinstance(d.backing,
                               vim.vm.device.VirtualDisk.RawDiskMappingVer1BackingInfo)]
    assert lun_uuids == [lun_uuid]
    assert path in volume_paths(inspector, inst) and cinder.read(path) == DATA
    ops.detach_volume(None, rdm, inst, "/dev/sdc")
    ops.detach_volume(None, info, inst, "/dev/sdb")
    Array(vcsim).remove_target(portal, iqn)
