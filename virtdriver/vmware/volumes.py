"""Cinder volumes on vCenter: attach, detach, swap, extend, and the volume connector.

Three kinds of ``connection_info`` (checked by :mod:`virtdriver.common.volumes` before any
call):

* ``vmdk``: Cinder's VMDK driver keeps each volume as the disk of a powered-off *shadow
  VM* (``data['volume']`` is its moref value). Attach adds a disk on that same file to the
  instance's VM and records the disk's uuid in the instance's extraConfig under
  ``volume-<id>``, as Nova does; detach finds the disk again by that uuid and removes it
  without deleting the file. If the instance moved the file (storage vMotion, a
  migration), detach first hands it back: the shadow VM is relocated to the file's
  datastore and its disk re-pointed at the current file.
* ``iscsi``: the LUN is reached through the ESXi host's software iSCSI adapter (send
  target added and the adapter rescanned when the LUN is not visible yet) and attached
  as a physical-mode raw device mapping (:mod:`virtdriver.vmware.volume_util`).
* ``vstorageobject``: a First Class Disk, attached with ``AttachDisk_Task`` and detached
  with ``DetachDisk_Task``.

Hot attach and detach work on SCSI in any power state; IDE takes no disk while the VM
runs (InstanceInvalidState, before any change). Every change to the instance's VM is one
``ReconfigVM_Task``, so a failed attach leaves the VM as it was. Volumes are never
deleted here: their storage belongs to Cinder.

The face (``vmops.py``) holds the instance lock and delegates here in one hop.
"""

from __future__ import annotations

from typing import Any

from oslo_log import log as logging

from virtdriver.common import exceptions
from virtdriver.common.model import field_of
from virtdriver.common.volumes import BlockDevices, ConnectionInfo, VolumeMapping, connector_ip
from virtdriver.vmware import iscsi, volume_util
from virtdriver.vmware.backend import VMwareBackend
from virtdriver.vmware.volume_util import Slot

LOG = logging.getLogger(__name__)


# -- attach and detach ------------------------------------------------------------------------

def attach_volume(backend: VMwareBackend, info: ConnectionInfo, instance: Any,
                  disk_bus: str | None = None, device_type: str | None = None) -> None:
    """Attach one volume to the instance's VM (the caller holds the instance lock)."""
    adapter = volume_util.requested_adapter(disk_bus, device_type)
    vm, devices, props = backend.read_devices(instance)
    _attach(backend, info, instance, vm, devices, props, adapter)
    LOG.info("attached %s volume %s", info.driver_volume_type, info.volume_id,
             instance=instance)


def _attach(backend: VMwareBackend, info: ConnectionInfo, instance: Any, vm: Any,
            devices: list[Any], props: dict[str, Any], adapter: str | None,
            slot: Slot | None = None) -> None:
    if volume_util.find_attached(backend, info, devices, props) is not None:
        raise exceptions.InvalidInput("connection_info", info.volume_id,
                                      f"is already attached to instance "
                                      f"{field_of(instance, 'uuid')}")
    kind = info.driver_volume_type
    if kind == "vmdk":
        backing = volume_util.vmdk_backing(backend, info)
        slot = slot or volume_util.choose_slot(devices, adapter or backing.adapter)
        _check_hotplug(instance, slot, props)
        volume_util.attach_vmdk(backend, vm, info, backing, slot)
    elif kind == "iscsi":
        if info.get("auth_method"):
            # the host's adapter would need the CHAP secret set on it: not done here, and a
            # target requiring CHAP would refuse the login
            raise exceptions.UnsupportedOperation(
                f"iscsi volumes with {info.get('auth_method')} authentication", "vmware",
                "CHAP is not configured on the host's iSCSI adapter")
        slot = slot or volume_util.choose_slot(devices, adapter)
        _check_hotplug(instance, slot, props)
        lun = iscsi.iscsi_lun(backend, info, props.get("runtime.host"), rescan=True)
        iscsi.attach_rdm(backend, vm, info, lun, slot)
    else:  # vstorageobject
        # Cinder's FCD driver names the disk's adapter; a name vSphere lacks is ignored
        named = info.get("adapter_type")
        slot = slot or volume_util.choose_slot(
            devices, adapter or (named if named in volume_util.DISK_BUSES else None))
        _check_hotplug(instance, slot, props)
        volume_util.attach_fcd(backend, vm, info, slot)


