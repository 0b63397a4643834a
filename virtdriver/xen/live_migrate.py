"""Live migration: ``VM.pool_migrate`` within a pool; across pools ``host.migrate_receive``
on the destination pool and ``VM.migrate_send`` (storage included) from the source.

What travels between the two computes (Nova's migrate data) is plain and secret-free: the
destination pool's URL, its host, SR and management network uuids, and each VIF's network
uuid by MAC. ``host.migrate_receive``'s answer holds a session id of the destination pool,
so it is never passed around: the source asks for it itself, over a session of its own to
the destination pool (its own configured credentials: the pools of one cloud share them),
right before ``VM.assert_can_migrate`` or ``VM.migrate_send``, and drops it after.

Volumes move without their bytes: across pools, ``pre_live_migration`` connects each
volume's target in the destination pool (an SR of the same uuid), migrate_send's VDI map
sends each volume's VDI to that SR (the LUN is attached there, not copied), and after the
move the source forgets its now unused SRs. Within a pool, the destination host gets a
PBD for each volume SR before ``VM.pool_migrate``, and the source host's PBD is dropped
after it.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from typing import Any

from oslo_log import log as logging

from virtdriver.common import exceptions as exc
from virtdriver.common.model import field_of, validate_instance, validate_vifs
from virtdriver.common.volumes import NO_VOLUMES, BlockDevices
from virtdriver.xen import disks, volumes
from virtdriver.xen import vif as vif_utils
from virtdriver.xen.backend import XenBackend
from virtdriver.xen.session import XenAPISession

LOG = logging.getLogger(__name__)

#: the keys a destination check returns (VirtdriverXenLiveMigrateData's fields)
_CHECKED = ("destination_url", "destination_host_uuid")


def check_can_live_migrate_destination(backend: XenBackend, instance: Any,
                                       block_migration: bool) -> dict[str, Any]:
    """On the destination: this pool's URL, this host, the SR for disks and the management
    network a cross-pool migration streams over (uuids; nothing secret)."""
    validate_instance(instance)
    session = backend.session
    host = session.host_ref
    return {"block_migration": bool(block_migration),
            "destination_url": session.url,
            "destination_host_uuid": backend.uuid_of("host", host),
            "destination_sr_uuid": backend.uuid_of("SR", backend.sr_ref()),
            "destination_network_uuid": backend.uuid_of("network",
                                                        backend.management_network(host))}



def _checked(data: Any, what: str) -> dict[str, Any]:
    if not isinstance(data, dict) or any(not data.get(key) for key in _CHECKED):
        raise exc.InvalidInput(what, data, "must come from check_can_live_migrate_destination")
    return data


def _in_this_pool(backend: XenBackend, data: dict[str, Any]) -> bool:
    """Whether the destination host is one of this pool's (a pool_migrate)."""
    for refresh in (False, True):  # the hosts read once; again if the uuid is not among them
        hosts = backend.pool_hosts(refresh)
        if any(h.get("uuid") == data["destination_host_uuid"] for h in hosts.values()):
            return True
    return False


@contextlib.contextmanager
def _destination(backend: XenBackend, data: dict[str, Any]
                 ) -> Iterator[tuple[XenAPISession, dict[str, str]]]:
    """A session to the destination pool and a fresh ``host.migrate_receive`` token."""
    session = backend.session.for_url(data["destination_url"], ca_file=backend.xen.ca_file,
                                      insecure=backend.xen.insecure)
    try:
        host = session.call("host.get_by_uuid", data["destination_host_uuid"])
        network = session.call("network.get_by_uuid", data["destination_network_uuid"])
        yield session, session.call("host.migrate_receive", host, network, {})
    finally:
        session.close()


