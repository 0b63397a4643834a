"""The pieces :mod:`virtdriver.vmware.volumes` is built from: slots, specs, server lookups.

Spec builders (``*_spec``, :func:`choose_slot`, :func:`requested_adapter`) do no I/O;
the functions taking ``backend`` talk to vCenter through its session. A volume's disk is
found again on the instance's VM by what attach recorded in the VM's extraConfig under
``volume-<id>`` (the disk's uuid for ``vmdk``, the LUN's uuid for ``iscsi``) or, for a
First Class Disk, by the disk's ``vDiskId``.

vCenter's extraConfig deletes a key set to ``""``; vcsim 0.24.2 appends instead, so the
last value of a key is the current one and ``""`` means absent on both.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from pyVmomi import vim

from virtdriver.common import exceptions
from virtdriver.common.volumes import ConnectionInfo
from virtdriver.vmware import vm_util
from virtdriver.vmware.backend import VMwareBackend

#: extraConfig key prefix recording which disk holds a volume (Nova's name).
VOLUME_KEY_PREFIX = "volume-"
#: The buses a volume's ``disk_bus`` may name: vSphere's adapter types, or ``scsi``
#: (whichever SCSI controller has room).
DISK_BUSES = ("scsi", *vm_util.ADAPTER_TYPES)
#: SCSI controllers a VM can have (bus numbers 0..3), and units per SCSI controller.
_SCSI_BUSES = 4
_SCSI_UNITS = 16
_IDE_UNITS = 2
_ISCSI_PORT = 3260
# keys for devices created in one spec (vCenter replaces negative keys)
_NEW_CONTROLLER_KEY = -101
_NEW_DISK_KEY = -100


# -- which bus and slot -------------------------------------------------------------------------

def requested_adapter(disk_bus: str | None, device_type: str | None) -> str | None:
    """The adapter a volume asks for (None: the backing's, else SCSI); InvalidInput for a
    bus vSphere does not have (Nova's ``virtio``, ``sata``...) or a non-disk device."""
    if device_type not in (None, "disk"):
        raise exceptions.InvalidInput("device_type", device_type,
                                      "only disks can be volumes on vSphere")
    if disk_bus is None:
        return None
    if disk_bus not in DISK_BUSES:
        raise exceptions.InvalidInput("disk_bus", disk_bus,
                                      f"must be one of {', '.join(DISK_BUSES)}")
    return disk_bus


@dataclasses.dataclass(frozen=True)
class Slot:
    """Where a volume's disk goes: controller key, unit, the controller's adapter name, and
    the spec adding that controller when it does not exist yet."""

    controller_key: int
    unit: int
    adapter: str
    new_controller: Any = None

    @property
    def is_ide(self) -> bool:
        """True on an IDE controller (no hot-plug)."""
        return self.adapter == "ide"


def _adapter_name(controller: Any) -> str:
    if isinstance(controller, vim.vm.device.VirtualIDEController):
        return "ide"
    for name, cls in vm_util.ADAPTER_TYPES.items():
        if cls is not None and type(controller) is cls:
            return name
    return vm_util.DEFAULT_ADAPTER


def _used_units(devices: list[Any], controller: Any) -> set[int]:
    used = {d.unitNumber for d in devices
            if getattr(d, "controllerKey", None) == controller.key and d.unitNumber is not None}
    if isinstance(controller, vim.vm.device.VirtualSCSIController):
        used.add(controller.scsiCtlrUnitNumber if controller.scsiCtlrUnitNumber is not None
                 else 7)
    return used


def choose_slot(devices: list[Any], adapter: str | None) -> Slot:
    """The first free slot on a controller of ``adapter`` (``scsi``/None: any SCSI one),
    or unit 0 of a new SCSI controller on the first free bus; VolumeError when full."""
    if adapter == "ide":
        for controller in sorted((d for d in devices
                                  if isinstance(d, vim.vm.device.VirtualIDEController)),
                                 key=lambda d: d.key):
            used = _used_units(devices, controller)
            free = [u for u in range(_IDE_UNITS) if u not in used]
            if free:
                return Slot(controller.key, free[0], "ide")
        raise exceptions.VolumeError(None, "the VM's IDE controllers are full")
    wanted = vm_util.ADAPTER_TYPES.get(adapter) if adapter not in (None, "scsi") else None
    scsi = sorted((d for d in devices if isinstance(d, vim.vm.device.VirtualSCSIController)),
                  key=lambda d: d.busNumber)
    for controller in scsi:
        if wanted is not None and type(controller) is not wanted:
            continue
        used = _used_units(devices, controller)
        free = [u for u in range(_SCSI_UNITS) if u not in used]
        if free:
            return Slot(controller.key, free[0], _adapter_name(controller))
    buses = {c.busNumber for c in scsi}
    bus = next((b for b in range(_SCSI_BUSES) if b not in buses), None)
    if bus is None:
        raise exceptions.VolumeError(None, "the VM has no free SCSI slot and no room for "
                                           "another SCSI controller")
    name = adapter if adapter not in (None, "scsi") else vm_util.DEFAULT_ADAPTER
    cls = vm_util.ADAPTER_TYPES[name]
    spec = vim.vm.device.VirtualDeviceSpec(operation="add", device=cls(
        key=_NEW_CONTROLLER_KEY, busNumber=bus, sharedBus="noSharing"))
    return Slot(_NEW_CONTROLLER_KEY, 0, name, spec)


def slot_of(devices: list[Any], disk: Any) -> Slot:
    """The slot a disk occupies."""
    controller = next((d for d in devices if d.key == disk.controllerKey), None)
    return Slot(disk.controllerKey, disk.unitNumber or 0,
                _adapter_name(controller) if controller is not None else vm_util.DEFAULT_ADAPTER)


# -- what the instance records ------------------------------------------------------------------

def volume_key(info: ConnectionInfo) -> str:
    """The extraConfig key of a volume."""
    return f"{VOLUME_KEY_PREFIX}{info.volume_id}"


def recorded(props: dict[str, Any], info: ConnectionInfo) -> str | None:
    """What attach recorded for the volume (the last value of its key), None if nothing."""
    key = volume_key(info)
    value = None
    for option in props.get("config.extraConfig") or []:
        if option.key == key:
            value = option.value
    return value or None


def disk_matches(info: ConnectionInfo, disk: Any, record: str | None) -> bool:
    """Whether a VM disk is the volume's, by the record (or FCD id)."""
    backing = disk.backing
    if info.driver_volume_type == "vstorageobject":
        disk_id = getattr(disk, "vDiskId", None)
        return disk_id is not None and disk_id.id == info.get("id")
    if record is None:
        return False
    if info.driver_volume_type == "iscsi":
        return isinstance(backing, vim.vm.device.VirtualDisk.RawDiskMappingVer1BackingInfo) \
            and record in (backing.lunUuid, backing.deviceName)
    return isinstance(backing, vim.vm.device.VirtualDisk.FlatVer2BackingInfo) \
        and record in (backing.uuid, backing.fileName)


def find_attached(backend: VMwareBackend, info: ConnectionInfo, devices: list[Any],
                  props: dict[str, Any]) -> Any:
    """The instance's disk holding the volume, or None."""
    record = recorded(props, info)
    return next((d for d in vm_util.disks_of(devices) if disk_matches(info, d, record)), None)


def volume_disk_keys(devices: list[Any], props: dict[str, Any]) -> set[int]:
    """Keys of the disks that hold volumes: recorded under a ``volume-*`` key, or FCDs."""
    current: dict[str, str] = {}
    for option in props.get("config.extraConfig") or []:
        if option.key.startswith(VOLUME_KEY_PREFIX):
            current[option.key] = option.value
    records = {value for value in current.values() if value}
    keys = set()
    for disk in vm_util.disks_of(devices):
        backing = disk.backing
        ids = {getattr(backing, name, None) for name in ("uuid", "fileName", "lunUuid",
                                                          "deviceName")}
        if getattr(disk, "vDiskId", None) is not None or ids & records:
            keys.add(disk.key)
    return keys


def _record(info: ConnectionInfo, value: str) -> vim.option.OptionValue:
    return vim.option.OptionValue(key=volume_key(info), value=value)


def _moref(backend: VMwareBackend, kind: type, value: str) -> Any:
    # pyVmomi binds a reference to the connection that made it; this session's stub
    return kind(value, backend.inventory.vm_folder._stub)


def _disk(slot: Slot, backing: Any, capacity_kb: int, key: int = _NEW_DISK_KEY) -> Any:
    return vim.vm.device.VirtualDisk(
        key=key, controllerKey=slot.controller_key, unitNumber=slot.unit,
        capacityInKB=capacity_kb, backing=backing,
        connectable=vim.vm.device.VirtualDevice.ConnectInfo(
            startConnected=True, connected=True, allowGuestControl=False))


def _reconfigure(backend: VMwareBackend, vm: Any, changes: list[Any],
                 extra: list[Any] | None = None) -> None:
    backend.session.call_task(vm, "ReconfigVM_Task",
                              vim.vm.ConfigSpec(deviceChange=changes, extraConfig=extra or []))


def remove_disk(backend: VMwareBackend, vm: Any, info: ConnectionInfo, disk: Any,
                destroy_file: bool) -> None:
    """Remove the volume's disk and its record in one reconfigure (``destroy_file``: an RDM's
    mapping file, never a volume's data)."""
    change = vim.vm.device.VirtualDeviceSpec(operation="remove", device=disk)
    if destroy_file:
        change.fileOperation = "destroy"
    _reconfigure(backend, vm, [change], [_record(info, "")])


def remove_disks(backend: VMwareBackend, vm: Any, disks: list[Any]) -> None:
    """Remove disks from the VM in one reconfigure, keeping every file."""
    _reconfigure(backend, vm, [vim.vm.device.VirtualDeviceSpec(operation="remove", device=d)
                               for d in disks])


# -- vmdk: Cinder's shadow VM ------------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class VmdkBacking:
    """Cinder's shadow VM of a volume and the disk that holds the volume's data."""

    ref: Any
    disk: Any
    adapter: str

    @property
    def path(self) -> str:
        """``[datastore] folder/file.vmdk`` of the volume's data."""
        return self.disk.backing.fileName


def vmdk_backing(backend: VMwareBackend, info: ConnectionInfo) -> VmdkBacking:
    """The shadow VM (by ``data['volume']``, else by instanceUuid = volume id) and its
    first flat disk; VolumeNotFound when the shadow VM is gone."""
    session = backend.session
    paths = ["config.hardware.device"]
    ref = _moref(backend, vim.VirtualMachine, str(info.get("volume")))
    try:
        props = session.retrieve_one(ref, paths)
    except exceptions.BackendError as error:
        if error.code != "ManagedObjectNotFound":
            raise
        props = {}
    if not props:
        # the moref changed (the shadow VM was re-registered): Cinder keeps its uuid
        ref = session.invoke(session.content.searchIndex, "FindByUuid", None,
                             info.volume_id, True, True)
        if ref is None:
            raise exceptions.VolumeNotFound(info.volume_id, f"Cinder's shadow VM "
                                                            f"{info.get('volume')} is gone")
        props = session.retrieve_one(ref, paths)
    devices = list(props.get("config.hardware.device") or [])
    disk = next((d for d in vm_util.disks_of(devices)
                 if isinstance(d.backing, vim.vm.device.VirtualDisk.FlatVer2BackingInfo)),
                None)
    if disk is None:
        raise exceptions.VolumeError(info.volume_id, f"Cinder's shadow VM {ref._moId} holds "
                                                     f"no disk")
    return VmdkBacking(ref, disk, vm_util.adapter_of(devices, disk))


def _flat_backing(source: Any, path: str) -> Any:
    return vim.vm.device.VirtualDisk.FlatVer2BackingInfo(
        fileName=path, diskMode="persistent", thinProvisioned=source.thinProvisioned,
        eagerlyScrub=source.eagerlyScrub, uuid=source.uuid)


def attach_vmdk(backend: VMwareBackend, vm: Any, info: ConnectionInfo, backing: VmdkBacking,
                slot: Slot) -> None:
    """Add a disk on the shadow VM's file (no file operation) and record its uuid, in one
    reconfigure."""
    source = backing.disk.backing
    disk = _disk(slot, _flat_backing(source, backing.path), backing.disk.capacityInKB or 0)
    changes = [c for c in (slot.new_controller,) if c is not None]
    changes.append(vim.vm.device.VirtualDeviceSpec(operation="add", device=disk))
    # the uuid is the file's (Cinder sets it to the volume id); the path if it has none
    _reconfigure(backend, vm, changes, [_record(info, source.uuid or backing.path)])


def hand_back_vmdk(backend: VMwareBackend, info: ConnectionInfo, disk: Any,
                   props: dict[str, Any], instance: Any) -> None:
    """If the instance's disk is no longer the shadow VM's file, move the shadow VM to the
    file's datastore and point its disk at the current file (the stale copy is deleted)."""
    try:
        backing = vmdk_backing(backend, info)
    except exceptions.VolumeNotFound:
        return  # nothing to hand back to; the instance still lets go of the disk
    current = disk.backing.fileName
    if backing.path == current:
        return
    session = backend.session
    session.call_task(backing.ref, "RelocateVM_Task", vim.vm.RelocateSpec(
        datastore=disk.backing.datastore, pool=backend.inventory.pool,
        host=props.get("runtime.host")))
    old = vim.vm.device.VirtualDeviceSpec(operation="remove", device=backing.disk,
                                          fileOperation="destroy")
    new = vim.vm.device.VirtualDeviceSpec(operation="add", device=_disk(
        Slot(backing.disk.controllerKey, backing.disk.unitNumber or 0, backing.adapter),
        _flat_backing(disk.backing, current), disk.capacityInKB or 0))
    try:
        _reconfigure(backend, backing.ref, [old, new])
    except exceptions.TaskFailed as error:
        if error.code != "FileNotFound":
            raise
        old.fileOperation = None  # the stale file is gone already
        _reconfigure(backend, backing.ref, [old, new])


def grow_disk(backend: VMwareBackend, vm: Any, info: ConnectionInfo, disk: Any,
              requested_size: int) -> None:
    """Set a vmdk volume's disk capacity to ``requested_size`` bytes (never smaller)."""
    if info.driver_volume_type != "vmdk":
        raise exceptions.UnsupportedOperation(
            f"extend_volume of {info.driver_volume_type} volumes", "vmware",
            "only vmdk volumes are extended in place")
    new_kb = -(-int(requested_size) // 1024)
    if new_kb < (disk.capacityInKB or 0):
        raise exceptions.InvalidInput("requested_size", requested_size,
                                      f"is smaller than the attached disk "
                                      f"({disk.capacityInKB} KiB)")
    if new_kb == disk.capacityInKB:
        return
    disk.capacityInKB = new_kb
    disk.capacityInBytes = new_kb * 1024
    _reconfigure(backend, vm, [vim.vm.device.VirtualDeviceSpec(operation="edit", device=disk)])


# -- iscsi: a LUN behind the host's software iSCSI adapter -------------------------------------

def _portal(value: str) -> tuple[str, int]:
    host, sep, port = str(value).rpartition(":")
    if not sep or not port.isdigit() or (host.count(":") and not host.endswith("]")):
        return str(value).strip("[]"), _ISCSI_PORT
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
    changes.append(vim.vm.device.VirtualDeviceSpec(operation="add", fileOperation="create",
                                                   device=_disk(slot, backing, capacity_kb)))
    _reconfigure(backend, vm, changes, [_record(info, lun.uuid)])


# -- vstorageobject: a First Class Disk ----------------------------------------------------------

def attach_fcd(backend: VMwareBackend, vm: Any, info: ConnectionInfo, slot: Slot) -> None:
    """AttachDisk_Task on the slot (a new controller is added first, and removed again if
    the disk cannot be attached)."""
    session = backend.session
    added = None
    if slot.new_controller is not None:
        _reconfigure(backend, vm, [slot.new_controller])
        bus = slot.new_controller.device.busNumber
        added = next(d for d in vm_util.devices_of(session, vm)
                     if isinstance(d, vim.vm.device.VirtualSCSIController)
                     and d.busNumber == bus)
        slot = Slot(added.key, 0, slot.adapter)
    try:
        session.call_task(vm, "AttachDisk_Task", diskId=vim.vslm.ID(id=str(info.get("id"))),
                          datastore=_moref(backend, vim.Datastore, str(info.get("ds_ref_val"))),
                          controllerKey=slot.controller_key, unitNumber=slot.unit)
    except Exception:
        if added is not None:
            _reconfigure(backend, vm, [vim.vm.device.VirtualDeviceSpec(operation="remove",
                                                                       device=added)])
        raise


def detach_fcd(backend: VMwareBackend, vm: Any, info: ConnectionInfo) -> None:
    """DetachDisk_Task: the disk leaves the VM; the First Class Disk stays."""
    backend.session.call_task(vm, "DetachDisk_Task", diskId=vim.vslm.ID(id=str(info.get("id"))))


def set_boot_disk(backend: VMwareBackend, vm: Any, key: int) -> None:
    """Boot from the disk with device ``key`` (a boot volume)."""
    vm_util.set_boot_disk(backend.session, vm, key)
