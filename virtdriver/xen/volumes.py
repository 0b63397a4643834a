"""Cinder iSCSI volumes on XAPI: attach, detach, swap, extend, the connector, and what the
other operations do with an instance's volumes.

As Nova's XenAPI driver did (:mod:`virtdriver.xen.volume_utils` has the details): a
volume's target is an SR of type ``iscsi`` (``SR.introduce``, ``PBD.create`` +
``PBD.plug`` on this host, ``SR.scan``), its LUN a VDI of it, and the volume a VBD at the
mount point's userdevice, marked ``osvol``, plugged only while the VM runs (a halted VM
plugs it when it starts). Detach unplugs (the guest's refusals retried,
``[xenserver] num_vbd_unplug_retries``), destroys the VBD and forgets the SR once no VBD
uses it. Volumes are never deleted, resized, cloned or snapshotted here: their LUNs belong
to the volume service, and forgetting an SR only drops XAPI's records.

Every change is undone if a later step fails, so a failed attach leaves the VM as it was.
The face (``vmops.py``) holds the instance lock and delegates here in one hop. Volumes of
different instances may share a target's SR, so connecting one and creating its VBD, and
checking an SR is unused and forgetting it, each run under a lock named by the SR's uuid:
a detach elsewhere never forgets an SR an attach is about to use.
"""

from __future__ import annotations

import contextlib
import dataclasses
import urllib.parse
from collections.abc import Iterator
from typing import Any

from oslo_log import log as logging

from virtdriver.common import exceptions as exc
from virtdriver.common.locks import named_lock
from virtdriver.common.model import field_of
from virtdriver.common.progress import Rollback
from virtdriver.common.volumes import BlockDevices, ConnectionInfo, connector_ip
from virtdriver.xen import vm_utils, volume_utils
from virtdriver.xen.backend import XenBackend
from virtdriver.xen.session import is_handle_invalid
from virtdriver.xen.volume_utils import IscsiVolume

LOG = logging.getLogger(__name__)


def _label(instance: Any) -> str:
    return f"volumes of {field_of(instance, 'name')}"


def _retries(backend: XenBackend) -> int:
    return int(backend.xen.num_vbd_unplug_retries)


# -- connecting a target -------------------------------------------------------------------

@contextlib.contextmanager
def sr_lock(sr_uuid: str) -> Iterator[None]:
    """Serialize what decides whether a target's SR is in use (see the module docstring)."""
    with named_lock(f"xen-volume-sr-{sr_uuid}"):
        yield


def connect(backend: XenBackend, volume: IscsiVolume, undo: Rollback,
            host_ref: str | None = None, label: str = "") -> tuple[str, str]:
    """The (SR, VDI) of a volume, its target's SR introduced (or found) and attached on
    ``host_ref`` (default: this session's host). The caller holds :func:`sr_lock`; the
    rollback forgets the SR again if no VBD uses it then."""
    session = backend.session
    host = host_ref or session.host_ref
    sr = volume_utils.find_sr(session, volume.sr_uuid)
    if sr is None:
        try:
            sr = volume_utils.introduce_sr(session, volume, host,
                                           label or f"volume target {volume.iqn}")
        except exc.BackendError as error:
            if error.code != "SR_UUID_EXISTS":
                raise
            sr = volume_utils.find_sr(session, volume.sr_uuid)  # another client's, just now
            if sr is None:
                raise
            volume_utils.plug_pbd(session, sr, host, volume)
        undo.push(forget_if_unused, backend, volume.sr_uuid)
    elif volume_utils.plug_pbd(session, sr, host, volume):
        undo.push(forget_if_unused, backend, volume.sr_uuid)
    return sr, volume_utils.find_lun_vdi(session, sr, volume)


def forget_if_unused(backend: XenBackend, sr_uuid: str) -> None:
    """Forget the SR with ``sr_uuid`` if it exists and no VBD uses it (under its lock)."""
    with sr_lock(sr_uuid):
        sr = volume_utils.find_sr(backend.session, sr_uuid)
        if sr is not None:
            volume_utils.forget_sr_if_unused(backend.session, sr)


