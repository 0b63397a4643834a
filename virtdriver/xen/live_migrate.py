"""Live migration: ``VM.pool_migrate`` within a pool; across pools ``host.migrate_receive``
on the destination and ``VM.migrate_send`` (storage included) on the source.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from oslo_log import log as logging

from virtdriver.common import exceptions as exc
from virtdriver.common.model import field_of, validate_instance, validate_vifs
from virtdriver.xen import disks, vm_utils
from virtdriver.xen import vif as vif_utils
from virtdriver.xen.backend import XenBackend

LOG = logging.getLogger(__name__)


def check_can_live_migrate_destination(backend: XenBackend, instance: Any,
                                       block_migration: bool) -> dict[str, Any]:
    """On the destination: this host, its SR, and for block migration migrate_receive data."""
    validate_instance(instance)
    session = backend.session
    host = session.host_ref
    data: dict[str, Any] = {"block_migration": bool(block_migration),
                            "destination_host_uuid": session.call("host.get_uuid", host),
                            "destination_url": session.url}
    if block_migration:
        sr = disks.find_sr(session, backend.xen.sr_matching_filter)
        pifs = session.call("PIF.get_all_records_where",
                            f'field "management" = "true" and field "host" = '
                            f'{vm_utils.where_literal(host)}')
        if not pifs:
            raise exc.MigrationPreCheckError("the destination host has no management PIF")
        network = next(iter(pifs.values()))["network"]
        data["migrate_send_data"] = session.call("host.migrate_receive", host, network, {})
        data["destination_sr_ref"] = sr
    return data


def check_can_live_migrate_source(backend: XenBackend, instance: Any,
                                  dest_check_data: dict[str, Any]) -> dict[str, Any]:
    """On the source: the destination host is in this pool, or XAPI accepts migrate_send."""
    if not isinstance(dest_check_data, dict) or "destination_host_uuid" not in dest_check_data:
        raise exc.InvalidInput("dest_check_data", dest_check_data,
                               "must come from check_can_live_migrate_destination")
    vm_ref = backend.vm_ref_of(instance)
    session = backend.session
    try:
        if dest_check_data.get("block_migration"):
            vdi_map = _vdi_map(backend, vm_ref, dest_check_data["destination_sr_ref"])
            session.call("VM.assert_can_migrate", vm_ref, dest_check_data["migrate_send_data"],
                         True, vdi_map, {}, {})
        else:
            session.call("host.get_by_uuid", dest_check_data["destination_host_uuid"])
    except exc.BackendError as error:
        raise exc.MigrationPreCheckError(
            f"cannot live-migrate {field_of(instance, 'name')}: {error.code} "
            f"{list(error.params)}") from error
    return dest_check_data


def pre_live_migration(backend: XenBackend, instance: Any, network_info: Any,
                       migrate_data: dict[str, Any] | None) -> dict[str, Any]:
    """On the destination: the network of every VIF, by MAC, for migrate_send's VIF map."""
    vifs = validate_vifs(network_info)
    networks = vif_utils.find_networks(backend.session, vifs)
    data = dict(migrate_data or {})
    data["vif_networks"] = {vif.address: networks[vif.network] for vif in vifs}
    return data


def _vdi_map(backend: XenBackend, vm_ref: str, sr_ref: str) -> dict[str, str]:
    return {vdi: sr_ref for _, vdi in disks.instance_vdis(backend.session, vm_ref).values()}


def live_migrate(backend: XenBackend, context: Any, instance: Any, destination_hostname: str,
                 post_method: Callable[..., Any], recover_method: Callable[..., Any],
                 block_migration: bool, migrate_data: dict[str, Any] | None) -> None:
    """Move the running VM; ``post_method`` on success, ``recover_method`` then raise on
    failure."""
    data = migrate_data or {}
    if "destination_host_uuid" not in data:
        raise exc.InvalidInput("migrate_data", data,
                               "must come from check_can_live_migrate_destination")
    vm_ref = backend.vm_ref_of(instance)
    session = backend.session
    try:
        if block_migration or data.get("block_migration"):
            vif_map = {}
            for mac, (vif_ref, _) in vif_utils.vm_vifs(session, vm_ref).items():
                if mac in data.get("vif_networks", {}):
                    vif_map[vif_ref] = data["vif_networks"][mac]
            session.call_async("VM.migrate_send", vm_ref, data["migrate_send_data"], True,
                               _vdi_map(backend, vm_ref, data["destination_sr_ref"]), vif_map, {})
        else:
            host = _pool_host(backend, vm_ref, destination_hostname,
                              data["destination_host_uuid"])
            session.call_async("VM.pool_migrate", vm_ref, host, {"live": "true"})
    except exc.VirtDriverError as error:
        LOG.warning("live migration to %s failed: %s", destination_hostname, error,
                    instance=instance)
        recover_method(context, instance, destination_hostname, migrate_data)
        raise exc.MigrationError(f"live migration of {field_of(instance, 'name')} failed: "
                                 f"{error}") from error
    if block_migration or data.get("block_migration"):
        backend.forget_vm(instance)
    LOG.info("live-migrated to %s", destination_hostname, instance=instance)
    post_method(context, instance, destination_hostname, block_migration, migrate_data)


def _pool_host(backend: XenBackend, vm_ref: str, hostname: str, fallback_uuid: str) -> str:
    """The pool's host named ``hostname`` (as Nova looked it up), else the checked one; the
    host the VM already runs on is a MigrationError, never a silent no-op."""
    host = None
    if hostname:
        refs = backend.session.call("host.get_by_name_label", hostname)
        if len(refs) == 1:
            host = refs[0]
    if host is None:
        host = backend.session.call("host.get_by_uuid", fallback_uuid)
    if host == backend.session.call("VM.get_resident_on", vm_ref):
        raise exc.MigrationError(f"the instance already runs on {hostname or fallback_uuid}")
    return host


def post_live_migration(backend: XenBackend, instance: Any) -> None:
    """On the source: forget the cached VM ref (the VM lives elsewhere now)."""
    backend.forget_vm(instance)


def post_live_migration_at_destination(backend: XenBackend, instance: Any) -> None:
    """Strip ``base_mirror`` from the arrived VDIs' sm_config (XAPI bug CA-98606)."""
    backend.forget_vm(instance)
    vm_ref = backend.vm_ref_of(instance)
    for _, vdi in disks.instance_vdis(backend.session, vm_ref).values():
        backend.session.call("VDI.remove_from_sm_config", vdi, "base_mirror")


def rollback_live_migration_at_destination(backend: XenBackend, instance: Any) -> None:
    """pre_live_migration made nothing on the destination; only forget cached refs."""
    backend.forget_vm(instance)
