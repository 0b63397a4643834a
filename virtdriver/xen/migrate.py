"""Resize and cold migration, within a pool or to another one.

Cold migration (Nova's resize flow) is a pull by the destination:

* the source (:func:`migrate_disk_and_power_off`) halts the VM and renames it
  ``<name>-orig``, kept for a revert; it copies nothing. Its ``disk_info`` says where the
  disks are: this pool's XAPI URL and the ``-orig`` disks' VDI uuids (plus the host a
  same-pool move is pinned to). No credential, no session id.
* the destination (:func:`finish_migration`) copies those disks into its own SR: a
  server-side ``VDI.copy`` when the source is its own pool, else each disk streamed out of
  the source pool's export handler into its own import handler (logging in to the source
  pool with its own configured credentials: the pools of one cloud share them), grows
  them to the new flavor, builds the VM around them and boots it. A failure removes the
  copies; the source's ``-orig`` is untouched, so a revert still works.
* confirm (source) destroys ``-orig`` and its disks; revert (source) renames it back.

Volumes are never copied: the source detaches them from ``-orig`` (its SRs forgotten once
unused), the destination connects them and attaches them to the VM it builds (a boot volume
as its root disk), and a revert attaches them to the original again.

So the source needs to know nothing about the destination: Nova's ``dest`` is an address
that names no pool. No rsync, no dom0 plugin.
"""

from __future__ import annotations

import urllib.parse
from typing import Any

from oslo_log import log as logging

from virtdriver.common import exceptions as exc
from virtdriver.common.model import field_of, validate_flavor, validate_instance
from virtdriver.common.progress import Rollback, make_step_decorator
from virtdriver.common.volumes import NO_VOLUMES, BlockDevices
from virtdriver.xen import build, disks, vm_utils, volume_utils, volumes
from virtdriver.xen.backend import XenBackend
from virtdriver.xen.session import XenAPISession

LOG = logging.getLogger(__name__)
RESIZE_TOTAL_STEPS = 5


def _pinned_host(backend: XenBackend, dest: str) -> str | None:
    """The host of this pool that ``dest`` names (name, hostname, address or uuid), if any.

    ``""`` (the cluster chooses), another pool's URL or an address of another pool pin
    nothing: the destination places the VM itself.
    """
    if dest is None or not isinstance(dest, str):
        raise exc.InvalidInput("dest", dest, "must be a host of this pool, another pool's "
                                             "XAPI URL or ''")
    if not dest or "://" in dest:
        return None
    for ref, host in backend.session.call("host.get_all_records").items():
        if dest in (host.get("name_label"), host.get("hostname"), host.get("address"),
                    host.get("uuid")):
            return ref
    return None


def _same_pool(backend: XenBackend, url: str) -> bool:
    return url.rstrip("/") == backend.session.url.rstrip("/")


def _source_session(backend: XenBackend, url: str) -> XenAPISession:
    if _same_pool(backend, url):
        return backend.session
    return backend.session.for_url(url, ca_file=backend.xen.ca_file,
                                   insecure=backend.xen.insecure)


def _netloc(url: str) -> str:
    # the host only, for logs: a URL may carry credentials
    return urllib.parse.urlsplit(url).netloc.rpartition("@")[2]


# -- cold migration --------------------------------------------------------------------------------

