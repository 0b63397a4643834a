"""A toy backend: an in-memory VMOps over a fake "server" (a dict), and its conformance provider.

It does the operations the contract requires of every backend and a few optional ones
(suspend, attach_interface); everything else raises UnsupportedOperation, as its
``capabilities`` say. It proves a third party's backend can run ``virtdriver.testing``.
"""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import Iterable, Iterator
from typing import Any

from virtdriver.common import exceptions
from virtdriver.common.base import DEFAULT_CAPABILITIES, VMOps
from virtdriver.common.model import (
    ConsoleInfo,
    Diagnostics,
    InstanceInfo,
    MemoryDiagnostics,
    field_of,
    stuck_rebooting,
    validate_image,
    validate_instance,
    validate_instance_identity,
    validate_vifs,
)
from virtdriver.common.power_state import PowerState
from virtdriver.common.validation import require_injected_files
from virtdriver.testing import ConformanceBackend, DiskView, Leftovers, NicView, VMView

GiB = 1024 ** 3
MiB = 1024 ** 2


@dataclasses.dataclass
class ToyVM:
    """One VM on the toy server."""

    name: str
    vcpus: int
    memory_mb: int
    disks: list[str]
    nics: dict[str, str]  # MAC -> network
    state: PowerState = PowerState.SHUTDOWN
    host: str = "toy-host-1"


class ToyServer:
    """The fake hypervisor: VMs by instance uuid, disks by name with their sizes."""

    networks = ("toy-net",)

    def __init__(self) -> None:
        self.vms: dict[str, ToyVM] = {}
        self.disks: dict[str, int] = {}
        self.fail_at: str | None = None  # a step whose next call fails

    def call(self, ops: VMOps, step: str) -> None:
        """Every server call goes through here: counted, and failed when asked to."""
        ops.stats.record(step, 0.0)
        if self.fail_at == step:
            self.fail_at = None
            raise exceptions.BackendError(f"injected into {step}", code="TOY_FAULT")


