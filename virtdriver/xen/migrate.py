"""Resize and cold migration between pools, and live migration within or across pools.

Cold migration (Nova's resize flow): the source halts the VM, renames it ``<name>-orig``
(kept for a revert) and streams each disk's bytes over XAPI's HTTP handlers into new VDIs
of the destination pool (``dest`` is the destination's XAPI URL, or ``host[:port]`` with
this pool's scheme; the same credentials are used). The destination builds the VM around
those VDIs, grown to the new flavor. No rsync, no dom0 plugin.

Live migration: ``VM.pool_migrate`` within a pool; across pools ``host.migrate_receive``
on the destination and ``VM.migrate_send`` (storage included) on the source.
"""

from __future__ import annotations

import logging
import urllib.parse
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from virtdriver.common import exceptions as exc
from virtdriver.common.model import field_of, validate_flavor, validate_instance, validate_vifs
from virtdriver.common.progress import Rollback, make_step_decorator
from virtdriver.xen import disks, vm_utils
from virtdriver.xen import vif as vif_utils
from virtdriver.xen.session import XenAPISession

if TYPE_CHECKING:
    from virtdriver.xen.vmops import XenVMOps

LOG = logging.getLogger(__name__)
RESIZE_TOTAL_STEPS = 5


def _destination(ops: XenVMOps, dest: str) -> tuple[str, str | None]:
    """Where a cold migration goes: (XAPI URL, host ref in this pool or None).

    ``""`` is a resize in place; the name, hostname or address of a host of this pool keeps
    the disks in the pool and pins the VM to that host; anything else is another pool, as a
    URL or ``host[:port]`` reached with this pool's scheme and credentials.
    """
    if dest is None or not isinstance(dest, str):
        raise exc.InvalidInput("dest", dest, "must be a host of this pool or another pool's "
                                             "XAPI URL")
    if not dest:
        return ops.session.url, None
    if "://" not in dest:
        for ref, host in ops.session.call("host.get_all_records").items():
            if dest in (host.get("name_label"), host.get("hostname"), host.get("address"),
                        host.get("uuid")):
                return ops.session.url, ref
        scheme = urllib.parse.urlsplit(ops.session.url).scheme
        dest = f"{scheme}://{dest}"
    return dest, None


def _dest_session(ops: XenVMOps, url: str) -> XenAPISession:
    if url.rstrip("/") == ops.session.url.rstrip("/"):
        return ops.session
    return ops.session.for_url(url, ca_file=ops.xen.ca_file, insecure=ops.xen.insecure)


# -- cold migration --------------------------------------------------------------------------------

