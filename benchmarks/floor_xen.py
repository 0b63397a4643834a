"""The floor on Xen: each operation as the fewest raw XenAPI calls, with the library's checks
and end state.

A plain call wherever XAPI has one (``VM.start``, not ``Async.VM.start`` + ``event.from`` +
``task.destroy``): one round trip is the least a client can spend. The floor makes the same
checks the library makes (no VM of the instance's name before a spawn, none of its resize or
rescue companions left at destroy, the VM's VBDs read before its disks are moved, so volumes
are told apart, and the VHD chains after a snapshot) and leaves the same end state (root
disks tagged with their instance, a resize keeping ``-orig`` until confirm, disks deleted
with their VM). It keeps the references it made (cached image VDI, VM, root VDI), as the
library keeps its caches, so no lookup is spent that the library does not spend too; but a
resize runs as Nova's three steps on two computes, so each of them knows only what Nova
hands it.
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
        """Wait for an ``Async.*`` task by push, destroy it, return its result or raise its
        error (the operations make plain calls; the task-wait section measures this)."""
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

    # -- operations ------------------------------------------------------------------------------

    def new_image(self) -> str:
        """A fresh image id: the next spawn with it finds nothing cached."""
        return str(uuid_module.uuid4())

    def _absent(self, name: str) -> None:
        """The library's check before it makes anything: no VM has the name yet."""
        if self.api.VM.get_all_records_where(f'field "name__label" = "{name}"'):
            raise RuntimeError(f"a VM called {name} exists")

    def spawn(self, image_id: str, cold: bool) -> XenVM:
        """Check the name; import the image if ``cold`` (after looking for it, as the first
        spawn of an image must); clone, tag and grow the root disk; VM, VBD, VIF; start."""
        api, raw = self.api, self.raw
        name = f"floor-{uuid_module.uuid4().hex[:8]}"
        self._absent(name)
        if cold or image_id not in self.cache:
            label = f"floor-cache/{image_id}"
            api.VDI.get_all_records_where(f'field "name__label" = "{label}"')
            data = raw_xen.image_bytes()
            base = api.VDI.create(raw_xen.vdi_record(raw.sr, label, len(data),
                                                     {"image-id": image_id}))
            raw.put_vdi(base, data)
            self.cache[image_id] = base
        root = api.VDI.clone(self.cache[image_id], {})
        api.VDI.set_name_label(root, f"{name} root")
        api.VDI.set_other_config(root, {"nova_disk_type": "root", "nova_instance_uuid": name})
        api.VDI.resize(root, str(raw_xen.ROOT_BYTES))
        vm = api.VM.create(raw_xen.vm_record(name))
        api.VBD.create(raw_xen.vbd_record(vm, root))
        api.VIF.create(raw_xen.vif_record(vm, raw.network))
        api.VM.start(vm, False, False)
        return XenVM(ref=vm, name=name, vdi=root)

    def destroy(self, vm: XenVM) -> None:
        """The library's checks (rescue and resize companions; the VM's VBDs, volumes being
        never deleted), hard shutdown, destroy the VM and its root VDI."""
        self.api.VM.get_all_records_where(f'field "name__label" = "{vm.name}-rescue" or '
                                          f'field "name__label" = "{vm.name}-orig"')
        self.api.VM.hard_shutdown(vm.ref)
        self.api.VBD.get_all_records_where(f'field "VM" = "{vm.ref}"')
        self.api.VM.destroy(vm.ref)
        self.api.VDI.destroy(vm.vdi)

    def reboot(self, vm: XenVM) -> None:
        """One hard reboot."""
        self.api.VM.hard_reboot(vm.ref)

    def power_off(self, vm: XenVM) -> None:
        """One hard shutdown."""
        self.api.VM.hard_shutdown(vm.ref)

    def power_on(self, vm: XenVM) -> None:
        """One start."""
        self.api.VM.start(vm.ref, False, False)

    def snapshot(self, vm: XenVM) -> bytes:
        """Snapshot the root VDI, look at its SR's VHD chains for a coalesce still pending (the
        library's check, the seed's second step: one read, nothing pending on the
        simulator), export its bytes, destroy the snapshot."""
        snap = self.api.VDI.snapshot(vm.vdi, {})
        self.api.VDI.get_all_records_where(f'field "SR" = "{self.raw.sr}"')
        try:
            data = self.raw.get_vdi(snap)
        finally:
            self.api.VDI.destroy(snap)
        self.sink.put(data)
        return data

    def resize(self, vm: XenVM) -> None:
        """The library's resize, call for call at the least, in Nova's three steps, each
        knowing only what Nova hands it (source and destination are different computes):
        the source shuts the VM down, keeps it as ``-orig`` for a revert and reads its VBDs
        (which disks are its own, which volumes: never copied blind) to describe its disks;
        the destination copies the root disk it was told of (same pool: by ref), builds
        the resized VM around the copy (after the name check) and starts it; confirm, on
        the source, destroys ``-orig`` and the disk it read."""
        api, raw = self.api, self.raw
        vm.large = not vm.large
        memory_mb, vcpus = (512, 2) if vm.large else (256, 1)
        api.VM.clean_shutdown(vm.ref)
        api.VM.set_name_label(vm.ref, f"{vm.name}-orig")
        vbds = api.VBD.get_all_records_where(f'field "VM" = "{vm.ref}"')
        source_root = next(rec["VDI"] for rec in vbds.values() if rec["userdevice"] == "0")
        root = api.VDI.copy(source_root, raw.sr)
        api.VDI.set_other_config(root, {"nova_disk_type": "root", "nova_instance_uuid": vm.name})
        self._absent(vm.name)
        new = api.VM.create(raw_xen.vm_record(vm.name, memory_mb, vcpus))
        api.VBD.create(raw_xen.vbd_record(new, root))
        api.VIF.create(raw_xen.vif_record(new, raw.network))
        api.VM.start(new, False, False)
        api.VM.destroy(vm.ref)  # confirm: -orig and its disk go
        api.VDI.destroy(source_root)
        vm.ref, vm.vdi = new, root

    def live_migrate(self, vm: XenVM) -> None:
        """Read the VM's VBDs (volumes are told apart, never moved blind: the library's check,
        as on VMware), then one pool_migrate to the next host of the pool."""
        vm.host_index = (vm.host_index + 1) % len(self.raw.hosts)
        self.api.VBD.get_all_records_where(f'field "VM" = "{vm.ref}"')
        self.api.VM.pool_migrate(vm.ref, self.raw.hosts[vm.host_index], {"live": "true"})
