"""XenVMOps: every operation of the VMOps contract on XAPI.

A reader reaches any operation in one hop from here: lifecycle, spawn and rescue and
snapshot live in this module as lists of steps; disks, VIFs, the guest agent, facts and
migration are in the helper modules beside it. Every server call goes through
:class:`~virtdriver.xen.session.XenAPISession`; XAPI faults never escape as XenAPI types.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from typing import Any

from virtdriver.common import exceptions as exc
from virtdriver.common.base import DEFAULT_CAPABILITIES, VMOps
from virtdriver.common.locks import instance_lock
from virtdriver.common.model import (
    ConsoleInfo,
    Diagnostics,
    InstanceInfo,
    field_of,
    validate_instance_identity,
    validate_vifs,
)
from virtdriver.common.progress import Rollback, make_step_decorator
from virtdriver.xen import disks, facts, guest, migrate, vm_utils
from virtdriver.xen.agent import GuestAgent
from virtdriver.xen.build import SpawnPlan, VMBuilder
from virtdriver.xen.session import XenAPISession, is_handle_invalid

LOG = logging.getLogger(__name__)

#: What this backend does; the rest stays False: vmdk/qcow2/iso root images (XAPI imports
#: raw and VHD), evacuate, device tagging, multi-attach volumes, trusted certificates, PCPUs
#: and accelerators.
CAPABILITIES = {**DEFAULT_CAPABILITIES, **dict.fromkeys((
    "has_imagecache", "supports_migrate_to_same_host", "supports_attach_interface",
    "supports_image_type_raw",
    "supports_image_type_vhd", "supports_config_drive", "supports_live_migration",
    "supports_block_migration", "supports_rescue", "supports_pause", "supports_suspend",
    "supports_soft_delete", "supports_set_admin_password", "supports_inject_file",
    "supports_reset_network", "supports_console_output", "supports_bandwidth_counters",
    "supports_security_rules"), True)}


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
        if session is None:
            session = XenAPISession.from_conf(conf, stats=self.stats)
        else:
            self.stats = session.stats
        self.session = session
        self.xen = conf.xenserver
        self.builder = VMBuilder(self)
        self._vm_refs: dict[str, str] = {}

    def close(self) -> None:
        """Log every XAPI session out."""
        self.session.close()

    # -- lookups ----------------------------------------------------------------------------

    def _lookup(self, instance: Any, name_label: str | None = None) -> str | None:
        """The VM ref of ``instance`` (one call, then cached), or None."""
        uuid = str(field_of(instance, "uuid"))
        name = name_label or field_of(instance, "name")
        key = f"{uuid}/{name}"
        if key in self._vm_refs:
            return self._vm_refs[key]
        found = vm_utils.find_vm(self.session, name, uuid)
        if found is None:
            return None
        self._vm_refs[key] = found[0]
        return found[0]

    def forget_vm(self, instance: Any, name_label: str | None = None) -> None:
        """Drop the cached VM ref of ``instance`` (or of its VM called ``name_label``)."""
        name = name_label or field_of(instance, "name")
        self._vm_refs.pop(f"{field_of(instance, 'uuid')}/{name}", None)

    def remember_vm(self, instance: Any, vm_ref: str, name_label: str | None = None) -> None:
        """Cache ``vm_ref`` as the VM of ``instance`` (or its VM called ``name_label``)."""
        name = name_label or field_of(instance, "name")
        self._vm_refs[f"{field_of(instance, 'uuid')}/{name}"] = vm_ref

    def vm_ref_of(self, instance: Any) -> str:
        """The VM ref of ``instance``; InstanceNotFound when it has none."""
        validate_instance_identity(instance)
        ref = self._lookup(instance)
        if ref is None:
            raise exc.InstanceNotFound(str(field_of(instance, "uuid")))
        return ref

    def _on_vm(self, instance: Any, action: Callable[[str], Any]) -> Any:
        """Run ``action(vm_ref)``; a VM that vanished since it was cached is InstanceNotFound
        after one fresh lookup."""
        ref = self.vm_ref_of(instance)
        try:
            return action(ref)
        except exc.BackendError as error:
            if not (is_handle_invalid(error, "VM") and ref in error.params):
                raise
        self.forget_vm(instance)
        ref = self.vm_ref_of(instance)
        try:
            return action(ref)
        except exc.BackendError as error:
            if is_handle_invalid(error, "VM") and ref in error.params:
                self.forget_vm(instance)
                raise exc.InstanceNotFound(str(field_of(instance, "uuid"))) from error
            raise

    def vm_power_state(self, vm_ref: str) -> str:
        """The VM's XAPI power state, lower case (``halted``, ``running``...)."""
        return str(self.session.call("VM.get_power_state", vm_ref)).lower()

    # -- spawn ------------------------------------------------------------------------------

    def spawn(self, context: Any, instance: Any, image_meta: Any, injected_files: Any,
              admin_password: str | None, network_info: Any = None,
              block_device_info: Any = None) -> None:
        """Create the instance's VM from the image and flavor and boot it.

        Steps (each reports progress): validate, create disks (cached image clone, ephemeral,
        swap), create the VM record (instance data in its xenstore_data), attach devices
        (VBDs and config drive), set up VIFs, boot, configure through the guest agent when
        the image has one or files or a password were asked for. A failure undoes every
        finished step and re-raises. Volumes (``block_device_mapping``) are
        not supported: there is no volume service behind this backend.
        """
        if field_of(block_device_info or {}, "block_device_mapping"):
            raise self.unsupported("spawn with volumes", "block_device_mapping is not "
                                                         "supported on Xen")
        with instance_lock(instance):
            plan = self.builder.plan(instance, image_meta, injected_files, admin_password,
                                     network_info)
            step = make_step_decorator(context, instance, self.progress)
            self._spawn_steps(context, plan, step, name_label=field_of(instance, "name"))

    def _spawn_steps(self, context: Any, plan: SpawnPlan, step: Callable[..., Any],
                     name_label: str, rescue_of: str | None = None) -> str:
        """Run spawn's steps on ``plan``; returns the new VM ref (shared with rescue)."""
        b = self.builder
        check_no_vm = step(b.check_no_vm)
        create_disks = step(b.create_disks)
        create_vm_record = step(b.create_vm_record)
        attach_devices = step(b.attach_devices)
        setup_network = step(b.setup_network)
        boot_instance = step(b.boot_instance)
        configure_booted_instance = step(b.configure_booted_instance)
        with Rollback(f"spawn of {field_of(plan.instance, 'name')}") as undo:
            check_no_vm(plan, name_label)
            create_disks(context, plan, undo)
            vm_ref = create_vm_record(plan, name_label, undo, rescue_of)
            attach_devices(plan, vm_ref, undo, rescue_of)
            setup_network(plan, vm_ref, undo)
            boot_instance(vm_ref, undo)
            configure_booted_instance(plan, vm_ref)
        self.remember_vm(plan.instance, vm_ref, name_label)
        return vm_ref

    # -- destroy ----------------------------------------------------------------------------

    def destroy(self, instance: Any, network_info: Any = None, block_device_info: Any = None,
                destroy_disks: bool = True) -> None:
        """Delete the instance's VM, its rescue VM, the VM a resize kept for a revert, and
        (if asked) their disks.

        A VM already gone is a no-op; cached images are never deleted.
        """
        validate_instance_identity(instance)
        with instance_lock(instance):
            name = field_of(instance, "name")
            vm_ref = self._lookup(instance)
            rescue_name, orig_name = name + vm_utils.RESCUE_SUFFIX, name + vm_utils.ORIG_SUFFIX
            companions = vm_utils.find_vms(self.session, [rescue_name, orig_name],
                                           str(field_of(instance, "uuid")))
            rescue = companions.get(rescue_name)
            if rescue is not None:
                # The rescue VM has the instance's disks attached: those go with the
                # instance's VM below (or stay, if destroy_disks is False).
                keep: set[str] = set()
                if vm_ref is not None:
                    keep = {vdi for _, vdi in disks.instance_vdis(self.session,
                                                                   vm_ref).values()}
                vm_utils.destroy_vm(self.session, rescue[0], keep_vdis=keep)
            if vm_ref is not None:
                vm_utils.destroy_vm(self.session, vm_ref, destroy_disks=destroy_disks)
            if orig_name in companions:  # deleted mid-resize: nothing is left to revert to
                orig_ref = companions[orig_name][0]
                copies = migrate.unattached_copies(self.session, orig_ref) \
                    if destroy_disks else []
                vm_utils.destroy_vm(self.session, orig_ref, destroy_disks=destroy_disks)
                for copy in copies:
                    vm_utils.destroy_vdi(self.session, copy)
            self.forget_vm(instance)
            self.forget_vm(instance, rescue_name)
            self.forget_vm(instance, orig_name)

    # -- power ------------------------------------------------------------------------------

    def reboot(self, instance: Any, network_info: Any = None, reboot_type: str = "SOFT",
               bad_volumes_callback: Callable[..., Any] | None = None) -> None:
        """SOFT: ``VM.clean_reboot``, falling back to hard when the guest cannot; HARD:
        ``VM.hard_reboot``. A halted VM is started."""
        if reboot_type not in ("SOFT", "HARD"):
            raise exc.InvalidInput("reboot_type", reboot_type, "must be SOFT or HARD")

        def do(vm_ref: str) -> None:
            try:
                if reboot_type == "SOFT":
                    try:
                        self.session.call_async("VM.clean_reboot", vm_ref,
                                                timeout=self.xen.running_timeout)
                        return
                    except exc.BackendError as error:
                        if error.code not in ("VM_MISSING_PV_DRIVERS", "VM_LACKS_FEATURE",
                                              "TASK_TIMEOUT", "TASK_CANCELLED"):
                            raise
                        LOG.info("clean reboot of %s failed (%s); rebooting hard",
                                 field_of(instance, "name"), error.code)
                self.session.call_async("VM.hard_reboot", vm_ref)
            except exc.BackendError as error:
                if error.code == "VM_BAD_POWER_STATE" and error.params[-1:] == ("halted",):
                    vm_utils.start(self.session, vm_ref)
                    return
                raise

        with instance_lock(instance):
            self._on_vm(instance, do)

    def power_off(self, instance: Any, timeout: int = 0, retry_interval: int = 0) -> None:
        """Halt the VM: a clean shutdown within ``timeout`` seconds first if > 0, then hard."""

        def do(vm_ref: str) -> None:
            if self.vm_power_state(vm_ref) == "halted":
                return
            if timeout > 0 and vm_utils.clean_shutdown(self.session, vm_ref, float(timeout)):
                return
            vm_utils.hard_shutdown(self.session, vm_ref)

        with instance_lock(instance):
            self._on_vm(instance, do)

    def power_on(self, instance: Any) -> None:
        """Start a halted VM, resume a suspended one, unpause a paused one."""

        def do(vm_ref: str) -> None:
            state = self.vm_power_state(vm_ref)
            if state == "halted":
                vm_utils.start(self.session, vm_ref)
            elif state == "suspended":
                self.session.call_async("VM.resume", vm_ref, False, False)
            elif state == "paused":
                self.session.call("VM.unpause", vm_ref)

        with instance_lock(instance):
            self._on_vm(instance, do)

    def suspend(self, instance: Any) -> None:
        """Take the bootlock, then suspend to disk (the lock is released if suspend fails)."""

        def do(vm_ref: str) -> None:
            vm_utils.set_bootlock(self.session, vm_ref, True)
            try:
                self.session.call_async("VM.suspend", vm_ref)
            except BaseException:
                vm_utils.set_bootlock(self.session, vm_ref, False)
                raise

        with instance_lock(instance):
            self._on_vm(instance, do)

    def resume(self, instance: Any) -> None:
        """Release the bootlock and resume from disk."""

        def do(vm_ref: str) -> None:
            vm_utils.set_bootlock(self.session, vm_ref, False)
            self.session.call_async("VM.resume", vm_ref, False, True)

        with instance_lock(instance):
            self._on_vm(instance, do)

    def pause(self, instance: Any) -> None:
        """Pause the VM in memory."""
        with instance_lock(instance):
            self._on_vm(instance, lambda ref: self.session.call("VM.pause", ref))

    def unpause(self, instance: Any) -> None:
        """Unpause the VM."""
        with instance_lock(instance):
            self._on_vm(instance, lambda ref: self.session.call("VM.unpause", ref))

    def soft_delete(self, instance: Any) -> None:
        """Hard-stop the VM and take the bootlock so :meth:`restore` can undo it."""

        def do(vm_ref: str) -> None:
            vm_utils.hard_shutdown(self.session, vm_ref)
            vm_utils.set_bootlock(self.session, vm_ref, True)

        with instance_lock(instance):
            self._on_vm(instance, do)

    def restore(self, instance: Any) -> None:
        """Release the bootlock and start the VM."""

        def do(vm_ref: str) -> None:
            vm_utils.set_bootlock(self.session, vm_ref, False)
            if self.vm_power_state(vm_ref) == "halted":
                vm_utils.start(self.session, vm_ref)

        with instance_lock(instance):
            self._on_vm(instance, do)

    def set_bootable(self, instance: Any, is_bootable: bool) -> None:
        """Allow or forbid starting the VM (``blocked_operations`` start/start_on)."""
        with instance_lock(instance):
            self._on_vm(instance, lambda ref: vm_utils.set_bootlock(self.session, ref,
                                                                    not is_bootable))

    def poll_rebooting_instances(self, timeout: int, instances: Iterable[Any]) -> list[Any]:
        """Cancel clean-reboot tasks older than ``timeout`` s and hard-reboot their VMs."""
        return facts.poll_rebooting_instances(self, timeout, list(instances))

    # -- rescue -----------------------------------------------------------------------------

    def rescue(self, context: Any, instance: Any, network_info: Any, image_meta: Any,
               rescue_password: str | None = None) -> None:
        """Shut the instance down, bootlock it, boot ``<name>-rescue`` from ``image_meta``
        with the instance's disks attached (root at 1, swap 2, ephemerals 4+)."""
        with instance_lock(instance):
            plan = self.builder.plan(instance, image_meta, [], rescue_password, network_info,
                                     rescue=True)
            vm_ref = self.vm_ref_of(instance)
            rescue_name = field_of(instance, "name") + vm_utils.RESCUE_SUFFIX
            if vm_utils.find_vm(self.session, rescue_name, plan.uuid) is not None:
                raise exc.InstanceInvalidState(plan.uuid, "rescue", "already rescued")
            step = make_step_decorator(context, instance, self.progress)
            shutdown_instance = step(self.builder.shutdown_for_rescue)
            bootlock_instance = step(self.builder.bootlock_for_rescue)
            spawn_rescue = step(self._spawn_rescue)
            with Rollback(f"rescue of {plan.uuid}") as undo:
                shutdown_instance(vm_ref, undo)
                bootlock_instance(vm_ref, undo)
                spawn_rescue(context, plan, vm_ref, rescue_name)

    def _spawn_rescue(self, context: Any, plan: SpawnPlan, vm_ref: str,
                      rescue_name: str) -> None:
        plan.original_disks = disks.instance_vdis(self.session, vm_ref)
        self._spawn_steps(context, plan, lambda fn: fn, rescue_name, rescue_of=vm_ref)

    def unrescue(self, instance: Any, power_on: bool = True) -> None:
        """Destroy the rescue VM (keeping the instance's disks), release the bootlock and
        start the instance."""
        with instance_lock(instance):
            uuid = str(field_of(instance, "uuid"))
            vm_ref = self.vm_ref_of(instance)
            rescue_name = field_of(instance, "name") + vm_utils.RESCUE_SUFFIX
            found = vm_utils.find_vm(self.session, rescue_name, uuid)
            if found is None:
                raise exc.InstanceNotInRescueMode(uuid)
            step = make_step_decorator(None, instance, self.progress)
            destroy_rescue_vm = step(self.builder.destroy_rescue_vm)
            release_bootlock = step(self.builder.release_bootlock)
            start_instance = step(self.builder.start_after_rescue)
            destroy_rescue_vm(vm_ref, found[0])
            self.forget_vm(instance, rescue_name)
            release_bootlock(vm_ref)
            start_instance(vm_ref, power_on)

    # -- snapshot ---------------------------------------------------------------------------

    def snapshot(self, context: Any, instance: Any, image_id: str,
                 update_task_state: Callable[..., Any]) -> None:
        """XAPI snapshot of the root disk, wait for the VHD chain to coalesce, upload the
        disk to the image store under ``image_id``; the snapshot is removed in every case."""
        with instance_lock(instance):
            guest.snapshot(self, context, instance, image_id, update_task_state)

    def post_interrupted_snapshot_cleanup(self, context: Any, instance: Any) -> None:
        """Delete snapshot VDIs of the root disk that an interrupted snapshot left."""
        with instance_lock(instance):
            guest.post_interrupted_snapshot_cleanup(self, instance)

    # -- resize and migration (migrate.py) ----------------------------------------------------

    def migrate_disk_and_power_off(self, context: Any, instance: Any, dest: str, flavor: Any,
                                   block_device_info: Any = None) -> Any:
        """Source side of a resize or cold migration: see :mod:`virtdriver.xen.migrate`."""
        with instance_lock(instance):
            return migrate.migrate_disk_and_power_off(self, context, instance, dest, flavor)

    def finish_migration(self, context: Any, migration: Any, instance: Any, disk_info: Any,
                         network_info: Any, image_meta: Any, resize_instance: bool = False,
                         block_device_info: Any = None, power_on: bool = True) -> None:
        """Destination side: build the VM around the moved disks."""
        with instance_lock(instance):
            migrate.finish_migration(self, context, instance, disk_info, network_info,
                                     image_meta, resize_instance, power_on)

    def confirm_migration(self, migration: Any, instance: Any, network_info: Any) -> None:
        """Destroy the ``<name>-orig`` VM the source kept for a revert."""
        with instance_lock(instance):
            migrate.confirm_migration(self, instance)

    def finish_revert_migration(self, context: Any, instance: Any, network_info: Any = None,
                                block_device_info: Any = None, power_on: bool = True) -> None:
        """Destroy the new VM (if here), rename ``<name>-orig`` back and start it."""
        with instance_lock(instance):
            migrate.finish_revert_migration(self, instance, power_on)

    def check_can_live_migrate_destination(self, context: Any, instance: Any,
                                           block_migration: bool = False,
                                           disk_over_commit: bool = False) -> dict[str, Any]:
        """On the destination: host, SR, network and (block migration) migrate_receive."""
        return migrate.check_can_live_migrate_destination(self, instance, block_migration)

    def check_can_live_migrate_source(self, context: Any, instance: Any,
                                      dest_check_data: dict[str, Any]) -> dict[str, Any]:
        """On the source: ``VM.assert_can_migrate`` for block migration, same pool otherwise."""
        return migrate.check_can_live_migrate_source(self, instance, dest_check_data)

    def pre_live_migration(self, context: Any, instance: Any, block_device_info: Any,
                           network_info: Any, disk_info: Any,
                           migrate_data: dict[str, Any] | None = None) -> dict[str, Any]:
        """On the destination: check the VIFs' networks exist; nothing else to prepare."""
        return migrate.pre_live_migration(self, instance, network_info, migrate_data)

    def live_migrate(self, context: Any, instance: Any, destination_hostname: str,
                     post_method: Callable[..., Any], recover_method: Callable[..., Any],
                     block_migration: bool = False,
                     migrate_data: dict[str, Any] | None = None) -> None:
        """``VM.pool_migrate`` within a pool, ``VM.migrate_send`` across pools."""
        with instance_lock(instance):
            migrate.live_migrate(self, context, instance, destination_hostname, post_method,
                                 recover_method, block_migration, migrate_data)

    def post_live_migration(self, context: Any, instance: Any,
                            migrate_data: dict[str, Any] | None = None) -> None:
        """On the source: forget the cached VM ref (the VM lives elsewhere now)."""
        self.forget_vm(instance)

    def post_live_migration_at_destination(self, context: Any, instance: Any,
                                           network_info: Any, block_migration: bool = False,
                                           block_device_info: Any = None) -> None:
        """On the destination: drop ``base_mirror`` from the VDIs' sm_config (CA-98606)."""
        migrate.post_live_migration_at_destination(self, instance)

    def rollback_live_migration_at_destination(self, instance: Any,
                                               block_device_info: Any = None) -> None:
        """On the destination after a failed move: remove a half-arrived VM, if any."""
        migrate.rollback_live_migration_at_destination(self, instance)

    # -- network (vif.py) -----------------------------------------------------------------------

    def plug_vifs(self, instance: Any, network_info: Any) -> None:
        """Create (and hot-plug, when running) a VIF for every VIF the VM lacks."""
        with instance_lock(instance):
            guest.plug_vifs(self, instance, validate_vifs(network_info))

    def unplug_vifs(self, instance: Any, network_info: Any) -> None:
        """Unplug and delete the VM's VIFs of ``network_info`` (by MAC)."""
        with instance_lock(instance):
            guest.unplug_vifs(self, instance, validate_vifs(network_info))

    def attach_interface(self, instance: Any, image_meta: Any, vif: Any) -> None:
        """Add one VIF (hot-plugged when the VM runs)."""
        with instance_lock(instance):
            guest.plug_vifs(self, instance, validate_vifs([vif]))

    def detach_interface(self, instance: Any, vif: Any) -> None:
        """Remove one VIF; InvalidInput when the VM has no VIF with that MAC."""
        with instance_lock(instance):
            guest.unplug_vifs(self, instance, validate_vifs([vif]), strict=True)

    def inject_network_info(self, instance: Any, network_info: Any) -> None:
        """Write ``vm-data/networking/<mac>`` per VIF in xenstore (param and live)."""
        with instance_lock(instance):
            guest.inject_network_info(self, instance, validate_vifs(network_info))

    def reset_network(self, instance: Any) -> None:
        """Ask the guest agent to re-read its network configuration."""
        with instance_lock(instance):
            self._agent(instance).reset_network()

    def refresh_instance_security_rules(self, instance: Any) -> None:
        """Re-apply each VIF's XAPI locking (locked to its fixed IPs, from the VIF's
        other_config record of them). Does not filter ports or protocols: XAPI has no
        per-VIF firewall; security-group ingress/egress rules are not enforced here."""
        with instance_lock(instance):
            guest.refresh_locking(self, instance)

    def refresh_security_group_rules(self, security_group_id: str) -> None:
        """Nothing to re-apply: XAPI enforces no security-group rules, only per-VIF address
        locking, which does not depend on the group. Raises UnsupportedOperation so callers
        know group rules are not enforced."""
        raise self.unsupported("refresh_security_group_rules",
                               "XAPI has no security-group firewall; VIF address locking "
                               "is applied per instance")

    def unfilter_instance(self, instance: Any, network_info: Any) -> None:
        """Unlock every VIF of ``network_info`` (locking_mode network_default, no allowed
        addresses). Does not remove firewall rules: there are none on XAPI."""
        with instance_lock(instance):
            guest.unlock_vifs(self, instance, validate_vifs(network_info))

    # -- guest agent ----------------------------------------------------------------------------

    def _agent(self, instance: Any, operation: str = "guest agent") -> GuestAgent:
        if self.xen.disable_agent:
            raise self.unsupported(operation, "the guest agent is disabled "
                                              "([xenserver] disable_agent)")
        return GuestAgent(self.session, self.vm_ref_of(instance), str(field_of(instance, "uuid")),
                          self.xen.agent_timeout, self.xen.agent_resetnetwork_timeout)

    def inject_file(self, instance: Any, path: str, contents: bytes | str) -> None:
        """Write a file in the guest through the agent."""
        if not isinstance(path, str) or not path.startswith("/"):
            raise exc.InvalidInput("path", path, "must be an absolute path")
        with instance_lock(instance):
            self._agent(instance, "inject_file").inject_file(path, contents)

    def set_admin_password(self, instance: Any, new_pass: str) -> None:
        """Set the guest's password through the agent (DH key exchange, then encrypted)."""
        if not isinstance(new_pass, str) or not new_pass:
            raise exc.InvalidInput("new_pass", "<hidden>", "must be a non-empty string")
        with instance_lock(instance):
            self._agent(instance, "set_admin_password").set_password(new_pass)

    def change_instance_metadata(self, instance: Any, diff: dict[str, list[Any]]) -> None:
        """Apply ``{key: ['+', value] | ['-']}`` under ``vm-data/user-metadata/``."""
        with instance_lock(instance):
            guest.change_instance_metadata(self, instance, diff)

    # -- facts (facts.py) -----------------------------------------------------------------------

    def get_info(self, instance: Any) -> InstanceInfo:
        """The VM's power state (one call once the VM ref is cached)."""
        validate_instance_identity(instance)
        key = f"{field_of(instance, 'uuid')}/{field_of(instance, 'name')}"
        if key not in self._vm_refs:
            found = vm_utils.find_vm(self.session, field_of(instance, "name"),
                                     str(field_of(instance, "uuid")))
            if found is None:
                raise exc.InstanceNotFound(str(field_of(instance, "uuid")))
            self._vm_refs[key] = found[0]
            return InstanceInfo(vm_utils.power_state_of(found[1]["power_state"]))
        state = self._on_vm(instance, self.vm_power_state)
        return InstanceInfo(vm_utils.power_state_of(state))

    def list_instances(self) -> list[str]:
        """Names of every instance VM in the pool (rescue VMs excluded), in one call."""
        return sorted(rec["name_label"] for rec in vm_utils.managed_vms(self.session).values()
                      if not (rec.get("other_config") or {}).get("nova_rescue"))

    def list_instance_uuids(self) -> list[str]:
        """Instance uuids of every instance VM in the pool, in one call."""
        return sorted({rec["other_config"]["nova_uuid"]
                       for rec in vm_utils.managed_vms(self.session).values()})

    def get_diagnostics(self, instance: Any) -> dict[str, Any]:
        """Flat diagnostics from XAPI's data sources (cpuN, vif_N_rx/tx, memory...)."""
        return self._on_vm(instance, lambda ref: facts.get_diagnostics(self.session, ref))

    def get_instance_diagnostics(self, instance: Any) -> Diagnostics:
        """Diagnostics in Nova's common shape."""
        return self._on_vm(instance,
                           lambda ref: facts.get_instance_diagnostics(self.session, ref,
                                                                      instance))

    def get_all_bw_counters(self, instances: Iterable[Any]) -> list[dict[str, Any]]:
        """Per-VIF byte counters of the given running instances (bandwidth plugin)."""
        return facts.get_all_bw_counters(self, list(instances))

    def get_per_instance_usage(self) -> dict[str, dict[str, Any]]:
        """Memory of each running or paused instance VM, by uuid, in one call."""
        return facts.get_per_instance_usage(self.session)

    def get_console_output(self, instance: Any) -> bytes:
        """The tail of the VM's console log (console plugin)."""
        return self._on_vm(instance, lambda ref: facts.get_console_output(self.session, ref))

    def get_vnc_console(self, instance: Any) -> ConsoleInfo:
        """The RFB console of the VM (the rescue VM while rescued)."""
        validate_instance_identity(instance)
        rescue = vm_utils.find_vm(self.session,
                                  field_of(instance, "name") + vm_utils.RESCUE_SUFFIX,
                                  str(field_of(instance, "uuid")))
        vm_ref = rescue[0] if rescue else self.vm_ref_of(instance)
        return facts.get_vnc_console(self.session, vm_ref, str(field_of(instance, "uuid")))

    # -- host -----------------------------------------------------------------------------------

    def manage_image_cache(self, context: Any, instances: Iterable[Any]) -> None:
        """Delete cached base VDIs of images no given instance uses, once they are older
        than ``remove_unused_original_minimum_age_seconds`` (if remove_unused_base_images)."""
        facts.manage_image_cache(self, list(instances))

    def get_datacenter_ref_and_name(self, ds_ref: Any) -> tuple[Any, str]:
        """VMware only: XAPI has no datacenters."""
        raise self.unsupported("get_datacenter_ref_and_name", "XAPI has no datacenters")

    def check_cache_folder(self, ds_name: str, ds_ref: Any) -> None:
        """The image cache is VDIs on the SR, not a folder: check the SR exists."""
        facts.check_sr(self, ds_ref)

    def check_temp_folder(self, ds_name: str, ds_ref: Any) -> None:
        """Uploads stream straight into VDIs, so there is no temp folder: check the SR."""
        facts.check_sr(self, ds_ref)


__all__ = ["XenVMOps", "CAPABILITIES"]