def _check_free(session: Any, vdi: str, vm_ref: str, volume: IscsiVolume,
                instance: Any) -> None:
    """A volume is attached to one VM at a time (no multi-attach)."""
    for vbd in session.call("VDI.get_VBDs", vdi):
        owner = session.call("VBD.get_VM", vbd)
        if owner == vm_ref:
            raise exc.InvalidInput("connection_info", volume.volume_id,
                                   f"is already attached to instance "
                                   f"{field_of(instance, 'uuid')}")
        raise exc.VolumeError(volume.volume_id, "is attached to another VM")


# -- attach and detach ---------------------------------------------------------------------

def attach_volume(backend: XenBackend, info: ConnectionInfo, instance: Any,
                  mountpoint: str | None) -> None:
    """Attach one volume at ``mountpoint`` (the caller holds the instance lock)."""
    volume = volume_utils.parse_iscsi(info)
    userdevice = volume_utils.device_number(mountpoint) if mountpoint else None
    session = backend.session

    def do(vm_ref: str) -> None:
        slot = userdevice
        if slot is None:
            free = [d for d in session.call("VM.get_allowed_VBD_devices", vm_ref) if d != "0"]
            if not free:
                raise exc.VolumeError(volume.volume_id, "the VM has no free disk slot")
            slot = free[0]
        _attach(backend, instance, vm_ref, volume, slot, mountpoint)

    backend.on_vm(instance, do)
    LOG.info("attached volume %s at %s", volume.volume_id, mountpoint, instance=instance)


def _attach(backend: XenBackend, instance: Any, vm_ref: str, volume: IscsiVolume,
            userdevice: str, mountpoint: str | None, bootable: bool = False) -> None:
    session = backend.session
    used = {rec["userdevice"]: ref
            for ref, rec in vm_utils.vbd_records(session, vm_ref).items()}
    if userdevice in used:
        raise exc.InvalidInput("mountpoint", mountpoint or userdevice,
                               "is taken by another disk of the instance")
    running = backend.vm_power_state(vm_ref) == "running"
    # the SR must be attached where the VM runs (a halted VM starts where its SRs are)
    host = session.call("VM.get_resident_on", vm_ref) if running else None
    with Rollback(f"attach of volume {volume.volume_id}") as undo:
        with sr_lock(volume.sr_uuid):
            _, vdi = connect(backend, volume, undo, host_ref=host, label=_label(instance))
            _check_free(session, vdi, vm_ref, volume, instance)
            vbd = volume_utils.create_vbd(session, vm_ref, vdi, userdevice, bootable)
            undo.push(session.call, "VBD.destroy", vbd)
        if running:
            session.call_lasting("VBD.plug", vbd)


@dataclasses.dataclass(frozen=True)
class Attached:
    """A volume as it is attached: its VBD (ref and record) and its SR."""

    vbd: str
    record: dict[str, Any]
    sr: str


def find_attached(backend: XenBackend, vm_ref: str, volume: IscsiVolume,
                  userdevice: str | None = None) -> Attached:
    """The VBD of ``volume`` on the VM; VolumeNotFound when it is not attached (its SR is
    gone, or no volume VBD of the VM is on its LUN)."""
    session = backend.session
    sr = volume_utils.find_sr(session, volume.sr_uuid)
    if sr is None:
        raise exc.VolumeNotFound(volume.volume_id, "its target is not connected")
    vdis = session.call("VDI.get_all_records_where",
                        f'field "SR" = {vm_utils.where_literal(sr)}')
    matches = []
    for ref, rec in volume_utils.volume_vbds(session, vm_ref).items():
        vdi = vdis.get(rec["VDI"])
        if vdi is None:
            continue
        if volume.lun is not None and (vdi.get("sm_config") or {}).get("LUNid") != \
                str(volume.lun):
            continue
        matches.append(Attached(ref, rec, sr))
    if userdevice is not None and len(matches) > 1:
        matches = [m for m in matches if m.record["userdevice"] == userdevice]
    if not matches:
        raise exc.VolumeNotFound(volume.volume_id, "it is not attached to the instance")
    return matches[0]


def remove_vbd(backend: XenBackend, vbd: str, volume_id: str | None) -> None:
    """Unplug a volume's VBD if plugged (refusals retried) and destroy it."""
    session = backend.session
    if session.call("VBD.get_currently_attached", vbd):
        volume_utils.unplug_vbd(session, vbd, _retries(backend), volume_id)
    session.call("VBD.destroy", vbd)


