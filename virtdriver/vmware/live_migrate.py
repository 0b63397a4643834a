"""Live migration on vCenter: RelocateVM to a host of this cluster or of another cluster of
the same vCenter (with that cluster's resource pool and a datastore of it).

The destination compute names its cluster and datastore filter (Nova's
VMwareLiveMigrateData); the source checks that vCenter has that cluster and moves the VM
there itself, since one vCenter holds both. The VM keeps its devices and NIC backings: the
clusters of a vCenter share its distributed switches. Nothing is prepared on the
destination and nothing is left on the source.

An abort (Nova's ``live_migration_abort``) cancels the VM's running RelocateVM/MigrateVM
task with ``CancelTask``: vCenter ends it in RequestCanceled, the VM stays where it ran,
and ``live_migrate`` runs ``recover_method`` and raises the task's error.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from oslo_log import log as logging
from pyVmomi import vim, vmodl

from virtdriver.common import exceptions
from virtdriver.common.locks import instance_lock
from virtdriver.vmware import iscsi, vm_util
from virtdriver.vmware.backend import VMwareBackend

LOG = logging.getLogger(__name__)


def check_can_live_migrate_destination(backend: VMwareBackend) -> dict[str, Any]:
    """This backend's cluster and datastore filter, for the source to check."""
    return {"cluster_name": backend.inventory.cluster_name,
            "datastore_regex": backend.conf.vmware.datastore_regex}


def _destination(backend: VMwareBackend, data: dict[str, Any]) -> vm_util.Inventory:
    """The destination cluster: this one, or another of this vCenter found by name."""
    name = data.get("cluster_name")
    if not name or name == backend.inventory.cluster_name:
        return backend.inventory
    try:
        return vm_util.load_inventory(backend.session, name)
    except exceptions.BackendError as error:
        raise exceptions.MigrationPreCheckError(
            f"cluster {name!r} is not in this vCenter: {error}") from error


def check_can_live_migrate_source(backend: VMwareBackend, instance: Any,
                                  dest_check_data: dict[str, Any]) -> dict[str, Any]:
    """The instance exists, and the destination cluster is in this vCenter with a usable
    host and datastore for it."""
    vm, props = backend.read(instance, ["datastore"])
    target = _destination(backend, dest_check_data)
    if target is not backend.inventory:
        try:
            vm_util.placement(backend.session, target, dest_check_data.get("datastore_regex"),
                              props.get("datastore") or [])
        except exceptions.BackendError as error:
            raise exceptions.MigrationPreCheckError(
                f"cannot live-migrate into cluster {target.cluster_name}: {error}") from error
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
            target = _destination(backend, migrate_data or {})
            datastore = None
            vm, devices, props = backend.read_devices(instance)
            if target is backend.inventory:  # a host of this cluster, named by Nova
                host = backend.host_named(destination_hostname)
                if host is None:
                    raise exceptions.MigrationPreCheckError(
                        f"host {destination_hostname!r} is not in cluster "
                        f"{backend.inventory.cluster_name}")
            else:  # another cluster: its pool, a host and a datastore of it
                current = backend.session.retrieve_one(vm, ["datastore"]).get("datastore")
                host, datastore = vm_util.placement(
                    backend.session, target, (migrate_data or {}).get("datastore_regex"),
                    current or [])
            # the destination host sees the VM's iSCSI LUNs before the VM moves there
            iscsi.connect_luns(backend, devices, props.get("runtime.host"), host)
            vm_util.relocate(backend.session, vm, host, target.pool, datastore)
    except Exception:
        LOG.warning("live migration to %s failed; recovering", destination_hostname,
                    instance=instance)
        recover_method(context, instance, destination_hostname, migrate_data)
        raise
    LOG.info("live-migrated to %s", destination_hostname, instance=instance)
    post_method(context, instance, destination_hostname, block_migration, migrate_data)


#: What a vCenter task's ``descriptionId`` names after its type (``VirtualMachine.relocate``;
#: vcsim names it after the method, ``VirtualMachine.RelocateVM``).
MIGRATIONS = ("relocate", "migrate")


def _migration_tasks(backend: VMwareBackend, vm: Any) -> list[Any]:
    """The VM's queued or running relocation/migration tasks: the VM's ``recentTask`` and
    the TaskManager's (vcsim keeps only the latter), their ``info`` in one property read."""
    session = backend.session
    pc = vmodl.query.PropertyCollector
    task_manager = session.content.taskManager
    spec = pc.FilterSpec(
        objectSet=[pc.ObjectSpec(obj=vm, skip=True, selectSet=[
                       pc.TraversalSpec(type=vim.VirtualMachine, path="recentTask")]),
                   pc.ObjectSpec(obj=task_manager, skip=True, selectSet=[
                       pc.TraversalSpec(type=vim.TaskManager, path="recentTask")])],
        propSet=[pc.PropertySpec(type=vim.Task, pathSet=["info"])])
    collector = session.content.propertyCollector
    result = session.invoke(collector, "RetrievePropertiesEx", [spec], pc.RetrieveOptions())
    found: dict[str, Any] = {}
    while result is not None:
        for obj in result.objects or []:
            info = next((prop.val for prop in obj.propSet or [] if prop.name == "info"), None)
            if info is not None and _is_migration_of(info, vm):
                found[obj.obj._moId] = obj.obj
        if not result.token:
            break
        result = session.invoke(collector, "ContinueRetrievePropertiesEx", result.token)
    return list(found.values())


def _is_migration_of(info: Any, vm: Any) -> bool:
    """A task of ``vm`` still in flight whose description is a relocation or migration."""
    entity = getattr(info, "entity", None)
    if entity is None or entity._moId != vm._moId:
        return False
    if str(info.state) not in ("queued", "running"):
        return False
    action = (info.descriptionId or "").rpartition(".")[2].lower()
    return action.startswith(MIGRATIONS)


def live_migration_abort(backend: VMwareBackend, instance: Any) -> None:
    """Cancel the instance's live migration in flight: ``CancelTask`` on the VM's running
    RelocateVM/MigrateVM task (the migrating call then fails and runs ``recover_method``).
    No migration running is a no-op, as is a task that ends before the cancel reaches it
    (vCenter's InvalidState)."""
    vm = backend.vm(instance)
    for task in _migration_tasks(backend, vm):
        LOG.info("cancelling the running migration task %s", task._moId, instance=instance)
        try:
            backend.session.invoke(task, "CancelTask")
        except exceptions.BackendError as error:
            if error.code != "InvalidState":
                raise
