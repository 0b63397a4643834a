"""Spawn and destroy: spawn as its list of steps (each in :mod:`~virtdriver.xen.build`) under
one rollback, destroy as the removal of every VM an instance may have.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from oslo_log import log as logging

from virtdriver.common import exceptions as exc
from virtdriver.common.model import field_of
from virtdriver.common.progress import Rollback, make_step_decorator
from virtdriver.common.volumes import BlockDevices
from virtdriver.xen import build, disks, migrate, vm_utils, volume_utils, volumes
from virtdriver.xen.backend import XenBackend
from virtdriver.xen.build import SpawnPlan
from virtdriver.xen.session import is_handle_invalid

LOG = logging.getLogger(__name__)
#: Nova's task state while a resize is reverted.
RESIZE_REVERTING = "resize_reverting"


def spawn(backend: XenBackend, context: Any, instance: Any, image_meta: Any,
          injected_files: Any, admin_password: str | None, network_info: Any,
          block_devices: BlockDevices) -> None:
    """Validate, then create disks (cached image clone, ephemeral, swap), the VM record
    (instance data in its xenstore_data), its devices (VBDs, volumes with their targets
    connected, config drive) and VIFs, boot, and configure through the guest agent when the
    image has one or files or a password were asked for. With a boot volume the root disk
    is the volume (userdevice 0, bootable): no image is cached or copied. A failure undoes
    every finished step (volumes detached, their SRs forgotten, never deleted) and
    re-raises.
    """
    plan = build.plan(backend, instance, image_meta, injected_files, admin_password,
                      network_info, block_devices=block_devices)
    step = make_step_decorator(context, instance, backend.progress)
    run_steps(backend, context, plan, step, name_label=field_of(instance, "name"))


def run_steps(backend: XenBackend, context: Any, plan: SpawnPlan, step: Callable[..., Any],
              name_label: str, rescue_of: str | None = None) -> str:
    """Run spawn's steps on ``plan`` (shared with rescue); returns the new VM ref."""
    check_no_vm = step(build.check_no_vm)
    create_disks = step(build.create_disks)
    create_vm_record = step(build.create_vm_record)
    attach_devices = step(build.attach_devices)
    setup_network = step(build.setup_network)
    boot_instance = step(build.boot_instance)
    configure_booted_instance = step(build.configure_booted_instance)
    with Rollback(f"spawn of {field_of(plan.instance, 'name')}") as undo:
        check_no_vm(backend, plan, name_label)
        create_disks(backend, context, plan, undo)
        vm_ref = create_vm_record(backend, plan, name_label, undo, rescue_of)
        attach_devices(backend, plan, vm_ref, undo, rescue_of)
        setup_network(backend, plan, vm_ref, undo)
        boot_instance(backend, vm_ref, undo)
        configure_booted_instance(backend, plan, vm_ref)
    backend.remember_vm(plan.instance, vm_ref, name_label)
    LOG.info("spawned VM %s", name_label, instance=plan.instance)
    return vm_ref


def destroy(backend: XenBackend, instance: Any, destroy_disks: bool,
            block_devices: BlockDevices) -> None:
    """Delete the instance's VM, its rescue VM and the VM a resize kept for a revert (and,
    if asked, their disks). A VM already gone is a no-op; cached images are never deleted.

    Volumes are detached first and never deleted, whatever ``destroy_disks`` says; an SR
    no VBD uses any more is forgotten (also for the volumes of ``block_devices`` when the
    VM is gone already).

    During a revert (``task_state`` ``resize_reverting``: Nova destroys the resized VM on
    the destination before finish_revert_migration runs on the source) the ``-orig`` VM is
    what the revert needs, so it stays, even when both are in this pool.
    """
    session = backend.session
    name = field_of(instance, "name")
    vm_ref = backend.lookup(instance)
    rescue_name, orig_name = name + vm_utils.RESCUE_SUFFIX, name + vm_utils.ORIG_SUFFIX
    companions = vm_utils.find_vms(session, [rescue_name, orig_name],
                                   str(field_of(instance, "uuid")))
    rescue = companions.get(rescue_name)
    if rescue is not None:
        # The rescue VM has the instance's disks attached: those go with the instance's VM
        # below (or stay, if destroy_disks is False).
        keep: set[str] = set()
        if vm_ref is not None:
            keep = {vdi for _, vdi in disks.instance_vdis(session, vm_ref).values()}
        vm_utils.destroy_vm(session, rescue[0], keep_vdis=keep)
    if vm_ref is not None:
        _destroy_with_volumes(backend, vm_ref, destroy_disks)
    elif block_devices:
        volumes.forget_srs_of(backend, block_devices)
    reverting = field_of(instance, "task_state", None) == RESIZE_REVERTING
    if orig_name in companions and not reverting:  # deleted mid-resize: no revert to come
        orig_ref = companions[orig_name][0]
        copies = migrate.unattached_copies(session, orig_ref) if destroy_disks else []
        _destroy_with_volumes(backend, orig_ref, destroy_disks)
        for copy in copies:
            vm_utils.destroy_vdi(session, copy)
    backend.forget_vm(instance)
    backend.forget_vm(instance, rescue_name)
    backend.forget_vm(instance, orig_name)
    if vm_ref is not None or companions:
        LOG.info("destroyed (disks %s)", "deleted" if destroy_disks else "kept",
                 instance=instance)


def _destroy_with_volumes(backend: XenBackend, vm_ref: str, destroy_disks: bool) -> None:
    """Halt the VM, take its volumes off (VBDs destroyed, SRs forgotten when unused), then
    delete it with its own disks."""
    session = backend.session
    try:
        vm_utils.hard_shutdown(session, vm_ref)
        # one read of the VBDs: the volumes' to take off, the rest's disks to delete
        vbds = vm_utils.vbd_records(session, vm_ref)
        srs = volumes.detach_all(backend, vm_ref, vbds)
    except exc.BackendError as error:
        if is_handle_invalid(error, "VM"):
            return  # gone meanwhile
        raise
    own = {ref: rec for ref, rec in vbds.items() if not volume_utils.is_volume(rec)}
    # halted just now (a suspended VM's suspend image went with the hard shutdown)
    vm_utils.destroy_vm(session, vm_ref, destroy_disks=destroy_disks, vbds=own,
                        record={"power_state": "Halted"})
    volumes.forget_unused(backend, srs)
