"""Resize and cold migration, within a pool or to another one.

Cold migration (Nova's resize flow): the source halts the VM, renames it ``<name>-orig``
(kept for a revert) and streams each disk's bytes over XAPI's HTTP handlers into new VDIs
of the destination pool (``dest`` is the destination's XAPI URL, or ``host[:port]`` with
this pool's scheme; the same credentials are used). The destination builds the VM around
those VDIs, grown to the new flavor. No rsync, no dom0 plugin.
"""

from __future__ import annotations

import urllib.parse
from typing import Any

from oslo_log import log as logging

from virtdriver.common import exceptions as exc
from virtdriver.common.model import field_of, validate_flavor, validate_instance
from virtdriver.common.progress import Rollback, make_step_decorator
from virtdriver.xen import build, disks, vm_utils
from virtdriver.xen.backend import XenBackend
from virtdriver.xen.session import XenAPISession

LOG = logging.getLogger(__name__)
RESIZE_TOTAL_STEPS = 5


def _destination(backend: XenBackend, dest: str) -> tuple[str, str | None]:
    """Where a cold migration goes: (XAPI URL, host ref in this pool or None).

    ``""`` is a resize in place; the name, hostname or address of a host of this pool keeps
    the disks in the pool and pins the VM to that host; anything else is another pool, as a
    URL or ``host[:port]`` reached with this pool's scheme and credentials.
    """
    if dest is None or not isinstance(dest, str):
        raise exc.InvalidInput("dest", dest, "must be a host of this pool or another pool's "
                                             "XAPI URL")
    if not dest:
        return backend.session.url, None
    if "://" not in dest:
        for ref, host in backend.session.call("host.get_all_records").items():
            if dest in (host.get("name_label"), host.get("hostname"), host.get("address"),
                        host.get("uuid")):
                return backend.session.url, ref
        scheme = urllib.parse.urlsplit(backend.session.url).scheme
        dest = f"{scheme}://{dest}"
    return dest, None


def _dest_session(backend: XenBackend, url: str) -> XenAPISession:
    if url.rstrip("/") == backend.session.url.rstrip("/"):
        return backend.session
    return backend.session.for_url(url, ca_file=backend.xen.ca_file, insecure=backend.xen.insecure)


# -- cold migration --------------------------------------------------------------------------------

def migrate_disk_and_power_off(backend: XenBackend, context: Any, instance: Any, dest: str,
                               flavor: Any) -> dict[str, Any]:
    """Source side: refuse a shrink, halt, rename to ``-orig``, copy the disks to ``dest``.

    Returns ``disk_info``: the destination VDI uuids by userdevice. Any failure puts the
    source back as it was (name, power state) and deletes the copies.
    """
    validate_instance(instance)
    validate_flavor(flavor)
    old = field_of(instance, "flavor")
    for size in ("root_gb", "ephemeral_gb"):
        if (field_of(flavor, size, 0) or 0) < (field_of(old, size, 0) or 0):
            raise exc.MigrationError(f"cannot resize: the new flavor's {size} is smaller")
    url, host_ref = _destination(backend, dest)
    session = backend.session
    vm_ref = backend.vm_ref_of(instance)
    name = field_of(instance, "name")
    step = make_step_decorator(context, instance, backend.progress, total_offset=1)
    copies: dict[str, str] = {}
    target = _dest_session(backend, url)

    @step
    def power_off_vm(undo: Rollback) -> None:
        if backend.vm_power_state(vm_ref) != "halted":
            if not vm_utils.clean_shutdown(session, vm_ref, float(backend.xen.running_timeout)):
                vm_utils.hard_shutdown(session, vm_ref)
            undo.push(vm_utils.start, session, vm_ref)

    @step
    def rename_vm(undo: Rollback) -> None:
        session.call("VM.set_name_label", vm_ref, name + vm_utils.ORIG_SUFFIX)
        undo.push(session.call, "VM.set_name_label", vm_ref, name)
        backend.forget_vm(instance)

    sources: dict[str, dict[str, Any]] = {}

    @step
    def create_destination_disks(undo: Rollback) -> None:
        sr = disks.find_sr(target, backend.xen.sr_matching_filter)
        if host_ref is not None:
            sr = disks.sr_for_host(session, sr, host_ref)
        for device, (_, vdi) in sorted(disks.instance_vdis(session, vm_ref).items()):
            record = session.call("VDI.get_record", vdi)
            kind = (record.get("other_config") or {}).get("nova_disk_type", "disk")
            if kind == "configdrive":
                continue  # rebuilt on the destination
            other = {"nova_disk_type": kind, "migrated-from": record["uuid"],
                     "nova_instance_uuid": str(field_of(instance, "uuid"))}
            if target is session:
                # Same pool: the storage manager copies server-side, no bytes through us.
                copy = session.call_async("VDI.copy", vdi, sr)
                undo.push(vm_utils.destroy_vdi, target, copy)
                session.call("VDI.set_other_config", copy, other)
            else:
                copy = disks.create_vdi(target, sr, record["name_label"],
                                        int(record["virtual_size"]), kind, other)
                undo.push(vm_utils.destroy_vdi, target, copy)
                sources[device] = {"ref": vdi, "size": int(record["virtual_size"])}
            copies[device] = copy

    @step
    def transfer_disks(undo: Rollback) -> None:
        # Another pool: stream each disk out of this pool's export handler into the
        # destination's import handler (nothing to do after a server-side copy).
        for device, source in sources.items():
            # As a dynamic VHD: only written blocks cross; its length is known once spooled.
            spool, length = disks.spooled(disks.download(session, source["ref"]))
            with spool:
                disks.upload(target, copies[device], disks.file_chunks(spool), length, "vhd")

    try:
        with Rollback(f"migration of {name}") as undo:
            power_off_vm(undo)
            rename_vm(undo)
            create_destination_disks(undo)
            transfer_disks(undo)
        info = {"url": url, "vdis": {device: target.call("VDI.get_uuid", ref)
                                     for device, ref in copies.items()}}
        if host_ref is not None:
            info["host_uuid"] = session.call("host.get_uuid", host_ref)
        # the host only: a URL may carry credentials
        LOG.info("powered off and disks copied to %s",
                 urllib.parse.urlsplit(url).netloc.rpartition("@")[2], instance=instance)
        return info
    except exc.VirtDriverError as error:
        if isinstance(error, exc.MigrationError):
            raise
        raise exc.MigrationError(f"migration of {name} failed: {error}") from error
    finally:
        if target is not session:
            target.close()


