"""VMwareVMOps: the VMOps contract on vCenter, one short method per operation.

Each method takes the instance's lock where the operation needs one and hands the work, in
one hop, to the module of its concern: :mod:`~virtdriver.vmware.spawn` (spawn, destroy),
:mod:`~virtdriver.vmware.power`, :mod:`~virtdriver.vmware.rescue`,
:mod:`~virtdriver.vmware.snapshot`, :mod:`~virtdriver.vmware.migrate` (resize),
:mod:`~virtdriver.vmware.live_migrate`, :mod:`~virtdriver.vmware.network`,
:mod:`~virtdriver.vmware.facts` and :mod:`~virtdriver.vmware.host`. Those functions take a
:class:`~virtdriver.vmware.backend.VMwareBackend`: the session, inventory, image cache and
VM lookup they all share. What vSphere cannot do raises UnsupportedOperation here.

Every operation on an instance checks its identity first, before any server call: through
``instance_lock`` where it locks, else by calling ``validate_instance_identity`` itself.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from virtdriver.common.base import DEFAULT_CAPABILITIES, VMOps
from virtdriver.common.locks import instance_lock
from virtdriver.common.model import (
    ConsoleInfo,
    Diagnostics,
    InstanceInfo,
    field_of,
    validate_instance_identity,
)
from virtdriver.common.power_cache import GONE, UNKNOWN
from virtdriver.common.power_state import PowerState
from virtdriver.vmware import (
    facts,
    host,
    live_migrate,
    migrate,
    network,
    power,
    rescue,
    snapshot,
    spawn,
    vm_util,
    volumes,
)
from virtdriver.vmware.backend import VMwareBackend
from virtdriver.vmware.session import VMwareSession


class VMwareVMOps(VMOps):
    """Nova-style operations on vCenter VMs (one cluster, chosen by ``[vmware] cluster_name``).

    The session is opened on first use (or pass one in ``session=`` for tests). VMs are
    named after the instance uuid, carry it as ``instanceUuid`` and in extraConfig
    ``nvp.vm-uuid``, and are marked ``managedBy`` ``org.openstack.compute``.
    """

    backend_name = "vmware"
    capabilities = {
        **DEFAULT_CAPABILITIES,
        "has_imagecache": True,
        "supports_migrate_to_same_host": True,
        "supports_attach_interface": True,
        "supports_image_type_vmdk": True,
        "supports_image_type_raw": True,
        "supports_image_type_iso": True,
        "supports_config_drive": True,
        "supports_live_migration": True,
        "supports_rescue": True,
        "supports_suspend": True,
        # vSphere has no in-memory pause, no guest agent for passwords/files/network
        # resets, no per-instance security rules and no serial log without a vSPC.
        "supports_pause": False,
        "supports_soft_delete": False,
        "supports_set_admin_password": False,
        "supports_inject_file": False,
        "supports_reset_network": False,
        "supports_console_output": False,
        "supports_bandwidth_counters": False,
        "supports_security_rules": False,
        # Cinder volumes (volumes.py): vmdk (Cinder's shadow VMs), iscsi (RDM through the
        # host's software iSCSI adapter), vstorageobject (First Class Disks); extend for
        # vmdk only; one instance per volume.
        "supports_volume_attach": True,
        "supports_boot_from_volume": True,
        "supports_swap_volume": True,
        "supports_extend_volume": True,
        "supports_volume_type_vmdk": True,
        "supports_volume_type_iscsi": True,
        "supports_volume_type_vstorageobject": True,
    }

    def __init__(self, conf: Any, image_store: Any = None,
                 progress_callback: Callable[[Any, int, str], None] | None = None,
                 session: VMwareSession | None = None) -> None:
        super().__init__(conf, image_store, progress_callback)
        if session is not None:  # one set of figures: the session's
            self.stats = session.stats
        self._backend = VMwareBackend(conf, image_store, self.progress, self.stats, session)

    # For callers that read the server beside the operations: the Nova adapter's resources
    # and events, the benchmarks.
    @property
    def session(self) -> VMwareSession:
        """The vCenter session, logged in on first use."""
        return self._backend.session

    @property
    def inventory(self) -> vm_util.Inventory:
        """The cluster, datacenter and folder this backend uses (read once)."""
        return self._backend.inventory

    @property
    def vm_refs(self) -> vm_util.VMRefCache:
        """The VM references found so far, by instance uuid."""
        return self._backend.vm_refs

    def close(self) -> None:
        """Log out of vCenter."""
        self._backend.close()

    # -- lifecycle -------------------------------------------------------------------------------

    def spawn(self, context: Any, instance: Any, image_meta: Any, injected_files: Any,
              admin_password: str | None, network_info: Any = None,
              block_device_info: Any = None) -> None:
        devices = self.block_devices(block_device_info)
        with self.changing_power(instance, PowerState.RUNNING):
            spawn.spawn(self._backend, context, instance, image_meta, injected_files,
                        admin_password, network_info, devices)

    def destroy(self, instance: Any, network_info: Any = None, block_device_info: Any = None,
                destroy_disks: bool = True) -> None:
        """Power off, detach volumes (never deleted), unregister, delete the VM's folder; a
        gone VM is a no-op."""
        if migrate.keeps_vm_for_revert(instance):
            return  # the revert needs this VM: the resize moved it, it copied nothing
        devices = self.block_devices(block_device_info)
        with self.changing_power(instance, GONE):
            spawn.destroy(self._backend, instance, destroy_disks, devices)

    def reboot(self, instance: Any, network_info: Any = None, reboot_type: str = "SOFT",
               bad_volumes_callback: Callable[..., Any] | None = None) -> None:
        """SOFT: RebootGuest when VMware Tools run, else reset; HARD: reset."""
        with self.changing_power(instance, PowerState.RUNNING):
            power.reboot(self._backend, instance, reboot_type)

    def power_off(self, instance: Any, timeout: int = 0, retry_interval: int = 0) -> None:
        """Guest shutdown first when ``timeout`` > 0 (waited on by push), then hard off."""
        with self.changing_power(instance, PowerState.SHUTDOWN):
            power.power_off(self._backend, instance, timeout, retry_interval)

    def power_on(self, instance: Any) -> None:
        with self.changing_power(instance, PowerState.RUNNING):
            power.power_on(self._backend, instance)

    def suspend(self, instance: Any) -> None:
        with self.changing_power(instance, PowerState.SUSPENDED):
            power.suspend(self._backend, instance)

    def resume(self, instance: Any) -> None:
        with self.changing_power(instance, PowerState.RUNNING):
            power.resume(self._backend, instance)

    def pause(self, instance: Any) -> None:
        raise self.unsupported("pause", "vSphere has no in-memory pause; use suspend")

    def unpause(self, instance: Any) -> None:
        raise self.unsupported("unpause", "vSphere has no in-memory pause; use resume")

    def soft_delete(self, instance: Any) -> None:
        raise self.unsupported("soft_delete")

    def restore(self, instance: Any) -> None:
        raise self.unsupported("restore")

    def poll_rebooting_instances(self, timeout: int, instances: Iterable[Any]) -> list[Any]:
        """Locks each instance it resets."""
        return power.poll_rebooting_instances(self._backend, timeout, instances)

    def set_bootable(self, instance: Any, is_bootable: bool) -> None:
        raise self.unsupported("set_bootable")

    # -- rescue ----------------------------------------------------------------------------------

    def rescue(self, context: Any, instance: Any, network_info: Any, image_meta: Any,
               rescue_password: str | None = None) -> None:
        """Boot from a copy of ``image_meta`` with the instance's disk attached second."""
        with self.changing_power(instance, UNKNOWN):
            rescue.rescue(self._backend, context, instance, image_meta)

    def unrescue(self, instance: Any, power_on: bool = True) -> None:
        with self.changing_power(instance, UNKNOWN):
            rescue.unrescue(self._backend, instance, power_on)

    # -- snapshot --------------------------------------------------------------------------------

    def snapshot(self, context: Any, instance: Any, image_id: str,
                 update_task_state: Callable[..., Any]) -> None:
        """A server snapshot freezes the root disk, a copy of which is uploaded."""
        with instance_lock(instance):
            snapshot.snapshot(self._backend, context, instance, image_id, update_task_state)

    def post_interrupted_snapshot_cleanup(self, context: Any, instance: Any) -> None:
        validate_instance_identity(instance)
        snapshot.post_interrupted_snapshot_cleanup(self._backend, context, instance)

    # -- resize ----------------------------------------------------------------------------------

    def migrate_disk_and_power_off(self, context: Any, instance: Any, dest: str, flavor: Any,
                                   block_device_info: Any = None) -> Any:
        """Keeps a grown root disk's old self as ``original.vmdk`` for a revert."""
        with self.changing_power(instance, UNKNOWN):
            return migrate.migrate_disk_and_power_off(self._backend, context, instance, dest,
                                                      flavor)

    def finish_migration(self, context: Any, migration: Any, instance: Any, disk_info: Any,
                         network_info: Any, image_meta: Any, resize_instance: bool = False,
                         block_device_info: Any = None, power_on: bool = True) -> None:
        devices = self.block_devices(block_device_info)
        with self.changing_power(instance, UNKNOWN):
            migrate.finish_migration(self._backend, instance, power_on, devices)

    def confirm_migration(self, migration: Any, instance: Any, network_info: Any) -> None:
        with instance_lock(instance):
            migrate.confirm_migration(self._backend, instance)

    def finish_revert_migration(self, context: Any, instance: Any, network_info: Any = None,
                                block_device_info: Any = None, power_on: bool = True) -> None:
        devices = self.block_devices(block_device_info)
        with self.changing_power(instance, UNKNOWN):
            migrate.finish_revert_migration(self._backend, instance, power_on, devices)

    # -- live migration --------------------------------------------------------------------------

    def check_can_live_migrate_destination(self, context: Any, instance: Any,
                                           block_migration: bool = False,
                                           disk_over_commit: bool = False) -> dict[str, Any]:
        validate_instance_identity(instance)
        return live_migrate.check_can_live_migrate_destination(self._backend)

    def check_can_live_migrate_source(self, context: Any, instance: Any,
                                      dest_check_data: dict[str, Any]) -> dict[str, Any]:
        validate_instance_identity(instance)
        return live_migrate.check_can_live_migrate_source(self._backend, instance,
                                                          dest_check_data)

    def pre_live_migration(self, context: Any, instance: Any, block_device_info: Any,
                           network_info: Any, disk_info: Any,
                           migrate_data: dict[str, Any] | None = None) -> dict[str, Any]:
        validate_instance_identity(instance)
        return live_migrate.pre_live_migration(migrate_data)

    def live_migrate(self, context: Any, instance: Any, destination_hostname: str,
                     post_method: Callable[..., Any], recover_method: Callable[..., Any],
                     block_migration: bool = False,
                     migrate_data: dict[str, Any] | None = None) -> None:
        """Relocates between hosts of the cluster; locks the instance, not the callbacks."""
        validate_instance_identity(instance)  # bad input is no failed migration to recover
        live_migrate.live_migrate(self._backend, context, instance, destination_hostname,
                                  post_method, recover_method, block_migration, migrate_data)

    def live_migration_abort(self, instance: Any) -> None:
        """Cancel a live migration in flight; no instance lock: live_migrate holds it."""
        validate_instance_identity(instance)
        live_migrate.live_migration_abort(self._backend, instance)

    def post_live_migration(self, context: Any, instance: Any,
                            migrate_data: dict[str, Any] | None = None) -> None:
        """Nothing stays on the source host: vCenter moved the VM."""
        validate_instance_identity(instance)

    def post_live_migration_at_destination(self, context: Any, instance: Any, network_info: Any,
                                           block_migration: bool = False,
                                           block_device_info: Any = None) -> None:
        """Nothing to finish: the VM keeps its devices and networks."""
        validate_instance_identity(instance)

    def rollback_live_migration_at_destination(self, instance: Any,
                                               block_device_info: Any = None) -> None:
        """Nothing to remove: pre_live_migration made nothing."""
        validate_instance_identity(instance)

    # -- network ---------------------------------------------------------------------------------

    def attach_interface(self, instance: Any, image_meta: Any, vif: Any) -> None:
        """Names the VIF's port in extraConfig ``nvp.iface-id.N``."""
        with instance_lock(instance):
            network.attach_interface(self._backend, instance, image_meta, vif)

    def detach_interface(self, instance: Any, vif: Any) -> None:
        with instance_lock(instance):
            network.detach_interface(self._backend, instance, vif)

    def plug_vifs(self, instance: Any, network_info: Any) -> None:
        with instance_lock(instance):
            network.plug_vifs(self._backend, instance, network_info)

    def unplug_vifs(self, instance: Any, network_info: Any) -> None:
        with instance_lock(instance):
            network.unplug_vifs(self._backend, instance, network_info)

    def inject_network_info(self, instance: Any, network_info: Any) -> None:
        """Publishes ``machine.id`` (``mac;ip`` per VIF) for VMware Tools scripts."""
        with instance_lock(instance):
            network.inject_network_info(self._backend, instance, network_info)

    def reset_network(self, instance: Any) -> None:
        raise self.unsupported("reset_network", "no guest agent on vSphere")

    def refresh_instance_security_rules(self, instance: Any) -> None:
        raise self.unsupported("refresh_instance_security_rules")

    def refresh_security_group_rules(self, security_group_id: str) -> None:
        raise self.unsupported("refresh_security_group_rules")

    def unfilter_instance(self, instance: Any, network_info: Any) -> None:
        raise self.unsupported("unfilter_instance")

    # -- guest -----------------------------------------------------------------------------------

    def inject_file(self, instance: Any, path: str, contents: bytes | str) -> None:
        raise self.unsupported("inject_file", "no guest agent; use the config drive")

    def set_admin_password(self, instance: Any, new_pass: str) -> None:
        raise self.unsupported("set_admin_password", "no guest agent on vSphere")

    def change_instance_metadata(self, instance: Any, diff: dict[str, list[Any]]) -> None:
        raise self.unsupported("change_instance_metadata")

    # -- facts -----------------------------------------------------------------------------------

    def get_info(self, instance: Any, use_cache: bool = True) -> InstanceInfo:
        validate_instance_identity(instance)
        read = lambda: facts.get_info(self._backend, instance)  # noqa: E731
        return self.power_cache.answer(instance, read) if use_cache else read()

    def list_instances(self) -> list[str]:
        """Names come from the VMs' annotations (VMs are named after the uuid)."""
        return facts.list_instances(self._backend)

    def list_instance_uuids(self) -> list[str]:
        return facts.list_instance_uuids(self._backend)

    def get_diagnostics(self, instance: Any) -> dict[str, Any]:
        """summary.config, quickStats and runtime, flattened with a ``vmware:`` prefix."""
        validate_instance_identity(instance)
        return facts.get_diagnostics(self._backend, instance)

    def get_instance_diagnostics(self, instance: Any) -> Diagnostics:
        validate_instance_identity(instance)
        return facts.get_instance_diagnostics(self._backend, instance)

    def get_all_bw_counters(self, instances: Iterable[Any]) -> list[dict[str, Any]]:
        raise self.unsupported("get_all_bw_counters")

    def get_per_instance_usage(self) -> dict[str, dict[str, Any]]:
        return facts.get_per_instance_usage(self._backend)

    def get_console_output(self, instance: Any) -> bytes:
        raise self.unsupported("get_console_output", "no serial log without a vSPC")

    def get_vnc_console(self, instance: Any) -> ConsoleInfo:
        """Allocates the VM's VNC port on first use."""
        validate_instance_identity(instance)
        return facts.get_vnc_console(self._backend, instance)

    def get_mks_console(self, instance: Any) -> ConsoleInfo:
        """An MKS ticket (``AcquireTicket``); the ticket is in ``internal_access_path``."""
        validate_instance_identity(instance)
        return facts.get_mks_console(self._backend, instance)

    # -- host ------------------------------------------------------------------------------------

    def manage_image_cache(self, context: Any, instances: Iterable[Any]) -> None:
        """Marks unused images ``ts-<epoch>``; deletes them after the minimum age."""
        host.manage_image_cache(self._backend, instances)

    def cache_image(self, context: Any, image_id: str) -> bool:
        """The image into the datastore image cache (False: it was already)."""
        return host.cache_image(self._backend, context, image_id)

    def get_datacenter_ref_and_name(self, ds_ref: Any) -> tuple[Any, str]:
        return host.get_datacenter_ref_and_name(self._backend, ds_ref)

    def check_cache_folder(self, ds_name: str, ds_ref: Any) -> None:
        host.check_cache_folder(self._backend, ds_name, ds_ref)

    def check_temp_folder(self, ds_name: str, ds_ref: Any) -> None:
        host.check_temp_folder(self._backend, ds_name, ds_ref)

    # -- volumes (volumes.py) ------------------------------------------------------------------

    def attach_volume(self, context: Any, connection_info: Any, instance: Any,
                      mountpoint: str | None, disk_bus: str | None = None,
                      device_type: str | None = None, encryption: Any = None) -> None:
        """``disk_bus`` picks the controller (``ide``, ``lsiLogic``... or ``scsi``); the
        mountpoint is the guest's business on vSphere and is not used."""
        info = self.connection_info(connection_info)
        with instance_lock(instance):
            volumes.attach_volume(self._backend, info, instance, disk_bus, device_type)

    def detach_volume(self, context: Any, connection_info: Any, instance: Any,
                      mountpoint: str | None, encryption: Any = None) -> None:
        info = self.connection_info(connection_info)
        with instance_lock(instance):
            volumes.detach_volume(self._backend, info, instance)

    def swap_volume(self, context: Any, old_connection_info: Any, new_connection_info: Any,
                    instance: Any, mountpoint: str | None, resize_to: int) -> None:
        old = self.connection_info(old_connection_info)
        new = self.connection_info(new_connection_info)
        with instance_lock(instance):
            volumes.swap_volume(self._backend, old, new, instance)

    def extend_volume(self, context: Any, connection_info: Any, instance: Any,
                      requested_size: int) -> None:
        """vmdk volumes only (an RDM or First Class Disk is UnsupportedOperation)."""
        info = self.connection_info(connection_info)
        with instance_lock(instance):
            volumes.extend_volume(self._backend, info, instance, requested_size)

    def get_volume_connector(self, instance: Any) -> dict[str, Any]:
        """The host's connector, with the VM's moref when the instance has a VM. It
        describes the host, so an instance without a uuid is fine (Nova's own tests pass
        ``{"id": "fake"}``); a malformed one is refused before it reaches the server."""
        if field_of(instance, "uuid") is not None:
            validate_instance_identity(instance)
        return volumes.get_volume_connector(self._backend, instance)


__all__ = ["VMwareVMOps"]
