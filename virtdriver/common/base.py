"""VMOps: the contract every backend fulfils.

Signatures follow Nova's virt drivers (``nova.virt.vmwareapi.vmops.VMwareVMOps`` and
``nova.virt.xenapi.vmops.VMOps``) so that a Nova-style compute service can call them
unchanged. ``context`` is passed through untouched. Arguments are duck-typed: the
dataclasses of :mod:`virtdriver.common.model`, or Nova's own objects with the same
attributes. Every error is a :mod:`virtdriver.common.exceptions` type; server references
(morefs, OpaqueRefs) never escape a backend.

Where a hypervisor truly cannot do a thing, its backend raises
:class:`UnsupportedOperation` naming the operation and backend, and ``capabilities`` says
so. Nothing is silently a no-op.
"""

from __future__ import annotations

import abc
from collections.abc import Callable, Iterable
from types import TracebackType
from typing import Any

from virtdriver.common.exceptions import UnsupportedOperation
from virtdriver.common.locks import NamedLock, instance_lock
from virtdriver.common.model import ConsoleInfo, Diagnostics, InstanceInfo
from virtdriver.common.power_cache import Changing, PowerStateCache
from virtdriver.common.progress import ProgressCallback, ProgressReporter
from virtdriver.common.stats import CallStats
from virtdriver.common.volumes import (
    BlockDevices,
    ConnectionInfo,
    parse_block_device_info,
    parse_connection_info,
    supported_volume_types,
)

__all__ = ["VMOps", "UnsupportedOperation", "DEFAULT_CAPABILITIES"]

#: Capability names and their defaults. The ``has_``/``supports_`` names are Nova's
#: ``ComputeDriver.capabilities`` keys where the meaning is the same; the operation
#: names below them say which optional operations a backend can do.
DEFAULT_CAPABILITIES: dict[str, bool] = {
    "has_imagecache": False,
    "supports_evacuate": False,
    "supports_migrate_to_same_host": False,
    "supports_attach_interface": False,
    "supports_device_tagging": False,
    "supports_multiattach": False,
    "supports_trusted_certs": False,
    "supports_pcpus": False,
    "supports_accelerators": False,
    "supports_image_type_vmdk": False,
    "supports_image_type_vhd": False,
    "supports_image_type_raw": False,
    "supports_image_type_iso": False,
    "supports_config_drive": False,
    "supports_live_migration": False,
    "supports_block_migration": False,
    "supports_rescue": False,
    "supports_pause": False,
    "supports_suspend": False,
    "supports_soft_delete": False,
    "supports_set_admin_password": False,
    "supports_inject_file": False,
    "supports_reset_network": False,
    "supports_console_output": False,
    "supports_bandwidth_counters": False,
    "supports_security_rules": False,
    # volumes: attach/detach at all, boot from a volume, swap one for another in place,
    # extend an attached one; and which Cinder driver_volume_types are attached
    # (supports_volume_type_<type>; see virtdriver.common.volumes).
    "supports_volume_attach": False,
    "supports_boot_from_volume": False,
    "supports_swap_volume": False,
    "supports_extend_volume": False,
    "supports_volume_type_vmdk": False,
    "supports_volume_type_iscsi": False,
    "supports_volume_type_vstorageobject": False,
}


class ChangingPower:
    """What :meth:`VMOps.changing_power` returns: the instance's lock around the pin of
    its outcome (pinned before the lock is released)."""

    __slots__ = ("lock", "changing")

    def __init__(self, lock: NamedLock, changing: Changing) -> None:
        self.lock = lock
        self.changing = changing

    def __enter__(self) -> None:
        self.lock.__enter__()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 traceback: TracebackType | None) -> None:
        try:
            self.changing.__exit__(exc_type, exc, traceback)
        finally:
            self.lock.__exit__(exc_type, exc, traceback)