def migrate_disk_and_power_off(backend: XenBackend, context: Any, instance: Any, dest: str,
                               flavor: Any) -> dict[str, Any]:
    """Source side: refuse a shrink, halt, rename to ``-orig``.

    Returns ``disk_info``: ``url`` (this pool), ``vdis`` (the ``-orig`` disks by userdevice:
    uuid, ref in this pool, kind, name and virtual size; config drive and volumes left out:
    the one is rebuilt, the others reattached), and ``host_uuid`` when ``dest`` names a host
    of this pool. The volumes are detached from ``-orig``. Any failure puts the source back
    as it was.
    """
    validate_instance(instance)
    validate_flavor(flavor)
    old = field_of(instance, "flavor")
    for size in ("root_gb", "ephemeral_gb"):
        if (field_of(flavor, size, 0) or 0) < (field_of(old, size, 0) or 0):
            raise exc.MigrationError(f"cannot resize: the new flavor's {size} is smaller")
    host_ref = _pinned_host(backend, dest)
    session = backend.session
    vm_ref = backend.vm_ref_of(instance)
    name = field_of(instance, "name")
    step = make_step_decorator(context, instance, backend.progress, total_offset=1)

    @step
    def power_off_vm(undo: Rollback) -> None:
        if vm_utils.shut_down(session, vm_ref, float(backend.xen.running_timeout)):
            undo.push(vm_utils.start, session, vm_ref)

    @step
    def rename_vm(undo: Rollback) -> None:
        session.call("VM.set_name_label", vm_ref, name + vm_utils.ORIG_SUFFIX)
        undo.push(session.call, "VM.set_name_label", vm_ref, name)
        backend.forget_vm(instance)

    vdis: dict[str, dict[str, Any]] = {}
    vbds: dict[str, dict[str, Any]] = {}

    @step
    def describe_disks(undo: Rollback) -> None:
        vbds.update(vm_utils.vbd_records(session, vm_ref))
        for device, (_, vdi) in sorted(disks.instance_vdis(session, vm_ref, vbds).items()):
            record = session.call("VDI.get_record", vdi)
            kind = (record.get("other_config") or {}).get("nova_disk_type", "disk")
            if kind == "configdrive":
                continue  # rebuilt on the destination
            # what the destination needs of the disk, so it reads nothing of it again
            vdis[device] = {"uuid": record["uuid"], "ref": vdi, "kind": kind,
                            "name_label": record["name_label"],
                            "virtual_size": int(record["virtual_size"])}

    volume_srs: set[str] = set()

    def detach_volumes(undo: Rollback) -> None:
        # part of describe_disks' step: the destination attaches them again
        for vbd, rec in volume_utils.volume_vbds(session, vm_ref, vbds).items():
            volume_srs.add(session.call("VDI.get_SR", rec["VDI"]))
            volumes.remove_vbd(backend, vbd, None)
            undo.push(volume_utils.create_vbd, session, vm_ref, rec["VDI"], rec["userdevice"],
                      bool(rec["bootable"]))

    try:
        with Rollback(f"migration of {name}") as undo:
            power_off_vm(undo)
            rename_vm(undo)
            describe_disks(undo)
            detach_volumes(undo)
        volumes.forget_unused(backend, volume_srs)
        # confirm deletes it with the disks read here (its volumes are off): no lookup
        backend.remember_vm(instance, vm_ref, name + vm_utils.ORIG_SUFFIX, vbds)
    except exc.VirtDriverError as error:
        if isinstance(error, exc.MigrationError):
            raise
        raise exc.MigrationError(f"migration of {name} failed: {error}") from error
    info: dict[str, Any] = {"url": session.url, "vdis": vdis}
    if host_ref is not None:
        info["host_uuid"] = session.call("host.get_uuid", host_ref)
    LOG.info("powered off and kept as %s for the destination to copy",
             name + vm_utils.ORIG_SUFFIX, instance=instance)
    return info


def _fetch_disks(backend: XenBackend, instance: Any, disk_info: dict[str, Any], sr_ref: str,
                 undo: Rollback, sizes: dict[str, int] | None = None) -> dict[str, str]:
    """Copies of the source's disks in ``sr_ref`` of this pool, by userdevice; their virtual
    sizes go into ``sizes`` (a copy is the size of its source)."""
    session = backend.session
    source = _source_session(backend, disk_info["url"])
    copies: dict[str, str] = {}
    try:
        for device, described in sorted(disk_info["vdis"].items()):
            record = _source_disk(source, described, same_pool=source is session)
            vdi, kind = record["ref"], record["kind"]
            other = {"nova_disk_type": kind, "migrated-from": record["uuid"],
                     "nova_instance_uuid": str(field_of(instance, "uuid"))}
            if source is session:
                # Same pool: the storage manager copies server-side, no bytes through us.
                copy = session.call_lasting("VDI.copy", vdi, sr_ref)
                undo.push(vm_utils.destroy_vdi, session, copy)
                backend.note_sr_of(copy, sr_ref)
                session.call("VDI.set_other_config", copy, other)
            else:
                copy = disks.create_vdi(session, sr_ref, record["name_label"],
                                        int(record["virtual_size"]), kind, other)
                undo.push(vm_utils.destroy_vdi, session, copy)
                # As a dynamic VHD: only written blocks cross; its length is known once
                # spooled.
                spool, length = disks.spooled(disks.download(source, vdi))
                with spool:
                    disks.upload(session, copy, disks.file_chunks(spool), length, "vhd")
            copies[str(device)] = copy
            if sizes is not None:
                sizes[str(device)] = int(record["virtual_size"])
    finally:
        if source is not session:
            source.close()
    return copies


def _source_disk(source: XenAPISession, described: Any, same_pool: bool) -> dict[str, Any]:
    """A source disk's ref (in the source's pool), uuid, kind, name and virtual size: from
    ``disk_info`` as the source described it; read from the source pool for what it did
    not say (a ref is only good in its own pool; an older source sent the uuid alone)."""
    if isinstance(described, str):
        described = {"uuid": described}
    record = dict(described)
    if not same_pool or not record.get("ref"):
        record["ref"] = source.call("VDI.get_by_uuid", record["uuid"])
    if any(key not in record for key in ("kind", "name_label", "virtual_size")):
        full = source.call("VDI.get_record", record["ref"])
        record.setdefault("kind", (full.get("other_config") or {}).get("nova_disk_type",
                                                                       "disk"))
        record.setdefault("name_label", full["name_label"])
        record.setdefault("virtual_size", int(full["virtual_size"]))
    return record