def detach_volume(backend: VMwareBackend, info: ConnectionInfo, instance: Any) -> None:
    """Detach one volume, keeping its data; VolumeNotFound when it is not attached."""
    vm, devices, props = backend.read_devices(instance)
    _detach(backend, info, instance, vm, devices, props)
    LOG.info("detached %s volume %s", info.driver_volume_type, info.volume_id,
             instance=instance)


def _detach(backend: VMwareBackend, info: ConnectionInfo, instance: Any, vm: Any,
            devices: list[Any], props: dict[str, Any]) -> Slot:
    disk = volume_util.find_attached(backend, info, devices, props)
    if disk is None:
        raise exceptions.VolumeNotFound(info.volume_id, f"is not attached to instance "
                                                        f"{field_of(instance, 'uuid')}")
    slot = volume_util.slot_of(devices, disk)
    _check_hotplug(instance, slot, props)
    kind = info.driver_volume_type
    if kind == "vmdk":
        volume_util.hand_back_vmdk(backend, info, disk, props, instance)
        volume_util.remove_disk(backend, vm, info, disk, destroy_file=False)
    elif kind == "iscsi":
        # the mapping file goes (it is the VM's); the LUN and its data stay
        volume_util.remove_disk(backend, vm, info, disk, destroy_file=True)
    else:
        volume_util.detach_fcd(backend, vm, info)
    return slot


def _check_hotplug(instance: Any, slot: Slot, props: dict[str, Any]) -> None:
    """IDE takes no disk change unless the VM is off (vSphere's rule, checked first)."""
    state = str(props.get("runtime.powerState") or "poweredOff")
    if slot.is_ide and state != "poweredOff":
        raise exceptions.InstanceInvalidState(field_of(instance, "uuid"),
                                              "attach or detach a volume on an IDE bus",
                                              state)


# -- swap and extend --------------------------------------------------------------------------

def swap_volume(backend: VMwareBackend, old: ConnectionInfo, new: ConnectionInfo,
                instance: Any) -> None:
    """Put ``new`` in ``old``'s slot; if ``new`` cannot attach, ``old`` goes back there."""
    vm, devices, props = backend.read_devices(instance)
    disk = volume_util.find_attached(backend, old, devices, props)
    if disk is None:
        raise exceptions.VolumeNotFound(old.volume_id, f"is not attached to instance "
                                                       f"{field_of(instance, 'uuid')}")
    adapter = volume_util.slot_of(devices, disk).adapter
    slot = _detach(backend, old, instance, vm, devices, props)
    vm, devices, props = backend.read_devices(instance)
    try:
        _attach(backend, new, instance, vm, devices, props, adapter, slot)
    except Exception:
        LOG.warning("volume %s could not take %s's place; putting %s back", new.volume_id,
                    old.volume_id, old.volume_id, instance=instance)
        vm, devices, props = backend.read_devices(instance)
        _attach(backend, old, instance, vm, devices, props, adapter, slot)
        raise
    LOG.info("swapped volume %s for %s", old.volume_id, new.volume_id, instance=instance)


def extend_volume(backend: VMwareBackend, info: ConnectionInfo, instance: Any,
                  requested_size: int) -> None:
    """Make the attached disk's capacity ``requested_size`` bytes (growing only)."""
    vm, devices, props = backend.read_devices(instance)
    disk = volume_util.find_attached(backend, info, devices, props)
    if disk is None:
        raise exceptions.VolumeNotFound(info.volume_id, f"is not attached to instance "
                                                        f"{field_of(instance, 'uuid')}")
    volume_util.grow_disk(backend, vm, info, disk, requested_size)
    LOG.info("volume %s now %d bytes", info.volume_id, requested_size, instance=instance)


# -- the connector ------------------------------------------------------------------------------

def get_volume_connector(backend: VMwareBackend, instance: Any) -> dict[str, Any]:
    """``ip``, ``host``, ``initiator`` (the host's software iSCSI IQN or None), and
    ``instance`` (the VM's moref value, which Cinder's VMDK driver places volumes by) and
    ``vcenter_uuid`` when the VM exists."""
    session = backend.session
    uuid = field_of(instance, "uuid")
    vm = backend.vm_refs.find(session, str(uuid)) if uuid else None
    host = None
    if vm is not None:
        try:
            host = session.retrieve_one(vm, ["runtime.host"]).get("runtime.host")
        except exceptions.BackendError as error:
            if error.code != "ManagedObjectNotFound":
                raise
            backend.vm_refs.forget(str(uuid))
            vm = None
    hosts = backend.inventory.hosts
    host = host or (hosts[0] if hosts else None)
    server = backend.conf.vmware.host_ip
    connector = {"ip": connector_ip(backend.conf, server), "host": server,
                 "initiator": iscsi.host_iqn(backend, host) if host is not None else None}
    if vm is not None:
        connector["instance"] = vm._moId
        connector["vcenter_uuid"] = session.content.about.instanceUuid
    return connector


