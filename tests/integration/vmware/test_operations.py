"""Snapshot, rescue, resize, NICs, consoles, diagnostics, live migration, host operations."""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

import pytest
from pyVmomi import vim

from tests.integration.vmware.helpers import (
    IMAGE_BYTES,
    datastore_files,
    devices,
    extra_config,
    image_store,
    inspector,
    make_conf,
    make_instance,
    make_vif,
    ops,
)
from virtdriver.common import exceptions
from virtdriver.common.model import Flavor

__all__ = ["image_store", "inspector", "ops"]


@pytest.fixture
def inst(ops: Any, image_store: Any) -> Iterator[Any]:
    instance = make_instance(root_gb=1)
    ops.spawn(None, instance, image_store.disk, [], None, [make_vif(0x21)])
    yield instance
    ops.destroy(instance)


def test_snapshot_uploads_the_root_disk_and_leaves_nothing(vcsim: Any, image_store: Any,
                                                           inspector: Any) -> None:
    import virtdriver

    # a full copy, so the root disk holds the image's bytes on vcsim
    backend = virtdriver.load_backend("vmware", make_conf(vcsim, use_linked_clone=False),
                                      image_store=image_store)
    inst = make_instance(root_gb=0)  # root_gb 0: the disk keeps the image's size
    backend.spawn(None, inst, image_store.disk, [], None, [])
    before_vms, before_files = set(inspector.vms()), datastore_files(inspector)
    image = image_store.create(None, {"name": "snap"})
    states: list[tuple[str, str]] = []
    progress: list[int] = []
    backend.progress.callback = lambda i, pct, step: progress.append(pct)
    backend.snapshot(None, inst, image.id,
                     lambda task_state, expected_state=None: states.append(
                         (task_state, expected_state)))
    # the first report leaves the expected state to the caller (Nova's shelve knows only
    # its own and these two)
    assert states == [("image_pending_upload", None),
                      ("image_uploading", "image_pending_upload")]
    assert progress[-1] == 100 and len(progress) == 6  # the six steps
    stored = image_store.show(None, image.id)
    assert stored.status == "active" and stored.disk_format == "vmdk"
    assert stored.properties["vmware_adaptertype"] == "paraVirtual"
    assert stored.properties["vmware_ostype"] == "otherLinux64Guest"
    assert b"".join(image_store.download(None, image.id)) == IMAGE_BYTES
    vm = inspector.vm(inst.uuid)
    assert vm["snapshot"] is None or not vm["snapshot"].rootSnapshotList
    assert set(inspector.vms()) == before_vms
    # vcsim leaves the snapshot's empty .vmsn memory file behind; nothing else may stay
    assert {f for f in datastore_files(inspector) - before_files if not f.endswith(".vmsn")} \
        == set()
    root = os.path.join(vcsim.datastores["LocalDS_0"], inst.uuid, f"{inst.uuid}-flat.vmdk")
    assert os.path.exists(root)  # the instance keeps its disk
    backend.destroy(inst)
    backend.close()


def test_failed_snapshot_cleans_up(ops: Any, inst: Any, image_store: Any, inspector: Any,
                                   vcsim_faults: Any) -> None:
    before_vms = set(inspector.vms())
    image = image_store.create(None, {"name": "snap2"})
    vcsim_faults.inject("CopyVirtualDisk_Task", "taskfault", fault="NoDiskSpace")
    with pytest.raises(exceptions.TaskFailed):
        ops.snapshot(None, inst, image.id, lambda **kw: None)
    assert set(inspector.vms()) == before_vms
    vm = inspector.vm(inst.uuid)
    assert vm["snapshot"] is None or not vm["snapshot"].rootSnapshotList
    assert image_store.show(None, image.id).status == "queued"
    ops.post_interrupted_snapshot_cleanup(None, inst)


def test_rescue_and_unrescue(ops: Any, inst: Any, image_store: Any, inspector: Any,
                             vcsim: Any) -> None:
    ops.rescue(None, inst, [], image_store.disk)
    vm = inspector.vm(inst.uuid)
    disks = sorted(devices(vm, vim.vm.device.VirtualDisk), key=lambda d: d.unitNumber)
    assert len(disks) == 2
    rescue = disks[1]
    assert rescue.backing.fileName.endswith(f"{inst.uuid}-rescue.vmdk")
    assert [b.deviceKey for b in vm["config.bootOptions"].bootOrder] == [rescue.key]
    assert vm["runtime.powerState"] == "poweredOn"
    rescue_file = os.path.join(vcsim.datastores["LocalDS_0"], inst.uuid,
                               f"{inst.uuid}-rescue-flat.vmdk")
    with open(rescue_file, "rb") as handle:
        assert handle.read() == IMAGE_BYTES  # a copy of the cached image
    with pytest.raises(exceptions.InstanceInvalidState):
        ops.rescue(None, inst, [], image_store.disk)
    ops.unrescue(inst)
    vm = inspector.vm(inst.uuid)
    (root,) = devices(vm, vim.vm.device.VirtualDisk)
    assert [b.deviceKey for b in vm["config.bootOptions"].bootOrder] == [root.key]
    assert not os.path.exists(rescue_file)
    assert vm["runtime.powerState"] == "poweredOn"
    with pytest.raises(exceptions.InstanceNotInRescueMode):
        ops.unrescue(inst)
    ops.session.stats.reset()
    with pytest.raises(exceptions.InvalidInput):
        ops.rescue(None, inst, [], image_store.iso)
    assert ops.session.stats.total_calls == 0