def _maps(backend: XenBackend, dest: XenAPISession, vm_ref: str, data: dict[str, Any],
          with_volumes: bool = True) -> tuple[dict[str, str], dict[str, str]]:
    """migrate_send's VDI map (every own disk to the destination SR, each volume to its
    target's SR there) and VIF map (each VIF to its network on the destination, by MAC,
    where pre_live_migration found one). ``with_volumes`` False leaves volumes out (the
    source's check runs before pre_live_migration connects them)."""
    sr = dest.call("SR.get_by_uuid", data["destination_sr_uuid"])
    vdi_map = {vdi: sr for _, vdi in disks.instance_vdis(backend.session, vm_ref).values()}
    if with_volumes:
        vdi_map.update(volumes.destination_vdi_map(backend, dest, vm_ref))
    networks = data.get("vif_networks") or {}
    vif_map = {ref: dest.call("network.get_by_uuid", networks[mac])
               for mac, (ref, _) in vif_utils.vm_vifs(backend.session, vm_ref).items()
               if mac in networks}
    return vdi_map, vif_map


def check_can_live_migrate_source(backend: XenBackend, instance: Any,
                                  dest_check_data: dict[str, Any]) -> dict[str, Any]:
    """On the source: the destination host is in this pool (a pool_migrate), or XAPI
    accepts a migrate_send of the VM with its disks to the destination pool."""
    data = dict(_checked(dest_check_data, "dest_check_data"))
    vm_ref = backend.vm_ref_of(instance)
    try:
        if _in_this_pool(backend, data):
            data["block_migration"] = False
            return data
        data["block_migration"] = True  # another pool: the disks go with the VM
        with _destination(backend, data) as (dest, token):
            vdi_map, vif_map = _maps(backend, dest, vm_ref, data, with_volumes=False)
            backend.session.call("VM.assert_can_migrate", vm_ref, token, True, vdi_map,
                                 vif_map, {})
    except exc.BackendError as error:
        raise exc.MigrationPreCheckError(
            f"cannot live-migrate {field_of(instance, 'name')}: {error.code} "
            f"{list(error.params)}") from error
    except exc.ConnectionFailed as error:
        raise exc.MigrationPreCheckError(
            f"cannot live-migrate {field_of(instance, 'name')}: the destination pool is "
            f"unreachable ({error})") from error
    return data


def pre_live_migration(backend: XenBackend, instance: Any, network_info: Any,
                       migrate_data: dict[str, Any] | None,
                       block_devices: BlockDevices = NO_VOLUMES) -> dict[str, Any]:
    """On the destination: the network uuid of every VIF, by MAC, for migrate_send; and
    each volume connected here (``volume_sr_uuids``)."""
    vifs = validate_vifs(network_info)
    networks = backend.networks_for(vifs)
    data = dict(migrate_data or {})
    data["vif_networks"] = {vif.address.lower(): backend.uuid_of("network", networks[vif.network])
                            for vif in vifs}
    if block_devices:
        data["volume_sr_uuids"] = volumes.connect_on_destination(backend, instance,
                                                                 block_devices)
    return data


def live_migrate(backend: XenBackend, context: Any, instance: Any, destination_hostname: str,
                 post_method: Callable[..., Any], recover_method: Callable[..., Any],
                 block_migration: bool, migrate_data: dict[str, Any] | None) -> None:
    """Move the running VM; ``post_method`` on success, ``recover_method`` then raise on
    failure."""
    data = _checked(migrate_data, "migrate_data")
    vm_ref = backend.vm_ref_of(instance)
    session = backend.session
    across = not _in_this_pool(backend, data)
    source_srs = set(volumes.volume_srs(backend, vm_ref).values())
    source_host = session.call("VM.get_resident_on", vm_ref)
    try:
        if across:
            with _destination(backend, data) as (dest, token):
                vdi_map, vif_map = _maps(backend, dest, vm_ref, data)
                session.call_lasting("VM.migrate_send", vm_ref, token, True, vdi_map, vif_map,
                                   {})
        else:
            host = _pool_host(backend, source_host, destination_hostname,
                              data["destination_host_uuid"])
            plugged = volumes.connect_host(backend, source_srs, host)
            try:
                session.call_lasting("VM.pool_migrate", vm_ref, host, {"live": "true"})
            except BaseException:
                volumes.release_host(backend, plugged, host)
                raise
    except exc.VirtDriverError as error:
        LOG.warning("live migration to %s failed: %s", destination_hostname, error,
                    instance=instance)
        recover_method(context, instance, destination_hostname, migrate_data)
        raise exc.MigrationError(f"live migration of {field_of(instance, 'name')} failed: "
                                 f"{error}") from error
    if across:
        backend.forget_vm(instance)
        volumes.forget_unused(backend, source_srs)  # the VM and its VBDs left this pool
    elif source_srs:
        volumes.release_host(backend, source_srs, source_host)
    LOG.info("live-migrated to %s", destination_hostname, instance=instance)
    post_method(context, instance, destination_hostname, across or block_migration,
                migrate_data)