class ToyVMOps(VMOps):
    """The contract on a ToyServer (in memory; nothing leaves the process)."""

    backend_name = "toy"
    capabilities = {**DEFAULT_CAPABILITIES, "supports_suspend": True,
                    "supports_attach_interface": True, "supports_image_type_raw": True}

    def __init__(self, conf: Any, image_store: Any = None, progress_callback: Any = None,
                 server: ToyServer | None = None) -> None:
        super().__init__(conf, image_store, progress_callback)
        self.server = server or ToyServer()

    def _vm(self, instance: Any) -> ToyVM:
        validate_instance_identity(instance)
        self.server.call(self, "find_vm")
        vm = self.server.vms.get(instance.uuid)
        if vm is None:
            raise exceptions.InstanceNotFound(f"instance {instance.uuid} has no VM")
        return vm

    # -- lifecycle ------------------------------------------------------------------------

    def spawn(self, context, instance, image_meta, injected_files, admin_password,
              network_info=None, block_device_info=None):
        validate_instance(instance)
        validate_image(image_meta)
        vifs = validate_vifs(network_info)
        if require_injected_files(injected_files):
            raise exceptions.InvalidInput("injected_files", injected_files,
                                          "need a way into the guest; the toy has none")
        flavor = instance.flavor
        if (field_of(image_meta, "size", 0) or 0) > flavor.root_gb * GiB:
            raise exceptions.InvalidInput("flavor.root_gb", flavor.root_gb,
                                          "is smaller than the image")
        for vif in vifs:
            if vif.network not in self.server.networks:
                raise exceptions.InvalidInput("vif.network", vif.network, "is unknown")
        self.server.call(self, "find_vm")
        if instance.uuid in self.server.vms:
            raise exceptions.InstanceExists(f"instance {instance.uuid} has a VM")
        sizes = [flavor.root_gb * GiB, (flavor.ephemeral_gb or 0) * GiB,
                 (flavor.swap or 0) * MiB]
        made: list[str] = []
        try:
            for index, size in enumerate(sizes):
                if size or index == 0:
                    self.server.call(self, "create_disk")
                    name = f"{instance.uuid}-{index}"
                    self.server.disks[name] = size
                    made.append(name)
            self.progress.report(instance, 50, "create_disks")
            self.server.call(self, "create_vm")
            self.server.vms[instance.uuid] = ToyVM(
                instance.name, flavor.vcpus, flavor.memory_mb, made,
                {vif.address: vif.network for vif in vifs})
            self.server.call(self, "power_on")
            self.server.vms[instance.uuid].state = PowerState.RUNNING
            self.progress.report(instance, 100, "power_on")
        except exceptions.VirtDriverError:
            self.server.vms.pop(instance.uuid, None)
            for name in made:
                self.server.disks.pop(name, None)
            raise

    def destroy(self, instance, network_info=None, block_device_info=None,
                destroy_disks=True):
        try:
            vm = self._vm(instance)
        except exceptions.InstanceNotFound:
            return
        self.server.call(self, "destroy_vm")
        del self.server.vms[instance.uuid]
        for name in vm.disks + [f"{instance.uuid}-orig-{n}" for n in range(3)]:
            self.server.disks.pop(name, None)

    def reboot(self, instance, network_info=None, reboot_type="SOFT",
               bad_volumes_callback=None):
        vm = self._vm(instance)
        self.server.call(self, "reboot")
        vm.state = PowerState.RUNNING

    def power_off(self, instance, timeout=0, retry_interval=0):
        vm = self._vm(instance)
        self.server.call(self, "power_off")
        vm.state = PowerState.SHUTDOWN

    def power_on(self, instance):
        vm = self._vm(instance)
        self.server.call(self, "power_on")
        vm.state = PowerState.RUNNING

    def suspend(self, instance):
        self._vm(instance).state = PowerState.SUSPENDED

    def resume(self, instance):
        vm = self._vm(instance)
        if vm.state != PowerState.SUSPENDED:
            raise exceptions.InstanceInvalidState(instance.uuid, "resume", vm.state.name)
        vm.state = PowerState.RUNNING

    def pause(self, instance):
        raise self.unsupported("pause", "the toy keeps no memory to pause")

    def unpause(self, instance):
        raise self.unsupported("unpause")

    def soft_delete(self, instance):
        raise self.unsupported("soft_delete")

    def restore(self, instance):
        raise self.unsupported("restore")

    def poll_rebooting_instances(self, timeout, instances):
        stuck = stuck_rebooting(instances, timeout)
        for instance in stuck:
            self.reboot(instance, reboot_type="HARD")
        return stuck

    def set_bootable(self, instance, is_bootable):
        raise self.unsupported("set_bootable")

    # -- rescue, snapshot -----------------------------------------------------------------

    def rescue(self, context, instance, network_info, image_meta, rescue_password=None):
        raise self.unsupported("rescue")

    def unrescue(self, instance, power_on=True):
        raise self.unsupported("unrescue")

    def snapshot(self, context, instance, image_id, update_task_state):
        vm = self._vm(instance)
        self.image_store.show(context, image_id)
        update_task_state(task_state="image_pending_upload", expected_state="image_snapshot")
        update_task_state(task_state="image_uploading",
                          expected_state="image_pending_upload")
        size = self.server.disks[vm.disks[0]]
        self.image_store.upload(context, image_id, [b"toy disk of %d bytes" % size],
                                {"disk_format": "raw"})

    def post_interrupted_snapshot_cleanup(self, context, instance):
        self._vm(instance)

    # -- resize ---------------------------------------------------------------------------

    def migrate_disk_and_power_off(self, context, instance, dest, flavor,
                                   block_device_info=None):
        vm = self._vm(instance)
        if flavor.root_gb * GiB < self.server.disks[vm.disks[0]]:
            raise exceptions.MigrationError("the root disk cannot shrink")
        vm.state = PowerState.SHUTDOWN
        self.server.disks[f"{instance.uuid}-orig-0"] = self.server.disks[vm.disks[0]]
        self.server.disks[vm.disks[0]] = flavor.root_gb * GiB
        return {"old": (vm.vcpus, vm.memory_mb)}

    def finish_migration(self, context, migration, instance, disk_info, network_info,
                         image_meta, resize_instance=False, block_device_info=None,
                         power_on=True):
        vm = self._vm(instance)
        vm.vcpus, vm.memory_mb = instance.flavor.vcpus, instance.flavor.memory_mb
        vm.state = PowerState.RUNNING if power_on else vm.state

    def confirm_migration(self, migration, instance, network_info):
        validate_instance_identity(instance)
        self.server.disks.pop(f"{instance.uuid}-orig-0", None)

    def finish_revert_migration(self, context, instance, network_info=None,
                                block_device_info=None, power_on=True):
        vm = self._vm(instance)
        self.server.disks[vm.disks[0]] = self.server.disks.pop(f"{instance.uuid}-orig-0")
        vm.vcpus, vm.memory_mb = instance.flavor.vcpus, instance.flavor.memory_mb
        vm.state = PowerState.RUNNING if power_on else vm.state

    # -- live migration: the toy has one host ---------------------------------------------

    def check_can_live_migrate_destination(self, context, instance, block_migration=False,
                                           disk_over_commit=False):
        raise self.unsupported("check_can_live_migrate_destination", "one host only")

    def check_can_live_migrate_source(self, context, instance, dest_check_data):
        raise self.unsupported("check_can_live_migrate_source", "one host only")

    def pre_live_migration(self, context, instance, block_device_info, network_info,
                           disk_info, migrate_data=None):
        raise self.unsupported("pre_live_migration", "one host only")

    def live_migrate(self, context, instance, destination_hostname, post_method,
                     recover_method, block_migration=False, migrate_data=None):
        raise self.unsupported("live_migrate", "one host only")

    def post_live_migration(self, context, instance, migrate_data=None):
        raise self.unsupported("post_live_migration", "one host only")

    def post_live_migration_at_destination(self, context, instance, network_info,
                                           block_migration=False, block_device_info=None):
        raise self.unsupported("post_live_migration_at_destination", "one host only")

    def rollback_live_migration_at_destination(self, instance, block_device_info=None):
        raise self.unsupported("rollback_live_migration_at_destination", "one host only")

    # -- network --------------------------------------------------------------------------

    def attach_interface(self, instance, image_meta, vif):
        (vif,) = validate_vifs([vif])
        self._vm(instance).nics[vif.address] = vif.network

    def detach_interface(self, instance, vif):
        (vif,) = validate_vifs([vif])
        self._vm(instance).nics.pop(vif.address, None)

    def plug_vifs(self, instance, network_info):
        for vif in validate_vifs(network_info):
            self._vm(instance).nics[vif.address] = vif.network

    def unplug_vifs(self, instance, network_info):
        for vif in validate_vifs(network_info):
            self._vm(instance).nics.pop(vif.address, None)

    def inject_network_info(self, instance, network_info):
        validate_vifs(network_info)
        self._vm(instance)

    def reset_network(self, instance):
        raise self.unsupported("reset_network", "no guest agent")

    def refresh_instance_security_rules(self, instance):
        raise self.unsupported("refresh_instance_security_rules")

    def refresh_security_group_rules(self, security_group_id):
        raise self.unsupported("refresh_security_group_rules")

    def unfilter_instance(self, instance, network_info):
        raise self.unsupported("unfilter_instance")

    # -- guest ----------------------------------------------------------------------------

    def inject_file(self, instance, path, contents):
        raise self.unsupported("inject_file", "no guest agent")

    def set_admin_password(self, instance, new_pass):
        raise self.unsupported("set_admin_password", "no guest agent")

    def change_instance_metadata(self, instance, diff):
        raise self.unsupported("change_instance_metadata", "no guest agent")

    # -- facts ----------------------------------------------------------------------------

    def get_info(self, instance):
        return InstanceInfo(state=self._vm(instance).state)

    def list_instances(self):
        return [vm.name for vm in self.server.vms.values()]

    def list_instance_uuids(self):
        return list(self.server.vms)

    def get_diagnostics(self, instance):
        vm = self._vm(instance)
        return {"toy:vcpus": vm.vcpus, "toy:memory_mb": vm.memory_mb}

    def get_instance_diagnostics(self, instance):
        vm = self._vm(instance)
        return Diagnostics(state="running" if vm.state == PowerState.RUNNING else "shutdown",
                           driver="toy", num_cpus=vm.vcpus, num_nics=len(vm.nics),
                           num_disks=len(vm.disks),
                           memory_details=MemoryDiagnostics(maximum=vm.memory_mb))

    def get_all_bw_counters(self, instances: Iterable[Any]):
        raise self.unsupported("get_all_bw_counters")

    def get_per_instance_usage(self):
        return {uuid: {"uuid": uuid, "memory_mb": vm.memory_mb}
                for uuid, vm in self.server.vms.items() if vm.state == PowerState.RUNNING}

    def get_console_output(self, instance):
        raise self.unsupported("get_console_output")

    def get_vnc_console(self, instance):
        vm = self._vm(instance)
        return ConsoleInfo(host=vm.host, port=5900 + list(self.server.vms).index(instance.uuid))

    # -- volumes: the toy has no block storage ---------------------------------------------

    def attach_volume(self, context, connection_info, instance, mountpoint, disk_bus=None,
                      device_type=None, encryption=None):
        raise self.unsupported("attach_volume", "no block storage")

    def detach_volume(self, context, connection_info, instance, mountpoint, encryption=None):
        raise self.unsupported("detach_volume", "no block storage")

    def swap_volume(self, context, old_connection_info, new_connection_info, instance,
                    mountpoint, resize_to):
        raise self.unsupported("swap_volume", "no block storage")

    def extend_volume(self, context, connection_info, instance, requested_size):
        raise self.unsupported("extend_volume", "no block storage")

    def get_volume_connector(self, instance):
        raise self.unsupported("get_volume_connector", "no block storage")

    # -- host -----------------------------------------------------------------------------

    def manage_image_cache(self, context, instances):
        raise self.unsupported("manage_image_cache", "no image cache")

    def get_datacenter_ref_and_name(self, ds_ref):
        raise self.unsupported("get_datacenter_ref_and_name", "no datacenters")

    def check_cache_folder(self, ds_name, ds_ref):
        return None

    def check_temp_folder(self, ds_name, ds_ref):
        return None


