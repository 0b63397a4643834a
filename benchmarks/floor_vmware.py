"""The floor on VMware: each operation as the fewest raw pyvmomi calls, waiting by push, with
the library's checks and end state.

A task is read once when its call returns and, if it is still running, awaited by push on
a property collector of our own (see :class:`PushWaiter`). Properties are never read by
attribute access. The client keeps the references it made (as the library keeps its
VM-reference cache), so no lookup is spent that the library does not spend too. It makes
the checks the library makes: a datastore chosen by free space at every spawn, the image
cache looked at before the first upload, the VM's devices read before a destroy or a live
migration (volumes must be told apart), the VM read when a resize is finished. And it
leaves the same end state: an image published into the cache whole from a temp folder, the
VM unregistered and its folder deleted, a resize's revert notes set and cleared at confirm.
"""

from __future__ import annotations

import contextlib
import uuid as uuid_module
from typing import Any

from pyVmomi import vim, vmodl

from benchmarks import raw_vmware
from benchmarks.common import CountedClient, SnapshotSink
from benchmarks.raw_vmware import RawConnection, RawVM

CACHE = "bench_floor_cache"
#: What the library reads of a VM before changing its disks (virtdriver.vmware.backend)
DEVICE_PATHS = ["config.hardware.device", "config.files.vmPathName", "runtime.powerState",
                "config.guestId", "runtime.host", "config.extraConfig"]


PATHS = ["info.state", "info.error", "info.result"]


class PushWaiter:
    """Waits for tasks: one read, then by push on a dedicated property collector.

    Most tasks have ended by the time their call returns, so the first step is one
    ``RetrievePropertiesEx`` of the task's state, error and result: a finished task costs
    that and nothing else. A task still running gets ``CreateFilter``, then
    ``WaitForUpdatesEx`` from version "" (the filter's current values come back at once),
    then with the returned version until the task ends, then ``DestroyPropertyFilter`` so
    the next task's first answer carries only its own filter. (Waiting from a stale version
    instead makes vcsim answer on its 250 ms tick even for a finished task.)
    """

    def __init__(self, content: Any) -> None:
        self.content = content
        self.collector = content.propertyCollector.CreatePropertyCollector()

    def wait(self, task: Any, max_wait_seconds: int = 60) -> Any:
        """Block until ``task`` ends; return its result or raise its fault."""
        pc = vmodl.query.PropertyCollector
        spec = pc.FilterSpec(objectSet=[pc.ObjectSpec(obj=task)],
                             propSet=[pc.PropertySpec(type=vim.Task, pathSet=PATHS)])
        found = self.collector.RetrievePropertiesEx([spec], pc.RetrieveOptions())
        props = {p.name: p.val for obj in (found.objects if found else []) or []
                 for p in obj.propSet or []}
        state = str(props.get("info.state"))
        if state in ("success", "error"):
            if state == "error":
                raise props.get("info.error") or RuntimeError(f"task {task._moId} failed")
            return props.get("info.result")
        task_filter = self.collector.CreateFilter(spec, partialUpdates=True)
        error, result, version = None, None, ""
        options = pc.WaitOptions(maxWaitSeconds=max_wait_seconds)
        try:
            for _ in range(10_000):  # bounded: each round blocks up to max_wait_seconds
                update = self.collector.WaitForUpdatesEx(version, options)
                if update is None:
                    continue
                version = update.version
                for filter_update in update.filterSet or []:
                    for obj in filter_update.objectSet or []:
                        for change in obj.changeSet or []:
                            if change.name == "info.state":
                                state = str(change.val)
                            elif change.name == "info.error":
                                error = change.val
                            elif change.name == "info.result":
                                result = change.val
                if state in ("success", "error"):
                    break
        finally:
            task_filter.DestroyPropertyFilter()
        if state == "error":
            raise error or RuntimeError(f"task {task._moId} failed")
        return result

    def close(self) -> None:
        """Destroy the collector (untimed teardown)."""
        with contextlib.suppress(Exception):  # best effort at teardown
            self.collector.DestroyPropertyCollector()


