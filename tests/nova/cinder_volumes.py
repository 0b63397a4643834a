"""Real Cinder volumes for Nova's tests, made on the simulators as Cinder's drivers make them.

VMware: :func:`vmdk_volume` creates what Cinder's VMDK driver creates for a volume, a
powered-off *shadow VM* ``volume-<id>`` (``instanceUuid`` = the volume id) holding one
disk whose ``backing.uuid`` is the volume id, and returns the ``connection_info`` Cinder
hands Nova. :func:`shadow_disk_path` reads back which file the shadow VM holds.

Xen: :func:`iscsi_volume` exports what Cinder's iSCSI target driver exports for a volume,
a target ``iqn.2010-10.org.openstack:volume-<id>`` with LUN 1, on the XAPI simulator's
storage network (its ``/_sim/iscsi`` test control), writes a recognisable first block and
returns Cinder's iSCSI ``connection_info``. :func:`iscsi_lun_head` reads the LUN back on
the storage side; :func:`xen_attached_vdis` reads which LUN VDIs an instance's VM holds.
"""

from __future__ import annotations

import base64
import json
import urllib.request
import uuid as uuid_module
from typing import Any

from pyVim.task import WaitForTask
from pyVmomi import vim, vmodl


def _one(content: Any, kind: type, paths: list[str]) -> tuple[Any, dict[str, Any]]:
    pc = vmodl.query.PropertyCollector
    view = content.viewManager.CreateContainerView(content.rootFolder, [kind], True)
    try:
        spec = pc.FilterSpec(
            objectSet=[pc.ObjectSpec(obj=view, skip=True, selectSet=[
                pc.TraversalSpec(name="v", type=vim.view.ContainerView, path="view",
                                 skip=False)])],
            propSet=[pc.PropertySpec(type=kind, pathSet=paths)])
        result = content.propertyCollector.RetrievePropertiesEx([spec], pc.RetrieveOptions())
        objects = sorted(result.objects, key=lambda o: o.obj._moId)
        first = objects[0]
        return first.obj, {p.name: p.val for p in first.propSet or []}
    finally:
        view.DestroyView()


def vmdk_volume(content: Any, volume_id: str | None = None, size_kb: int = 1024,
                datastore: str = "LocalDS_0") -> tuple[str, dict[str, Any]]:
    """A shadow VM on vcsim for a new volume: ``(volume id, connection_info)``.

    ``connection_info`` is what Cinder's ``initialize_connection`` returns (without
    ``serial``, which Nova adds).
    """
    volume_id = volume_id or str(uuid_module.uuid4())
    name = f"volume-{volume_id}"
    _, cluster = _one(content, vim.ClusterComputeResource, ["resourcePool"])
    _, dc = _one(content, vim.Datacenter, ["vmFolder"])
    disk = vim.vm.device.VirtualDisk(
        key=-101, controllerKey=-100, unitNumber=0, capacityInKB=size_kb,
        backing=vim.vm.device.VirtualDisk.FlatVer2BackingInfo(
            fileName="", diskMode="persistent", thinProvisioned=True, uuid=volume_id))
    spec = vim.vm.ConfigSpec(
        name=name, guestId="otherGuest", numCPUs=1, memoryMB=128,
        files=vim.vm.FileInfo(vmPathName=f"[{datastore}]"), instanceUuid=volume_id,
        extraConfig=[vim.option.OptionValue(key="cinder.volume.id", value=volume_id)],
        managedBy=vim.ext.ManagedByInfo(extensionKey="org.openstack.storage", type="volume"),
        deviceChange=[
            vim.vm.device.VirtualDeviceSpec(operation="add", device=(
                vim.vm.device.VirtualLsiLogicController(key=-100, busNumber=0,
                                                        sharedBus="noSharing"))),
            vim.vm.device.VirtualDeviceSpec(operation="add", fileOperation="create",
                                            device=disk)])
    task = dc["vmFolder"].CreateVM_Task(spec, cluster["resourcePool"])
    WaitForTask(task)
    ref = task.info.result
    return volume_id, {"driver_volume_type": "vmdk",
                       "data": {"volume": ref._moId, "volume_id": volume_id, "name": name,
                                "profile_id": None}}


