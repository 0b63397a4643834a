"""The floor on Xen: each operation as the fewest raw XenAPI calls, waiting by push.

Long operations run as ``Async.*`` and are awaited with ``event.from`` on the task (from
token "", so a task that already ended answers at once), then ``task.destroy``. The client
keeps the references it made (cached image VDI, VM, root VDI), as the library keeps its
own caches, so no lookup is spent.
"""

from __future__ import annotations

import uuid as uuid_module
from typing import Any

from benchmarks import raw_xen
from benchmarks.common import CountedClient, SnapshotSink
from benchmarks.raw_xen import RawXen, XenVM

EVENT_TIMEOUT = 30.0


class FloorXen(CountedClient):
    """The Xen floor client (see module docstring)."""

    name = "floor"

    def __init__(self, sim: Any) -> None:
        self.raw = RawXen(sim)
        self.api = self.raw.api
        self.counter = self.raw.counter
        self.cache: dict[str, str] = {}
        self.sink = SnapshotSink("vhd")

    def close(self) -> None:
        """Log out, remove the snapshot sink."""
        self.raw.close()
        self.sink.close()

    def wait(self, task: str, destroy: bool = True) -> Any:
        """Wait for ``task`` by push, destroy it, return its result or raise its error."""
        token = ""
        try:
            for _ in range(10_000):  # bounded: each round blocks up to EVENT_TIMEOUT
                reply = self.api.event_from([f"task/{task}"], token, EVENT_TIMEOUT)
                token = reply["token"]
                for event in reply["events"]:
                    record = event.get("snapshot") or {}
                    status = str(record.get("status", "pending")).lower()
                    if status == "success":
                        return record.get("result", "")
                    if status != "pending":
                        raise RuntimeError(f"task failed: {record.get('error_info')}")
            raise TimeoutError(f"task {task} never ended")
        finally:
            if destroy:
                self.api.task.destroy(task)

    @staticmethod
    def _ref(result: str) -> str:
        # A task's result is an XML-RPC <value> fragment holding the new object's ref.
        return result.replace("<value>", "").replace("</value>", "").strip()

    # -- operations ------------------------------------------------------------------------------

    def new_image(self) -> str:
        """A fresh image id: the next spawn with it finds nothing cached."""
        return str(uuid_module.uuid4())

    def spawn(self, image_id: str, cold: bool) -> XenVM:
        """Import the image if ``cold``; clone, grow, create VM, VBD, VIF; start."""
        api, raw = self.api, self.raw
        if cold or image_id not in self.cache:
            data = raw_xen.image_bytes()
            base = api.VDI.create(raw_xen.vdi_record(raw.sr, f"floor-cache/{image_id}",
                                                     len(data), {"image-id": image_id}))
            raw.put_vdi(base, data)
            self.cache[image_id] = base
        name = f"floor-{uuid_module.uuid4().hex[:8]}"
        root = self._ref(self.wait(api.Async.VDI.clone(self.cache[image_id], {})))
        self.wait(api.Async.VDI.resize(root, str(raw_xen.ROOT_BYTES)))
        vm = api.VM.create(raw_xen.vm_record(name))
        api.VBD.create(raw_xen.vbd_record(vm, root))
        api.VIF.create(raw_xen.vif_record(vm, raw.network))
        self.wait(api.Async.VM.start(vm, False, False))
        return XenVM(ref=vm, name=name, vdi=root)

    def destroy(self, vm: XenVM) -> None:
        """Hard shutdown, destroy the root VDI and the VM (VM.destroy takes VBDs and VIFs)."""
        self.wait(self.api.Async.VM.hard_shutdown(vm.ref))
        self.api.VDI.destroy(vm.vdi)
        self.api.VM.destroy(vm.ref)

    def reboot(self, vm: XenVM) -> None:
        """One hard reboot task."""
        self.wait(self.api.Async.VM.hard_reboot(vm.ref))

    def power_off(self, vm: XenVM) -> None:
        """One hard shutdown task."""
        self.wait(self.api.Async.VM.hard_shutdown(vm.ref))

    def power_on(self, vm: XenVM) -> None:
        """One start task."""
        self.wait(self.api.Async.VM.start(vm.ref, False, False))

    def snapshot(self, vm: XenVM) -> bytes:
        """Snapshot the root VDI, export its bytes, destroy the snapshot."""
        snap = self._ref(self.wait(self.api.Async.VDI.snapshot(vm.vdi, {})))
        try:
            data = self.raw.get_vdi(snap)
        finally:
            self.api.VDI.destroy(snap)
        self.sink.put(data)
        return data

    def resize(self, vm: XenVM) -> None:
        """Hard shutdown, new memory limits and VCPUs, start."""
        vm.large = not vm.large
        memory = str((512 if vm.large else 256) * raw_xen.MIB)
        vcpus = "2" if vm.large else "1"
        self.wait(self.api.Async.VM.hard_shutdown(vm.ref))
        self.api.VM.set_memory_limits(vm.ref, "0", memory, memory, memory)
        # VCPUs_at_startup may never exceed VCPUs_max: grow the maximum first, shrink it last.
        if vm.large:
            self.api.VM.set_VCPUs_max(vm.ref, vcpus)
            self.api.VM.set_VCPUs_at_startup(vm.ref, vcpus)
        else:
            self.api.VM.set_VCPUs_at_startup(vm.ref, vcpus)
            self.api.VM.set_VCPUs_max(vm.ref, vcpus)
        self.wait(self.api.Async.VM.start(vm.ref, False, False))

    def live_migrate(self, vm: XenVM) -> None:
        """One pool_migrate task to the next host of the pool."""
        vm.host_index = (vm.host_index + 1) % len(self.raw.hosts)
        self.wait(self.api.Async.VM.pool_migrate(vm.ref, self.raw.hosts[vm.host_index],
                                                 {"live": "true"}))
