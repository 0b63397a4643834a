"""Live migration on vCenter: RelocateVM between hosts of the backend's cluster.

Hosts of one cluster share networks and datastores, so there is nothing to prepare on the
destination and nothing to clean up on the source.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from oslo_log import log as logging

from virtdriver.common import exceptions
from virtdriver.common.locks import instance_lock
from virtdriver.vmware import iscsi, vm_util
from virtdriver.vmware.backend import VMwareBackend

LOG = logging.getLogger(__name__)


def check_can_live_migrate_destination(backend: VMwareBackend) -> dict[str, Any]:
    """This backend's cluster and datastore filter, for the source to check."""
    return {"cluster_name": backend.inventory.cluster_name,
            "datastore_regex": backend.conf.vmware.datastore_regex}


def check_can_live_migrate_source(backend: VMwareBackend, instance: Any,
                                  dest_check_data: dict[str, Any]) -> dict[str, Any]:
    """The instance exists, and the destination is this vCenter's cluster."""
    backend.vm(instance)
    if dest_check_data.get("cluster_name") != backend.inventory.cluster_name:
        raise exceptions.MigrationPreCheckError(
            f"live migration only moves between hosts of cluster "
            f"{backend.inventory.cluster_name}, not to {dest_check_data.get('cluster_name')}")
    return dict(dest_check_data)


def pre_live_migration(migrate_data: dict[str, Any] | None) -> dict[str, Any]:
    """Nothing to prepare: hosts of a cluster share networks and datastores."""
    return dict(migrate_data or {})


def live_migrate(backend: VMwareBackend, context: Any, instance: Any,
                 destination_hostname: str, post_method: Callable[..., Any],
                 recover_method: Callable[..., Any], block_migration: bool = False,
                 migrate_data: dict[str, Any] | None = None) -> None:
    """RelocateVM to the named host of the cluster; post_method or recover_method.

    Takes the instance's lock itself, released before ``post_method``/``recover_method``
    run: Nova's callbacks call back into the driver for the same instance.
    """
    try:
        with instance_lock(instance):
            host = backend.host_named(destination_hostname)
            if host is None:
                raise exceptions.MigrationPreCheckError(
                    f"host {destination_hostname!r} is not in cluster "
                    f"{backend.inventory.cluster_name}")
            vm, devices, props = backend.read_devices(instance)
            # the destination host sees the VM's iSCSI LUNs before the VM moves there
            iscsi.connect_luns(backend, devices, props.get("runtime.host"), host)
            vm_util.relocate(backend.session, vm, host, backend.inventory.pool)
    except Exception:
        LOG.warning("live migration to %s failed; recovering", destination_hostname,
                    instance=instance)
        recover_method(context, instance, destination_hostname, migrate_data)
        raise
    LOG.info("live-migrated to %s", destination_hostname, instance=instance)
    post_method(context, instance, destination_hostname, block_migration, migrate_data)