# -- volumes of block_device_info, for the other operations -------------------------------------

def attach_block_devices(backend: VMwareBackend, instance: Any,
                         devices: BlockDevices) -> list[VolumeMapping]:
    """Attach every volume of ``devices``, the boot volume first (made the boot disk).

    If one fails, those already attached are detached again and the error raised.
    Returns the mappings attached, so a caller can undo them.
    """
    attached: list[VolumeMapping] = []
    boot = devices.boot_volume
    try:
        for mapping in ([boot] if boot else []) + list(devices.data_volumes):
            vm, vm_devices, props = backend.read_devices(instance)
            adapter = volume_util.requested_adapter(mapping.disk_bus, mapping.device_type)
            _attach(backend, mapping.connection_info, instance, vm, vm_devices, props,
                    adapter)
            attached.append(mapping)
            if mapping is boot:
                _, vm_devices, props = backend.read_devices(instance)
                disk = volume_util.find_attached(backend, mapping.connection_info,
                                                 vm_devices, props)
                volume_util.set_boot_disk(backend, vm, disk.key)
    except Exception:
        detach_block_devices(backend, instance, attached)
        raise
    return attached


def ensure_attached(backend: VMwareBackend, instance: Any, devices: BlockDevices) -> None:
    """Attach each volume of ``devices`` the VM does not hold (after a resize or migration
    the VM normally still holds them all, and nothing is done)."""
    if not devices.volumes:
        return  # nothing to look for: no read
    missing = []
    vm, vm_devices, props = backend.read_devices(instance)
    for mapping in devices.volumes:
        if volume_util.find_attached(backend, mapping.connection_info, vm_devices,
                                     props) is None:
            missing.append(mapping)
    if missing:
        LOG.info("reattaching %d volume(s)", len(missing), instance=instance)
        boot = devices.boot_volume if devices.boot_volume in missing else None
        attach_block_devices(backend, instance, BlockDevices(
            devices.root_device_name,
            tuple(m for m in missing if m is not boot) + ((boot,) if boot else ())))


def detach_block_devices(backend: VMwareBackend, instance: Any,
                         mappings: list[VolumeMapping] | tuple[VolumeMapping, ...]) -> None:
    """Detach each volume that is attached; one already gone is skipped (logged)."""
    for mapping in reversed(list(mappings)):
        try:
            detach_volume(backend, mapping.connection_info, instance)
        except exceptions.VolumeNotFound:
            LOG.info("volume %s was not attached", mapping.volume_id, instance=instance)
        except exceptions.InstanceNotFound:
            return


def release_leftover_volumes(backend: VMwareBackend, instance: Any,
                             read: tuple[Any, list[Any], dict[str, Any]] | None = None) -> None:
    """Before the VM goes: remove every disk it still holds for a volume (one the caller
    did not name), without any file operation, so nothing of a volume goes with the VM.
    ``read``: the caller's ``backend.read_devices`` of the VM, still current."""
    vm, devices, props = read or backend.read_devices(instance)
    keys = volume_util.volume_disk_keys(devices, props)
    if keys:
        LOG.warning("releasing %d volume disk(s) not named in block_device_info", len(keys),
                    instance=instance)
        volume_util.remove_disks(backend, vm, [d for d in devices if d.key in keys])


def volume_disk_keys(devices: list[Any], props: dict[str, Any]) -> set[int]:
    """Device keys of the VM's disks that are volumes (recorded by attach, or First Class
    Disks), so operations on the instance's own disks (snapshot, resize) leave them out.
    ``props`` holds the VM's ``config.extraConfig``."""
    return volume_util.volume_disk_keys(devices, props)


__all__ = ["attach_volume", "detach_volume", "swap_volume", "extend_volume",
           "get_volume_connector", "attach_block_devices", "detach_block_devices",
           "ensure_attached",
           "release_leftover_volumes", "volume_disk_keys"]