class FloorVmware(CountedClient):
    """The VMware floor client (see module docstring)."""

    name = "floor"

    def __init__(self, sim: Any) -> None:
        self.conn = RawConnection(sim)
        self.content = self.conn.content
        self.inv = self.conn.discover()
        self.waiter = PushWaiter(self.content)
        self.counter = self.conn.counter
        self.sink = SnapshotSink("vmdk")

    def close(self) -> None:
        """Tear down the collector, log out, remove the snapshot sink."""
        self.waiter.close()
        self.conn.close()
        self.sink.close()

    def _task(self, obj: Any, method: str, *args: Any, **kwargs: Any) -> Any:
        return self.waiter.wait(getattr(obj, method)(*args, **kwargs))

    # -- operations ------------------------------------------------------------------------------

    def new_image(self) -> str:
        """A fresh image id: the next spawn with it finds nothing cached."""
        return str(uuid_module.uuid4())

    def _choose_datastore(self) -> None:
        """The library's datastore choice: every datastore's free space, read once a spawn."""
        raw_vmware.retrieve(self.content, self.inv.datastores,
                            ["summary.name", "summary.freeSpace", "summary.capacity",
                             "summary.accessible"])

    def spawn(self, image_id: str, cold: bool) -> RawVM:
        """Choose the datastore; if ``cold``, look for the cached image, upload it into a
        temp folder, move that into the cache, make the sized copy; create, power on."""
        descriptor_path, flat_path, sized_path = raw_vmware.cache_paths(CACHE, image_id)
        ds = f"[{self.inv.ds_name}] "
        self._choose_datastore()
        if cold:
            if self.conn.head_file(self.inv, sized_path):
                raise RuntimeError(f"image {image_id} is cached already")
            data = raw_vmware.image_bytes()
            temp = f"{CACHE}-tmp/{uuid_module.uuid4()}"
            self.conn.put_file(self.inv, f"{temp}/{image_id}-flat.vmdk", data)
            self.conn.put_file(self.inv, f"{temp}/{image_id}.vmdk",
                               raw_vmware.descriptor(f"{image_id}-flat.vmdk", len(data)))
            fm = self.content.fileManager
            fm.MakeDirectory(f"{ds}{CACHE}", self.inv.dc, True)
            self._task(fm, "MoveDatastoreFile_Task", sourceName=f"{ds}{temp}",
                       sourceDatacenter=self.inv.dc, destinationName=f"{ds}{CACHE}/{image_id}",
                       destinationDatacenter=self.inv.dc, force=False)
            vdm = self.content.virtualDiskManager
            self._task(vdm, "CopyVirtualDisk_Task", sourceName=ds + descriptor_path,
                       sourceDatacenter=self.inv.dc, destName=ds + sized_path,
                       destDatacenter=self.inv.dc, force=False)
            self._task(vdm, "ExtendVirtualDisk_Task", name=ds + sized_path,
                       datacenter=self.inv.dc, newCapacityKb=raw_vmware.ROOT_GB * raw_vmware.GIB_KB,
                       eagerZero=False)
        del flat_path  # the flat extent travels inside the temp folder
        uuid = str(uuid_module.uuid4())
        spec = raw_vmware.create_spec(self.inv, uuid, sized_path)
        ref = self._task(self.inv.vm_folder, "CreateVM_Task", spec, self.inv.pool)
        self._task(ref, "PowerOnVM_Task")
        return RawVM(ref=ref, uuid=uuid)

    def destroy(self, vm: RawVM) -> None:
        """Read the VM (its power state, folder and devices: which disks are volumes, never
        to be deleted with it), power off, unregister, delete the VM's folder: the library's
        checks and end state (Destroy_Task would delete volume disks too)."""
        raw_vmware.retrieve(self.content, [vm.ref], DEVICE_PATHS)
        with contextlib.suppress(vim.fault.InvalidPowerState):
            self._task(vm.ref, "PowerOffVM_Task")
        vm.ref.UnregisterVM()
        self._task(self.content.fileManager, "DeleteDatastoreFile_Task",
                   f"[{self.inv.ds_name}] {vm.uuid}", self.inv.dc)

    def reboot(self, vm: RawVM) -> None:
        """Hard reboot: one reset task."""
        self._task(vm.ref, "ResetVM_Task")

    def power_off(self, vm: RawVM) -> None:
        """One power-off task."""
        self._task(vm.ref, "PowerOffVM_Task")

    def power_on(self, vm: RawVM) -> None:
        """One power-on task."""
        self._task(vm.ref, "PowerOnVM_Task")

    def snapshot(self, vm: RawVM) -> bytes:
        """Snapshot (freezes the root disk), copy the frozen disk flat into a temp folder,
        download the copy, delete the folder, remove the snapshot."""
        ds = f"[{self.inv.ds_name}] "
        snap = self._task(vm.ref, "CreateSnapshot_Task", name=f"{vm.uuid}-snapshot",
                          memory=False, quiesce=False)
        temp = f"{CACHE}-tmp/{uuid_module.uuid4()}"
        try:
            # vcsim's CopyVirtualDisk wants the destination folder to exist
            self.content.fileManager.MakeDirectory(f"{ds}{temp}", self.inv.dc, True)
            self._task(self.content.virtualDiskManager, "CopyVirtualDisk_Task",
                       sourceName=f"{ds}{vm.uuid}/{vm.uuid}.vmdk", sourceDatacenter=self.inv.dc,
                       destName=f"{ds}{temp}/snapshot.vmdk", destDatacenter=self.inv.dc,
                       force=False)
            data = self.conn.get_file(self.inv, f"{temp}/snapshot-flat.vmdk")
            self._task(self.content.fileManager, "DeleteDatastoreFile_Task", f"{ds}{temp}",
                       self.inv.dc)
        finally:
            self._task(snap, "RemoveSnapshot_Task", removeChildren=False, consolidate=True)
        self.sink.put(data)
        return data

    def resize(self, vm: RawVM, memory_mb: int = 512, vcpus: int = 2) -> None:
        """Read what a revert needs (the devices and notes the library reads, volumes told
        apart), power off, reconfigure with the revert notes, read where the VM is
        (finish), power on; confirm reads and clears the notes."""
        found = raw_vmware.retrieve(self.content, [vm.ref], DEVICE_PATHS)[vm.ref]
        note = "virtdriver.resize.source_host"
        self._task(vm.ref, "PowerOffVM_Task")
        self._task(vm.ref, "ReconfigVM_Task", vim.vm.ConfigSpec(
            numCPUs=vcpus, memoryMB=memory_mb, extraConfig=[vim.option.OptionValue(
                key=note, value=found["runtime.host"]._moId)]))
        raw_vmware.retrieve(self.content, [vm.ref], ["runtime.host"])
        self._task(vm.ref, "PowerOnVM_Task")
        raw_vmware.retrieve(self.content, [vm.ref], ["config.extraConfig"])
        self._task(vm.ref, "ReconfigVM_Task", vim.vm.ConfigSpec(
            extraConfig=[vim.option.OptionValue(key=note, value="")]))

    def live_migrate(self, vm: RawVM) -> None:
        """The library's checks (the source check reads the VM's datastores; the move reads
        its devices and host: iSCSI volumes must be visible on the destination host first),
        then one RelocateVM_Task to the next host."""
        raw_vmware.retrieve(self.content, [vm.ref], ["datastore"])
        raw_vmware.retrieve(self.content, [vm.ref], DEVICE_PATHS)
        vm.host_index = (vm.host_index + 1) % len(self.inv.hosts)
        self._task(vm.ref, "RelocateVM_Task",
                   vim.vm.RelocateSpec(host=self.inv.hosts[vm.host_index], pool=self.inv.pool))