def detach_volume(backend: XenBackend, info: ConnectionInfo, instance: Any,
                  mountpoint: str | None) -> None:
    """Detach one volume, keeping its data; VolumeNotFound when it is not attached."""
    volume = volume_utils.parse_iscsi(info)
    userdevice = volume_utils.device_number(mountpoint) if mountpoint else None

    def do(vm_ref: str) -> None:
        found = find_attached(backend, vm_ref, volume, userdevice)
        remove_vbd(backend, found.vbd, volume.volume_id)
        forget_if_unused(backend, volume.sr_uuid)

    backend.on_vm(instance, do)
    LOG.info("detached volume %s", volume.volume_id, instance=instance)


def swap_volume(backend: XenBackend, old_info: ConnectionInfo, new_info: ConnectionInfo,
                instance: Any, mountpoint: str | None) -> None:
    """Put the new volume in the old one's slot; if it cannot be attached, the old one goes
    back (plugged again if it was) and the error is raised."""
    old = volume_utils.parse_iscsi(old_info)
    new = volume_utils.parse_iscsi(new_info)
    userdevice = volume_utils.device_number(mountpoint) if mountpoint else None
    session = backend.session

    def do(vm_ref: str) -> None:
        found = find_attached(backend, vm_ref, old, userdevice)
        slot, bootable = found.record["userdevice"], bool(found.record["bootable"])
        was_plugged = bool(session.call("VBD.get_currently_attached", found.vbd))
        old_vdi = found.record["VDI"]
        remove_vbd(backend, found.vbd, old.volume_id)
        try:
            _attach(backend, instance, vm_ref, new, slot, mountpoint, bootable)
        except BaseException:
            vbd = volume_utils.create_vbd(session, vm_ref, old_vdi, slot, bootable)
            if was_plugged:
                session.call_lasting("VBD.plug", vbd)
            raise
        forget_if_unused(backend, old.sr_uuid)

    backend.on_vm(instance, do)
    LOG.info("swapped volume %s for %s", old.volume_id, new.volume_id, instance=instance)


def extend_volume(backend: XenBackend, info: ConnectionInfo, instance: Any,
                  requested_size: int) -> None:
    """Rescan the volume's SR so XAPI sees the LUN's new size (``requested_size`` bytes).

    The volume service grew the LUN already; a LUN still smaller than ``requested_size``
    after the rescan is VolumeError, a smaller size than the current one InvalidInput.
    XAPI then reports the new size; a running guest's block device learns it when the
    volume is next plugged (XAPI has no online resize for LUN-per-VDI SRs).
    """
    volume = volume_utils.parse_iscsi(info)
    if isinstance(requested_size, bool) or not isinstance(requested_size, int) \
            or requested_size <= 0:
        raise exc.InvalidInput("requested_size", requested_size, "must be bytes (> 0)")
    session = backend.session

    def do(vm_ref: str) -> None:
        found = find_attached(backend, vm_ref, volume)
        vdi = found.record["VDI"]
        current = int(session.call("VDI.get_virtual_size", vdi))
        if requested_size < current:
            raise exc.InvalidInput("requested_size", requested_size,
                                   f"is smaller than the volume ({current} bytes)")
        session.call_lasting("SR.scan", found.sr)
        seen = int(session.call("VDI.get_virtual_size", vdi))
        if seen < requested_size:
            raise exc.VolumeError(volume.volume_id, f"the LUN shows {seen} bytes after a "
                                                    f"rescan, not {requested_size}")

    backend.on_vm(instance, do)
    LOG.info("volume %s extended to %d bytes", volume.volume_id, requested_size,
             instance=instance)


def get_volume_connector(backend: XenBackend) -> dict[str, Any]:
    """``ip`` (``my_block_storage_ip``, else the XAPI address), ``host`` (the pool master's
    hostname) and ``initiator`` (its ``other_config['iscsi_iqn']``, None without one)."""
    session = backend.session
    pool = session.call("pool.get_all")[0]
    master = session.call("host.get_record", session.call("pool.get_master", pool))
    initiator = (master.get("other_config") or {}).get("iscsi_iqn") or None
    if initiator is None:
        LOG.warning("the pool master has no other_config iscsi_iqn: no iSCSI initiator")
    default_ip = urllib.parse.urlsplit(session.url).hostname or master.get("address")
    return {"ip": connector_ip(backend.conf, default_ip), "host": master.get("hostname"),
            "initiator": initiator}


# -- volumes of block_device_info (spawn, migrations) ---------------------------------------

