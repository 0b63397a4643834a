"""Migration promises of the VMOps contract, part of :class:`~virtdriver.testing.ConformanceSuite`.

Resize (cold migration) with confirm and revert, destroy midway, refused shrinking; live
migration and its recovery. Live migration is gated by ``supports_live_migration``.
"""

from __future__ import annotations

from typing import Any

import pytest

from virtdriver.common import exceptions
from virtdriver.common.base import VMOps
from virtdriver.common.model import Flavor
from virtdriver.common.power_state import PowerState
from virtdriver.testing.backend import ConformanceBackend
from virtdriver.testing.helpers import (
    GiB,
    Recorder,
    gate,
    make_instance,
    make_vif,
    supported,
    vm_of,
)

__all__ = ["MigrationPromises"]


class MigrationPromises:
    """Resize with confirm and revert, and live migration."""

    # -- resize ---------------------------------------------------------------------------

    def _resize(self, ops: VMOps, server: ConformanceBackend, instance: Any) -> Flavor:
        old, bigger = instance.flavor, Flavor(vcpus=2, memory_mb=512, root_gb=2)
        disk_info = ops.migrate_disk_and_power_off(None, instance, "", bigger)
        # powered off; a backend may also have set the VM aside until finish_migration
        halfway = server.read_vm(instance)
        assert halfway is None or halfway.power_state == PowerState.SHUTDOWN
        instance.flavor = bigger  # as Nova's compute manager does before finishing
        ops.finish_migration(None, None, instance, disk_info, [instance.vif], server.image,
                             resize_instance=True)
        vm = vm_of(server, instance)
        assert vm.power_state == PowerState.RUNNING
        assert (vm.vcpus, vm.memory_mb, vm.disks[0].size_bytes) == (2, 512, 2 * GiB)
        assert instance.vif.address in vm.macs
        return old

    def test_resize_then_confirm(self, ops, server, instance):
        before = server.leftovers()
        self._resize(ops, server, instance)
        ops.confirm_migration(None, instance, [instance.vif])
        vm = vm_of(server, instance)
        assert (vm.vcpus, vm.memory_mb, vm.power_state) == (2, 512, PowerState.RUNNING)
        assert len(server.leftovers().vms) == len(before.vms)  # what a revert needed is gone

    def test_resize_then_revert(self, ops, server, instance):
        before = server.leftovers()
        instance.flavor = self._resize(ops, server, instance)  # Nova restores the old flavor
        ops.finish_revert_migration(None, instance, [instance.vif])
        vm = vm_of(server, instance)
        assert (vm.vcpus, vm.memory_mb, vm.disks[0].size_bytes) == (1, 256, 1 * GiB)
        assert vm.power_state == PowerState.RUNNING
        assert len(server.leftovers().vms) == len(before.vms)

    def test_destroy_mid_resize_leaves_nothing(self, ops, server):
        before = server.leftovers()
        inst = make_instance()
        ops.spawn(None, inst, server.image, [], None, [make_vif(server.network)])
        ops.migrate_disk_and_power_off(None, inst, "", Flavor(vcpus=1, memory_mb=256,
                                                              root_gb=2))
        ops.destroy(inst)
        assert server.read_vm(inst) is None
        assert not (left := server.leftovers() - before), left

    def test_shrinking_a_disk_is_refused_before_anything_changes(self, ops, server, instance):
        vm_before = vm_of(server, instance)
        with pytest.raises(exceptions.MigrationError):
            ops.migrate_disk_and_power_off(None, instance, "",
                                           Flavor(vcpus=1, memory_mb=256, root_gb=0))
        assert vm_of(server, instance) == vm_before

    # -- live migration -------------------------------------------------------------------

    def _live_migration_gate(self, ops: VMOps, instance: Any) -> None:
        gate(ops, "supports_live_migration", {
            "check_can_live_migrate_destination":
                lambda: ops.check_can_live_migrate_destination(None, instance),
            "live_migrate": lambda: ops.live_migrate(None, instance, "elsewhere", Recorder(),
                                                     Recorder())})

    def test_live_migration_moves_the_running_vm(self, ops, server, instance):
        self._live_migration_gate(ops, instance)
        here = vm_of(server, instance).host
        destination = server.live_migration_destination(instance)
        assert destination != here
        post, recover = Recorder(), Recorder()
        with supported("supports_live_migration"):
            dest = ops.check_can_live_migrate_destination(None, instance)
            data = ops.check_can_live_migrate_source(None, instance, dest)
            data = ops.pre_live_migration(None, instance, None, [instance.vif], None, data)
            ops.live_migrate(None, instance, destination, post, recover, False, data)
            assert len(post.calls) == 1 and recover.calls == []
            vm = vm_of(server, instance)
            assert vm.host == destination and vm.power_state == PowerState.RUNNING
            ops.post_live_migration(None, instance, data)
            ops.post_live_migration_at_destination(None, instance, [instance.vif])
        assert vm_of(server, instance).host == destination

    def test_failed_live_migration_calls_recover(self, ops, server, instance):
        self._live_migration_gate(ops, instance)
        here = vm_of(server, instance).host
        post, recover = Recorder(), Recorder()
        with supported("supports_live_migration"):
            dest = ops.check_can_live_migrate_destination(None, instance)
            data = ops.check_can_live_migrate_source(None, instance, dest)
            with pytest.raises(exceptions.MigrationError):
                ops.live_migrate(None, instance, "no-such-host", post, recover, False, data)
            assert post.calls == [] and len(recover.calls) == 1
            ops.rollback_live_migration_at_destination(instance)
        vm = vm_of(server, instance)
        assert vm.host == here and vm.power_state == PowerState.RUNNING
