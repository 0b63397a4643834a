"""The naive VMware client: the way most pyvmomi scripts do the job.

It reads properties by attribute access (each one a ``Fetch`` round trip), finds its VM
with ``SearchIndex.FindByUuid`` before every operation, checks the power state before acting,
and waits with ``pyVim.task.WaitForTask``. It is written the way the pyvmomi community
samples are, not made slow on purpose: every call it makes has a reason a script writer
would give.
"""

from __future__ import annotations

import uuid as uuid_module
from typing import Any

from pyVim.task import WaitForTask
from pyVmomi import vim

from benchmarks import raw_vmware
from benchmarks.common import CountedClient, SnapshotSink
from benchmarks.raw_vmware import RawConnection, RawVM

CACHE = "bench_naive_cache"


class NaiveVmware(CountedClient):
    """The naive VMware client (see module docstring)."""

    name = "naive"

    def __init__(self, sim: Any) -> None:
        self.conn = RawConnection(sim)
        self.content = self.conn.content
        self.inv = self.conn.discover()
        self.counter = self.conn.counter
        self.sink = SnapshotSink("vmdk")

    def close(self) -> None:
        """Log out, remove the snapshot sink."""
        self.conn.close()
        self.sink.close()

    # -- how scripts find things -------------------------------------------------------------

    def _datacenter(self) -> Any:
        return self.content.rootFolder.childEntity[0]

    def _find(self, vm: RawVM) -> Any:
        found = self.content.searchIndex.FindByUuid(None, vm.uuid, True, True)
        if found is None:
            raise LookupError(f"VM {vm.uuid} not found")
        return found

    def _cluster(self) -> Any:
        dc = self._datacenter()
        for entity in dc.hostFolder.childEntity:
            if isinstance(entity, vim.ClusterComputeResource):
                return entity
        raise LookupError("no cluster")

    # -- operations ------------------------------------------------------------------------------

    def new_image(self) -> str:
        """A fresh image id: the next spawn with it finds nothing cached."""
        return str(uuid_module.uuid4())

    def spawn(self, image_id: str, cold: bool) -> RawVM:
        """Walk the inventory, check the cache, upload if needed, create, power on."""
        dc = self._datacenter()
        cluster = self._cluster()
        pool = cluster.resourcePool
        datastore = cluster.datastore[0]
        ds_name = datastore.name
        network = cluster.network[0].name
        descriptor_path, flat_path, sized_path = raw_vmware.cache_paths(CACHE, image_id)
        browser = datastore.browser
        search = browser.SearchDatastore_Task(f"[{ds_name}] {CACHE}/{image_id}",
                                              vim.host.DatastoreBrowser.SearchSpec(
                                                  matchPattern=[f"{image_id}.{raw_vmware.ROOT_GB}.vmdk"]))
        try:
            WaitForTask(search)
            cached = bool(search.info.result.file)
        except vim.fault.FileNotFound:
            cached = False
        if not cached:
            data = raw_vmware.image_bytes()
            self.conn.put_file(self.inv, flat_path, data)
            self.conn.put_file(self.inv, descriptor_path,
                               raw_vmware.descriptor(f"{image_id}-flat.vmdk", len(data)))
            vdm = self.content.virtualDiskManager
            WaitForTask(vdm.CopyVirtualDisk_Task(
                sourceName=f"[{ds_name}] {descriptor_path}", sourceDatacenter=dc,
                destName=f"[{ds_name}] {sized_path}", destDatacenter=dc, force=False))
            WaitForTask(vdm.ExtendVirtualDisk_Task(
                name=f"[{ds_name}] {sized_path}", datacenter=dc,
                newCapacityKb=raw_vmware.ROOT_GB * raw_vmware.GIB_KB, eagerZero=False))
        uuid = str(uuid_module.uuid4())
        inv = raw_vmware.RawInventory(dc=dc, dc_name=dc.name, vm_folder=dc.vmFolder, pool=pool,
                                      hosts=[], host_names=[], ds_name=ds_name,
                                      network_name=network)
        if not any(isinstance(n, vim.Network) and n.name == network for n in cluster.network):
            raise LookupError(f"network {network} not found")
        spec = raw_vmware.create_spec(inv, uuid, sized_path)
        task = dc.vmFolder.CreateVM_Task(spec, pool)
        WaitForTask(task)
        vm_ref = task.info.result
        WaitForTask(vm_ref.PowerOnVM_Task())
        return RawVM(ref=vm_ref, uuid=uuid)

    def destroy(self, vm: RawVM) -> None:
        """Find, power off if on, destroy."""
        ref = self._find(vm)
        if ref.runtime.powerState == vim.VirtualMachinePowerState.poweredOn:
            WaitForTask(ref.PowerOffVM_Task())
        WaitForTask(ref.Destroy_Task())

    def reboot(self, vm: RawVM) -> None:
        """Find, reset."""
        ref = self._find(vm)
        WaitForTask(ref.ResetVM_Task())

    def power_off(self, vm: RawVM) -> None:
        """Find, power off if on."""
        ref = self._find(vm)
        if ref.runtime.powerState != vim.VirtualMachinePowerState.poweredOff:
            WaitForTask(ref.PowerOffVM_Task())

    def power_on(self, vm: RawVM) -> None:
        """Find, power on if off."""
        ref = self._find(vm)
        if ref.runtime.powerState != vim.VirtualMachinePowerState.poweredOn:
            WaitForTask(ref.PowerOnVM_Task())

    def snapshot(self, vm: RawVM) -> bytes:
        """Snapshot, clone from it, export the clone's disks, clean up."""
        ref = self._find(vm)
        task = ref.CreateSnapshot_Task(name=f"{vm.uuid}-snapshot", memory=False, quiesce=False)
        WaitForTask(task)
        snap = task.info.result
        clone_spec = vim.vm.CloneSpec(
            location=vim.vm.RelocateSpec(diskMoveType="createNewChildDiskBacking"),
            powerOn=False, template=False, snapshot=snap)
        task = ref.CloneVM_Task(folder=ref.parent, name=f"snap-{vm.uuid}", spec=clone_spec)
        WaitForTask(task)
        clone = task.info.result
        lease = clone.ExportVm()
        data = b""
        for device_url in lease.info.deviceUrl:
            if device_url.disk:
                data += self.conn.get_url(device_url.url)
        lease.HttpNfcLeaseComplete()
        WaitForTask(clone.Destroy_Task())
        WaitForTask(snap.RemoveSnapshot_Task(removeChildren=False, consolidate=True))
        self.sink.put(data)
        return data

    def resize(self, vm: RawVM, memory_mb: int = 512, vcpus: int = 2) -> None:
        """Find, power off, reconfigure, power on."""
        ref = self._find(vm)
        if ref.runtime.powerState == vim.VirtualMachinePowerState.poweredOn:
            WaitForTask(ref.PowerOffVM_Task())
        WaitForTask(ref.ReconfigVM_Task(vim.vm.ConfigSpec(numCPUs=vcpus, memoryMB=memory_mb)))
        WaitForTask(ref.PowerOnVM_Task())

    def live_migrate(self, vm: RawVM) -> None:
        """Find, pick another host of the VM's cluster by name, relocate."""
        ref = self._find(vm)
        current = ref.runtime.host
        cluster = current.parent
        target = next(h for h in cluster.host if h.name != current.name)
        WaitForTask(ref.RelocateVM_Task(vim.vm.RelocateSpec(host=target,
                                                            pool=cluster.resourcePool)))