class ToyConformanceBackend(ConformanceBackend):
    """The provider: reads the ToyServer's dicts directly, never through ToyVMOps."""

    failure_steps = ("create_disk", "create_vm", "power_on")

    def __init__(self, image_store: Any, image: Any, ops_class: type[ToyVMOps] = ToyVMOps
                 ) -> None:
        self.server = ToyServer()
        self._store = image_store
        self._image = image
        self.ops_class = ops_class

    @property
    def image(self) -> Any:
        return self._image

    @property
    def image_store(self) -> Any:
        return self._store

    @property
    def network(self) -> str:
        return ToyServer.networks[0]

    def make_ops(self, progress_callback: Any = None) -> VMOps:
        return self.ops_class(None, self._store, progress_callback, server=self.server)

    def read_vm(self, instance: Any) -> VMView | None:
        vm = self.server.vms.get(instance.uuid)
        if vm is None:
            return None
        return VMView(power_state=vm.state, vcpus=vm.vcpus, memory_mb=vm.memory_mb,
                      disks=tuple(DiskView(self.server.disks[d]) for d in vm.disks),
                      nics=tuple(NicView(mac, net) for mac, net in vm.nics.items()),
                      host=vm.host)

    def leftovers(self) -> Leftovers:
        return Leftovers(vms=frozenset(self.server.vms), disks=frozenset(self.server.disks))

    @contextlib.contextmanager
    def inject_failure(self, step: str) -> Iterator[str]:
        self.server.fail_at = step
        try:
            yield "TOY_FAULT"
        finally:
            self.server.fail_at = None