def finish_migration(backend: XenBackend, context: Any, instance: Any, disk_info: Any,
                     network_info: Any, image_meta: Any, resize_instance: bool,
                     power_on: bool) -> None:
    """Destination side: grow the moved disks to the new flavor, build the VM, boot it."""
    if not isinstance(disk_info, dict) or not isinstance(disk_info.get("vdis"), dict):
        raise exc.InvalidInput("disk_info", disk_info, "must come from "
                               "migrate_disk_and_power_off")
    plan = build.plan(backend, instance, image_meta, [], None, network_info)
    session = backend.session
    step = make_step_decorator(context, instance, backend.progress, total_offset=4)
    name = field_of(instance, "name")
    with Rollback(f"finish_migration of {name}") as undo:
        for device, vdi_uuid in disk_info["vdis"].items():
            vdi = session.call("VDI.get_by_uuid", vdi_uuid)
            undo.push(vm_utils.destroy_vdi, session, vdi)
            plan.vdis[str(device)] = vdi
        if resize_instance:
            _grow(session, plan.vdis, plan.config)
        plan.sr_ref = backend.sr_ref()

        if disk_info.get("host_uuid"):
            plan.affinity = session.call("host.get_by_uuid", disk_info["host_uuid"])
            plan.sr_ref = disks.sr_for_host(session, plan.sr_ref, plan.affinity)
        if plan.wants_config_drive:
            build.create_config_drive(backend, plan, undo)

        @step
        def build_and_start() -> None:
            build.check_no_vm(backend, plan, name)
            vm_ref = build.create_vm_record(backend, plan, name, undo)
            build.attach_devices(backend, plan, vm_ref, undo)
            build.setup_network(backend, plan, vm_ref, undo)
            if power_on:
                build.boot_instance(backend, vm_ref, undo)
            backend.remember_vm(instance, vm_ref)

        build_and_start()
    LOG.info("migration finished on this side", instance=instance)
    backend.progress.report(instance, 100, "finish_migration")


def _grow(session: XenAPISession, vdis: dict[str, str], config: Any) -> None:
    sizes = {vm_utils.DEVICE_ROOT: config.root_gb * vm_utils.GiB,
             str(vm_utils.DEVICE_EPHEMERAL): config.ephemeral_gb * vm_utils.GiB}
    for device, size in sizes.items():
        vdi = vdis.get(device)
        if vdi and size and size > int(session.call("VDI.get_virtual_size", vdi)):
            session.call_async("VDI.resize", vdi, str(size))


def unattached_copies(session: XenAPISession, orig_ref: str) -> list[str]:
    """Disk copies a same-pool migrate_disk_and_power_off made of ``orig_ref``'s disks that
    no VM uses yet (finish_migration never ran): what a delete mid-resize must remove."""
    records = {vdi: session.call("VDI.get_record", vdi)
               for _, vdi in disks.instance_vdis(session, orig_ref).values()}
    if not records:
        return []
    names = " or ".join(f'field "name__label" = {vm_utils.where_literal(rec["name_label"])}'
                        for rec in records.values())
    sources = {rec["uuid"] for rec in records.values()}
    return [ref for ref, rec in session.call("VDI.get_all_records_where", names).items()
            if not rec.get("VBDs")
            and (rec.get("other_config") or {}).get("migrated-from") in sources]


def confirm_migration(backend: XenBackend, instance: Any) -> None:
    """Source side: destroy the ``-orig`` VM and its disks."""
    validate_instance(instance)
    found = vm_utils.find_vm(backend.session, field_of(instance, "name") + vm_utils.ORIG_SUFFIX,
                             str(field_of(instance, "uuid")))
    if found is not None:
        vm_utils.destroy_vm(backend.session, found[0])


def finish_revert_migration(backend: XenBackend, instance: Any, power_on: bool) -> None:
    """Source side: drop a VM of the real name here, rename ``-orig`` back, start it."""
    validate_instance(instance)
    session = backend.session
    name = field_of(instance, "name")
    uuid = str(field_of(instance, "uuid"))
    orig = vm_utils.find_vm(session, name + vm_utils.ORIG_SUFFIX, uuid)
    if orig is None:
        raise exc.InstanceNotFound(uuid, "no -orig VM to revert to")
    current = vm_utils.find_vm(session, name, uuid)
    if current is not None:
        vm_utils.destroy_vm(session, current[0])
    session.call("VM.set_name_label", orig[0], name)
    backend.remember_vm(instance, orig[0])
    if power_on and backend.vm_power_state(orig[0]) == "halted":
        vm_utils.start(session, orig[0])
