"""Rescue and unrescue: boot ``<name>-rescue`` from a rescue image with the instance's disks
attached, and put everything back afterwards.
"""

from __future__ import annotations

from typing import Any

from oslo_log import log as logging

from virtdriver.common import exceptions as exc
from virtdriver.common.model import field_of
from virtdriver.common.progress import Rollback, make_step_decorator
from virtdriver.xen import build, disks, spawn, vm_utils, volume_utils
from virtdriver.xen.backend import XenBackend
from virtdriver.xen.build import SpawnPlan

LOG = logging.getLogger(__name__)


def rescue(backend: XenBackend, context: Any, instance: Any, network_info: Any,
           image_meta: Any, rescue_password: str | None) -> None:
    """Shut the instance down, bootlock it, boot ``<name>-rescue`` from ``image_meta`` with
    the instance's disks attached (root at 1, swap 2, ephemerals 4+). Volumes stay
    attached to the instance's VM; an instance whose root disk is a volume cannot be
    rescued (UnsupportedOperation, before any change)."""
    plan = build.plan(backend, instance, image_meta, [], rescue_password, network_info,
                      rescue=True)
    vm_ref = backend.vm_ref_of(instance)
    if any(rec["userdevice"] == vm_utils.DEVICE_ROOT
           for rec in volume_utils.volume_vbds(backend.session, vm_ref).values()):
        raise backend.unsupported("rescue of an instance booted from a volume",
                                  "its root disk is a volume; the rescue VM takes only the "
                                  "instance's own disks")
    rescue_name = field_of(instance, "name") + vm_utils.RESCUE_SUFFIX
    if vm_utils.find_vm(backend.session, rescue_name, plan.uuid) is not None:
        raise exc.InstanceInvalidState(plan.uuid, "rescue", "already rescued")
    step = make_step_decorator(context, instance, backend.progress)
    shutdown_instance = step(shutdown_for_rescue)
    bootlock_instance = step(bootlock_for_rescue)
    spawn_rescue = step(_spawn_rescue)
    with Rollback(f"rescue of {plan.uuid}") as undo:
        shutdown_instance(backend, vm_ref, undo)
        bootlock_instance(backend, vm_ref, undo)
        spawn_rescue(backend, context, plan, vm_ref, rescue_name)
    LOG.info("rescued: %s runs with its disks", rescue_name, instance=instance)


def unrescue(backend: XenBackend, instance: Any, power_on: bool) -> None:
    """Destroy the rescue VM (keeping the instance's disks), release the bootlock and start
    the instance (if ``power_on``)."""
    uuid = str(field_of(instance, "uuid"))
    vm_ref = backend.vm_ref_of(instance)
    rescue_name = field_of(instance, "name") + vm_utils.RESCUE_SUFFIX
    found = vm_utils.find_vm(backend.session, rescue_name, uuid)
    if found is None:
        raise exc.InstanceNotInRescueMode(uuid)
    step = make_step_decorator(None, instance, backend.progress)
    destroy_rescue = step(destroy_rescue_vm)
    release = step(release_bootlock)
    start_instance = step(start_after_rescue)
    destroy_rescue(backend, vm_ref, found[0])
    backend.forget_vm(instance, rescue_name)
    release(backend, vm_ref)
    start_instance(backend, vm_ref, power_on)
    LOG.info("unrescued", instance=instance)


# -- steps ----------------------------------------------------------------------------------

def _spawn_rescue(backend: XenBackend, context: Any, plan: SpawnPlan, vm_ref: str,
                  rescue_name: str) -> None:
    plan.original_disks = disks.instance_vdis(backend.session, vm_ref)
    spawn.run_steps(backend, context, plan, lambda fn: fn, rescue_name, rescue_of=vm_ref)


def shutdown_for_rescue(backend: XenBackend, vm_ref: str, undo: Rollback) -> None:
    """Hard-stop the instance; the rollback starts it again if it was running."""
    was_running = backend.vm_power_state(vm_ref) == "running"
    vm_utils.hard_shutdown(backend.session, vm_ref)
    if was_running:
        undo.push(vm_utils.start, backend.session, vm_ref)


def bootlock_for_rescue(backend: XenBackend, vm_ref: str, undo: Rollback) -> None:
    """Forbid starting the instance while its disks are in the rescue VM."""
    vm_utils.set_bootlock(backend.session, vm_ref, True)
    undo.push(vm_utils.set_bootlock, backend.session, vm_ref, False)


def destroy_rescue_vm(backend: XenBackend, vm_ref: str, rescue_ref: str) -> None:
    """Destroy the rescue VM and its own disk, keeping the instance's disks."""
    keep = {vdi for _, vdi in disks.instance_vdis(backend.session, vm_ref).values()}
    vm_utils.destroy_vm(backend.session, rescue_ref, keep_vdis=keep)


def release_bootlock(backend: XenBackend, vm_ref: str) -> None:
    """Allow the instance to start again."""
    vm_utils.set_bootlock(backend.session, vm_ref, False)


def start_after_rescue(backend: XenBackend, vm_ref: str, power_on: bool) -> None:
    """Boot the instance from its own disk again (if asked and halted)."""
    if power_on and backend.vm_power_state(vm_ref) == "halted":
        vm_utils.start(backend.session, vm_ref)
