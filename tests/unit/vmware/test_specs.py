"""Spec builders, datastore choice and the VM-reference cache, without a server."""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from pyVmomi import vim

from virtdriver.common import exceptions
from virtdriver.common.model import VIF, Flavor, ImageMeta, Instance, VMConfigInfo
from virtdriver.vmware import ds_util, vm_util
from virtdriver.vmware import vif as vif_util
from virtdriver.vmware.images import flat_descriptor


def _instance(**flavor: Any) -> Instance:
    spec = {"vcpus": 4, "memory_mb": 1024, "root_gb": 10, **flavor}
    return Instance(uuid=str(uuid.uuid4()), name="web-1", flavor=Flavor(**spec))


def _image(**props: Any) -> ImageMeta:
    return ImageMeta(id=str(uuid.uuid4()), disk_format="vmdk", properties=props)


def _vif(n: int, network: str = "VM Network") -> VIF:
    return VIF(id=str(uuid.uuid4()), address=f"fa:16:3e:00:00:{n:02x}", network=network)


NETWORKS = {
    "VM Network": vif_util.NetworkRef("VM Network", vim.Network("network-7")),
    "pg": vif_util.NetworkRef("pg", vim.dvs.DistributedVirtualPortgroup("dvportgroup-9"),
                              portgroup_key="dvportgroup-9", switch_uuid="50 2a"),
}
DS = ds_util.Datastore(vim.Datastore("datastore-1"), "ds1", 10 ** 12, 2 * 10 ** 12)


def test_create_spec_carries_identity_sizing_tuning_and_nics() -> None:
    inst = _instance(extra_specs={"quota:cpu_limit": "3000", "quota:cpu_reservation": "500",
                                  "quota:memory_shares_level": "custom",
                                  "quota:memory_shares_share": "2000", "hw:cpu_sockets": "2",
                                  "quota:vif_limit": "100"})
    vifs = [_vif(1), _vif(2, "pg")]
    info = VMConfigInfo.build(inst, _image(vmware_ostype="ubuntu64Guest",
                                           hw_vif_model="e1000e"), vifs)
    spec = vm_util.create_spec(info, DS, NETWORKS, [])
    assert (spec.name, spec.instanceUuid) == (inst.uuid, inst.uuid)
    assert (spec.numCPUs, spec.memoryMB, spec.numCoresPerSocket) == (4, 1024, 2)
    assert spec.guestId == "ubuntu64Guest"
    assert spec.files.vmPathName == "[ds1]"
    assert (spec.cpuAllocation.limit, spec.cpuAllocation.reservation) == (3000, 500)
    assert spec.memoryAllocation.shares.level == "custom"
    assert spec.memoryAllocation.shares.shares == 2000
    assert spec.managedBy.extensionKey == "org.openstack.compute"
    extra = {o.key: o.value for o in spec.extraConfig}
    assert extra["nvp.vm-uuid"] == inst.uuid
    assert [extra["nvp.iface-id.0"], extra["nvp.iface-id.1"]] == [vifs[0].id, vifs[1].id]
    nics = [c.device for c in spec.deviceChange]
    assert all(isinstance(n, vim.vm.device.VirtualE1000e) for n in nics)
    assert [n.macAddress for n in nics] == ["fa:16:3e:00:00:01", "fa:16:3e:00:00:02"]
    assert all(n.addressType == "manual" for n in nics)
    assert nics[0].backing.deviceName == "VM Network"
    assert nics[1].backing.port.portgroupKey == "dvportgroup-9"
    assert nics[1].backing.port.switchUuid == "50 2a"
    assert nics[0].resourceAllocation.limit == 100


def test_no_tuning_leaves_allocations_unset() -> None:
    info = VMConfigInfo.build(_instance(), _image(), [])
    spec = vm_util.create_spec(info, DS, NETWORKS, [])
    assert spec.cpuAllocation is None and spec.memoryAllocation is None
    assert spec.guestId == "otherGuest"


def test_disk_layout_and_linked_disk_spec() -> None:
    layout = vm_util.DiskLayout("paraVirtual")
    controller = vm_util.controller_spec("paraVirtual")
    assert isinstance(controller.device, vim.vm.device.ParaVirtualSCSIController)
    root = vm_util.disk_spec(layout, "[ds1] a/a.vmdk", 1024, create=True,
                             parent="[ds1] _base/i/i.1.vmdk")
    assert root.fileOperation == "create"
    assert root.device.controllerKey == controller.device.key
    assert root.device.backing.parent.fileName == "[ds1] _base/i/i.1.vmdk"
    units = [root.device.unitNumber] + [layout.slot()[1] for _ in range(8)]
    assert 7 not in units and units[:3] == [0, 1, 2]
    attached = vm_util.disk_spec(vm_util.DiskLayout("ide"), "[ds1] a/b.vmdk", 1, create=False)
    assert attached.fileOperation is None and attached.device.controllerKey == 200


