"""iSCSI volumes on vCenter: a LUN behind the ESXi host's software iSCSI adapter.

The LUN is found in the host's ``config.storageDevice`` (adapter, SCSI topology, LUNs);
when it is not visible yet, the volume's portal is added as a send target and the adapter
rescanned. It is attached as a physical-mode raw device mapping (vCenter creates the
mapping file in the VM's folder); the LUN's uuid is recorded as for any volume
(:mod:`virtdriver.vmware.volume_util`).
"""

from __future__ import annotations

from typing import Any

from pyVmomi import vim

from virtdriver.common import exceptions
from virtdriver.common.volumes import ConnectionInfo
from virtdriver.vmware import vm_util, volume_util
from virtdriver.vmware.backend import VMwareBackend
from virtdriver.vmware.volume_util import Slot

#: iSCSI's port when a portal names none.
ISCSI_PORT = 3260


def _portal(value: str) -> tuple[str, int]:
    host, sep, port = str(value).rpartition(":")
    if not sep or not port.isdigit() or (host.count(":") and not host.endswith("]")):
        return str(value).strip("[]"), ISCSI_PORT
    return host.strip("[]"), int(port)


def _iscsi_hba(device_info: Any) -> Any:
    return next((h for h in (device_info.hostBusAdapter or [])
                 if isinstance(h, vim.host.InternetScsiHba)), None) if device_info else None


def host_iqn(backend: VMwareBackend, host: Any) -> str | None:
    """The IQN of the host's software iSCSI adapter; None when it has none."""
    props = backend.session.retrieve_one(host, ["config.storageDevice"])
    hba = _iscsi_hba(props.get("config.storageDevice"))
    return hba.iScsiName if hba is not None else None


def _find_lun(device_info: Any, hba: Any, portal: tuple[str, int], iqn: str,
              lun_id: Any) -> Any:
    luns = {lun.key: lun for lun in device_info.scsiLun or []}
    address = f"{portal[0]}:{portal[1]}"
    for adapter in (device_info.scsiTopology.adapter if device_info.scsiTopology else []):
        if adapter.adapter != hba.key:
            continue
        for target in adapter.target or []:
            transport = target.transport
            if not isinstance(transport, vim.host.InternetScsiTargetTransport) or \
                    transport.iScsiName != iqn or address not in (transport.address or []):
                continue
            for lun in target.lun or []:
                scsi = luns.get(lun.scsiLun)
                if not isinstance(scsi, vim.host.ScsiDisk):
                    continue
                if lun_id in (None, "") or int(lun.lun) == int(lun_id):
                    return scsi
    return None


def iscsi_lun(backend: VMwareBackend, info: ConnectionInfo, host: Any, rescan: bool) -> Any:
    """The host's ``ScsiDisk`` for the volume's target and LUN; with ``rescan``, the send
    target is added and the adapter rescanned when the LUN is not visible yet."""
    session = backend.session
    host = host or (backend.inventory.hosts[0] if backend.inventory.hosts else None)
    if host is None:
        raise exceptions.VolumeError(info.volume_id, "the cluster has no host")
    paths = ["config.storageDevice", "configManager.storageSystem", "name"]
    props = session.retrieve_one(host, paths)
    device_info = props.get("config.storageDevice")
    hba = _iscsi_hba(device_info)
    if hba is None:
        raise exceptions.VolumeError(info.volume_id, f"host {props.get('name')} has no "
                                                     f"software iSCSI adapter")
    portal = _portal(info.get("target_portal"))
    iqn = str(info.get("target_iqn"))
    lun = _find_lun(device_info, hba, portal, iqn, info.get("target_lun"))
    if lun is None and rescan:
        storage = props["configManager.storageSystem"]
        known = {(t.address, t.port) for t in hba.configuredSendTarget or []}
        if portal not in known:
            session.invoke(storage, "AddInternetScsiSendTargets", iScsiHbaDevice=hba.device,
                           targets=[vim.host.InternetScsiHba.SendTarget(address=portal[0],
                                                                        port=portal[1])])
        session.invoke(storage, "RescanHba", hbaDevice=hba.device)
        props = session.retrieve_one(host, paths)
        device_info = props.get("config.storageDevice")
        lun = _find_lun(device_info, _iscsi_hba(device_info), portal, iqn,
                        info.get("target_lun"))
    if lun is None:
        raise exceptions.VolumeError(info.volume_id, f"LUN {info.get('target_lun', 'any')} of "
                                                     f"target {iqn} at {portal[0]}:{portal[1]} "
                                                     f"is not visible on host "
                                                     f"{props.get('name')}")
    return lun


def _lun_target(device_info: Any, lun_uuid: str) -> tuple[tuple[str, int], str, int] | None:
    """(portal, IQN, LUN number) through which a host sees the LUN ``lun_uuid``."""
    keys = {lun.key for lun in device_info.scsiLun or [] if lun.uuid == lun_uuid}
    for adapter in (device_info.scsiTopology.adapter if device_info.scsiTopology else []):
        for target in adapter.target or []:
            transport = target.transport
            if not isinstance(transport, vim.host.InternetScsiTargetTransport):
                continue
            for lun in target.lun or []:
                if lun.scsiLun in keys and transport.address:
                    return _portal(transport.address[0]), transport.iScsiName, int(lun.lun)
    return None


def connect_luns(backend: VMwareBackend, devices: list[Any], source: Any, dest: Any) -> None:
    """Make ``dest`` see every iSCSI LUN the VM's raw device mappings use on ``source``
    (send target added, adapter rescanned), before the VM moves there.
    VolumeError when a LUN stays invisible."""
    luns = [d.backing.lunUuid for d in vm_util.disks_of(devices)
            if isinstance(d.backing, vim.vm.device.VirtualDisk.RawDiskMappingVer1BackingInfo)
            and d.backing.lunUuid]
    if not luns or source is None or dest is None or source._moId == dest._moId:
        return
    device_info = backend.session.retrieve_one(source, ["config.storageDevice"]).get(
        "config.storageDevice")
    for lun_uuid in luns:
        found = _lun_target(device_info, lun_uuid) if device_info else None
        if found is None:
            raise exceptions.VolumeError(lun_uuid, "the source host does not show which "
                                                   "iSCSI target serves this LUN")
        (address, port), iqn, number = found
        info = ConnectionInfo("iscsi", {"target_portal": f"{address}:{port}",
                                        "target_iqn": iqn, "target_lun": number,
                                        "volume_id": lun_uuid})
        iscsi_lun(backend, info, dest, rescan=True)


def attach_rdm(backend: VMwareBackend, vm: Any, info: ConnectionInfo, lun: Any,
               slot: Slot) -> None:
    """Add the LUN as a physical-mode raw device mapping (vCenter creates the mapping file
    in the VM's folder) and record the LUN's uuid, in one reconfigure."""
    backing = vim.vm.device.VirtualDisk.RawDiskMappingVer1BackingInfo(
        compatibilityMode="physicalMode", diskMode="independent_persistent",
        deviceName=lun.deviceName, lunUuid=lun.uuid, fileName="")
    capacity = getattr(lun, "capacity", None)
    capacity_kb = capacity.block * capacity.blockSize // 1024 if capacity else 0
    changes = [c for c in (slot.new_controller,) if c is not None]
    disk = volume_util.disk_device(slot, backing, capacity_kb)
    changes.append(vim.vm.device.VirtualDeviceSpec(operation="add", fileOperation="create",
                                                   device=disk))
    volume_util.reconfigure(backend, vm, changes, [volume_util.record_option(info, lun.uuid)])