def migrate_disk_and_power_off(ops: XenVMOps, context: Any, instance: Any, dest: str,
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
    url, host_ref = _destination(ops, dest)
    session = ops.session
    vm_ref = ops.vm_ref_of(instance)
    name = field_of(instance, "name")
    step = make_step_decorator(context, instance, ops.progress, total_offset=1)
    copies: dict[str, str] = {}
    target = _dest_session(ops, url)

    @step
    def power_off_vm(undo: Rollback) -> None:
        if ops.vm_power_state(vm_ref) != "halted":
            if not vm_utils.clean_shutdown(session, vm_ref, float(ops.xen.running_timeout)):
                vm_utils.hard_shutdown(session, vm_ref)
            undo.push(vm_utils.start, session, vm_ref)

    @step
    def rename_vm(undo: Rollback) -> None:
        session.call("VM.set_name_label", vm_ref, name + vm_utils.ORIG_SUFFIX)
        undo.push(session.call, "VM.set_name_label", vm_ref, name)
        ops.forget_vm(instance)

    sources: dict[str, dict[str, Any]] = {}

    @step
    def create_destination_disks(undo: Rollback) -> None:
        sr = disks.find_sr(target, ops.xen.sr_matching_filter)
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
        return info
    except exc.VirtDriverError as error:
        if isinstance(error, exc.MigrationError):
            raise
        raise exc.MigrationError(f"migration of {name} failed: {error}") from error
    finally:
        if target is not session:
            target.close()


def finish_migration(ops: XenVMOps, context: Any, instance: Any, disk_info: Any,
                     network_info: Any, image_meta: Any, resize_instance: bool,
                     power_on: bool) -> None:
    """Destination side: grow the moved disks to the new flavor, build the VM, boot it."""
    if not isinstance(disk_info, dict) or not isinstance(disk_info.get("vdis"), dict):
        raise exc.InvalidInput("disk_info", disk_info, "must come from "
                               "migrate_disk_and_power_off")
    builder = ops.builder
    plan = builder.plan(instance, image_meta, [], None, network_info)
    session = ops.session
    step = make_step_decorator(context, instance, ops.progress, total_offset=4)
    name = field_of(instance, "name")
    with Rollback(f"finish_migration of {name}") as undo:
        for device, vdi_uuid in disk_info["vdis"].items():
            vdi = session.call("VDI.get_by_uuid", vdi_uuid)
            undo.push(vm_utils.destroy_vdi, session, vdi)
            plan.vdis[str(device)] = vdi
        if resize_instance:
            _grow(session, plan.vdis, plan.config)
        plan.sr_ref = builder.sr_ref()

        if disk_info.get("host_uuid"):
            plan.affinity = session.call("host.get_by_uuid", disk_info["host_uuid"])
            plan.sr_ref = disks.sr_for_host(session, plan.sr_ref, plan.affinity)
        if plan.wants_config_drive:
            builder.create_config_drive(plan, undo)

        @step
        def build_and_start() -> None:
            builder.check_no_vm(plan, name)
            vm_ref = builder.create_vm_record(plan, name, undo)
            builder.attach_devices(plan, vm_ref, undo)
            builder.setup_network(plan, vm_ref, undo)
            if power_on:
                builder.boot_instance(vm_ref, undo)
            ops.remember_vm(instance, vm_ref)

        build_and_start()
    ops.progress.report(instance, 100, "finish_migration")


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


def confirm_migration(ops: XenVMOps, instance: Any) -> None:
    """Source side: destroy the ``-orig`` VM and its disks."""
    validate_instance(instance)
    found = vm_utils.find_vm(ops.session, field_of(instance, "name") + vm_utils.ORIG_SUFFIX,
                             str(field_of(instance, "uuid")))
    if found is not None:
        vm_utils.destroy_vm(ops.session, found[0])


def finish_revert_migration(ops: XenVMOps, instance: Any, power_on: bool) -> None:
    """Source side: drop a VM of the real name here, rename ``-orig`` back, start it."""
    validate_instance(instance)
    session = ops.session
    name = field_of(instance, "name")
    uuid = str(field_of(instance, "uuid"))
    orig = vm_utils.find_vm(session, name + vm_utils.ORIG_SUFFIX, uuid)
    if orig is None:
        raise exc.InstanceNotFound(uuid, "no -orig VM to revert to")
    current = vm_utils.find_vm(session, name, uuid)
    if current is not None:
        vm_utils.destroy_vm(session, current[0])
    session.call("VM.set_name_label", orig[0], name)
    ops.remember_vm(instance, orig[0])
    if power_on and ops.vm_power_state(orig[0]) == "halted":
        vm_utils.start(session, orig[0])


# -- live migration --------------------------------------------------------------------------------

def check_can_live_migrate_destination(ops: XenVMOps, instance: Any,
                                       block_migration: bool) -> dict[str, Any]:
    """On the destination: this host, its SR, and for block migration migrate_receive data."""
    validate_instance(instance)
    session = ops.session
    host = session.host_ref
    data: dict[str, Any] = {"block_migration": bool(block_migration),
                            "destination_host_uuid": session.call("host.get_uuid", host),
                            "destination_url": session.url}
    if block_migration:
        sr = disks.find_sr(session, ops.xen.sr_matching_filter)
        pifs = session.call("PIF.get_all_records_where",
                            f'field "management" = "true" and field "host" = '
                            f'{vm_utils.where_literal(host)}')
        if not pifs:
            raise exc.MigrationPreCheckError("the destination host has no management PIF")
        network = next(iter(pifs.values()))["network"]
        data["migrate_send_data"] = session.call("host.migrate_receive", host, network, {})
        data["destination_sr_ref"] = sr
    return data


def check_can_live_migrate_source(ops: XenVMOps, instance: Any,
                                  dest_check_data: dict[str, Any]) -> dict[str, Any]:
    """On the source: the destination host is in this pool, or XAPI accepts migrate_send."""
    if not isinstance(dest_check_data, dict) or "destination_host_uuid" not in dest_check_data:
        raise exc.InvalidInput("dest_check_data", dest_check_data,
                               "must come from check_can_live_migrate_destination")
    vm_ref = ops.vm_ref_of(instance)
    session = ops.session
    try:
        if dest_check_data.get("block_migration"):
            vdi_map = _vdi_map(ops, vm_ref, dest_check_data["destination_sr_ref"])
            session.call("VM.assert_can_migrate", vm_ref, dest_check_data["migrate_send_data"],
                         True, vdi_map, {}, {})
        else:
            session.call("host.get_by_uuid", dest_check_data["destination_host_uuid"])
    except exc.BackendError as error:
        raise exc.MigrationPreCheckError(
            f"cannot live-migrate {field_of(instance, 'name')}: {error.code} "
            f"{list(error.params)}") from error
    return dest_check_data


def pre_live_migration(ops: XenVMOps, instance: Any, network_info: Any,
                       migrate_data: dict[str, Any] | None) -> dict[str, Any]:
    """On the destination: the network of every VIF, by MAC, for migrate_send's VIF map."""
    vifs = validate_vifs(network_info)
    networks = vif_utils.find_networks(ops.session, vifs)
    data = dict(migrate_data or {})
    data["vif_networks"] = {vif.address: networks[vif.network] for vif in vifs}
    return data


def _vdi_map(ops: XenVMOps, vm_ref: str, sr_ref: str) -> dict[str, str]:
    return {vdi: sr_ref for _, vdi in disks.instance_vdis(ops.session, vm_ref).values()}


def live_migrate(ops: XenVMOps, context: Any, instance: Any, destination_hostname: str,
                 post_method: Callable[..., Any], recover_method: Callable[..., Any],
                 block_migration: bool, migrate_data: dict[str, Any] | None) -> None:
    """Move the running VM; ``post_method`` on success, ``recover_method`` then raise on
    failure."""
    data = migrate_data or {}
    if "destination_host_uuid" not in data:
        raise exc.InvalidInput("migrate_data", data,
                               "must come from check_can_live_migrate_destination")
    vm_ref = ops.vm_ref_of(instance)
    session = ops.session
    try:
        if block_migration or data.get("block_migration"):
            vif_map = {}
            for mac, (vif_ref, _) in vif_utils.vm_vifs(session, vm_ref).items():
                if mac in data.get("vif_networks", {}):
                    vif_map[vif_ref] = data["vif_networks"][mac]
            session.call_async("VM.migrate_send", vm_ref, data["migrate_send_data"], True,
                               _vdi_map(ops, vm_ref, data["destination_sr_ref"]), vif_map, {})
        else:
            host = _pool_host(ops, vm_ref, destination_hostname,
                              data["destination_host_uuid"])
            session.call_async("VM.pool_migrate", vm_ref, host, {"live": "true"})
    except exc.VirtDriverError as error:
        recover_method(context, instance, destination_hostname, migrate_data)
        raise exc.MigrationError(f"live migration of {field_of(instance, 'name')} failed: "
                                 f"{error}") from error
    if block_migration or data.get("block_migration"):
        ops.forget_vm(instance)
    post_method(context, instance, destination_hostname, block_migration, migrate_data)


def _pool_host(ops: XenVMOps, vm_ref: str, hostname: str, fallback_uuid: str) -> str:
    """The pool's host named ``hostname`` (as Nova looked it up), else the checked one; the
    host the VM already runs on is a MigrationError, never a silent no-op."""
    host = None
    if hostname:
        refs = ops.session.call("host.get_by_name_label", hostname)
        if len(refs) == 1:
            host = refs[0]
    if host is None:
        host = ops.session.call("host.get_by_uuid", fallback_uuid)
    if host == ops.session.call("VM.get_resident_on", vm_ref):
        raise exc.MigrationError(f"the instance already runs on {hostname or fallback_uuid}")
    return host


def post_live_migration_at_destination(ops: XenVMOps, instance: Any) -> None:
    """Strip ``base_mirror`` from the arrived VDIs' sm_config (XAPI bug CA-98606)."""
    ops.forget_vm(instance)
    vm_ref = ops.vm_ref_of(instance)
    for _, vdi in disks.instance_vdis(ops.session, vm_ref).values():
        ops.session.call("VDI.remove_from_sm_config", vdi, "base_mirror")


def rollback_live_migration_at_destination(ops: XenVMOps, instance: Any) -> None:
    """pre_live_migration made nothing on the destination; only forget cached refs."""
    ops.forget_vm(instance)
