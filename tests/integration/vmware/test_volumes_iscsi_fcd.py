"""iSCSI (raw device mapping) and First Class Disk volumes on vcsim.

vcsim 0.24.2 has no iSCSI adapter, targets or LUNs and no AttachDisk_Task/DetachDisk_Task:
the launcher's STAND-INs (``virtdriver/vmware/simulator/launcher/volumes.go``) give every
host a software iSCSI adapter, serve the targets the test configures (playing the array)
and implement the two FCD calls on top of vcsim's ReconfigVM_Task. Each test here goes
through at least one stand-in, and says so in its name.
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
    require_launcher,
)
from tests.integration.vmware.volume_helpers import Array, create_fcd, iscsi_info
from virtdriver.common import exceptions

__all__ = ["image_store", "inspector", "ops"]

PORTAL = "192.0.2.10:3260"


@pytest.fixture
def inst(ops: Any, image_store: Any) -> Iterator[Any]:
    instance = make_instance(root_gb=1)
    ops.spawn(None, instance, image_store.disk, [], None, [make_vif(0x41)])
    yield instance
    ops.destroy(instance)


@pytest.fixture(scope="module")
def array(vcsim: Any) -> Array:
    require_launcher(vcsim)
    return Array(vcsim)


def rdms(inspector: Any, instance: Any) -> list[Any]:
    vm = inspector.vm(instance.uuid)
    return [d for d in devices(vm, vim.vm.device.VirtualDisk)
            if isinstance(d.backing, vim.vm.device.VirtualDisk.RawDiskMappingVer1BackingInfo)]


def host_storage(inspector: Any, instance: Any) -> Any:
    host = inspector.vm(instance.uuid)["runtime.host"]
    return inspector.objects(vim.HostSystem, ["config.storageDevice"])[host._moId][1][
        "config.storageDevice"]


def test_stand_in_iscsi_volume_attached_as_a_physical_rdm(ops: Any, inst: Any,
                                                          inspector: Any,
                                                          array: Array) -> None:
    iqn = "iqn.2010-10.org.openstack:volume-a"
    target = array.add_target(PORTAL, iqn, {0: 16, 1: 64})
    lun1 = next(lun for lun in target["luns"] if lun["lun"] == 1)
    info = iscsi_info(PORTAL, iqn, lun=1)

    connector = ops.get_volume_connector(inst)
    assert connector["initiator"].startswith("iqn.1998-01.com.vmware:")
    assert connector["instance"] == inspector.vm(inst.uuid)["ref"]._moId

    ops.attach_volume(None, info, inst, "/dev/sdb")
    disk, = rdms(inspector, inst)
    assert disk.backing.compatibilityMode == "physicalMode"
    assert disk.backing.diskMode == "independent_persistent"
    assert disk.backing.deviceName == f"/vmfs/devices/disks/{lun1['canonicalName']}"
    assert disk.backing.lunUuid == lun1["uuid"]
    assert disk.capacityInKB == 64 * 1024
    # the host's adapter got the send target and sees the LUN
    storage = host_storage(inspector, inst)
    hba = next(h for h in storage.hostBusAdapter if isinstance(h, vim.host.InternetScsiHba))
    assert [(t.address, t.port) for t in hba.configuredSendTarget] == [("192.0.2.10", 3260)]
    assert lun1["uuid"] in {lun.uuid for lun in storage.scsiLun}
    assert extra_config(inspector.vm(inst.uuid))[f"volume-{info['serial']}"] == lun1["uuid"]

    ops.detach_volume(None, info, inst, "/dev/sdb")
    assert rdms(inspector, inst) == []
    # the LUN is the array's: it stays visible to the host
    assert lun1["uuid"] in {lun.uuid for lun in host_storage(inspector, inst).scsiLun}
    with pytest.raises(exceptions.VolumeNotFound):
        ops.detach_volume(None, info, inst, "/dev/sdb")
    array.remove_target(PORTAL, iqn)


def test_stand_in_iscsi_unknown_target_fails_and_leaves_the_vm(ops: Any, inst: Any,
                                                               inspector: Any,
                                                               array: Array) -> None:
    before = inspector.vm(inst.uuid)["config.hardware"].device
    info = iscsi_info("192.0.2.99:3260", "iqn.2010-10.org.openstack:nowhere")
    with pytest.raises(exceptions.VolumeError, match="not visible"):
        ops.attach_volume(None, info, inst, "/dev/sdb")
    assert len(inspector.vm(inst.uuid)["config.hardware"].device) == len(before)
    assert f"volume-{info['serial']}" not in extra_config(inspector.vm(inst.uuid))


def test_iscsi_with_chap_is_unsupported(ops: Any, inst: Any, inspector: Any) -> None:
    info = iscsi_info("192.0.2.12:3260", "iqn.2010-10.org.openstack:chap")
    info["data"].update(auth_method="CHAP", auth_username="u", auth_password="secret-1")
    before = inspector.vm(inst.uuid)["config.hardware"].device
    with pytest.raises(exceptions.UnsupportedOperation, match="CHAP") as caught:
        ops.attach_volume(None, info, inst, "/dev/sdb")
    assert "secret-1" not in str(caught.value)
    assert len(inspector.vm(inst.uuid)["config.hardware"].device) == len(before)


def test_stand_in_iscsi_first_lun_when_cinder_names_none(ops: Any, inst: Any, inspector: Any,
                                                         array: Array) -> None:
    iqn = "iqn.2010-10.org.openstack:volume-b"
    target = array.add_target("192.0.2.11:3260", iqn, {3: 32})
    info = iscsi_info("192.0.2.11:3260", iqn, lun=None)
    ops.attach_volume(None, info, inst, "/dev/sdb")
    disk, = rdms(inspector, inst)
    assert disk.backing.lunUuid == target["luns"][0]["uuid"]
    ops.detach_volume(None, info, inst, "/dev/sdb")
    array.remove_target("192.0.2.11:3260", iqn)


def test_stand_in_attach_disk_and_detach_disk_for_first_class_disks(ops: Any, inst: Any,
                                                                     inspector: Any,
                                                                     array: Array) -> None:
    fcd_id, ds = create_fcd(inspector, "fcd-volume-1", capacity_mb=8)
    info = {"driver_volume_type": "vstorageobject", "serial": "vol-fcd-1",
            "data": {"id": fcd_id, "ds_ref_val": ds._moId, "adapter_type": "lsiLogic",
                     "volume_id": "vol-fcd-1"}}
    ops.power_off(inst)
    ops.attach_volume(None, info, inst, "/dev/sdb")
    vm = inspector.vm(inst.uuid)
    disk, = [d for d in devices(vm, vim.vm.device.VirtualDisk) if d.vDiskId is not None]
    assert disk.vDiskId.id == fcd_id and f"fcd/{fcd_id}.vmdk" in disk.backing.fileName
    ops.power_on(inst)
    ops.detach_volume(None, info, inst, "/dev/sdb")
    vm = inspector.vm(inst.uuid)
    assert [d for d in devices(vm, vim.vm.device.VirtualDisk) if d.vDiskId is not None] == []
    # the First Class Disk is still there
    found = inspector.content.vStorageObjectManager.RetrieveVStorageObject(
        vim.vslm.ID(id=fcd_id), ds)
    assert found.config.id.id == fcd_id
    with pytest.raises(exceptions.VolumeNotFound):
        ops.detach_volume(None, info, inst, "/dev/sdb")


def test_stand_in_iscsi_calls_refuse_an_unknown_adapter_and_rescan_drops_gone_targets(
        inspector: Any, array: Array) -> None:
    host, (_, props) = next(iter(inspector.objects(
        vim.HostSystem, ["configManager.storageSystem", "config.storageDevice"]).items()))
    storage = props["configManager.storageSystem"]
    with pytest.raises(vim.fault.NotFound):
        storage.AddInternetScsiSendTargets(
            "vmhba99", [vim.host.InternetScsiHba.SendTarget(address="192.0.2.30", port=3260)])
    with pytest.raises(vim.fault.NotFound):
        storage.RescanHba("vmhba99")
    hba = next(h for h in props["config.storageDevice"].hostBusAdapter
               if isinstance(h, vim.host.InternetScsiHba))
    portal, iqn = "192.0.2.30:3260", "iqn.2010-10.org.openstack:gone"
    lun = array.add_target(portal, iqn, {0: 8})["luns"][0]
    storage.AddInternetScsiSendTargets(
        hba.device, [vim.host.InternetScsiHba.SendTarget(address="192.0.2.30", port=3260)])
    storage.RescanHba(hba.device)

    def luns() -> set[str]:
        return {lun.uuid for lun in inspector.objects(vim.HostSystem, [
            "config.storageDevice"])[host][1]["config.storageDevice"].scsiLun}
    assert lun["uuid"] in luns()
    array.remove_target(portal, iqn)
    assert lun["uuid"] in luns()  # until the adapter is rescanned
    storage.RescanHba(hba.device)
    assert lun["uuid"] not in luns()
