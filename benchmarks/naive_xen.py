"""The naive Xen client: the way XenAPI samples and scripts do the job, polling.

It finds its VM by name label before every operation, checks the power state before
acting, and runs what lasts (start, reboot, migration) as the XenAPI samples do: an
``Async.*`` call whose ``task.get_status`` is polled every 0.5 s, then ``task.get_result``
and ``task.destroy``; after a start it also waits for Running by polling
``VM.get_power_state``, as Nova's ``_wait_for_instance_to_start`` did. The operations
section makes those verbs last on the simulator (delay injection), so the poll shows.
Spawn follows the order of Nova's steps (xapi.md §2.1): pre-checks, cached-image lookup,
clone and tagging, VM record, VBD, VIF, start paused, unpause, wait for Running, record the
domid. Quick verbs (create, destroy, hard shutdown) are plain calls.
"""

from __future__ import annotations

import time
import uuid as uuid_module
from typing import Any

from benchmarks import raw_xen
from benchmarks.common import CountedClient, SnapshotSink
from benchmarks.raw_xen import RawXen, XenVM

POLL_INTERVAL = 0.5
RUNNING_TIMEOUT = 60.0


class NaiveXen(CountedClient):
    """The naive Xen client (see module docstring)."""

    name = "naive"

    def __init__(self, sim: Any) -> None:
        self.raw = RawXen(sim)
        self.api = self.raw.api
        self.counter = self.raw.counter
        self.sink = SnapshotSink("vhd")

    def close(self) -> None:
        """Log out, remove the snapshot sink."""
        self.raw.close()
        self.sink.close()

    def _find(self, vm: XenVM) -> str:
        refs = self.api.VM.get_by_name_label(vm.name)
        if not refs:
            raise LookupError(f"VM {vm.name} not found")
        return refs[0]

    def _task(self, method: str, *args: Any) -> Any:
        """``Async.<method>``, its status polled every 0.5 s, then its result; destroyed."""
        group, verb = method.split(".")
        task = getattr(getattr(self.api.Async, group), verb)(*args)
        try:
            deadline = time.monotonic() + RUNNING_TIMEOUT
            while self.api.task.get_status(task) == "pending":
                if time.monotonic() >= deadline:
                    raise TimeoutError(f"{method} did not finish")
                time.sleep(POLL_INTERVAL)
            return self.api.task.get_result(task)
        finally:
            self.api.task.destroy(task)

    def _wait_for_state(self, ref: str, state: str) -> None:
        """Poll the power state every 0.5 s until it is ``state`` (bounded by a timeout)."""
        deadline = time.monotonic() + RUNNING_TIMEOUT
        while time.monotonic() < deadline:
            if self.api.VM.get_power_state(ref) == state:
                return
            time.sleep(POLL_INTERVAL)
        raise TimeoutError(f"VM {ref} did not reach {state}")

    # -- operations ------------------------------------------------------------------------------

    def new_image(self) -> str:
        """A fresh image id: the next spawn with it finds nothing cached."""
        return str(uuid_module.uuid4())

    def spawn(self, image_id: str, cold: bool) -> XenVM:
        """Nova's spawn steps with synchronous calls and a polled wait for Running."""
        api, raw = self.api, self.raw
        name = f"naive-{uuid_module.uuid4().hex[:8]}"
        if api.VM.get_by_name_label(name):
            raise RuntimeError(f"{name} exists")
        host = raw.hosts[0]
        api.host.compute_free_memory(host)
        label = f"naive-cache/{image_id}"
        cached = api.VDI.get_all_records_where(f'field "name__label" = "{label}"')
        if cached:
            base = next(iter(cached))
        else:
            data = raw_xen.image_bytes()
            base = api.VDI.create(raw_xen.vdi_record(raw.sr, label, len(data),
                                                     {"image-id": image_id}))
            raw.put_vdi(base, data)
        root = api.VDI.clone(base, {})
        api.VDI.set_name_label(root, f"{name} root")
        api.VDI.add_to_other_config(root, "nova_disk_type", "root")
        api.VDI.add_to_other_config(root, "nova_instance_uuid", name)
        api.VDI.resize(root, str(raw_xen.ROOT_BYTES))
        vm = api.VM.create(raw_xen.vm_record(name))
        api.VBD.create(raw_xen.vbd_record(vm, root))
        api.VM.get_domid(vm)
        api.VIF.create(raw_xen.vif_record(vm, raw.network))
        self._task("VM.start_on", vm, host, True, False)
        api.VM.unpause(vm)
        self._wait_for_state(vm, "Running")
        domid = api.VM.get_domid(vm)
        api.VM.remove_from_other_config(vm, "last_dom_id")
        api.VM.add_to_other_config(vm, "last_dom_id", str(domid))
        return XenVM(ref=vm, name=name, vdi=root)

    def destroy(self, vm: XenVM) -> None:
        """Find, shut down if running, destroy each disk's VDI and each VIF, destroy the VM."""
        api = self.api
        ref = self._find(vm)
        if api.VM.get_power_state(ref) != "Halted":
            api.VM.hard_shutdown(ref)
        for vbd in api.VM.get_VBDs(ref):
            record = api.VBD.get_record(vbd)
            if record["type"] == "Disk" and record["VDI"] != "OpaqueRef:NULL":
                api.VDI.destroy(record["VDI"])
        for vif in api.VM.get_VIFs(ref):
            api.VIF.destroy(vif)
        api.VM.destroy(ref)

    def reboot(self, vm: XenVM) -> None:
        """Find, hard reboot, wait for Running."""
        ref = self._find(vm)
        self._task("VM.hard_reboot", ref)
        self._wait_for_state(ref, "Running")

    def power_off(self, vm: XenVM) -> None:
        """Find, hard shutdown if not halted."""
        ref = self._find(vm)
        if self.api.VM.get_power_state(ref) != "Halted":
            self.api.VM.hard_shutdown(ref)

    def power_on(self, vm: XenVM) -> None:
        """Find, start on this host if halted, wait for Running."""
        ref = self._find(vm)
        if self.api.VM.get_power_state(ref) == "Halted":
            self._task("VM.start_on", ref, self.raw.hosts[0], False, False)
        self._wait_for_state(ref, "Running")

    def snapshot(self, vm: XenVM) -> bytes:
        """Find the root disk through the VBDs, snapshot it, export it, destroy the snapshot."""
        api = self.api
        ref = self._find(vm)
        root = None
        for vbd in api.VM.get_VBDs(ref):
            record = api.VBD.get_record(vbd)
            if record["userdevice"] == "0":
                root = record["VDI"]
        if root is None:
            raise LookupError("no root disk")
        sr = api.VDI.get_record(root)["SR"]
        api.SR.scan(sr)
        snap = api.VDI.snapshot(root, {})
        try:
            data = self.raw.get_vdi(snap)
        finally:
            api.VDI.destroy(snap)
        self.sink.put(data)
        return data

    def resize(self, vm: XenVM) -> None:
        """Find, shut down, read the record, set memory and VCPUs, start, wait for Running."""
        api = self.api
        ref = self._find(vm)
        vm.large = not vm.large
        memory = str((512 if vm.large else 256) * raw_xen.MIB)
        vcpus = "2" if vm.large else "1"
        if api.VM.get_power_state(ref) != "Halted":
            api.VM.hard_shutdown(ref)
        api.VM.get_record(ref)
        api.VM.set_memory_limits(ref, "0", memory, memory, memory)
        if vm.large:
            api.VM.set_VCPUs_max(ref, vcpus)
            api.VM.set_VCPUs_at_startup(ref, vcpus)
        else:
            api.VM.set_VCPUs_at_startup(ref, vcpus)
            api.VM.set_VCPUs_max(ref, vcpus)
        self._task("VM.start", ref, False, False)
        self._wait_for_state(ref, "Running")

    def live_migrate(self, vm: XenVM) -> None:
        """Find the VM and the destination host by name, pool_migrate synchronously."""
        api = self.api
        ref = self._find(vm)
        vm.host_index = (vm.host_index + 1) % len(self.raw.hosts)
        host = api.host.get_by_name_label(self.raw.host_names[vm.host_index])[0]
        self._task("VM.pool_migrate", ref, host, {"live": "true"})