def test_resize_confirm_and_revert(ops: Any, inst: Any, inspector: Any, vcsim: Any) -> None:
    bigger = Flavor(vcpus=2, memory_mb=512, root_gb=2)
    with pytest.raises(exceptions.MigrationError):
        ops.migrate_disk_and_power_off(None, inst, "", Flavor(vcpus=1, memory_mb=256,
                                                              root_gb=0))
    disk_info = ops.migrate_disk_and_power_off(None, inst, "", bigger)
    vm = inspector.vm(inst.uuid)
    assert vm["runtime.powerState"] == "poweredOff"
    assert (vm["config.hardware"].numCPU, vm["config.hardware"].memoryMB) == (2, 512)
    (disk,) = devices(vm, vim.vm.device.VirtualDisk)
    assert disk.capacityInKB == 2 * 1024 ** 2
    original = os.path.join(vcsim.datastores["LocalDS_0"], inst.uuid, "original.vmdk")
    assert os.path.exists(original)
    ops.finish_migration(None, None, inst, disk_info, [], None, True)
    assert inspector.vm(inst.uuid)["runtime.powerState"] == "poweredOn"
    # revert: instance.flavor is the old flavor again, as Nova sets it
    ops.finish_revert_migration(None, inst, [])
    vm = inspector.vm(inst.uuid)
    assert (vm["config.hardware"].numCPU, vm["config.hardware"].memoryMB) == (1, 256)
    (disk,) = devices(vm, vim.vm.device.VirtualDisk)
    assert disk.capacityInKB == 1024 ** 2
    assert not os.path.exists(original)
    assert vm["runtime.powerState"] == "poweredOn"
    # resize again and confirm: original.vmdk goes
    ops.migrate_disk_and_power_off(None, inst, "", bigger)
    assert os.path.exists(original)
    ops.finish_migration(None, None, inst, {}, [], None, True)
    ops.confirm_migration(None, inst, [])
    assert not os.path.exists(original)


def test_resize_to_another_host(ops: Any, inst: Any, inspector: Any) -> None:
    vm = inspector.vm(inst.uuid)
    (here,) = inspector.names([vm["runtime.host"]])
    hosts = inspector.objects(vim.HostSystem, ["name", "parent"])
    other = sorted(p["name"] for _, p in hosts.values()
                   if p["name"] != here and p["name"].startswith("DC0_C0"))[0]
    ops.migrate_disk_and_power_off(None, inst, other, Flavor(vcpus=1, memory_mb=256,
                                                             root_gb=1))
    assert inspector.names([inspector.vm(inst.uuid)["runtime.host"]]) == [other]
    ops.finish_migration(None, None, inst, {}, [], None, True)
    ops.finish_revert_migration(None, inst, [])  # back where it was
    assert inspector.names([inspector.vm(inst.uuid)["runtime.host"]]) == [here]
    ops.migrate_disk_and_power_off(None, inst, other, Flavor(vcpus=1, memory_mb=256,
                                                             root_gb=1))
    ops.finish_migration(None, None, inst, {}, [], None, True)
    ops.confirm_migration(None, inst, [])
    assert inspector.names([inspector.vm(inst.uuid)["runtime.host"]]) == [other]
    assert extra_config(inspector.vm(inst.uuid))["virtdriver.resize.source_host"] == ""


def test_live_migration_between_cluster_hosts(ops: Any, inst: Any, inspector: Any) -> None:
    vm = inspector.vm(inst.uuid)
    (here,) = inspector.names([vm["runtime.host"]])
    hosts = inspector.objects(vim.HostSystem, ["name"])
    other = sorted(p["name"] for _, p in hosts.values()
                   if p["name"] != here and p["name"].startswith("DC0_C0"))[0]
    dest = ops.check_can_live_migrate_destination(None, inst)
    data = ops.check_can_live_migrate_source(None, inst, dest)
    data = ops.pre_live_migration(None, inst, None, [], None, data)
    calls: list[str] = []
    ops.live_migrate(None, inst, other, lambda *a: calls.append("post"),
                     lambda *a: calls.append("recover"), migrate_data=data)
    assert calls == ["post"]
    assert inspector.names([inspector.vm(inst.uuid)["runtime.host"]]) == [other]
    assert inspector.vm(inst.uuid)["runtime.powerState"] == "poweredOn"
    ops.post_live_migration(None, inst, data)
    ops.post_live_migration_at_destination(None, inst, [])
    with pytest.raises(exceptions.MigrationPreCheckError):
        ops.live_migrate(None, inst, "no-such-host", lambda *a: calls.append("post"),
                         lambda *a: calls.append("recover"), migrate_data=data)
    assert calls == ["post", "recover"]
    ops.rollback_live_migration_at_destination(inst)
    with pytest.raises(exceptions.MigrationPreCheckError):
        ops.check_can_live_migrate_source(None, inst, {"cluster_name": "elsewhere"})