@dataclasses.dataclass(frozen=True)
class Planned:
    """A volume of ``block_device_info``, checked: where it goes on the VM."""

    volume: IscsiVolume
    userdevice: str
    bootable: bool


def plan(devices: BlockDevices, taken: set[str] | frozenset[str] = frozenset()
         ) -> list[Planned]:
    """Where each volume goes (no server call): the boot volume at userdevice 0 (bootable),
    the others at their mount point's; a mount point that is missing, used twice or among
    ``taken`` (the instance's own disks) is InvalidInput naming the mapping."""
    planned: list[Planned] = []
    boot = devices.boot_volume
    seen = set(taken)
    for index, mapping in enumerate(devices.volumes):
        field = f"block_device_mapping[{index}].mount_device"
        volume = volume_utils.parse_iscsi(mapping.connection_info)
        if mapping is boot:
            slot = vm_utils.DEVICE_ROOT
        elif mapping.mount_device is None:
            raise exc.InvalidInput(field, None, "is required for a volume")
        else:
            try:
                slot = volume_utils.device_number(mapping.mount_device)
            except exc.InvalidInput:
                raise exc.InvalidInput(field, mapping.mount_device,
                                       "must be /dev/xvd[a-p] (or sd/vd/hd)") from None
        if slot in seen:
            raise exc.InvalidInput(field, mapping.mount_device or "/dev/xvda",
                                   "is taken by another disk of the instance")
        seen.add(slot)
        planned.append(Planned(volume, slot, mapping is boot))
    return planned


def attach_planned(backend: XenBackend, vm_ref: str, planned: list[Planned],
                   undo: Rollback, instance: Any, host_ref: str | None = None) -> None:
    """Connect each planned volume (on ``host_ref``, default this session's host) and give
    the (halted) VM its VBD; VM.start plugs them."""
    session = backend.session
    for item in planned:
        with sr_lock(item.volume.sr_uuid):
            _, vdi = connect(backend, item.volume, undo, host_ref=host_ref,
                             label=_label(instance))
            _check_free(session, vdi, vm_ref, item.volume, instance)
            vbd = volume_utils.create_vbd(session, vm_ref, vdi, item.userdevice,
                                          item.bootable)
            undo.push(session.call, "VBD.destroy", vbd)


def detach_all(backend: XenBackend, vm_ref: str,
               vbds: dict[str, dict[str, Any]] | None = None) -> set[str]:
    """Remove every volume VBD of the VM (unplugged first if plugged); returns their SRs,
    for :func:`forget_unused` once the VM is gone. ``vbds``: the VM's VBD records, when the
    caller has just read them (no second read)."""
    session = backend.session
    srs = set()
    found = volume_utils.volume_vbds(session, vm_ref) if vbds is None else \
        {ref: rec for ref, rec in vbds.items() if volume_utils.is_volume(rec)}
    for vbd, rec in found.items():
        if rec["VDI"] != vm_utils.NULL_REF:
            srs.add(session.call("VDI.get_SR", rec["VDI"]))
        remove_vbd(backend, vbd, None)
    return srs


def forget_unused(backend: XenBackend, srs: set[str]) -> None:
    """Forget each of these SRs (refs) that no VBD uses any more."""
    for sr in sorted(srs):
        try:
            sr_uuid = backend.session.call("SR.get_uuid", sr)
        except exc.BackendError as error:
            if is_handle_invalid(error, "SR"):
                continue  # forgotten already
            raise
        forget_if_unused(backend, sr_uuid)


def forget_srs_of(backend: XenBackend, devices: BlockDevices) -> None:
    """Forget the SRs of these volumes where no VBD uses them (a VM that is gone, a
    destination that will not get the VM)."""
    for sr_uuid in sorted({volume_utils.parse_iscsi(m.connection_info).sr_uuid
                           for m in devices.volumes}):
        forget_if_unused(backend, sr_uuid)


