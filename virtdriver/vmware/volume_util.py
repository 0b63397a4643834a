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


def own_root_disk(devices: list[Any], props: dict[str, Any]) -> Any:
    """The instance's own root disk: its first disk that is neither a volume (see
    :func:`volume_disk_keys`) nor a rescue disk; None for a volume-backed instance."""
    keys = volume_disk_keys(devices, props)
    return next((d for d in vm_util.disks_of(devices)
                 if d.key not in keys and isinstance(
                     d.backing, vim.vm.device.VirtualDisk.FlatVer2BackingInfo)
                 and not d.backing.fileName.endswith(vm_util.RESCUE_SUFFIX)), None)


def require_own_root_disk(devices: list[Any], props: dict[str, Any], operation: str) -> Any:
    """:func:`own_root_disk`, or UnsupportedOperation for a volume-backed instance (its
    root is the volume service's to copy or snapshot)."""
    root = own_root_disk(devices, props)
    if root is None:
        raise exceptions.UnsupportedOperation(
            f"{operation} of a volume-backed instance", "vmware",
            "its root disk is a volume: the volume service snapshots and copies it")
    return root


def record_option(info: ConnectionInfo, value: str) -> vim.option.OptionValue:
    return vim.option.OptionValue(key=volume_key(info), value=value)


def _moref(backend: VMwareBackend, kind: type, value: str) -> Any:
    # pyVmomi binds a reference to the connection that made it; this session's stub
    return kind(value, backend.inventory.vm_folder._stub)


def disk_device(slot: Slot, backing: Any, capacity_kb: int, key: int = _NEW_DISK_KEY) -> Any:
    return vim.vm.device.VirtualDisk(
        key=key, controllerKey=slot.controller_key, unitNumber=slot.unit,
        capacityInKB=capacity_kb, backing=backing,
        connectable=vim.vm.device.VirtualDevice.ConnectInfo(
            startConnected=True, connected=True, allowGuestControl=False))


def reconfigure(backend: VMwareBackend, vm: Any, changes: list[Any],
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
    reconfigure(backend, vm, [change], [record_option(info, "")])


def remove_disks(backend: VMwareBackend, vm: Any, disks: list[Any]) -> None:
    """Remove disks from the VM in one reconfigure, keeping every file."""
    reconfigure(backend, vm, [vim.vm.device.VirtualDeviceSpec(operation="remove", device=d)
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
    disk = disk_device(slot, _flat_backing(source, backing.path), backing.disk.capacityInKB or 0)
    changes = [c for c in (slot.new_controller,) if c is not None]
    changes.append(vim.vm.device.VirtualDeviceSpec(operation="add", device=disk))
    # the uuid is the file's (Cinder sets it to the volume id); the path if it has none
    reconfigure(backend, vm, changes, [record_option(info, source.uuid or backing.path)])


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
    new = vim.vm.device.VirtualDeviceSpec(operation="add", device=disk_device(
        Slot(backing.disk.controllerKey, backing.disk.unitNumber or 0, backing.adapter),
        _flat_backing(disk.backing, current), disk.capacityInKB or 0))
    try:
        reconfigure(backend, backing.ref, [old, new])
    except exceptions.TaskFailed as error:
        if error.code != "FileNotFound":
            raise
        old.fileOperation = None  # the stale file is gone already
        reconfigure(backend, backing.ref, [old, new])


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
    reconfigure(backend, vm, [vim.vm.device.VirtualDeviceSpec(operation="edit", device=disk)])


# -- vstorageobject: a First Class Disk ----------------------------------------------------------

def attach_fcd(backend: VMwareBackend, vm: Any, info: ConnectionInfo, slot: Slot) -> None:
    """AttachDisk_Task on the slot (a new controller is added first, and removed again if
    the disk cannot be attached)."""
    session = backend.session
    added = None
    if slot.new_controller is not None:
        reconfigure(backend, vm, [slot.new_controller])
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
            reconfigure(backend, vm, [vim.vm.device.VirtualDeviceSpec(operation="remove",
                                                                       device=added)])
        raise


def detach_fcd(backend: VMwareBackend, vm: Any, info: ConnectionInfo) -> None:
    """DetachDisk_Task: the disk leaves the VM; the First Class Disk stays."""
    backend.session.call_task(vm, "DetachDisk_Task", diskId=vim.vslm.ID(id=str(info.get("id"))))


def set_boot_disk(backend: VMwareBackend, vm: Any, key: int) -> None:
    """Boot from the disk with device ``key`` (a boot volume)."""
    vm_util.set_boot_disk(backend.session, vm, key)
