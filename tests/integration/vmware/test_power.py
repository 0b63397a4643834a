"""Power operations against the launcher: the server's power state after each."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from pyVim.task import WaitForTask
from pyVmomi import vim

from tests.integration.vmware.helpers import image_store, inspector, make_instance, ops
from virtdriver.common import exceptions
from virtdriver.common.power_state import PowerState

__all__ = ["image_store", "inspector", "ops"]


@pytest.fixture(scope="module")
def inst(ops: Any, image_store: Any) -> Iterator[Any]:
    instance = make_instance()
    ops.spawn(None, instance, image_store.disk, [], None, [])
    yield instance
    ops.destroy(instance)


def _state(inspector: Any, inst: Any) -> str:
    return inspector.vm(inst.uuid)["runtime.powerState"]


def _set_tools(inspector: Any, inst: Any, status: str) -> None:
    # test-only vcsim hook: pretend VMware Tools are (not) running in the guest
    vm = inspector.vm(inst.uuid)["ref"]
    WaitForTask(vm.ReconfigVM_Task(vim.vm.ConfigSpec(extraConfig=[vim.option.OptionValue(
        key="SET.guest.toolsRunningStatus", value=status)])))


def test_clean_shutdown_first(ops: Any, inst: Any, inspector: Any) -> None:
    ops.session.stats.reset()
    ops.power_off(inst, timeout=5, retry_interval=2)
    assert _state(inspector, inst) == "poweredOff"
    assert ops.session.stats.calls["ShutdownGuest"] == 1
    assert "PowerOffVM_Task" not in ops.session.stats.calls
    ops.power_on(inst)


def test_refused_clean_shutdown_falls_back_to_hard(ops: Any, inst: Any, inspector: Any,
                                                   vcsim_faults: Any) -> None:
    vcsim_faults.inject("ShutdownGuest", "fault", fault="ToolsUnavailable")
    ops.session.stats.reset()
    ops.power_off(inst, timeout=5, retry_interval=1)
    assert _state(inspector, inst) == "poweredOff"
    assert ops.session.stats.calls["PowerOffVM_Task"] == 1
    ops.power_on(inst)


def test_reboot_hard_and_soft(ops: Any, inst: Any, inspector: Any) -> None:
    ops.session.stats.reset()
    ops.reboot(inst, reboot_type="HARD")
    assert ops.session.stats.calls["ResetVM_Task"] == 1
    ops.reboot(inst, reboot_type="SOFT")  # no tools: falls back to reset
    assert ops.session.stats.calls["ResetVM_Task"] == 2
    assert _state(inspector, inst) == "poweredOn"


def test_soft_reboot_with_tools_uses_guest_reboot_standin(ops: Any, inst: Any,
                                                          inspector: Any) -> None:
    """RebootGuest is a launcher stand-in (vcsim 0.24.2 lacks it)."""
    _set_tools(inspector, inst, "guestToolsRunning")
    ops.session.stats.reset()
    ops.reboot(inst, reboot_type="SOFT")
    assert ops.session.stats.calls["RebootGuest"] == 1
    assert "ResetVM_Task" not in ops.session.stats.calls
    assert _state(inspector, inst) == "poweredOn"
    _set_tools(inspector, inst, "guestToolsNotRunning")


def test_suspend_resume(ops: Any, inst: Any, inspector: Any) -> None:
    ops.suspend(inst)
    assert _state(inspector, inst) == "suspended"
    assert ops.get_info(inst).state == PowerState.SUSPENDED
    ops.suspend(inst)  # already suspended
    ops.resume(inst)
    assert _state(inspector, inst) == "poweredOn"
    with pytest.raises(exceptions.InstanceInvalidState):
        ops.resume(inst)


def test_reboot_of_a_stopped_vm_is_invalid_state(ops: Any, inst: Any) -> None:
    ops.power_off(inst)
    with pytest.raises(exceptions.InstanceInvalidState):
        ops.reboot(inst)
    with pytest.raises(exceptions.InstanceInvalidState):
        ops.suspend(inst)
    ops.power_on(inst)


def test_poll_rebooting_instances_hard_reboots_stuck_ones(ops: Any, inst: Any) -> None:
    import datetime
    inst.task_state = "rebooting"
    inst.updated_at = datetime.datetime.now(datetime.timezone.utc) - datetime.timedelta(hours=1)
    fresh = make_instance()
    fresh.task_state = "rebooting"
    fresh.updated_at = datetime.datetime.now(datetime.timezone.utc)
    ops.session.stats.reset()
    assert ops.poll_rebooting_instances(60, [inst, fresh]) == [inst]
    assert ops.session.stats.calls["ResetVM_Task"] == 1
    inst.task_state = None


def test_unsupported_operations_say_so(ops: Any, inst: Any) -> None:
    for name, args in [("pause", (inst,)), ("unpause", (inst,)),
                       ("set_admin_password", (inst, "x")), ("inject_file", (inst, "/a", b"")),
                       ("reset_network", (inst,)), ("get_console_output", (inst,)),
                       ("soft_delete", (inst,))]:
        with pytest.raises(exceptions.UnsupportedOperation, match="vmware"):
            getattr(ops, name)(*args)
    caps = ops.capabilities
    assert not caps["supports_pause"] and not caps["supports_set_admin_password"]
    assert caps["supports_rescue"] and caps["supports_live_migration"]