def reattach(backend: XenBackend, instance: Any, vm_ref: str, devices: BlockDevices) -> None:
    """Attach the volumes of ``devices`` to a halted VM again where they are missing (a
    reverted resize); all or none."""
    session = backend.session
    records = vm_utils.vbd_records(session, vm_ref)
    own = {rec["userdevice"] for rec in records.values() if not volume_utils.is_volume(rec)}
    attached = {rec["VDI"] for rec in volume_utils.volume_vbds(session, vm_ref,
                                                               records).values()}
    with Rollback(f"reattaching the volumes of {field_of(instance, 'name')}") as undo:
        for item in plan(devices, own):
            with sr_lock(item.volume.sr_uuid):
                _, vdi = connect(backend, item.volume, undo, label=_label(instance))
                if vdi not in attached:
                    vbd = volume_utils.create_vbd(session, vm_ref, vdi, item.userdevice,
                                                  item.bootable)
                    undo.push(session.call, "VBD.destroy", vbd)


# -- live migration --------------------------------------------------------------------------

def connect_on_destination(backend: XenBackend, instance: Any,
                           devices: BlockDevices) -> list[str]:
    """Before a live migration into this pool: each volume's SR attached on this host and
    scanned (all or none); returns their SR uuids for the source's VDI map."""
    with Rollback(f"connecting the volumes of {field_of(instance, 'name')}") as undo:
        for mapping in devices.volumes:
            volume = volume_utils.parse_iscsi(mapping.connection_info)
            with sr_lock(volume.sr_uuid):
                connect(backend, volume, undo, label=_label(instance))
    return sorted({volume_utils.parse_iscsi(m.connection_info).sr_uuid
                   for m in devices.volumes})


def volume_srs(backend: XenBackend, vm_ref: str) -> dict[str, str]:
    """The VM's volume VDIs and the SR each is on: VDI ref -> SR ref."""
    session = backend.session
    return {rec["VDI"]: session.call("VDI.get_SR", rec["VDI"])
            for rec in volume_utils.volume_vbds(session, vm_ref).values()
            if rec["VDI"] != vm_utils.NULL_REF}


def destination_vdi_map(backend: XenBackend, dest: Any, vm_ref: str) -> dict[str, str]:
    """migrate_send's VDI map for the VM's volumes: each to the destination pool's SR of
    the same uuid (the same target, connected there by pre_live_migration), so the LUN is
    attached there, never copied. MigrationPreCheckError when the destination lacks one."""
    session = backend.session
    out = {}
    for vdi, sr in volume_srs(backend, vm_ref).items():
        sr_uuid = session.call("SR.get_uuid", sr)
        found = volume_utils.find_sr(dest, sr_uuid)
        if found is None:
            raise exc.MigrationPreCheckError(
                f"volume SR {sr_uuid} is not connected in the destination pool "
                f"(pre_live_migration connects the volumes of block_device_info)")
        out[vdi] = found
    return out


def connect_host(backend: XenBackend, srs: set[str], host_ref: str) -> list[str]:
    """Before a move within the pool: the SRs of the VM's volumes (``srs``, from
    :func:`volume_srs`) attached on ``host_ref`` too (a PBD each, the same device_config as
    the PBD that serves them now). Returns the SRs this plugged, for :func:`release_host`
    if the move fails."""
    session = backend.session
    plugged = []
    for sr in sorted(srs):
        pbds = session.call("SR.get_PBDs", sr)
        if not pbds:
            continue
        config = session.call("PBD.get_device_config", pbds[0])
        existing = [p for p in pbds if session.call("PBD.get_host", p) == host_ref]
        if existing:
            if not session.call("PBD.get_currently_attached", existing[0]):
                session.call_lasting("PBD.plug", existing[0])
                plugged.append(sr)
            continue
        pbd = session.call("PBD.create", {"host": host_ref, "SR": sr, "device_config": config,
                                          "other_config": {}})
        try:
            session.call_lasting("PBD.plug", pbd)
        except BaseException:
            session.call("PBD.destroy", pbd)
            raise
        plugged.append(sr)
    return plugged


def release_host(backend: XenBackend, srs: list[str] | set[str], host_ref: str) -> None:
    """Detach these SRs from ``host_ref`` where no VBD of a VM resident there has one of
    their VDIs plugged (after the VM moved away, or a failed move's own PBDs)."""
    session = backend.session
    for sr in sorted(set(srs)):
        busy = False
        for vdi in session.call("SR.get_VDIs", sr):
            for vbd in session.call("VDI.get_VBDs", vdi):
                if session.call("VBD.get_currently_attached", vbd) and session.call(
                        "VM.get_resident_on", session.call("VBD.get_VM", vbd)) == host_ref:
                    busy = True
        if not busy:
            volume_utils.unplug_pbd(session, sr, host_ref)
