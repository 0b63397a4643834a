"""ConformanceSuite: every promise of the VMOps contract, as tests any backend runs.

A backend's test module subclasses :class:`ConformanceSuite`; a ``conformance_backend``
fixture in its conftest returns the backend's :class:`~virtdriver.testing.ConformanceBackend`.
Tests drive the backend through the public VMOps API only and check what the server holds
through the provider's own client.
"""

from __future__ import annotations

import datetime
import uuid as uuid_module
from collections.abc import Iterator
from typing import Any

import pytest

from virtdriver.common import exceptions
from virtdriver.common.base import VMOps
from virtdriver.common.model import Flavor, Instance
from virtdriver.common.power_state import PowerState
from virtdriver.testing.backend import ConformanceBackend, VMView
from virtdriver.testing.helpers import (
    SKIP_PREFIX,
    Recorder,
    TaskStates,
    gate,
    instance_operations,
    make_instance,
    make_vif,
    nova_like_instance,
    supported,
)
from virtdriver.testing.volume_suite import VolumePromises

__all__ = ["ConformanceSuite"]

GiB = 1024 ** 3
MiB = 1024 ** 2


class ConformanceSuite(VolumePromises):
    """The VMOps contract as tests; subclass it once per backend (``class TestMine(...)``).

    The subclass needs nothing but a ``conformance_backend`` fixture in scope. Tests of an
    operation a capability gates skip, with the reason, when the backend lacks it, after
    checking that the operation raises UnsupportedOperation as ``capabilities`` says.
    """

    # -- fixtures -------------------------------------------------------------------------

    @pytest.fixture(scope="class")
    @classmethod
    def progress(cls) -> list[tuple[int, str]]:
        """(percent, step) reports of the class's ops object, in order."""
        return []

    @pytest.fixture(scope="class")
    @classmethod
    def ops(cls, conformance_backend: ConformanceBackend,
            progress: list[tuple[int, str]]) -> Iterator[VMOps]:
        """The backend's ops object, shared by the class, closed at its end."""
        backend = conformance_backend.make_ops(
            lambda instance, percent, step: progress.append((percent, step)))
        yield backend
        backend.close()

    @pytest.fixture
    def server(self, conformance_backend: ConformanceBackend) -> ConformanceBackend:
        """The provider, under a name that reads well in a test."""
        return conformance_backend

    @pytest.fixture
    def instance(self, ops: VMOps, server: ConformanceBackend) -> Iterator[Instance]:
        """A running instance with one NIC, destroyed after the test."""
        inst = make_instance()
        inst.vif = make_vif(server.network, "10.0.0.7")  # type: ignore[attr-defined]
        ops.spawn(None, inst, server.image, [], None, [inst.vif])  # type: ignore[attr-defined]
        yield inst
        ops.destroy(inst)

    @staticmethod
    def vm(server: ConformanceBackend, instance: Any) -> VMView:
        """The server's view of the instance's VM, which must exist."""
        view = server.read_vm(instance)
        assert view is not None, f"the server holds no VM for {instance.name}"
        return view

    # -- spawn and destroy ----------------------------------------------------------------

    def test_spawn_makes_a_running_vm_with_the_flavor(self, ops, server, progress):
        before = server.leftovers()
        inst = make_instance(vcpus=2, memory_mb=512, root_gb=2, ephemeral_gb=1, swap=64)
        vifs = [make_vif(server.network, "10.0.0.5"), make_vif(server.network)]
        progress.clear()
        ops.spawn(None, inst, server.image, [], None, vifs)
        try:
            vm = self.vm(server, inst)
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
        assert self.vm(server, instance).power_state == PowerState.RUNNING

    @pytest.mark.parametrize("case", [
        "memory", "vcpus", "uuid", "duplicate_mac", "multicast_mac", "root_too_small",
        "mac_newline", "name_newline", "name_nul", "hostname_newline", "metadata_key_newline",
        "file_relative", "file_dotdot", "file_nul", "file_not_a_pair", "file_contents_int"])
    def test_bad_input_makes_no_server_call(self, ops, server, case):
        instance = nova_like_instance()
        image = server.image
        vifs = [make_vif(server.network)]
        files: list[Any] = []
        before = server.leftovers()
        if case.startswith("file_"):
            # where the backend has a config drive the files could go there: only the bad
            # file is the reason to refuse
            instance.config_drive = bool(ops.capabilities.get("supports_config_drive"))
            files = {"file_relative": [("../../etc/passwd", b"x")],
                     "file_dotdot": [("/etc/../../x", b"x")],
                     "file_nul": [("/etc/motd\0.d", b"x")],
                     "file_not_a_pair": [("/etc/motd",)],
                     "file_contents_int": [("/etc/motd", 7)]}[case]
        elif case == "mac_newline":  # `$` matches before a trailing newline: not enough
            vifs = [{"id": str(uuid_module.uuid4()), "address": "fa:16:3e:00:00:0a\n",
                     "network": server.network}]
        elif case in ("name_newline", "name_nul", "hostname_newline"):
            field = "hostname" if case == "hostname_newline" else "name"
            char = "\0" if case == "name_nul" else "\n"
            setattr(instance, field, f"x{char}uuid:{uuid_module.uuid4()}")  # a forged line
        elif case == "metadata_key_newline":
            instance.metadata = {"a\nb": "v"}
        elif case == "memory":
            instance.flavor.memory_mb = -1
        elif case == "vcpus":
            instance.flavor.vcpus = 0
        elif case == "uuid":
            instance.uuid = "not-a-uuid"
        elif case == "duplicate_mac":
            vifs = vifs * 2
        elif case == "multicast_mac":
            vifs = [{"id": str(uuid_module.uuid4()), "address": "01:00:5e:00:00:01",
                     "network": server.network}]
        elif case == "root_too_small":
            image = type(image)(**{**image.to_dict(), "size": 2 * GiB})
        ops.stats.reset()
        try:
            with pytest.raises(exceptions.InvalidInput):
                ops.spawn(None, instance, image, files, None, vifs)
            assert ops.stats.total_calls == 0, ops.stats.snapshot()
            assert not (left := server.leftovers() - before), left
        finally:
            # a spawn that wrongly succeeded must not outlive the test
            if case not in ("uuid", "name_nul") and server.read_vm(instance) is not None:
                ops.destroy(instance)

    @pytest.mark.parametrize("identity", ["uuid_path", "name_newline", "name_nul"])
    def test_a_bad_identity_is_refused_by_every_operation_before_any_call(self, ops, server,
                                                                          identity):
        instance = nova_like_instance()
        if identity == "uuid_path":
            instance.uuid = "../x"
        else:
            char = "\0" if identity == "name_nul" else "\n"
            instance.name = f"x{char}uuid:{uuid_module.uuid4()}"
        before = server.leftovers()
        for name, call in instance_operations(ops, server.image, server.network,
                                              instance).items():
            ops.stats.reset()
            try:
                call()
            except exceptions.InvalidInput as error:
                assert error.field.startswith("instance."), (name, error)
            except exceptions.UnsupportedOperation as error:  # it does nothing at all
                assert error.operation == name, (name, error)
            except Exception as error:  # noqa: BLE001 - the wrong error is the finding
                pytest.fail(f"{name} of an instance with a bad identity raised {error!r}")
            else:
                pytest.fail(f"{name} accepted an instance with a bad identity")
            assert ops.stats.total_calls == 0, (name, ops.stats.snapshot())
        assert not (left := server.leftovers() - before), left

    def test_files_no_mechanism_can_deliver_are_refused(self, ops, server):
        if ops.capabilities.get("supports_inject_file"):
            pytest.skip(f"{SKIP_PREFIX}: {ops.backend_name} injects files without a config "
                        "drive (supports_inject_file)")
        before = server.leftovers()
        instance = make_instance()  # no config drive, and no guest agent
        ops.stats.reset()
        with pytest.raises(exceptions.InvalidInput, match="injected_files"):
            ops.spawn(None, instance, server.image, [("/etc/motd", b"hi")], None, [])
        assert ops.stats.total_calls == 0, ops.stats.snapshot()
        assert server.read_vm(instance) is None
        assert not (left := server.leftovers() - before), left

    def test_unknown_network_is_refused_before_anything_is_made(self, ops, server):
        before = server.leftovers()
        inst = make_instance()
        with pytest.raises(exceptions.InvalidInput, match="no-such-net"):
            ops.spawn(None, inst, server.image, [], None, [make_vif("no-such-net")])
        assert not (left := server.leftovers() - before), left
        assert server.read_vm(inst) is None

    def test_an_unknown_instance_is_instance_not_found(self, ops):
        inst = make_instance()
        for name, call in [("get_info", lambda: ops.get_info(inst)),
                           ("power_off", lambda: ops.power_off(inst)),
                           ("power_on", lambda: ops.power_on(inst)),
                           ("reboot", lambda: ops.reboot(inst, reboot_type="HARD")),
                           ("get_instance_diagnostics",
                            lambda: ops.get_instance_diagnostics(inst))]:
            try:
                call()
            except exceptions.InstanceNotFound:
                continue
            except Exception as error:  # noqa: BLE001 - the wrong error is the finding
                pytest.fail(f"{name} of an unknown instance raised {error!r}")
            pytest.fail(f"{name} of an unknown instance succeeded")

    # -- power ----------------------------------------------------------------------------

    def test_power_off_and_on(self, ops, server, instance):
        ops.power_off(instance)
        assert self.vm(server, instance).power_state == PowerState.SHUTDOWN
        assert ops.get_info(instance).state == PowerState.SHUTDOWN
        ops.power_off(instance)  # already off: stays off, no error
        assert self.vm(server, instance).power_state == PowerState.SHUTDOWN
        ops.power_on(instance)
        assert self.vm(server, instance).power_state == PowerState.RUNNING
        ops.power_on(instance)  # already on: stays on
        assert ops.get_info(instance).state == PowerState.RUNNING

    def test_power_off_with_a_timeout_stops_the_vm(self, ops, server, instance):
        ops.power_off(instance, timeout=5, retry_interval=1)
        assert self.vm(server, instance).power_state == PowerState.SHUTDOWN
        assert ops.get_info(instance).state == PowerState.SHUTDOWN

    @pytest.mark.parametrize("reboot_type", ["SOFT", "HARD"])
    def test_reboot_leaves_the_vm_running(self, ops, server, instance, reboot_type):
        ops.reboot(instance, reboot_type=reboot_type)
        assert self.vm(server, instance).power_state == PowerState.RUNNING
        assert ops.get_info(instance).state == PowerState.RUNNING

    def test_suspend_and_resume(self, ops, server, instance):
        gate(ops, "supports_suspend", {"suspend": lambda: ops.suspend(instance),
                                       "resume": lambda: ops.resume(instance)})
        with supported("supports_suspend"):
            ops.suspend(instance)
            assert self.vm(server, instance).power_state == PowerState.SUSPENDED
            assert ops.get_info(instance).state == PowerState.SUSPENDED
            ops.resume(instance)
        assert self.vm(server, instance).power_state == PowerState.RUNNING

    def test_pause_and_unpause(self, ops, server, instance):
        gate(ops, "supports_pause", {"pause": lambda: ops.pause(instance),
                                     "unpause": lambda: ops.unpause(instance)})
        with supported("supports_pause"):
            ops.pause(instance)
            assert self.vm(server, instance).power_state == PowerState.PAUSED
            assert ops.get_info(instance).state == PowerState.PAUSED
            ops.unpause(instance)
        assert self.vm(server, instance).power_state == PowerState.RUNNING

    def test_soft_delete_restore_and_set_bootable(self, ops, server, instance):
        gate(ops, "supports_soft_delete", {
            "soft_delete": lambda: ops.soft_delete(instance),
            "restore": lambda: ops.restore(instance),
            "set_bootable": lambda: ops.set_bootable(instance, True)})
        with supported("supports_soft_delete"):
            ops.soft_delete(instance)
            assert self.vm(server, instance).power_state == PowerState.SHUTDOWN
            ops.restore(instance)
            assert self.vm(server, instance).power_state == PowerState.RUNNING
            ops.power_off(instance)
            ops.set_bootable(instance, False)
            with pytest.raises(exceptions.VirtDriverError):
                ops.power_on(instance)
            assert self.vm(server, instance).power_state == PowerState.SHUTDOWN
            ops.set_bootable(instance, True)
            ops.power_on(instance)
        assert self.vm(server, instance).power_state == PowerState.RUNNING

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
        assert self.vm(server, instance).power_state == PowerState.RUNNING
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
        assert self.vm(server, instance).power_state == PowerState.RUNNING
        ops.post_interrupted_snapshot_cleanup(None, instance)  # nothing to clean: no error
        assert not (left := server.leftovers() - before), left
        # the image is usable: an instance boots from it
        clone = make_instance()
        ops.spawn(None, clone, uploaded, [], None, [])
        try:
            assert self.vm(server, clone).power_state == PowerState.RUNNING
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
        before, vm_before = server.leftovers(), self.vm(server, instance)
        with supported("supports_rescue"):
            ops.rescue(None, instance, [instance.vif], server.image, rescue_password="pw")
            assert instance.name in ops.list_instances()
            with pytest.raises(exceptions.InstanceInvalidState):
                ops.rescue(None, instance, [], server.image)
            ops.unrescue(instance)
        vm = self.vm(server, instance)
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
        vm = self.vm(server, instance)
        assert vm.power_state == PowerState.RUNNING
        assert (vm.vcpus, vm.memory_mb, vm.disks[0].size_bytes) == (2, 512, 2 * GiB)
        assert instance.vif.address in vm.macs
        return old

    def test_resize_then_confirm(self, ops, server, instance):
        before = server.leftovers()
        self._resize(ops, server, instance)
        ops.confirm_migration(None, instance, [instance.vif])
        vm = self.vm(server, instance)
        assert (vm.vcpus, vm.memory_mb, vm.power_state) == (2, 512, PowerState.RUNNING)
        assert len(server.leftovers().vms) == len(before.vms)  # what a revert needed is gone

    def test_resize_then_revert(self, ops, server, instance):
        before = server.leftovers()
        instance.flavor = self._resize(ops, server, instance)  # Nova restores the old flavor
        ops.finish_revert_migration(None, instance, [instance.vif])
        vm = self.vm(server, instance)
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
        vm_before = self.vm(server, instance)
        with pytest.raises(exceptions.MigrationError):
            ops.migrate_disk_and_power_off(None, instance, "",
                                           Flavor(vcpus=1, memory_mb=256, root_gb=0))
        assert self.vm(server, instance) == vm_before

    # -- live migration -------------------------------------------------------------------

    def _live_migration_gate(self, ops: VMOps, instance: Any) -> None:
        gate(ops, "supports_live_migration", {
            "check_can_live_migrate_destination":
                lambda: ops.check_can_live_migrate_destination(None, instance),
            "live_migrate": lambda: ops.live_migrate(None, instance, "elsewhere", Recorder(),
                                                     Recorder())})

    def test_live_migration_moves_the_running_vm(self, ops, server, instance):
        self._live_migration_gate(ops, instance)
        here = self.vm(server, instance).host
        destination = server.live_migration_destination(instance)
        assert destination != here
        post, recover = Recorder(), Recorder()
        with supported("supports_live_migration"):
            dest = ops.check_can_live_migrate_destination(None, instance)
            data = ops.check_can_live_migrate_source(None, instance, dest)
            data = ops.pre_live_migration(None, instance, None, [instance.vif], None, data)
            ops.live_migrate(None, instance, destination, post, recover, False, data)
            assert len(post.calls) == 1 and recover.calls == []
            vm = self.vm(server, instance)
            assert vm.host == destination and vm.power_state == PowerState.RUNNING
            ops.post_live_migration(None, instance, data)
            ops.post_live_migration_at_destination(None, instance, [instance.vif])
        assert self.vm(server, instance).host == destination

    def test_failed_live_migration_calls_recover(self, ops, server, instance):
        self._live_migration_gate(ops, instance)
        here = self.vm(server, instance).host
        post, recover = Recorder(), Recorder()
        with supported("supports_live_migration"):
            dest = ops.check_can_live_migrate_destination(None, instance)
            data = ops.check_can_live_migrate_source(None, instance, dest)
            with pytest.raises(exceptions.MigrationError):
                ops.live_migrate(None, instance, "no-such-host", post, recover, False, data)
            assert post.calls == [] and len(recover.calls) == 1
            ops.rollback_live_migration_at_destination(instance)
        vm = self.vm(server, instance)
        assert vm.host == here and vm.power_state == PowerState.RUNNING

    # -- facts and consoles ---------------------------------------------------------------

    def test_diagnostics_describe_the_vm(self, ops, server, instance):
        diags = ops.get_instance_diagnostics(instance)
        assert diags.state == "running"
        assert diags.num_cpus == 1 and diags.memory_details.maximum == 256
        assert diags.driver
        flat = ops.get_diagnostics(instance)
        assert isinstance(flat, dict) and flat
        assert instance.uuid in ops.get_per_instance_usage()

    def test_bandwidth_counters_name_each_nic(self, ops, instance):
        gate(ops, "supports_bandwidth_counters",
             {"get_all_bw_counters": lambda: ops.get_all_bw_counters([instance])})
        with supported("supports_bandwidth_counters"):
            counters = ops.get_all_bw_counters([instance])
        assert [(c["uuid"], c["mac_address"]) for c in counters] == [
            (instance.uuid, instance.vif.address)]

    def test_vnc_console_is_reachable_and_stable(self, ops, instance):
        console = ops.get_vnc_console(instance)
        assert console.host and isinstance(console.port, int) and console.port > 0
        again = ops.get_vnc_console(instance)
        assert (again.host, again.port) == (console.host, console.port)

    def test_console_output_is_bytes(self, ops, instance):
        gate(ops, "supports_console_output",
             {"get_console_output": lambda: ops.get_console_output(instance)})
        with supported("supports_console_output"):
            output = ops.get_console_output(instance)
        assert isinstance(output, bytes) and output

    # -- network --------------------------------------------------------------------------

    def test_attach_and_detach_interface(self, ops, server, instance):
        vif = make_vif(server.network, "10.0.0.9")
        gate(ops, "supports_attach_interface", {
            "attach_interface": lambda: ops.attach_interface(instance, server.image, vif),
            "detach_interface": lambda: ops.detach_interface(instance, vif)})
        with supported("supports_attach_interface"):
            ops.attach_interface(instance, server.image, vif)
            nics = {n.mac: n.network for n in self.vm(server, instance).nics}
            assert nics == {instance.vif.address: server.network, vif.address: server.network}
            ops.detach_interface(instance, vif)
        assert self.vm(server, instance).macs == {instance.vif.address}

    def test_plug_and_unplug_vifs(self, ops, server, instance):
        extra = make_vif(server.network)
        ops.plug_vifs(instance, [instance.vif, extra])
        ops.plug_vifs(instance, [instance.vif, extra])  # plugged already: nothing changes
        nics = self.vm(server, instance).nics
        assert sorted(n.mac for n in nics) == sorted([instance.vif.address, extra.address])
        ops.unplug_vifs(instance, [extra])
        assert self.vm(server, instance).macs == {instance.vif.address}
        ops.unplug_vifs(instance, [instance.vif])
        assert self.vm(server, instance).nics == ()

    def test_inject_network_info_keeps_the_vm_as_it_is(self, ops, server, instance):
        vm_before = self.vm(server, instance)
        ops.inject_network_info(instance, [instance.vif])
        assert self.vm(server, instance) == vm_before

    def test_security_rules(self, ops, server, instance):
        gate(ops, "supports_security_rules", {
            "refresh_instance_security_rules":
                lambda: ops.refresh_instance_security_rules(instance),
            "unfilter_instance": lambda: ops.unfilter_instance(instance, [instance.vif])})
        with supported("supports_security_rules"):
            ops.unfilter_instance(instance, [instance.vif])
            ops.refresh_instance_security_rules(instance)
        assert self.vm(server, instance).macs == {instance.vif.address}

    # -- guest ----------------------------------------------------------------------------

    def test_set_admin_password(self, ops, server, instance):
        gate(ops, "supports_set_admin_password",
             {"set_admin_password": lambda: ops.set_admin_password(instance, "n3w-pass")})
        with supported("supports_set_admin_password"):
            ops.set_admin_password(instance, "n3w-pass")
        assert self.vm(server, instance).power_state == PowerState.RUNNING

    def test_inject_file_and_change_instance_metadata(self, ops, server, instance):
        gate(ops, "supports_inject_file", {
            "inject_file": lambda: ops.inject_file(instance, "/etc/hosts", b"127.0.0.1\n"),
            "change_instance_metadata":
                lambda: ops.change_instance_metadata(instance, {"role": ["+", "db"]})})
        with supported("supports_inject_file"):
            ops.inject_file(instance, "/etc/hosts", b"127.0.0.1 localhost\n")
            ops.change_instance_metadata(instance, {"role": ["+", "db"]})
            ops.change_instance_metadata(instance, {"role": ["-"]})
            with pytest.raises(exceptions.InvalidInput):
                ops.change_instance_metadata(instance, {"x": ["?"]})
        assert self.vm(server, instance).power_state == PowerState.RUNNING

    def test_reset_network(self, ops, server, instance):
        gate(ops, "supports_reset_network",
             {"reset_network": lambda: ops.reset_network(instance)})
        with supported("supports_reset_network"):
            ops.reset_network(instance)
        assert self.vm(server, instance).power_state == PowerState.RUNNING

    # -- host -----------------------------------------------------------------------------

    def test_manage_image_cache_keeps_images_in_use(self, ops, server, instance):
        gate(ops, "has_imagecache",
             {"manage_image_cache": lambda: ops.manage_image_cache(None, [instance])})
        instance.image_ref = server.image.id
        with supported("has_imagecache"):
            ops.manage_image_cache(None, [instance])
        # the image it uses is still there: another instance spawns from it
        other = make_instance()
        ops.spawn(None, other, server.image, [], None, [])
        try:
            assert self.vm(server, other).power_state == PowerState.RUNNING
        finally:
            ops.destroy(other)

