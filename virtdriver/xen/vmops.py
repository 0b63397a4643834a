"""XenVMOps: the Xen backend's face, one short method per operation of the VMOps contract.

Each method takes the per-instance lock where the operation needs one and delegates in one
hop to the module named for its concern: :mod:`~virtdriver.xen.spawn` (with the VM-building
steps in :mod:`~virtdriver.xen.build`), :mod:`~virtdriver.xen.power`,
:mod:`~virtdriver.xen.rescue`, :mod:`~virtdriver.xen.snapshot`,
:mod:`~virtdriver.xen.migrate`, :mod:`~virtdriver.xen.live_migrate`,
:mod:`~virtdriver.xen.network`, :mod:`~virtdriver.xen.guest`, :mod:`~virtdriver.xen.facts`
and :mod:`~virtdriver.xen.host`. What they share (session, configuration, image store,
progress, the instance -> VM lookup) is a :class:`~virtdriver.xen.backend.XenBackend`.
Every server call goes through :class:`~virtdriver.xen.session.XenAPISession`; XAPI faults
never escape as XenAPI types. Every operation on an instance checks its identity first,
before any server call: through ``instance_lock`` where it locks, else by calling
``validate_instance_identity`` itself.
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
    validate_instance_identity,
)
from virtdriver.common.power_cache import GONE, UNKNOWN
from virtdriver.common.power_state import PowerState
from virtdriver.xen import (
    facts,
    guest,
    host,
    live_migrate,
    migrate,
    network,
    power,
    rescue,
    snapshot,
    spawn,
    volumes,
)
from virtdriver.xen.backend import XenBackend
from virtdriver.xen.session import XenAPISession

#: What this backend does; the rest stays False: vmdk/qcow2/iso root images (XAPI imports
#: raw and VHD), evacuate, device tagging, multi-attach volumes, vmdk and First Class Disk
#: volumes (VMware's), trusted certificates, PCPUs and accelerators.
CAPABILITIES = {**DEFAULT_CAPABILITIES, **dict.fromkeys((
    "has_imagecache", "supports_migrate_to_same_host", "supports_attach_interface",
    "supports_image_type_raw",
    "supports_image_type_vhd", "supports_config_drive", "supports_live_migration",
    "supports_block_migration", "supports_rescue", "supports_pause", "supports_suspend",
    "supports_soft_delete", "supports_set_admin_password", "supports_inject_file",
    "supports_reset_network", "supports_console_output", "supports_bandwidth_counters",
    "supports_security_rules", "supports_volume_attach", "supports_boot_from_volume",
    "supports_swap_volume", "supports_extend_volume", "supports_volume_type_iscsi"), True)}


class XenVMOps(VMOps):
    """The Xen backend: XAPI through the ``XenAPI`` client, no dom0 plugin where XAPI can do
    the job (the guest agent, live xenstore, console log and bandwidth counters need one).

    ``session`` may be given (tests, sharing); otherwise one is built from
    ``[xenserver]`` and logs in on first use.
    """

    backend_name = "xen"
    capabilities = CAPABILITIES

    def __init__(self, conf: Any, image_store: Any = None,
                 progress_callback: Callable[..., Any] | None = None,
                 session: XenAPISession | None = None) -> None:
        super().__init__(conf, image_store, progress_callback)
        self._backend = XenBackend(conf, image_store, self.progress, self.stats, session)
        self.stats = self._backend.stats

    @property
    def session(self) -> XenAPISession:
        """The XAPI session every call goes through."""
        return self._backend.session

    @property
    def xen(self) -> Any:
        """The ``[xenserver]`` options."""
        return self._backend.xen

    def close(self) -> None:
        """Log every XAPI session out."""
        self._backend.close()

    # -- lifecycle (spawn.py, power.py) -----------------------------------------------------

    def spawn(self, context: Any, instance: Any, image_meta: Any, injected_files: Any,
              admin_password: str | None, network_info: Any = None,
              block_device_info: Any = None) -> None:
        """Volumes (``block_device_mapping``, iSCSI) are attached before boot; with a boot
        volume the root disk is the volume. Files and a password go through the guest
        agent (or the config drive)."""
        devices = self.block_devices(block_device_info)
        with self.changing_power(instance, PowerState.RUNNING):
            spawn.spawn(self._backend, context, instance, image_meta, injected_files,
                        admin_password, network_info, devices)

    def destroy(self, instance: Any, network_info: Any = None, block_device_info: Any = None,
                destroy_disks: bool = True) -> None:
        """Also removes the rescue VM and the ``<name>-orig`` VM a resize kept for a revert.
        Volumes are detached, never deleted."""
        devices = self.block_devices(block_device_info)
        with self.changing_power(instance, GONE):
            spawn.destroy(self._backend, instance, destroy_disks, devices)

    def reboot(self, instance: Any, network_info: Any = None, reboot_type: str = "SOFT",
               bad_volumes_callback: Callable[..., Any] | None = None) -> None:
        """SOFT falls back to hard when the guest cannot reboot cleanly."""
        with self.changing_power(instance, PowerState.RUNNING):
            power.reboot(self._backend, instance, reboot_type)

    def power_off(self, instance: Any, timeout: int = 0, retry_interval: int = 0) -> None:
        with self.changing_power(instance, PowerState.SHUTDOWN):
            power.power_off(self._backend, instance, timeout)

    def power_on(self, instance: Any) -> None:
        with self.changing_power(instance, PowerState.RUNNING):
            power.power_on(self._backend, instance)

    def suspend(self, instance: Any) -> None:
        """Suspends to disk, with the bootlock taken so nothing starts the VM meanwhile."""
        with self.changing_power(instance, PowerState.SUSPENDED):
            power.suspend(self._backend, instance)

    def resume(self, instance: Any) -> None:
        with self.changing_power(instance, PowerState.RUNNING):
            power.resume(self._backend, instance)

    def pause(self, instance: Any) -> None:
        with self.changing_power(instance, PowerState.PAUSED):
            power.pause(self._backend, instance)

    def unpause(self, instance: Any) -> None:
        with self.changing_power(instance, PowerState.RUNNING):
            power.unpause(self._backend, instance)

    def soft_delete(self, instance: Any) -> None:
        """A hard stop plus the bootlock."""
        with self.changing_power(instance, PowerState.SHUTDOWN):
            power.soft_delete(self._backend, instance)

    def restore(self, instance: Any) -> None:
        with self.changing_power(instance, UNKNOWN):
            power.restore(self._backend, instance)

    def poll_rebooting_instances(self, timeout: int, instances: Iterable[Any]) -> list[Any]:
        """Also cancels the stuck ``VM.clean_reboot`` tasks."""
        return power.poll_rebooting_instances(self._backend, timeout, list(instances))

    def set_bootable(self, instance: Any, is_bootable: bool) -> None:
        """XAPI's ``blocked_operations`` start/start_on."""
        with instance_lock(instance):
            power.set_bootable(self._backend, instance, is_bootable)

    # -- rescue (rescue.py) ---------------------------------------------------------------------

    def rescue(self, context: Any, instance: Any, network_info: Any, image_meta: Any,
               rescue_password: str | None = None) -> None:
        """The rescue VM is ``<name>-rescue``; the instance's disks are at 1 (root), 2 (swap)
        and 4+ (ephemerals)."""
        with self.changing_power(instance, UNKNOWN):
            rescue.rescue(self._backend, context, instance, network_info, image_meta,
                          rescue_password)

    def unrescue(self, instance: Any, power_on: bool = True) -> None:
        with self.changing_power(instance, UNKNOWN):
            rescue.unrescue(self._backend, instance, power_on)

    # -- snapshot (snapshot.py) -----------------------------------------------------------------

    def snapshot(self, context: Any, instance: Any, image_id: str,
                 update_task_state: Callable[..., Any]) -> None:
        """Uploads the root disk as a VHD once its chain has coalesced."""
        with instance_lock(instance):
            snapshot.snapshot(self._backend, context, instance, image_id, update_task_state)

    def post_interrupted_snapshot_cleanup(self, context: Any, instance: Any) -> None:
        with instance_lock(instance):
            snapshot.post_interrupted_snapshot_cleanup(self._backend, instance)

    # -- resize and cold migration (migrate.py) -------------------------------------------------

    def migrate_disk_and_power_off(self, context: Any, instance: Any, dest: str, flavor: Any,
                                   block_device_info: Any = None) -> Any:
        """``dest`` is a host of this pool, another pool's XAPI URL, or "" (in place): see
        :mod:`virtdriver.xen.migrate`. Volumes are detached from the ``-orig`` VM."""
        with self.changing_power(instance, UNKNOWN):
            return migrate.migrate_disk_and_power_off(self._backend, context, instance, dest,
                                                      flavor)

    def finish_migration(self, context: Any, migration: Any, instance: Any, disk_info: Any,
                         network_info: Any, image_meta: Any, resize_instance: bool = False,
                         block_device_info: Any = None, power_on: bool = True) -> None:
        """Volumes of ``block_device_info`` are attached to the new VM."""
        devices = self.block_devices(block_device_info)
        with self.changing_power(instance, UNKNOWN):
            migrate.finish_migration(self._backend, context, instance, disk_info,
                                     network_info, image_meta, resize_instance, power_on,
                                     devices)

    def confirm_migration(self, migration: Any, instance: Any, network_info: Any) -> None:
        with instance_lock(instance):
            migrate.confirm_migration(self._backend, instance)

    def finish_revert_migration(self, context: Any, instance: Any, network_info: Any = None,
                                block_device_info: Any = None, power_on: bool = True) -> None:
        """Volumes of ``block_device_info`` are attached to the original again."""
        devices = self.block_devices(block_device_info)
        with self.changing_power(instance, UNKNOWN):
            migrate.finish_revert_migration(self._backend, instance, power_on, devices)

    # -- live migration (live_migrate.py) -------------------------------------------------------

    def check_can_live_migrate_destination(self, context: Any, instance: Any,
                                           block_migration: bool = False,
                                           disk_over_commit: bool = False) -> dict[str, Any]:
        validate_instance_identity(instance)
        return live_migrate.check_can_live_migrate_destination(self._backend, instance,
                                                               block_migration)

    def check_can_live_migrate_source(self, context: Any, instance: Any,
                                      dest_check_data: dict[str, Any]) -> dict[str, Any]:
        validate_instance_identity(instance)
        return live_migrate.check_can_live_migrate_source(self._backend, instance,
                                                          dest_check_data)

    def pre_live_migration(self, context: Any, instance: Any, block_device_info: Any,
                           network_info: Any, disk_info: Any,
                           migrate_data: dict[str, Any] | None = None) -> dict[str, Any]:
        validate_instance_identity(instance)
        return live_migrate.pre_live_migration(self._backend, instance, network_info,
                                               migrate_data,
                                               self.block_devices(block_device_info))

    def live_migrate(self, context: Any, instance: Any, destination_hostname: str,
                     post_method: Callable[..., Any], recover_method: Callable[..., Any],
                     block_migration: bool = False,
                     migrate_data: dict[str, Any] | None = None) -> None:
        """``VM.pool_migrate`` within a pool, ``VM.migrate_send`` across pools."""
        with self.changing_power(instance, UNKNOWN):
            live_migrate.live_migrate(self._backend, context, instance, destination_hostname,
                                      post_method, recover_method, block_migration,
                                      migrate_data)

    def live_migration_abort(self, instance: Any) -> None:
        """Cancel a live migration in flight; no instance lock: live_migrate holds it."""
        live_migrate.live_migration_abort(self._backend, instance)

    def post_live_migration(self, context: Any, instance: Any,
                            migrate_data: dict[str, Any] | None = None) -> None:
        validate_instance_identity(instance)
        live_migrate.post_live_migration(self._backend, instance,
                                         bool((migrate_data or {}).get("block_migration")))

    def post_live_migration_at_destination(self, context: Any, instance: Any,
                                           network_info: Any, block_migration: bool = False,
                                           block_device_info: Any = None) -> None:
        """After a block migration, drops ``base_mirror`` from the VDIs' sm_config (XAPI bug
        CA-98606)."""
        validate_instance_identity(instance)
        live_migrate.post_live_migration_at_destination(self._backend, instance,
                                                        bool(block_migration))

    def rollback_live_migration_at_destination(self, instance: Any,
                                               block_device_info: Any = None) -> None:
        validate_instance_identity(instance)
        live_migrate.rollback_live_migration_at_destination(
            self._backend, instance, self.block_devices(block_device_info))

    # -- network (network.py) -------------------------------------------------------------------

    def attach_interface(self, instance: Any, image_meta: Any, vif: Any) -> None:
        with instance_lock(instance):
            network.attach_interface(self._backend, instance, vif)

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
        """Writes ``vm-data/networking/<mac>`` in xenstore (param and live)."""
        with instance_lock(instance):
            network.inject_network_info(self._backend, instance, network_info)

    def reset_network(self, instance: Any) -> None:
        """Through the guest agent."""
        with instance_lock(instance):
            network.reset_network(self._backend, instance)

    def refresh_instance_security_rules(self, instance: Any) -> None:
        """Re-applies each VIF's XAPI locking to its fixed IPs. Does not filter ports or
        protocols: XAPI has no per-VIF firewall, so security-group rules are not
        enforced here."""
        with instance_lock(instance):
            network.refresh_instance_security_rules(self._backend, instance)

    def refresh_security_group_rules(self, security_group_id: str) -> None:
        """Unsupported: XAPI enforces no security-group rules, only per-VIF address locking,
        which does not depend on the group."""
        raise self.unsupported("refresh_security_group_rules",
                               "XAPI has no security-group firewall; VIF address locking "
                               "is applied per instance")

    def unfilter_instance(self, instance: Any, network_info: Any) -> None:
        """Unlocks the VIFs (locking_mode network_default); there are no firewall rules."""
        with instance_lock(instance):
            network.unfilter_instance(self._backend, instance, network_info)

    # -- guest (guest.py) -----------------------------------------------------------------------

    def inject_file(self, instance: Any, path: str, contents: bytes | str) -> None:
        """Through the guest agent."""
        with instance_lock(instance):
            guest.inject_file(self._backend, instance, path, contents)

    def set_admin_password(self, instance: Any, new_pass: str) -> None:
        """Through the guest agent (DH key exchange, then encrypted)."""
        with instance_lock(instance):
            guest.set_admin_password(self._backend, instance, new_pass)

    def change_instance_metadata(self, instance: Any, diff: dict[str, list[Any]]) -> None:
        """Under ``vm-data/user-metadata/`` in xenstore."""
        with instance_lock(instance):
            guest.change_instance_metadata(self._backend, instance, diff)

    # -- facts (facts.py) -----------------------------------------------------------------------

    def get_info(self, instance: Any, use_cache: bool = True) -> InstanceInfo:
        validate_instance_identity(instance)
        read = lambda: facts.get_info(self._backend, instance)  # noqa: E731
        return self.power_cache.answer(instance, read) if use_cache else read()

    def list_instances(self) -> list[str]:
        """Rescue VMs excluded."""
        return facts.list_instances(self._backend)

    def list_instance_uuids(self) -> list[str]:
        return facts.list_instance_uuids(self._backend)

    def get_diagnostics(self, instance: Any) -> dict[str, Any]:
        """XAPI's data sources, flat (cpuN, vif_N_rx/tx, memory...)."""
        validate_instance_identity(instance)
        return facts.get_diagnostics(self._backend, instance)

    def get_instance_diagnostics(self, instance: Any) -> Diagnostics:
        validate_instance_identity(instance)
        return facts.get_instance_diagnostics(self._backend, instance)

    def get_all_bw_counters(self, instances: Iterable[Any]) -> list[dict[str, Any]]:
        """From the dom0 bandwidth plugin."""
        return facts.get_all_bw_counters(self._backend, list(instances))

    def get_per_instance_usage(self) -> dict[str, dict[str, Any]]:
        return facts.get_per_instance_usage(self._backend)

    def get_console_output(self, instance: Any) -> bytes:
        """From the dom0 console plugin."""
        validate_instance_identity(instance)
        return facts.get_console_output(self._backend, instance)

    def get_vnc_console(self, instance: Any) -> ConsoleInfo:
        """The rescue VM's console while rescued."""
        validate_instance_identity(instance)
        return facts.get_vnc_console(self._backend, instance)

    # -- host (host.py) -------------------------------------------------------------------------

    def manage_image_cache(self, context: Any, instances: Iterable[Any]) -> None:
        """Cached images are base VDIs on the SR."""
        host.manage_image_cache(self._backend, list(instances))

    def cache_image(self, context: Any, image_id: str) -> bool:
        """The image as a cached base VDI on the instance SR (False: it was already)."""
        return host.cache_image(self._backend, context, image_id)

    def get_datacenter_ref_and_name(self, ds_ref: Any) -> tuple[Any, str]:
        """Unsupported: XAPI has no datacenters."""
        raise self.unsupported("get_datacenter_ref_and_name", "XAPI has no datacenters")

    def check_cache_folder(self, ds_name: str, ds_ref: Any) -> None:
        """The image cache is VDIs on the SR: checks the SR exists."""
        host.check_cache_folder(self._backend, ds_name, ds_ref)

    def check_temp_folder(self, ds_name: str, ds_ref: Any) -> None:
        """Uploads stream straight into VDIs: checks the SR exists."""
        host.check_temp_folder(self._backend, ds_name, ds_ref)

    # -- volumes (volumes.py) -----------------------------------------------------------------
    # Cinder ``iscsi`` volumes, one SR per target (see :mod:`virtdriver.xen.volumes`).

    def attach_volume(self, context: Any, connection_info: Any, instance: Any,
                      mountpoint: str | None, disk_bus: str | None = None,
                      device_type: str | None = None, encryption: Any = None) -> None:
        """At ``mountpoint``'s userdevice (``/dev/xvdb`` is 1); plugged only while the VM
        runs. ``disk_bus`` is XAPI's to choose; only disks, and no host-side encryption."""
        info = self.connection_info(connection_info)
        self._check_volume_kind(device_type, encryption)
        with instance_lock(instance):
            volumes.attach_volume(self._backend, info, instance, mountpoint)

    def detach_volume(self, context: Any, connection_info: Any, instance: Any,
                      mountpoint: str | None, encryption: Any = None) -> None:
        """The guest's refusals are retried ([xenserver] num_vbd_unplug_retries); the SR is
        forgotten once no VBD uses it."""
        info = self.connection_info(connection_info)
        with instance_lock(instance):
            volumes.detach_volume(self._backend, info, instance, mountpoint)

    def swap_volume(self, context: Any, old_connection_info: Any, new_connection_info: Any,
                    instance: Any, mountpoint: str | None, resize_to: int) -> None:
        old = self.connection_info(old_connection_info)
        new = self.connection_info(new_connection_info)
        with instance_lock(instance):
            volumes.swap_volume(self._backend, old, new, instance, mountpoint)

    def extend_volume(self, context: Any, connection_info: Any, instance: Any,
                      requested_size: int) -> None:
        """Rescans the volume's SR so XAPI sees the LUN's new size."""
        info = self.connection_info(connection_info)
        with instance_lock(instance):
            volumes.extend_volume(self._backend, info, instance, requested_size)

    def get_volume_connector(self, instance: Any) -> dict[str, Any]:
        """The pool master's iSCSI initiator (its other_config ``iscsi_iqn``)."""
        return volumes.get_volume_connector(self._backend)

    def _check_volume_kind(self, device_type: str | None, encryption: Any) -> None:
        if device_type not in (None, "", "disk"):
            raise self.unsupported(f"attach_volume as device_type {device_type}",
                                   "volumes are attached as disks")
        if encryption:
            raise self.unsupported("attach_volume of an encrypted volume",
                                   "XAPI has no host-side volume encryption")


__all__ = ["XenVMOps", "CAPABILITIES"]
