"""The VMware backend's conformance provider: vcsim, read with a pyvmomi client of its own.

The simulator comes from the VMware integration tests' ``vcsim`` fixture (our launcher, or
the server ``VCSIM_URL`` names); the reading from their :class:`Inspector`.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import pytest
from pyVmomi import vim, vmodl

import virtdriver
from tests.integration.vmware.conftest import vcsim, vcsim_binary, vcsim_flags
from tests.integration.vmware.helpers import Inspector, datastore_files, devices, make_conf
from tests.integration.vmware.volume_helpers import Cinder
from virtdriver.common.power_state import PowerState
from virtdriver.testing import ConformanceBackend, DiskView, Leftovers, NicView, VMView

__all__ = ["vcsim", "vcsim_binary", "vcsim_flags"]

IMAGE_BYTES = bytes(range(256)) * 4096  # 1 MiB, recognisable

POWER_STATES = {"poweredOn": PowerState.RUNNING, "poweredOff": PowerState.SHUTDOWN,
                "suspended": PowerState.SUSPENDED}

#: spawn's steps and the vCenter call that fails in each (mode: a fault answered at once,
#: or a task that ends in error). Full copies put the disk copy and extension on the path.
FAILURE_STEPS = {
    "create_vm": ("CreateVM_Task", "taskfault"),
    "reconfigure_vm": ("ReconfigVM_Task", "taskfault"),
    "power_on": ("PowerOnVM_Task", "taskfault"),
    "power_on_refused": ("PowerOnVM_Task", "fault"),
    "copy_root_disk": ("CopyVirtualDisk_Task", "taskfault"),
    "extend_root_disk": ("ExtendVirtualDisk_Task", "taskfault"),
}
INJECTED_FAULT = "InsufficientResourcesFault"


class VMwareConformanceBackend(ConformanceBackend):
    """VMwareVMOps on vcsim's default inventory (one cluster of three hosts), full copies."""

    def __init__(self, sim: Any, store: Any, image: Any) -> None:
        self.sim = sim
        self._store = store
        self._image = image
        self.inspector = Inspector(sim)
        self.cinder = Cinder(self.inspector)  # the volume service, for volume promises
        # a server without the launcher's fault endpoint cannot fail a step on demand
        self.failure_steps = tuple(FAILURE_STEPS) if sim.can_inject else ()

    @property
    def image(self) -> Any:
        return self._image

    @property
    def image_store(self) -> Any:
        return self._store

    @property
    def network(self) -> str:
        return "VM Network"

    def make_ops(self, progress_callback: Any = None) -> Any:
        # full copies: every spawn copies and extends its root disk, so a failure can be
        # injected at those steps too
        return virtdriver.load_backend("vmware", make_conf(self.sim, use_linked_clone=False),
                                       image_store=self._store,
                                       progress_callback=progress_callback)

    def read_vm(self, instance: Any) -> VMView | None:
        vm = self.inspector.vms().get(instance.uuid)
        if vm is None:
            return None
        hardware = vm["config.hardware"]
        disks = sorted(devices(vm, vim.vm.device.VirtualDisk),
                       key=lambda d: (d.controllerKey, d.unitNumber))
        nics = sorted(devices(vm, vim.vm.device.VirtualEthernetCard), key=lambda n: n.key)
        (host,) = self.inspector.names([vm["runtime.host"]])
        return VMView(power_state=POWER_STATES[vm["runtime.powerState"]],
                      vcpus=hardware.numCPU, memory_mb=hardware.memoryMB,
                      disks=tuple(DiskView(d.capacityInKB * 1024) for d in disks),
                      nics=tuple(NicView(n.macAddress.lower(), _network_name(n))
                                 for n in nics),
                      host=host)

    def leftovers(self) -> Leftovers:
        # vcsim keeps a snapshot's empty .vmsn memory file after the snapshot is removed
        files = {f for f in datastore_files(self.inspector) if not f.endswith(".vmsn")}
        return Leftovers(vms=frozenset(self.inspector.vms()), disks=frozenset(files),
                         tasks=frozenset(self._pending_tasks()))

    def _pending_tasks(self) -> set[str]:
        tasks = self.inspector.content.taskManager.recentTask or []
        if not tasks:
            return set()
        pc = vmodl.query.PropertyCollector
        found = self.inspector._collect([pc.FilterSpec(
            objectSet=[pc.ObjectSpec(obj=task) for task in tasks],
            propSet=[pc.PropertySpec(type=vim.Task, pathSet=["info.state"])])])
        return {moid for moid, (_, props) in found.items()
                if props.get("info.state") in ("queued", "running")}

    @contextlib.contextmanager
    def inject_failure(self, step: str) -> Iterator[str]:
        method, mode = FAILURE_STEPS[step]
        self.sim.inject(method, mode, fault=INJECTED_FAULT, message=f"injected into {step}")
        try:
            yield INJECTED_FAULT
        finally:
            self.sim.clear_faults()

    def make_volume(self) -> dict[str, Any]:
        """A vmdk volume: a shadow VM made as Cinder's VMDK driver makes it."""
        _, info, _ = self.cinder.create_volume()
        return info

    def _shadow_disk(self, connection_info: dict[str, Any]) -> Any:
        found = self.inspector.objects(vim.VirtualMachine, ["config.hardware.device"]).get(
            connection_info["data"]["volume"])
        if found is None:
            return None
        return next((d for d in found[1]["config.hardware.device"]
                     if isinstance(d, vim.vm.device.VirtualDisk)), None)

    def volume_attached(self, connection_info: dict[str, Any], instance: Any) -> bool:
        disk = self._shadow_disk(connection_info)
        vm = self.inspector.vms().get(instance.uuid)
        return disk is not None and vm is not None and disk.backing.fileName in {
            d.backing.fileName for d in devices(vm, vim.vm.device.VirtualDisk)}

    def volume_exists(self, connection_info: dict[str, Any]) -> bool:
        disk = self._shadow_disk(connection_info)
        return disk is not None and \
            self.cinder.flat(disk.backing.fileName).replace("[", "").replace("] ", "/") in \
            self.inspector.files()

    def delete_volume(self, connection_info: dict[str, Any]) -> None:
        ref = self.inspector.objects(vim.VirtualMachine, ["name"]).get(
            connection_info["data"]["volume"])
        if ref is not None:
            self.cinder.delete(ref[0])

    def live_migration_destination(self, instance: Any) -> str:
        here = self.read_vm(instance).host  # type: ignore[union-attr]
        hosts = self.inspector.objects(vim.HostSystem, ["name"])
        return sorted(p["name"] for _, p in hosts.values()
                      if p["name"] != here and p["name"].startswith("DC0_C0"))[0]

    def close(self) -> None:
        self.inspector.close()


def _network_name(nic: Any) -> str:
    """A standard portgroup's name (distributed ones are named by their key)."""
    backing = nic.backing
    if isinstance(backing, vim.vm.device.VirtualEthernetCard.NetworkBackingInfo):
        return backing.deviceName
    return getattr(getattr(backing, "port", None), "portgroupKey", "") or ""


@pytest.fixture(scope="module")
def conformance_backend(vcsim: Any, tmp_path_factory: pytest.TempPathFactory
                        ) -> Iterator[ConformanceBackend]:
    """vcsim, an image store with one 1 MiB vmdk image, the provider."""
    root = tmp_path_factory.mktemp("vmware-conformance")
    store = virtdriver.LocalImageStore(root / "images")
    (root / "disk.vmdk").write_bytes(IMAGE_BYTES)
    image = store.import_file(root / "disk.vmdk", disk_format="vmdk", name="disk",
                              properties={"vmware_adaptertype": "paraVirtual",
                                          "vmware_ostype": "otherLinux64Guest"})
    provider = VMwareConformanceBackend(vcsim, store, image)
    try:
        yield provider
    finally:
        provider.close()
