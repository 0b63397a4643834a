"""Power operations on vCenter: off (guest shutdown first), on, reboot, suspend, resume.

The face (:mod:`virtdriver.vmware.vmops`) holds the instance's lock around each call, except
:func:`poll_rebooting_instances`, which locks each instance it reboots.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from oslo_log import log as logging

from virtdriver.common import exceptions
from virtdriver.common.locks import instance_lock
from virtdriver.common.model import field_of, stuck_rebooting
from virtdriver.vmware import vm_util
from virtdriver.vmware.backend import VMwareBackend
from virtdriver.vmware.session import ignoring

LOG = logging.getLogger(__name__)


def power_off(backend: VMwareBackend, instance: Any, timeout: int = 0,
              retry_interval: int = 0) -> None:
    """Guest shutdown first when ``timeout`` > 0 (waited on by push), then hard off.

    A hard off reads no state first: PowerOffVM_Task of a VM that is already off fails with
    InvalidPowerState, which is success here (one call less than asking first).
    """
    if timeout <= 0:
        backend.vm_refs.call(backend.session, instance, lambda vm: _hard_off(backend, vm))
        return
    vm, state = backend.power_state(instance)
    if state == "poweredOff":
        return
    if timeout > 0 and state == "poweredOn" and _clean_shutdown(
            backend, instance, vm, timeout, retry_interval):
        return
    _hard_off(backend, vm)


def _hard_off(backend: VMwareBackend, vm: Any) -> None:
    with ignoring("InvalidPowerState"):
        backend.session.call_task(vm, "PowerOffVM_Task")


def _clean_shutdown(backend: VMwareBackend, instance: Any, vm: Any, timeout: int,
                    retry_interval: int) -> bool:
    interval = retry_interval if retry_interval > 0 else timeout
    waited = 0
    while waited < timeout:
        try:
            backend.session.invoke(vm, "ShutdownGuest")
        except exceptions.BackendError as exc:
            LOG.info("guest shutdown refused (%s); powering off", exc.code, instance=instance)
            return False
        wait = min(interval, timeout - waited)
        if vm_util.wait_for_property(backend.session, vm, "runtime.powerState",
                                     lambda state: state == "poweredOff", wait) is not None:
            return True
        waited += wait
    LOG.info("guest did not shut down within %d s; powering off", timeout, instance=instance)
    return False


def power_on(backend: VMwareBackend, instance: Any) -> None:
    """Power on; an already running VM stays running."""
    vm_util.power_on(backend.session, backend.vm(instance))


def reboot(backend: VMwareBackend, instance: Any, reboot_type: str = "SOFT") -> None:
    """SOFT: RebootGuest when the tools run, else reset; HARD: reset."""
    if reboot_type not in ("SOFT", "HARD"):
        raise exceptions.InvalidInput("reboot_type", reboot_type, "must be SOFT or HARD")
    if reboot_type == "HARD":
        # nothing to ask first: vCenter refuses to reset a VM that is not powered on
        # (InvalidPowerState), which is the refusal a read would have given
        backend.vm_refs.call(backend.session, instance, lambda vm: _reset(backend, instance, vm))
        return
    vm, props = backend.read(instance, ["runtime.powerState", "guest.toolsRunningStatus"])
    if props.get("runtime.powerState") != "poweredOn":
        raise exceptions.InstanceInvalidState(field_of(instance, "uuid"), "reboot",
                                              props.get("runtime.powerState", "?"))
    if reboot_type == "SOFT" and props.get("guest.toolsRunningStatus") == "guestToolsRunning":
        try:
            backend.session.invoke(vm, "RebootGuest")
            return
        except exceptions.BackendError as exc:
            LOG.info("guest reboot refused (%s); resetting", exc.code, instance=instance)
    backend.session.call_task(vm, "ResetVM_Task")


def _reset(backend: VMwareBackend, instance: Any, vm: Any) -> None:
    try:
        backend.session.call_task(vm, "ResetVM_Task")
    except exceptions.BackendError as exc:
        if exc.code != "InvalidPowerState":
            raise
        raise exceptions.InstanceInvalidState(field_of(instance, "uuid"), "reboot",
                                              "not powered on") from exc


def suspend(backend: VMwareBackend, instance: Any) -> None:
    """Suspend a running VM; a suspended one stays suspended."""
    vm, state = backend.power_state(instance)
    if state == "suspended":
        return
    if state != "poweredOn":
        raise exceptions.InstanceInvalidState(field_of(instance, "uuid"), "suspend", state)
    backend.session.call_task(vm, "SuspendVM_Task")


def resume(backend: VMwareBackend, instance: Any) -> None:
    """Resume a suspended VM."""
    vm, state = backend.power_state(instance)
    if state != "suspended":
        raise exceptions.InstanceInvalidState(field_of(instance, "uuid"), "resume", state)
    backend.session.call_task(vm, "PowerOnVM_Task")


def poll_rebooting_instances(backend: VMwareBackend, timeout: int,
                             instances: Iterable[Any]) -> list[Any]:
    """Hard-reboot instances stuck rebooting for ``timeout`` seconds or more."""
    rebooted = stuck_rebooting(instances, timeout)
    for instance in rebooted:
        LOG.info("stuck rebooting for %d s or more; resetting", timeout, instance=instance)
        with instance_lock(instance):
            reboot(backend, instance, "HARD")
    return rebooted