#: XAPI's names, in a VM's current_operations, of the operations that live-migrate it
MIGRATIONS = ("pool_migrate", "migrate_send")


def live_migration_abort(backend: XenBackend, instance: Any) -> None:
    """Cancel the instance's live migration in flight: XAPI lists its task in the VM's
    ``current_operations``, and ``task.cancel`` stops it (the migrating call then fails
    and runs ``recover_method``). No migration running is a no-op."""
    session = backend.session
    vm_ref = backend.vm_ref_of(instance)
    for task, operation in session.call("VM.get_current_operations", vm_ref).items():
        if operation in MIGRATIONS:
            LOG.info("cancelling the running %s", operation, instance=instance)
            session.call("task.cancel", task)


def _pool_host(backend: XenBackend, resident_on: str, hostname: str,
               fallback_uuid: str) -> str:
    """The pool's host named ``hostname`` (as Nova looked it up), else the checked one; the
    host the VM already runs on (``resident_on``) is a MigrationError, never a silent no-op.
    The pool's hosts are read once (again when neither is among them)."""
    host = None
    for refresh in (False, True):
        hosts = backend.pool_hosts(refresh)
        named = [ref for ref, rec in hosts.items() if hostname and rec.get("name_label")
                 == hostname]
        by_uuid = [ref for ref, rec in hosts.items() if rec.get("uuid") == fallback_uuid]
        host = named[0] if len(named) == 1 else (by_uuid[0] if by_uuid else None)
        if host is not None:
            break
    if host is None:
        raise exc.MigrationError(f"no host {hostname or fallback_uuid} in this pool")
    if host == resident_on:
        raise exc.MigrationError(f"the instance already runs on {hostname or fallback_uuid}")
    return host


def post_live_migration(backend: XenBackend, instance: Any, block_migration: bool) -> None:
    """On the source: after a move to another pool, forget the cached VM ref (the VM lives
    there now); within the pool the VM keeps its ref."""
    if block_migration:
        backend.forget_vm(instance)


def post_live_migration_at_destination(backend: XenBackend, instance: Any,
                                       block_migration: bool) -> None:
    """After a block migration (the VM came from another pool, its disks by storage
    motion), strip ``base_mirror`` from the arrived VDIs' sm_config (XAPI bug CA-98606); a
    move within the pool left the disks where they were, and costs nothing here."""
    if not block_migration:
        return  # a move within the pool: the VM kept its ref and its disks
    backend.forget_vm(instance)
    vm_ref = backend.vm_ref_of(instance)
    for _, vdi in disks.instance_vdis(backend.session, vm_ref).values():
        backend.session.call("VDI.remove_from_sm_config", vdi, "base_mirror")


def rollback_live_migration_at_destination(backend: XenBackend, instance: Any,
                                           block_devices: BlockDevices = NO_VOLUMES) -> None:
    """Forget cached refs, and the volume SRs pre_live_migration connected here that no
    VBD uses (within a pool the source's VM still uses them: they stay)."""
    backend.forget_vm(instance)
    if block_devices:
        volumes.forget_srs_of(backend, block_devices)