@pytest.mark.parametrize("prop,value", [("vmware_adaptertype", "scsi-9000"),
                                        ("vmware_ostype", "rm -rf"),
                                        ("hw_vif_model", "virtio")])
def test_unknown_image_properties_are_invalid_input(prop: str, value: str) -> None:
    image = _image(**{prop: value})
    with pytest.raises(exceptions.InvalidInput):
        vm_util.adapter_type(image)
        vm_util.guest_id(image)
        vif_util.vif_model(image.properties.get("hw_vif_model"))


def test_choose_datastore_by_regex_state_and_space() -> None:
    def ds(name: str, free: int, accessible: bool = True, mode: str = "normal") -> Any:
        ref = vim.Datastore(f"ds-{name}")
        return ref._moId, (ref, {"summary.name": name, "summary.freeSpace": free,
                                 "summary.accessible": accessible,
                                 "summary.maintenanceMode": mode})
    candidates = dict([ds("big", 900), ds("nfs1", 500), ds("nfs2", 700),
                       ds("nfs3", 9000, accessible=False), ds("nfs4", 9000, mode="inMaintenance")])
    assert ds_util.choose_datastore(candidates, None)[1]["summary.name"] == "big"
    assert ds_util.choose_datastore(candidates, r"nfs\d")[1]["summary.name"] == "nfs2"
    assert ds_util.choose_datastore(candidates, r"nfs\d", 600)[1]["summary.name"] == "nfs2"
    with pytest.raises(exceptions.BackendError) as err:
        ds_util.choose_datastore(candidates, r"nfs\d", 800)
    assert err.value.code == "NoValidDatastore"


def test_cache_folder_name_uses_the_prefix() -> None:
    class Conf:
        class vmware:  # noqa: N801 - mimics oslo.config's group attribute
            cache_prefix = "az1"
        image_cache_subdirectory_name = "_base"
    assert ds_util.cache_folder_name(Conf) == "az1_base"
    Conf.vmware.cache_prefix = None
    assert ds_util.cache_folder_name(Conf) == "_base"


def test_flat_descriptor_counts_sectors() -> None:
    text = flat_descriptor("x-flat.vmdk", 1025, "lsiLogic").decode()
    assert 'RW 3 VMFS "x-flat.vmdk"' in text and 'ddb.adapterType = "lsilogic"' in text


class FakeSession:
    """Just enough session for the reference cache: FindByUuid answers from a dict."""

    def __init__(self, vms: dict[str, Any]) -> None:
        self.vms = vms
        self.finds = 0
        self.content = type("C", (), {"searchIndex": object()})()

    def invoke(self, obj: Any, method: str, *args: Any) -> Any:
        assert method == "FindByUuid"
        self.finds += 1
        return self.vms.get(args[1])


def test_vm_ref_cache_costs_one_call_and_recovers_from_stale_refs() -> None:
    inst = _instance()
    fresh, stale = vim.VirtualMachine("vm-2"), vim.VirtualMachine("vm-1")
    session = FakeSession({inst.uuid: fresh})
    cache = vm_util.VMRefCache()
    cache.remember(inst.uuid, stale)

    def use(ref: Any) -> str:
        if ref is stale:
            raise exceptions.BackendError("gone", code="ManagedObjectNotFound")
        return ref._moId
    assert cache.call(session, inst, use) == "vm-2"
    assert session.finds == 1
    assert cache.call(session, inst, use) == "vm-2"
    assert session.finds == 1  # cached
    session.vms.clear()
    cache.forget(inst.uuid)
    with pytest.raises(exceptions.InstanceNotFound):
        cache.call(session, inst, use)


def test_sparse_images_are_refused_before_any_call() -> None:
    from virtdriver.vmware.images import check_image

    check_image(_image(vmware_disktype="thin"))
    with pytest.raises(exceptions.InvalidInput, match="streamOptimized"):
        check_image(_image(vmware_disktype="streamOptimized"))
    with pytest.raises(exceptions.InvalidInput):
        check_image(ImageMeta(id=str(uuid.uuid4()), disk_format="qcow2"))