class VMOps(abc.ABC):
    """The operations a backend performs on instances.

    A backend is built with ``Backend(conf, image_store=None, progress_callback=None)``
    (see :func:`virtdriver.load_backend`). ``conf`` is an oslo.config ``ConfigOpts`` with
    :func:`virtdriver.register_opts` applied; ``image_store`` is where images come from and
    snapshots go; ``progress_callback(instance, percent, step)`` hears every step of a long
    operation. Operations on one instance are serialized; different instances never wait
    on each other. ``stats`` counts every server call the backend makes, by method.
    """

    #: The backend's name, as registered in the ``virtdriver.backends`` entry points.
    backend_name: str = "base"
    #: What this backend can do (plain data; see DEFAULT_CAPABILITIES).
    capabilities: dict[str, bool] = DEFAULT_CAPABILITIES

    def __init__(self, conf: Any, image_store: Any = None,
                 progress_callback: ProgressCallback | None = None) -> None:
        self.conf = conf
        self.image_store = image_store
        self.progress = ProgressReporter(progress_callback)
        self.stats = CallStats()
        #: Power states pushed by the backend's event channel, while one feeds it (feed()).
        self.power_cache = PowerStateCache()

    def unsupported(self, operation: str, reason: str = "") -> UnsupportedOperation:
        """The error to raise for an operation this hypervisor cannot do."""
        return UnsupportedOperation(operation, self.backend_name, reason)

    def changing_power(self, instance: Any, outcome: Any) -> ChangingPower:
        """The instance's lock, held while an operation takes its VM to ``outcome``.

        ``outcome`` (a PowerState, ``power_cache.GONE`` or ``power_cache.UNKNOWN``) is pinned
        in :attr:`power_cache`, so a push that started before cannot contradict it. The
        instance's identity is checked before anything else (no lock taken if it is bad).
        """
        return ChangingPower(instance_lock(instance), self.power_cache.changing(instance,
                                                                                 outcome))

    def connection_info(self, value: Any) -> ConnectionInfo:
        """Cinder's ``connection_info``, checked for this backend (before any call).

        A type the backend does not attach (``capabilities`` ``supports_volume_type_*``)
        or a multi-attach volume is UnsupportedOperation naming it; a missing ``data`` key
        is InvalidInput naming the key.
        """
        return parse_connection_info(value, self.backend_name,
                                     supported_volume_types(self.capabilities))

    def block_devices(self, block_device_info: Any) -> BlockDevices:
        """The volumes of ``block_device_info``, each checked as :meth:`connection_info`
        does; empty (falsy) for None or a mapping without volumes."""
        return parse_block_device_info(block_device_info, self.backend_name,
                                       supported_volume_types(self.capabilities))

    def close(self) -> None:
        """Log out and release every server session and thread the backend holds."""

    def __enter__(self) -> VMOps:
        return self

    def __exit__(self, *exc_info: Any) -> None:
        self.close()

    # -- lifecycle ----------------------------------------------------------------------------

    @abc.abstractmethod
    def spawn(self, context: Any, instance: Any, image_meta: Any, injected_files: Any,
              admin_password: str | None, network_info: Any = None,
              block_device_info: Any = None) -> None:
        """Create the instance's VM from the image and the flavor, and power it on.

        Every input is validated before the first server call (InvalidInput). Progress is
        reported step by step. If any step fails, everything spawn made (VM, disks, files,
        networks) is undone and the error raised; a cached image may stay. An instance that
        already has a VM is InstanceExists.
        """

    @abc.abstractmethod
    def destroy(self, instance: Any, network_info: Any = None, block_device_info: Any = None,
                destroy_disks: bool = True) -> None:
        """Power off, unregister and delete the instance's VM (and disks if asked).

        Destroying an instance whose VM is already gone is a no-op, not an error. A rescue
        VM belonging to the instance is destroyed too.
        """

    @abc.abstractmethod
    def reboot(self, instance: Any, network_info: Any = None, reboot_type: str = "SOFT",
               bad_volumes_callback: Callable[..., Any] | None = None) -> None:
        """Reboot: SOFT asks the guest and falls back to HARD; HARD resets the VM."""

    @abc.abstractmethod
    def power_off(self, instance: Any, timeout: int = 0, retry_interval: int = 0) -> None:
        """Power the VM off; with ``timeout`` > 0 ask the guest to shut down first.

        The guest gets ``timeout`` seconds (checked every ``retry_interval``) before a hard
        power-off. An already stopped VM stays stopped without error.
        """

    @abc.abstractmethod
    def power_on(self, instance: Any) -> None:
        """Power the VM on; an already running VM is left running."""

    @abc.abstractmethod
    def suspend(self, instance: Any) -> None:
        """Suspend a running VM to disk."""

    @abc.abstractmethod
    def resume(self, instance: Any) -> None:
        """Resume a suspended VM."""

    @abc.abstractmethod
    def pause(self, instance: Any) -> None:
        """Pause a running VM in memory."""

    @abc.abstractmethod
    def unpause(self, instance: Any) -> None:
        """Unpause a paused VM."""

    @abc.abstractmethod
    def soft_delete(self, instance: Any) -> None:
        """Power the VM off and keep it from starting, so :meth:`restore` can undo it."""

    @abc.abstractmethod
    def restore(self, instance: Any) -> None:
        """Undo :meth:`soft_delete`: allow the VM to start again and start it."""

    @abc.abstractmethod
    def poll_rebooting_instances(self, timeout: int, instances: Iterable[Any]) -> list[Any]:
        """Find instances stuck rebooting for ``timeout`` seconds or more, and hard-reboot them.

        Returns the instances it hard-rebooted.
        """

    @abc.abstractmethod
    def set_bootable(self, instance: Any, is_bootable: bool) -> None:
        """Allow or forbid the VM to be started."""

    # -- rescue -------------------------------------------------------------------------------

    @abc.abstractmethod
    def rescue(self, context: Any, instance: Any, network_info: Any, image_meta: Any,
               rescue_password: str | None = None) -> None:
        """Boot the instance from a copy of ``image_meta`` with its own disk attached."""

    @abc.abstractmethod
    def unrescue(self, instance: Any, power_on: bool = True) -> None:
        """Leave rescue: remove the rescue disk or VM and boot from the instance's disk."""

    # -- snapshot -----------------------------------------------------------------------------

    @abc.abstractmethod
    def snapshot(self, context: Any, instance: Any, image_id: str,
                 update_task_state: Callable[..., Any]) -> None:
        """Upload the instance's root disk to the image store under ``image_id``.

        ``update_task_state(task_state=..., expected_state=...)`` is called as Nova's
        compute manager expects: ``image_pending_upload`` then ``image_uploading``. Nothing
        temporary (server snapshot, clone, temp file) is left behind, success or failure.
        """

    @abc.abstractmethod
    def post_interrupted_snapshot_cleanup(self, context: Any, instance: Any) -> None:
        """Remove whatever an interrupted snapshot left on the server."""

    # -- resize and cold migration --------------------------------------------------------------

    @abc.abstractmethod
    def migrate_disk_and_power_off(self, context: Any, instance: Any, dest: str, flavor: Any,
                                   block_device_info: Any = None) -> Any:
        """First half of a resize or cold migration: power off and move or grow the disks.

        Shrinking a disk is refused (MigrationError) before anything changes. Returns the
        ``disk_info`` that :meth:`finish_migration` needs.
        """

    @abc.abstractmethod
    def finish_migration(self, context: Any, migration: Any, instance: Any, disk_info: Any,
                         network_info: Any, image_meta: Any, resize_instance: bool = False,
                         block_device_info: Any = None, power_on: bool = True) -> None:
        """Second half: bring the instance up with its new flavor (and host)."""

    @abc.abstractmethod
    def confirm_migration(self, migration: Any, instance: Any, network_info: Any) -> None:
        """Keep the resized instance; delete what a revert would have needed."""

    @abc.abstractmethod
    def finish_revert_migration(self, context: Any, instance: Any, network_info: Any = None,
                                block_device_info: Any = None, power_on: bool = True) -> None:
        """Undo a resize: restore the old flavor, disks and location."""

    # -- live migration -----------------------------------------------------------------------

    @abc.abstractmethod
    def check_can_live_migrate_destination(self, context: Any, instance: Any,
                                           block_migration: bool = False,
                                           disk_over_commit: bool = False) -> dict[str, Any]:
        """On the destination: check it can take the instance; return the data to pass on."""

    @abc.abstractmethod
    def check_can_live_migrate_source(self, context: Any, instance: Any,
                                      dest_check_data: dict[str, Any]) -> dict[str, Any]:
        """On the source: check the instance can move there; return the migrate data."""

    @abc.abstractmethod
    def pre_live_migration(self, context: Any, instance: Any, block_device_info: Any,
                           network_info: Any, disk_info: Any,
                           migrate_data: dict[str, Any] | None = None) -> dict[str, Any]:
        """On the destination, before the move: prepare networks and storage."""

    @abc.abstractmethod
    def live_migrate(self, context: Any, instance: Any, destination_hostname: str,
                     post_method: Callable[..., Any], recover_method: Callable[..., Any],
                     block_migration: bool = False,
                     migrate_data: dict[str, Any] | None = None) -> None:
        """Move the running instance; call ``post_method`` on success, ``recover_method`` on
        failure (then re-raise)."""

    @abc.abstractmethod
    def post_live_migration(self, context: Any, instance: Any,
                            migrate_data: dict[str, Any] | None = None) -> None:
        """On the source, after the move: clean up what the source kept."""

    @abc.abstractmethod
    def post_live_migration_at_destination(self, context: Any, instance: Any, network_info: Any,
                                           block_migration: bool = False,
                                           block_device_info: Any = None) -> None:
        """On the destination, after the move: finish configuring the instance."""

    @abc.abstractmethod
    def rollback_live_migration_at_destination(self, instance: Any,
                                               block_device_info: Any = None) -> None:
        """On the destination, after a failed move: remove what pre_live_migration made."""

    # -- network ------------------------------------------------------------------------------

    @abc.abstractmethod
    def attach_interface(self, instance: Any, image_meta: Any, vif: Any) -> None:
        """Add one NIC for ``vif`` to the VM (hot-plugged when it runs)."""

    @abc.abstractmethod
    def detach_interface(self, instance: Any, vif: Any) -> None:
        """Remove the NIC of ``vif`` from the VM."""

    @abc.abstractmethod
    def plug_vifs(self, instance: Any, network_info: Any) -> None:
        """Make sure every VIF of ``network_info`` has its NIC and network."""

    @abc.abstractmethod
    def unplug_vifs(self, instance: Any, network_info: Any) -> None:
        """Unplug every VIF of ``network_info`` from the VM."""

    @abc.abstractmethod
    def inject_network_info(self, instance: Any, network_info: Any) -> None:
        """Publish the network configuration where the guest's tools read it."""

    @abc.abstractmethod
    def reset_network(self, instance: Any) -> None:
        """Ask the guest to re-read its network configuration."""

    @abc.abstractmethod
    def refresh_instance_security_rules(self, instance: Any) -> None:
        """Re-apply the instance's security rules, as far as the hypervisor enforces them."""

    @abc.abstractmethod
    def refresh_security_group_rules(self, security_group_id: str) -> None:
        """Re-apply the rules of a security group on every instance that uses it."""

    @abc.abstractmethod
    def unfilter_instance(self, instance: Any, network_info: Any) -> None:
        """Remove the instance's network filters."""

    # -- guest --------------------------------------------------------------------------------

    @abc.abstractmethod
    def inject_file(self, instance: Any, path: str, contents: bytes | str) -> None:
        """Write a file inside the running guest."""

    @abc.abstractmethod
    def set_admin_password(self, instance: Any, new_pass: str) -> None:
        """Set the guest's administrator password."""

    @abc.abstractmethod
    def change_instance_metadata(self, instance: Any, diff: dict[str, list[Any]]) -> None:
        """Apply a metadata diff (``{key: ['+', value] | ['-']}``) where the guest can read it."""

    # -- facts --------------------------------------------------------------------------------

    @abc.abstractmethod
    def get_info(self, instance: Any, use_cache: bool = True) -> InstanceInfo:
        """The instance's power state; InstanceNotFound when it has no VM.

        While the backend's event channel feeds :attr:`power_cache` (``power_cache.feed``),
        answered from the pushed states without a server call; ``use_cache=False`` (as
        Nova's) always asks the server.
        """

    @abc.abstractmethod
    def list_instances(self) -> list[str]:
        """Names (``instance.name``) of the instances whose VMs this backend manages."""

    @abc.abstractmethod
    def list_instance_uuids(self) -> list[str]:
        """UUIDs of the instances this backend manages."""

    @abc.abstractmethod
    def get_diagnostics(self, instance: Any) -> dict[str, Any]:
        """Hypervisor-specific diagnostics as a flat mapping."""

    @abc.abstractmethod
    def get_instance_diagnostics(self, instance: Any) -> Diagnostics:
        """Diagnostics in Nova's common shape."""

    @abc.abstractmethod
    def get_all_bw_counters(self, instances: Iterable[Any]) -> list[dict[str, Any]]:
        """Bandwidth counters of each NIC of the given running instances."""

    @abc.abstractmethod
    def get_per_instance_usage(self) -> dict[str, dict[str, Any]]:
        """Memory use of each running instance, keyed by instance uuid."""

    @abc.abstractmethod
    def get_console_output(self, instance: Any) -> bytes:
        """The tail of the instance's console log."""

    @abc.abstractmethod
    def get_vnc_console(self, instance: Any) -> ConsoleInfo:
        """Where the instance's graphical console can be reached."""

    # -- host ---------------------------------------------------------------------------------

    @abc.abstractmethod
    def manage_image_cache(self, context: Any, instances: Iterable[Any]) -> None:
        """Age out cached images that no instance uses any more."""

    @abc.abstractmethod
    def get_datacenter_ref_and_name(self, ds_ref: Any) -> tuple[Any, str]:
        """The datacenter that holds a datastore (VMware)."""

    @abc.abstractmethod
    def check_cache_folder(self, ds_name: str, ds_ref: Any) -> None:
        """Make sure the image-cache folder exists on the datastore or SR."""

    @abc.abstractmethod
    def check_temp_folder(self, ds_name: str, ds_ref: Any) -> None:
        """Make sure the temporary folder for uploads exists on the datastore or SR."""

    # -- volumes ------------------------------------------------------------------------------
    #
    # ``connection_info`` is Cinder's (``driver_volume_type``, ``data``, ``serial``), checked by
    # :meth:`connection_info` before any server call. A volume is never deleted by a
    # backend: its storage belongs to the volume service. ``block_device_info`` volumes are
    # honoured by spawn (boot from volume: no image is copied), destroy (volumes detached
    # first, whatever ``destroy_disks`` says), power operations, rescue, resize and cold
    # migration, and live migration.

    @abc.abstractmethod
    def attach_volume(self, context: Any, connection_info: Any, instance: Any,
                      mountpoint: str | None, disk_bus: str | None = None,
                      device_type: str | None = None, encryption: Any = None) -> None:
        """Attach the volume to the instance's VM, running or stopped.

        A failed attach leaves the VM as it was and the volume untouched. A volume already
        attached to the instance is InvalidInput. A bus that cannot take a disk in the VM's
        power state (IDE while running) is InstanceInvalidState, before any change.
        """

    @abc.abstractmethod
    def detach_volume(self, context: Any, connection_info: Any, instance: Any,
                      mountpoint: str | None, encryption: Any = None) -> None:
        """Detach the volume from the instance's VM, keeping the volume's data.

        A volume that is not attached (already detached, or its storage gone) is
        VolumeNotFound, which a caller may treat as done.
        """

    @abc.abstractmethod
    def swap_volume(self, context: Any, old_connection_info: Any, new_connection_info: Any,
                    instance: Any, mountpoint: str | None, resize_to: int) -> None:
        """Replace an attached volume by another in the same slot.

        The guest sees the new volume where the old one was; the old one is detached and
        kept. If the new one cannot be attached, the old one is attached again in its
        slot and the error raised. ``resize_to`` (GiB, 0 for no change) is the new
        volume's size, which the volume service has already applied.
        """

    @abc.abstractmethod
    def extend_volume(self, context: Any, connection_info: Any, instance: Any,
                      requested_size: int) -> None:
        """Make the hypervisor see an attached volume's new size (``requested_size`` bytes).

        The volume service has grown the volume already; shrinking is InvalidInput.
        """

    @abc.abstractmethod
    def get_volume_connector(self, instance: Any) -> dict[str, Any]:
        """What the volume service needs to connect a volume to this instance's host.

        Keys ``ip`` (``my_block_storage_ip`` when configured), ``host`` and ``initiator``
        (an iSCSI IQN or None), plus the backend's own (VMware: ``instance``, the VM's
        moref value, when the VM exists). ``instance`` may be a plain dict without a uuid.
        """