def test_attach_and_detach_interface(ops: Any, inst: Any, inspector: Any) -> None:
    vif = make_vif(0x22, network="DC0_DVPG0")
    ops.attach_interface(inst, None, vif)
    vm = inspector.vm(inst.uuid)
    macs = {n.macAddress for n in devices(vm, vim.vm.device.VirtualEthernetCard)}
    assert macs == {"fa:16:3e:00:00:21", "fa:16:3e:00:00:22"}
    assert extra_config(vm)["nvp.iface-id.1"] == vif.id
    with pytest.raises(exceptions.InvalidInput):
        ops.attach_interface(inst, None, vif)
    ops.detach_interface(inst, vif)
    vm = inspector.vm(inst.uuid)
    assert {n.macAddress for n in devices(vm, vim.vm.device.VirtualEthernetCard)} == {
        "fa:16:3e:00:00:21"}
    assert extra_config(vm)["nvp.iface-id.1"] == "free"
    ops.plug_vifs(inst, [vif])
    assert len(devices(inspector.vm(inst.uuid), vim.vm.device.VirtualEthernetCard)) == 2
    ops.unplug_vifs(inst, [vif])
    assert len(devices(inspector.vm(inst.uuid), vim.vm.device.VirtualEthernetCard)) == 1


def test_inject_network_info(ops: Any, inst: Any, inspector: Any) -> None:
    ops.inject_network_info(inst, [make_vif(0x21)])
    assert extra_config(inspector.vm(inst.uuid))["machine.id"] == "fa:16:3e:00:00:21;10.0.0.33"


def test_vnc_console_and_diagnostics(ops: Any, inst: Any, inspector: Any) -> None:
    console = ops.get_vnc_console(inst)
    vm = inspector.vm(inst.uuid)
    assert extra_config(vm)["RemoteDisplay.vnc.port"] == str(console.port)
    assert console.port >= 5900
    assert console.host == inspector.names([vm["runtime.host"]])[0]
    assert ops.get_vnc_console(inst).port == console.port  # stable
    diag = ops.get_instance_diagnostics(inst)
    assert diag.state == "running" and diag.num_cpus == 1 and diag.num_nics == 1
    assert diag.num_disks == 1 and diag.memory_details.maximum == 256
    flat = ops.get_diagnostics(inst)
    assert flat["vmware:numCpu"] == 1 and flat["vmware:memorySizeMB"] == 256
    assert inst.uuid in ops.get_per_instance_usage()


def test_host_operations(ops: Any, vcsim: Any, image_store: Any, inspector: Any) -> None:
    dc_ref, dc_name = ops.get_datacenter_ref_and_name(ops.inventory.datastores[0])
    assert dc_name == "DC0"
    ops.check_cache_folder("LocalDS_0", None)
    ops.check_temp_folder("LocalDS_0", None)
    root = vcsim.datastores["LocalDS_0"]
    assert os.path.isdir(os.path.join(root, "_base"))
    assert os.path.isdir(os.path.join(root, "vmware_temp"))


def test_manage_image_cache_ages_out_unused_images(vcsim: Any, image_store: Any,
                                                   tmp_path: Any) -> None:
    import virtdriver
    conf = make_conf(vcsim)
    conf.set_override("remove_unused_original_minimum_age_seconds", 0)
    backend = virtdriver.load_backend("vmware", conf, image_store=image_store)
    path = tmp_path / "aged.vmdk"
    path.write_bytes(b"a" * 1024)
    image = image_store.import_file(path, disk_format="vmdk", name="aged")
    inst = make_instance()
    inst.image_ref = image.id
    backend.spawn(None, inst, image, [], None, [])
    cached = os.path.join(vcsim.datastores["LocalDS_0"], "_base", image.id)
    backend.manage_image_cache(None, [inst])
    assert os.path.isdir(cached)
    backend.destroy(inst)
    backend.manage_image_cache(None, [])  # marks it unused
    assert any(n.startswith("ts-") for n in os.listdir(cached))
    backend.manage_image_cache(None, [])  # older than the minimum age (0 s): deleted
    assert not os.path.exists(cached)
    backend.close()


def test_cache_image_fills_the_datastore_cache_once(vcsim: Any, image_store: Any,
                                                    tmp_path: Any) -> None:
    """Nova's image pre-caching: the image into the datastore cache a spawn reads."""
    import virtdriver
    backend = virtdriver.load_backend("vmware", make_conf(vcsim), image_store=image_store)
    path = tmp_path / "precached.vmdk"
    path.write_bytes(b"p" * 4096)
    image = image_store.import_file(path, disk_format="vmdk", name="precached")
    cached = os.path.join(vcsim.datastores["LocalDS_0"], "_base", image.id)
    try:
        assert not os.path.exists(cached)
        assert backend.cache_image(None, image.id) is True
        assert os.path.isdir(cached) and os.listdir(cached)
        assert backend.cache_image(None, image.id) is False  # already there
    finally:
        backend.close()