def finish_migration(backend: XenBackend, context: Any, instance: Any, disk_info: Any,
                     network_info: Any, image_meta: Any, resize_instance: bool,
                     power_on: bool, block_devices: BlockDevices = NO_VOLUMES) -> None:
    """Destination side: copy the source's disks here, grow them to the new flavor, connect
    the volumes, build the VM (volumes attached, a boot volume as its root), boot it."""
    if not isinstance(disk_info, dict) or not isinstance(disk_info.get("vdis"), dict) \
            or not disk_info.get("url"):
        raise exc.InvalidInput("disk_info", disk_info, "must come from "
                               "migrate_disk_and_power_off")
    plan = build.plan(backend, instance, image_meta, [], None, network_info,
                      block_devices=block_devices)
    session = backend.session
    step = make_step_decorator(context, instance, backend.progress, total_offset=4)
    name = field_of(instance, "name")
    with Rollback(f"finish_migration of {name}") as undo:
        plan.sr_ref = backend.sr_ref()
        if disk_info.get("host_uuid") and _same_pool(backend, disk_info["url"]):
            plan.affinity = session.call("host.get_by_uuid", disk_info["host_uuid"])
            plan.sr_ref = disks.sr_for_host(session, plan.sr_ref, plan.affinity)

        @step
        def copy_disks() -> None:
            sizes: dict[str, int] = {}
            plan.vdis.update(_fetch_disks(backend, instance, disk_info, plan.sr_ref, undo,
                                          sizes))
            if resize_instance:
                _grow(session, plan.vdis, plan.config, sizes)

        copy_disks()
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
    LOG.info("migration finished: disks copied from %s", _netloc(disk_info["url"]),
             instance=instance)
    backend.progress.report(instance, 100, "finish_migration")


def _grow(session: XenAPISession, vdis: dict[str, str], config: Any,
          known: dict[str, int]) -> None:
    """Grow the root and ephemeral disks to the flavor; ``known``: sizes already read."""
    wanted = {vm_utils.DEVICE_ROOT: config.root_gb * vm_utils.GiB,
              str(vm_utils.DEVICE_EPHEMERAL): config.ephemeral_gb * vm_utils.GiB}
    for device, size in wanted.items():
        vdi = vdis.get(device)
        if not vdi or not size:
            continue
        current = known.get(device)
        if current is None:
            current = int(session.call("VDI.get_virtual_size", vdi))
        if size > current:
            session.call_lasting("VDI.resize", vdi, str(size))


def unattached_copies(session: XenAPISession, orig_ref: str) -> list[str]:
    """Disk copies a same-pool finish_migration made of ``orig_ref``'s disks that no VM
    uses (it failed part-way and could not remove them): what a delete must remove."""
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
    """Source side: destroy the ``-orig`` VM and its disks.

    When this backend kept it (migrate_disk_and_power_off ran here), the VM and the disks
    it read then are deleted without a lookup; else, or if the VM is not halted any more,
    they are looked up first."""
    validate_instance(instance)
    session = backend.session
    orig_name = field_of(instance, "name") + vm_utils.ORIG_SUFFIX
    kept = backend.kept_vm(instance, orig_name)
    backend.forget_vm(instance, orig_name)
    if kept is not None and kept[1] is not None:
        try:
            vm_utils.destroy_vm(session, kept[0], record={"power_state": "Halted"},
                                vbds=kept[1])
            return
        except exc.BackendError as error:
            if error.code != "VM_BAD_POWER_STATE":
                raise
    found = vm_utils.find_vm(session, orig_name, str(field_of(instance, "uuid")))
    if found is not None:
        vm_utils.destroy_vm(session, found[0], record=found[1])


def finish_revert_migration(backend: XenBackend, instance: Any, power_on: bool,
                            block_devices: BlockDevices = NO_VOLUMES) -> None:
    """Source side: drop a VM of the real name here, rename ``-orig`` back, attach its
    volumes again, start it."""
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
    backend.forget_vm(instance, name + vm_utils.ORIG_SUFFIX)
    backend.remember_vm(instance, orig[0])
    if block_devices:
        volumes.reattach(backend, instance, orig[0], block_devices)
    if power_on and backend.vm_power_state(orig[0]) == "halted":
        vm_utils.start(session, orig[0])
