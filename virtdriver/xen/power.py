"""Power: reboot, power off/on, suspend/resume, pause/unpause, soft delete/restore, the
bootlock, and the hard reboot of instances stuck rebooting.

Each operation runs through :meth:`XenBackend.on_vm`, so a VM that vanished since its ref
was cached is looked up once more before it is InstanceNotFound.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from oslo_log import log as logging

from virtdriver.common import exceptions as exc
from virtdriver.common.locks import instance_lock
from virtdriver.common.model import stuck_rebooting
from virtdriver.xen import vm_utils
from virtdriver.xen.backend import XenBackend
from virtdriver.xen.session import is_handle_invalid

LOG = logging.getLogger(__name__)

def reboot(backend: XenBackend, instance: Any, reboot_type: str) -> None:
    """SOFT: ``VM.clean_reboot``, falling back to hard when the guest cannot; HARD:
    ``VM.hard_reboot``. A halted VM is started."""
    if reboot_type not in ("SOFT", "HARD"):
        raise exc.InvalidInput("reboot_type", reboot_type, "must be SOFT or HARD")
    session = backend.session

    def do(vm_ref: str) -> None:
        try:
            if reboot_type == "SOFT":
                try:
                    session.call_lasting("VM.clean_reboot", vm_ref,
                                       timeout=backend.xen.running_timeout)
                    return
                except exc.BackendError as error:
                    if error.code not in vm_utils.CLEAN_IMPOSSIBLE:
                        raise
                    LOG.info("clean reboot failed (%s); rebooting hard", error.code,
                             instance=instance)
            session.call_lasting("VM.hard_reboot", vm_ref)
        except exc.BackendError as error:
            if error.code == "VM_BAD_POWER_STATE" and error.params[-1:] == ("halted",):
                vm_utils.start(session, vm_ref)
                return
            raise

    backend.on_vm(instance, do)


def power_off(backend: XenBackend, instance: Any, timeout: int) -> None:
    """Halt the VM: a clean shutdown within ``timeout`` seconds first if > 0, then hard."""

    backend.on_vm(instance, lambda vm_ref: vm_utils.shut_down(backend.session, vm_ref,
                                                             float(timeout)))


def power_on(backend: XenBackend, instance: Any) -> None:
    """Start a halted VM, resume a suspended one, unpause a paused one."""

    def do(vm_ref: str) -> None:
        # start first, ask later: a VM that is not halted refuses with its actual state
        try:
            vm_utils.start(backend.session, vm_ref)
            return
        except exc.BackendError as error:
            if error.code != "VM_BAD_POWER_STATE" or not error.params:
                raise
            state = str(error.params[-1]).lower()
        if state == "suspended":
            backend.session.call_lasting("VM.resume", vm_ref, False, False)
        elif state == "paused":
            backend.session.call("VM.unpause", vm_ref)

    backend.on_vm(instance, do)


def suspend(backend: XenBackend, instance: Any) -> None:
    """Take the bootlock, then suspend to disk (the lock is released if suspend fails)."""

    def do(vm_ref: str) -> None:
        vm_utils.set_bootlock(backend.session, vm_ref, True)
        try:
            backend.session.call_lasting("VM.suspend", vm_ref)
        except BaseException:
            vm_utils.set_bootlock(backend.session, vm_ref, False)
            raise

    backend.on_vm(instance, do)


def resume(backend: XenBackend, instance: Any) -> None:
    """Release the bootlock and resume from disk."""

    def do(vm_ref: str) -> None:
        vm_utils.set_bootlock(backend.session, vm_ref, False)
        backend.session.call_lasting("VM.resume", vm_ref, False, True)

    backend.on_vm(instance, do)


def pause(backend: XenBackend, instance: Any) -> None:
    """Pause the VM in memory."""
    backend.on_vm(instance, lambda ref: backend.session.call("VM.pause", ref))


def unpause(backend: XenBackend, instance: Any) -> None:
    """Unpause the VM."""
    backend.on_vm(instance, lambda ref: backend.session.call("VM.unpause", ref))


def soft_delete(backend: XenBackend, instance: Any) -> None:
    """Hard-stop the VM and take the bootlock so :func:`restore` can undo it."""

    def do(vm_ref: str) -> None:
        vm_utils.hard_shutdown(backend.session, vm_ref)
        vm_utils.set_bootlock(backend.session, vm_ref, True)

    backend.on_vm(instance, do)


def restore(backend: XenBackend, instance: Any) -> None:
    """Release the bootlock and start the VM."""

    def do(vm_ref: str) -> None:
        vm_utils.set_bootlock(backend.session, vm_ref, False)
        if backend.vm_power_state(vm_ref) == "halted":
            vm_utils.start(backend.session, vm_ref)

    backend.on_vm(instance, do)


def poll_rebooting_instances(backend: XenBackend, timeout: int,
                             instances: list[Any]) -> list[Any]:
    """Cancel ``VM.clean_reboot`` tasks older than ``timeout`` s, hard-reboot those VMs
    (each under its instance's lock)."""
    session = backend.session
    if timeout <= 0 or not instances:
        return []
    now = dt.datetime.now(dt.timezone.utc)
    for label in ("VM.clean_reboot", "Async.VM.clean_reboot"):
        for task in session.call("task.get_by_name_label", label):
            try:
                record = session.call("task.get_record", task)
            except exc.BackendError as error:
                if is_handle_invalid(error):
                    continue
                raise
            created = _xapi_time(record.get("created"))
            if created is not None and (now - created).total_seconds() >= timeout and \
                    record.get("status") == "pending":
                session.call("task.cancel", task)
    rebooted = []
    for instance in stuck_rebooting(instances, timeout, now):
        try:
            with instance_lock(instance):
                reboot(backend, instance, "HARD")
            rebooted.append(instance)
        except exc.InstanceNotFound:
            continue
        LOG.info("stuck rebooting for %d s: rebooted hard", timeout, instance=instance)
    return rebooted


def _xapi_time(value: Any) -> dt.datetime | None:
    text = str(value or "")
    for fmt in ("%Y%m%dT%H:%M:%SZ", "%Y%m%dT%H:%M:%S"):
        try:
            return dt.datetime.strptime(text, fmt).replace(tzinfo=dt.timezone.utc)
        except ValueError:
            continue
    return None


def set_bootable(backend: XenBackend, instance: Any, is_bootable: bool) -> None:
    """Allow or forbid starting the VM (``blocked_operations`` start/start_on)."""
    backend.on_vm(instance, lambda ref: vm_utils.set_bootlock(backend.session, ref,
                                                              not is_bootable))