def shadow_vm(content: Any, volume_id: str) -> Any:
    """The shadow VM of a volume (None when gone)."""
    return content.searchIndex.FindByUuid(None, volume_id, True, True)


def shadow_disk_path(content: Any, volume_id: str) -> str | None:
    """The file the shadow VM's disk holds (None: no shadow VM or no disk)."""
    ref = shadow_vm(content, volume_id)
    if ref is None:
        return None
    disk = next((d for d in ref.config.hardware.device
                 if isinstance(d, vim.vm.device.VirtualDisk)), None)
    return disk.backing.fileName if disk is not None else None


def attached_volume_files(content: Any, instance_uuid: str) -> list[str]:
    """Files of the instance VM's disks that live outside its own folder (its volumes)."""
    ref = content.searchIndex.FindByUuid(None, instance_uuid, True, True)
    if ref is None:
        return []
    return [d.backing.fileName for d in ref.config.hardware.device
            if isinstance(d, vim.vm.device.VirtualDisk)
            and f"] {instance_uuid}/" not in d.backing.fileName]


# -- Xen: iSCSI targets on the XAPI simulator ------------------------------------------------

ISCSI_PORTAL = "127.0.0.1:3260"


def _iscsi_control(url: str, body: dict[str, Any]) -> Any:
    request = urllib.request.Request(f"{url}/_sim/iscsi", data=json.dumps(body).encode(),
                                     method="POST")
    with urllib.request.urlopen(request, timeout=30) as response:
        return json.loads(response.read())


def iscsi_volume(url: str, volume_id: str | None = None,
                 size: int = 4 * 1024 * 1024) -> tuple[str, dict[str, Any]]:
    """A target with LUN 1 for a new volume on the simulator at ``url``: ``(volume id,
    connection_info)``, as Cinder's ``initialize_connection`` returns it (no ``serial``)."""
    volume_id = volume_id or str(uuid_module.uuid4())
    iqn = f"iqn.2010-10.org.openstack:volume-{volume_id}"
    _iscsi_control(url, {"action": "add_target", "iqn": iqn, "portal": ISCSI_PORTAL,
                         "luns": {"1": size}})
    _iscsi_control(url, {"action": "write", "iqn": iqn, "lun": 1,
                         "data": base64.b64encode(head_of(volume_id)).decode()})
    return volume_id, {"driver_volume_type": "iscsi",
                       "data": {"target_discovered": False, "target_portal": ISCSI_PORTAL,
                                "target_iqn": iqn, "target_lun": 1, "volume_id": volume_id,
                                "encrypted": False}}


def head_of(volume_id: str) -> bytes:
    """The first bytes :func:`iscsi_volume` writes into a volume."""
    return f"volume {volume_id} ".encode() * 8


def iscsi_lun_head(url: str, volume_id: str) -> bytes | None:
    """The first bytes of a volume's LUN, read on the storage side (None: no such LUN)."""
    iqn = f"iqn.2010-10.org.openstack:volume-{volume_id}"
    targets = _iscsi_control(url, {"action": "list"})
    if not any(t["iqn"] == iqn and t["luns"] for t in targets):
        return None
    data = _iscsi_control(url, {"action": "read", "iqn": iqn, "lun": 1, "offset": 0,
                                "length": len(head_of(volume_id))})["data"]
    return base64.b64decode(data)


def iscsi_vdi_uuid(url: str, volume_id: str) -> str | None:
    """The VDI uuid the volume's LUN has in every pool (None: no such LUN)."""
    iqn = f"iqn.2010-10.org.openstack:volume-{volume_id}"
    for target in _iscsi_control(url, {"action": "list"}):
        if target["iqn"] == iqn and target["luns"]:
            return target["luns"][0]["vdi_uuid"]
    return None


def xen_attached_vdis(xapi: Any, instance_uuid: str) -> dict[str, str]:
    """The VDI uuids of the volume VBDs (``osvol``) of the instance's VM, by userdevice."""
    out: dict[str, str] = {}
    for vm in xapi.VM.get_all_records().values():
        if vm["other_config"].get("nova_uuid") != instance_uuid or vm["is_a_template"]:
            continue
        for vbd in vm["VBDs"]:
            record = xapi.VBD.get_record(vbd)
            if record["other_config"].get("osvol") == "True":
                out[record["userdevice"]] = xapi.VDI.get_uuid(record["VDI"])
    return out
