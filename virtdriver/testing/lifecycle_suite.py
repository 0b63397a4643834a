"""Lifecycle promises of the VMOps contract, part of :class:`~virtdriver.testing.ConformanceSuite`.

Spawn and destroy (a failed step leaves nothing behind, destroy of what is gone is a no-op),
power states, snapshot, rescue.
"""

from __future__ import annotations

import datetime

import pytest

from virtdriver.common import exceptions
from virtdriver.common.power_state import PowerState
from virtdriver.testing.helpers import (
    SKIP_PREFIX,
    GiB,
    MiB,
    TaskStates,
    gate,
    make_instance,
    make_vif,
    supported,
    vm_of,
)

__all__ = ["LifecyclePromises"]


class LifecyclePromises:
    """Spawn, destroy, power, snapshot and rescue of one instance."""

    # -- spawn and destroy ----------------------------------------------------------------

    def test_spawn_makes_a_running_vm_with_the_flavor(self, ops, server, progress):
        before = server.leftovers()
        inst = make_instance(vcpus=2, memory_mb=512, root_gb=2, ephemeral_gb=1, swap=64)
        vifs = [make_vif(server.network, "10.0.0.5"), make_vif(server.network)]
        progress.clear()
        ops.spawn(None, inst, server.image, [], None, vifs)
        try:
            vm = vm_of(server, inst)
            assert vm.power_state == PowerState.RUNNING
            assert (vm.vcpus, vm.memory_mb) == (2, 512)
            assert sorted(d.size_bytes for d in vm.disks) == [64 * MiB, 1 * GiB, 2 * GiB]
            assert vm.disks[0].size_bytes == 2 * GiB  # the root disk comes first
            assert sorted((n.mac, n.network) for n in vm.nics) == sorted(
                (v.address, server.network) for v in vifs)
            assert progress and progress[-1][0] == 100
            assert [p for p, _ in progress] == sorted(p for p, _ in progress)
            assert ops.get_info(inst).state == PowerState.RUNNING
            assert inst.name in ops.list_instances()
            assert inst.uuid in ops.list_instance_uuids()
        finally:
            ops.destroy(inst)
        assert server.read_vm(inst) is None
        assert not (left := server.leftovers() - before), left
        with pytest.raises(exceptions.InstanceNotFound):
            ops.get_info(inst)
        assert inst.name not in ops.list_instances()
        assert inst.uuid not in ops.list_instance_uuids()
        ops.destroy(inst)  # already gone: a no-op

    def test_a_failed_step_leaves_nothing_behind(self, ops, server):
        if not server.failure_steps:
            pytest.skip(f"{SKIP_PREFIX}: the {ops.backend_name} provider names no step at "
                        "which it can inject a failure")
        # warm the image cache, so that each failure hits its own step
        warm = make_instance(root_gb=2, ephemeral_gb=1, swap=32)
        ops.spawn(None, warm, server.image, [], None, [])
        ops.destroy(warm)
        for step in server.failure_steps:
            before = server.leftovers()
            inst = make_instance(root_gb=2, ephemeral_gb=1, swap=32)
            inst.config_drive = bool(ops.capabilities.get("supports_config_drive"))
            # files only where something can deliver them (else spawn refuses them)
            files = [("/etc/motd", b"hello")] if inst.config_drive or \
                ops.capabilities.get("supports_inject_file") else []
            with server.inject_failure(step) as code, \
                    pytest.raises(exceptions.VirtDriverError) as caught:
                ops.spawn(None, inst, server.image, files, "pw", [make_vif(server.network)])
            error = caught.value
            if isinstance(error, exceptions.AgentError):  # a guest agent step's own type,
                error = error.__cause__  # raised from the server's error
            assert isinstance(error, exceptions.BackendError), (step, caught.value)
            assert error.code == code, (step, error)
            assert not (left := server.leftovers() - before), (step, left)
            assert server.read_vm(inst) is None, step
            with pytest.raises(exceptions.InstanceNotFound):
                ops.get_info(inst)

    def test_destroy_of_an_unknown_instance_is_a_no_op(self, ops, server):
        before = server.leftovers()
        ops.destroy(make_instance())
        assert not (left := server.leftovers() - before), left

    def test_spawn_twice_is_instance_exists(self, ops, server, instance):
        with pytest.raises(exceptions.InstanceExists):
            ops.spawn(None, instance, server.image, [], None, [])
        assert vm_of(server, instance).power_state == PowerState.RUNNING

    # -- power ----------------------------------------------------------------------------

    def test_power_off_and_on(self, ops, server, instance):
        ops.power_off(instance)
        assert vm_of(server, instance).power_state == PowerState.SHUTDOWN
        assert ops.get_info(instance).state == PowerState.SHUTDOWN
        ops.power_off(instance)  # already off: stays off, no error
        assert vm_of(server, instance).power_state == PowerState.SHUTDOWN
        ops.power_on(instance)
        assert vm_of(server, instance).power_state == PowerState.RUNNING
        ops.power_on(instance)  # already on: stays on
        assert ops.get_info(instance).state == PowerState.RUNNING

    def test_power_off_with_a_timeout_stops_the_vm(self, ops, server, instance):
        ops.power_off(instance, timeout=5, retry_interval=1)
        assert vm_of(server, instance).power_state == PowerState.SHUTDOWN
        assert ops.get_info(instance).state == PowerState.SHUTDOWN

    @pytest.mark.parametrize("reboot_type", ["SOFT", "HARD"])
    def test_reboot_leaves_the_vm_running(self, ops, server, instance, reboot_type):
        ops.reboot(instance, reboot_type=reboot_type)
        assert vm_of(server, instance).power_state == PowerState.RUNNING
        assert ops.get_info(instance).state == PowerState.RUNNING

    def test_suspend_and_resume(self, ops, server, instance):
        _there_and_back(ops, server, instance, "supports_suspend", "suspend", "resume",
                        PowerState.SUSPENDED)

    def test_pause_and_unpause(self, ops, server, instance):
        _there_and_back(ops, server, instance, "supports_pause", "pause", "unpause",
                        PowerState.PAUSED)

    def test_soft_delete_restore_and_set_bootable(self, ops, server, instance):
        gate(ops, "supports_soft_delete", {
            "soft_delete": lambda: ops.soft_delete(instance),
            "restore": lambda: ops.restore(instance),
            "set_bootable": lambda: ops.set_bootable(instance, True)})
        with supported("supports_soft_delete"):
            ops.soft_delete(instance)
            assert vm_of(server, instance).power_state == PowerState.SHUTDOWN
            ops.restore(instance)
            assert vm_of(server, instance).power_state == PowerState.RUNNING
            ops.power_off(instance)
            ops.set_bootable(instance, False)
            with pytest.raises(exceptions.VirtDriverError):
                ops.power_on(instance)
            assert vm_of(server, instance).power_state == PowerState.SHUTDOWN
            ops.set_bootable(instance, True)
            ops.power_on(instance)
        assert vm_of(server, instance).power_state == PowerState.RUNNING

    def test_poll_rebooting_instances_hard_reboots_the_stuck_ones(self, ops, server,
                                                                 instance):
        an_hour_ago = datetime.datetime.now(datetime.timezone.utc) - datetime.timedelta(hours=1)
        instance.updated_at = an_hour_ago
        assert ops.poll_rebooting_instances(60, [instance]) == []  # not rebooting
        instance.task_state = "rebooting"
        fresh = make_instance()
        fresh.task_state = "rebooting"
        fresh.updated_at = datetime.datetime.now(datetime.timezone.utc)
        assert ops.poll_rebooting_instances(60, [instance, fresh]) == [instance]
        assert vm_of(server, instance).power_state == PowerState.RUNNING
        instance.task_state = None

    # -- snapshot -------------------------------------------------------------------------

    def test_snapshot_uploads_an_image_and_leaves_nothing(self, ops, server, instance):
        before = server.leftovers()
        target = server.image_store.create(None, {"name": "conformance-snapshot"})
        states = TaskStates()
        ops.snapshot(None, instance, target.id, states)
        # the first report may name the caller's own state (image_snapshot, image_backup,
        # shelving...) or none; the second expects the first
        assert [state for state, _ in states.calls] == ["image_pending_upload",
                                                        "image_uploading"], states.calls
        assert states.calls[0][1] in (None, "image_snapshot"), states.calls
        assert states.calls[1][1] == "image_pending_upload", states.calls
        uploaded = server.image_store.show(None, target.id)
        assert uploaded.status == "active" and uploaded.disk_format, uploaded
        assert b"".join(server.image_store.download(None, target.id)), "the image is empty"
        assert not (left := server.leftovers() - before), left
        assert vm_of(server, instance).power_state == PowerState.RUNNING
        ops.post_interrupted_snapshot_cleanup(None, instance)  # nothing to clean: no error
        assert not (left := server.leftovers() - before), left
        # the image is usable: an instance boots from it
        clone = make_instance()
        ops.spawn(None, clone, uploaded, [], None, [])
        try:
            assert vm_of(server, clone).power_state == PowerState.RUNNING
        finally:
            ops.destroy(clone)

    def test_snapshot_of_an_unknown_instance_is_instance_not_found(self, ops, server):
        target = server.image_store.create(None, {"name": "never"})
        before = server.leftovers()
        with pytest.raises(exceptions.InstanceNotFound):
            ops.snapshot(None, make_instance(), target.id, TaskStates())
        assert not (left := server.leftovers() - before), left
        assert server.image_store.show(None, target.id).status == "queued"

    # -- rescue ---------------------------------------------------------------------------

    def test_rescue_and_unrescue(self, ops, server, instance):
        gate(ops, "supports_rescue", {
            "rescue": lambda: ops.rescue(None, instance, [], server.image),
            "unrescue": lambda: ops.unrescue(instance)})
        before, vm_before = server.leftovers(), vm_of(server, instance)
        with supported("supports_rescue"):
            ops.rescue(None, instance, [instance.vif], server.image, rescue_password="pw")
            assert instance.name in ops.list_instances()
            with pytest.raises(exceptions.InstanceInvalidState):
                ops.rescue(None, instance, [], server.image)
            ops.unrescue(instance)
        vm = vm_of(server, instance)
        assert vm.power_state == PowerState.RUNNING
        assert vm.disks == vm_before.disks and vm.nics == vm_before.nics
        assert not (left := server.leftovers() - before), left
        with pytest.raises(exceptions.InstanceNotInRescueMode):
            ops.unrescue(instance)

    def test_destroy_of_a_rescued_instance_leaves_nothing(self, ops, server):
        before = server.leftovers()
        inst = make_instance()
        ops.spawn(None, inst, server.image, [], None, [])
        try:
            gate(ops, "supports_rescue", {
                "rescue": lambda: ops.rescue(None, inst, [], server.image)})
            with supported("supports_rescue"):
                ops.rescue(None, inst, [], server.image)
        finally:
            ops.destroy(inst)
        assert server.read_vm(inst) is None
        assert not (left := server.leftovers() - before), left


def _there_and_back(ops, server, instance, capability, there, back, state):
    """``ops.<there>`` puts the running VM in ``state`` (on the server and in get_info),
    ``ops.<back>`` makes it run again; both unsupported, as declared, if ``capability`` is
    False."""
    gate(ops, capability, {there: lambda: getattr(ops, there)(instance),
                           back: lambda: getattr(ops, back)(instance)})
    with supported(capability):
        getattr(ops, there)(instance)
        assert vm_of(server, instance).power_state == state
        assert ops.get_info(instance).state == state
        getattr(ops, back)(instance)
    assert vm_of(server, instance).power_state == PowerState.RUNNING
