"""Snapshot, rescue, resize (cold migration) and live migration for VMwareVMOps.

Each long operation is a series of steps that report progress; what a failed step leaves is
undone (snapshot: clone, server snapshot and temp files, success or failure).
"""

from __future__ import annotations

import uuid as uuid_module
from collections.abc import Callable
from typing import Any

from pyVmomi import vim

from virtdriver.common import exceptions
from virtdriver.common.locks import instance_lock
from virtdriver.common.model import ExtraSpecs, field_of, validate_flavor
from virtdriver.common.progress import Rollback, make_step_decorator
from virtdriver.vmware import ds_util, vm_util
from virtdriver.vmware.ds_util import Datastore, DatastorePath
from virtdriver.vmware.images import check_image
from virtdriver.vmware.session import ignoring

RESCUE_SUFFIX = "-rescue.vmdk"
#: extraConfig key holding the host a resize moved the VM from ("" when none)
SOURCE_HOST_KEY = "virtdriver.resize.source_host"
#: extraConfig key saying a resize kept the old root disk as original.vmdk ("yes" or "")
ORIGINAL_KEY = "virtdriver.resize.original"
ORIGINAL_DISK = "original.vmdk"


def _snapshot_name(uuid: str) -> str:
    return f"{uuid}-snapshot"


class MigrateOpsMixin:
    """Operations that copy or move disks."""

    session: Any
    conf: Any

    # -- helpers --------------------------------------------------------------------------------

    def _root_disk(self, devices: list[Any]) -> Any:
        disks = [d for d in vm_util.disks_of(devices)
                 if not d.backing.fileName.endswith(RESCUE_SUFFIX)]
        if not disks:
            raise exceptions.BackendError("the VM has no root disk", code="NoRootDiskDefined")
        return disks[0]

    def _vm_disks(self, instance: Any) -> tuple[Any, list[Any], dict[str, Any]]:
        vm, props = self._read(instance, ["config.hardware.device", "config.files.vmPathName",
                                          "runtime.powerState", "config.guestId",
                                          "runtime.host", "config.extraConfig"])
        return vm, list(props.get("config.hardware.device") or []), props

    def _power_off_hard(self, vm: Any) -> None:
        with ignoring("InvalidPowerState"):
            self.session.call_task(vm, "PowerOffVM_Task")

    def _power_on_vm(self, vm: Any) -> None:
        with ignoring("InvalidPowerState"):
            self.session.call_task(vm, "PowerOnVM_Task")

    # -- snapshot -------------------------------------------------------------------------------

    def snapshot(self, context: Any, instance: Any, image_id: str,
                 update_task_state: Callable[..., Any]) -> None:
        """Upload the root disk to the image store under ``image_id``.

        The seed's six steps, with its linked clone replaced by a disk copy: 1. find the
        root disk the VM writes to now; 2. take a server snapshot, which freezes that disk;
        3. copy the frozen disk (the copy flattens its chain) into a temp folder; 4. upload
        it; 5. delete the temp folder; 6. remove the server snapshot. No clone VM exists
        to leak (Nova's own TODO), and vcsim's CloneVM would rewrite the source VM's disk
        backing. Steps 5 and 6 run whatever happened before them.
        """
        uuid = field_of(instance, "uuid")
        step = make_step_decorator(context, instance, self.progress)
        find_disk = step(self._snapshot_find_disk)
        take = step(self._snapshot_take)
        copy = step(self._snapshot_copy)
        upload = step(self._snapshot_upload)
        delete_temp = step(ds_util.delete_path)
        remove = step(self._snapshot_remove)
        with instance_lock(instance):
            vm, ds, root, props = find_disk(instance)
            update_task_state(task_state="image_pending_upload",
                              expected_state="image_snapshot")
            snap = take(vm, uuid)
            try:
                update_task_state(task_state="image_uploading",
                                  expected_state="image_pending_upload")
                temp = ds.path(self.image_cache.temp_folder, str(uuid_module.uuid4()))
                try:
                    flat = copy(ds, root, temp, image_id)
                    upload(context, ds, flat, image_id,
                           vm_util.adapter_of(props.get("config.hardware.device") or [], root),
                           props)
                finally:
                    delete_temp(self.session, ds, temp)
            finally:
                remove(snap)

    def _snapshot_find_disk(self, instance: Any) -> tuple[Any, Datastore, Any, dict[str, Any]]:
        vm, devices, props = self._vm_disks(instance)
        root = self._root_disk(devices)
        ds = self._vm_datastore(root.backing.fileName)
        return vm, ds, root, props

    def _snapshot_take(self, vm: Any, uuid: str) -> Any:
        return self.session.call_task(vm, "CreateSnapshot_Task", name=_snapshot_name(uuid),
                                      description="virtdriver snapshot", memory=False,
                                      quiesce=True)

    def _snapshot_copy(self, ds: Datastore, root: Any, temp: DatastorePath,
                       image_id: str) -> DatastorePath:
        """Copy the disk frozen by the snapshot; return the copy's flat extent."""
        ds_util.make_directory(self.session, ds, temp)
        ds_util.copy_disk(self.session, ds, DatastorePath.parse(root.backing.fileName),
                          temp.join(f"{image_id}.vmdk"))
        return temp.join(f"{image_id}-flat.vmdk")

    def _snapshot_upload(self, context: Any, ds: Datastore, flat: DatastorePath,
                         image_id: str, adapter: str, props: dict[str, Any]) -> None:
        size, chunks = self.image_cache.http.stream(ds.dc_name, ds.name, flat.rel_path)
        meta = {"disk_format": "vmdk", "container_format": "bare", "size": size,
                "properties": {"vmware_adaptertype": adapter,
                               "vmware_ostype": props.get("config.guestId", "otherGuest"),
                               "vmware_disktype": "preallocated"}}
        self.image_store.upload(context, image_id, chunks, meta)

    def _snapshot_remove(self, snap: Any) -> None:
        with ignoring("ManagedObjectNotFound"):
            self.session.call_task(snap, "RemoveSnapshot_Task", removeChildren=False,
                                   consolidate=True)

    def post_interrupted_snapshot_cleanup(self, context: Any, instance: Any) -> None:
        """Remove a server snapshot an interrupted snapshot left."""
        uuid = field_of(instance, "uuid")
        _, props = self._read(instance, ["snapshot"])
        for node in _walk(getattr(props.get("snapshot"), "rootSnapshotList", None) or []):
            if node.name == _snapshot_name(uuid):
                self._snapshot_remove(node.snapshot)

    # -- rescue -----------------------------------------------------------------------------------

    def rescue(self, context: Any, instance: Any, network_info: Any, image_meta: Any,
               rescue_password: str | None = None) -> None:
        """Boot from a copy of ``image_meta`` with the instance's disk attached second."""
        check_image(image_meta)
        if field_of(image_meta, "disk_format") == "iso":
            raise exceptions.InvalidInput("image.disk_format", "iso",
                                          "rescue needs a disk image (vmdk or raw)")
        uuid = field_of(instance, "uuid")
        with instance_lock(instance):
            vm, devices, props = self._vm_disks(instance)
            if any(d.backing.fileName.endswith(RESCUE_SUFFIX) for d in vm_util.disks_of(devices)):
                raise exceptions.InstanceInvalidState(uuid, "rescue", "rescued")
            root = self._root_disk(devices)
            ds = self._vm_datastore(root.backing.fileName)
            cached = self.image_cache.ensure(context, image_meta, ds,
                                             vm_util.adapter_type(image_meta))
            self._power_off_hard(vm)
            rescue_path = DatastorePath.parse(root.backing.fileName).parent.join(
                f"{uuid}{RESCUE_SUFFIX}")
            with Rollback(f"rescue of {uuid}") as undo:
                ds_util.copy_disk(self.session, ds, cached, rescue_path)
                undo.push(ds_util.delete_disk, self.session, ds, rescue_path)
                unit = vm_util.free_unit(devices, root.controllerKey)
                layout = vm_util.DiskLayout("lsiLogic")
                add = vm_util.disk_spec(layout, rescue_path, root.capacityInKB, create=False,
                                        slot=(root.controllerKey, unit))
                self.session.call_task(vm, "ReconfigVM_Task",
                                       vim.vm.ConfigSpec(deviceChange=[add]))
                rescue_disk = next(d for d in vm_util.disks_of(
                    vm_util.devices_of(self.session, vm))
                    if d.backing.fileName.endswith(RESCUE_SUFFIX))
                undo.push(self._detach_disk, vm, rescue_disk)
                self._set_boot_disk(vm, rescue_disk.key)
                self._power_on_vm(vm)

    def _set_boot_disk(self, vm: Any, key: int | None) -> None:
        order = [vim.vm.BootOptions.BootableDiskDevice(deviceKey=key)] if key is not None else []
        self.session.call_task(vm, "ReconfigVM_Task", vim.vm.ConfigSpec(
            bootOptions=vim.vm.BootOptions(bootOrder=order)))

    def _detach_disk(self, vm: Any, disk: Any, destroy: bool = False) -> None:
        spec = vim.vm.device.VirtualDeviceSpec(operation="remove", device=disk)
        if destroy:
            spec.fileOperation = "destroy"
        self.session.call_task(vm, "ReconfigVM_Task", vim.vm.ConfigSpec(deviceChange=[spec]))

    def unrescue(self, instance: Any, power_on: bool = True) -> None:
        """Remove the rescue disk, boot from the instance's own disk again."""
        uuid = field_of(instance, "uuid")
        with instance_lock(instance):
            vm, devices, _ = self._vm_disks(instance)
            rescue = [d for d in vm_util.disks_of(devices)
                      if d.backing.fileName.endswith(RESCUE_SUFFIX)]
            if not rescue:
                raise exceptions.InstanceNotInRescueMode(uuid)
            root = self._root_disk(devices)
            self._power_off_hard(vm)
            spec = vim.vm.ConfigSpec(
                deviceChange=[vim.vm.device.VirtualDeviceSpec(operation="remove", device=d,
                                                              fileOperation="destroy")
                              for d in rescue],
                bootOptions=vim.vm.BootOptions(bootOrder=[
                    vim.vm.BootOptions.BootableDiskDevice(deviceKey=root.key)]))
            self.session.call_task(vm, "ReconfigVM_Task", spec)
            if power_on:
                self._power_on_vm(vm)

    # -- resize / cold migration ----------------------------------------------------------------

    def migrate_disk_and_power_off(self, context: Any, instance: Any, dest: str, flavor: Any,
                                   block_device_info: Any = None) -> Any:
        """Power off, keep the old root disk as ``original.vmdk``, apply the new flavor."""
        validate_flavor(flavor)
        uuid = field_of(instance, "uuid")
        old_root_gb = field_of(field_of(instance, "flavor"), "root_gb", 0) or 0
        new_root_gb = field_of(flavor, "root_gb", 0) or 0
        if new_root_gb < old_root_gb:
            raise exceptions.MigrationError(
                f"instance {uuid}: root disk cannot shrink from {old_root_gb} GB to "
                f"{new_root_gb} GB")
        step = make_step_decorator(context, instance, self.progress)
        with instance_lock(instance):
            vm, devices, props = self._vm_disks(instance)
            root = self._root_disk(devices)
            ds = self._vm_datastore(root.backing.fileName)
            host = self._host_named(dest)
            step(self._power_off_hard)(vm)
            original = DatastorePath.parse(root.backing.fileName).parent.join(ORIGINAL_DISK)
            grows = new_root_gb > old_root_gb
            if grows:
                # only a grown disk needs its old self kept for a revert
                ds_util.delete_disk(self.session, ds, original)
                step(ds_util.copy_disk)(self.session, ds,
                                        DatastorePath.parse(root.backing.fileName), original)
            # notes on the VM for a revert or confirm: where it came from, what was kept
            source = props.get("runtime.host")
            step(self._apply_flavor)(vm, flavor, root, new_root_gb, notes={
                SOURCE_HOST_KEY: source._moId if source is not None else "",
                ORIGINAL_KEY: "yes" if grows else ""})
            if host is not None:
                step(self._relocate)(vm, host)
        return {"original": str(original), "old_root_gb": old_root_gb}

    def _apply_flavor(self, vm: Any, flavor: Any, root: Any, root_gb: int,
                      notes: dict[str, str] | None = None) -> None:
        specs = ExtraSpecs.from_flavor(flavor)
        spec = vim.vm.ConfigSpec(numCPUs=field_of(flavor, "vcpus"),
                                 memoryMB=field_of(flavor, "memory_mb"))
        if notes:
            spec.extraConfig = [vim.option.OptionValue(key=k, value=v) for k, v in notes.items()]
        if specs.cores_per_socket:
            spec.numCoresPerSocket = specs.cores_per_socket
        for attr, alloc in (("cpuAllocation", specs.cpu), ("memoryAllocation", specs.memory)):
            value = vm_util.resource_allocation(alloc)
            if value is not None:
                setattr(spec, attr, value)
        capacity = vm_util.gib_to_kb(root_gb)
        if root_gb and capacity != root.capacityInKB:
            root.capacityInKB = capacity
            spec.deviceChange = [vim.vm.device.VirtualDeviceSpec(operation="edit", device=root)]
        self.session.call_task(vm, "ReconfigVM_Task", spec)

    def _host_named(self, name: str | None) -> Any:
        if not name:
            return None
        names = self.session.retrieve(self.inventory.hosts, ["name"])
        return next((h for h in self.inventory.hosts
                     if names.get(h._moId, {}).get("name") == name), None)

    def _relocate(self, vm: Any, host: Any) -> None:
        self.session.call_task(vm, "RelocateVM_Task",
                               vim.vm.RelocateSpec(host=host, pool=self.inventory.pool))

    def finish_migration(self, context: Any, migration: Any, instance: Any, disk_info: Any,
                         network_info: Any, image_meta: Any, resize_instance: bool = False,
                         block_device_info: Any = None, power_on: bool = True) -> None:
        """Bring the resized instance up."""
        with instance_lock(instance):
            vm = self._vm(instance)
            if power_on:
                self._power_on_vm(vm)

    def confirm_migration(self, migration: Any, instance: Any, network_info: Any) -> None:
        """Delete ``original.vmdk`` and the source host note, which only a revert needed."""
        with instance_lock(instance):
            vm, devices, props = self._vm_disks(instance)
            if _note(props, ORIGINAL_KEY):
                root = self._root_disk(devices)
                ds = self._vm_datastore(root.backing.fileName)
                ds_util.delete_disk(self.session, ds, DatastorePath.parse(
                    root.backing.fileName).parent.join(ORIGINAL_DISK))
            if _note(props, SOURCE_HOST_KEY) or _note(props, ORIGINAL_KEY):
                self.session.call_task(vm, "ReconfigVM_Task", vim.vm.ConfigSpec(extraConfig=[
                    vim.option.OptionValue(key=SOURCE_HOST_KEY, value=""),
                    vim.option.OptionValue(key=ORIGINAL_KEY, value="")]))

    def finish_revert_migration(self, context: Any, instance: Any, network_info: Any = None,
                                block_device_info: Any = None, power_on: bool = True) -> None:
        """Restore the old flavor (``instance.flavor``), ``original.vmdk`` as root, and host."""
        with instance_lock(instance):
            vm, devices, props = self._vm_disks(instance)
            root = self._root_disk(devices)
            ds = self._vm_datastore(root.backing.fileName)
            root_path = DatastorePath.parse(root.backing.fileName)
            original = root_path.parent.join(ORIGINAL_DISK)
            self._power_off_hard(vm)
            flavor = field_of(instance, "flavor")
            if _note(props, ORIGINAL_KEY):
                self._detach_disk(vm, root, destroy=True)
                self.session.call_task(self.session.content.virtualDiskManager,
                                       "MoveVirtualDisk_Task", sourceName=str(original),
                                       sourceDatacenter=ds.dc_ref, destName=str(root_path),
                                       destDatacenter=ds.dc_ref, force=False)
                layout = vm_util.DiskLayout("lsiLogic")
                root_gb = field_of(flavor, "root_gb", 0) or 0
                capacity = vm_util.gib_to_kb(root_gb) if root_gb else root.capacityInKB
                add = vm_util.disk_spec(layout, root_path, capacity, create=False,
                                        slot=(root.controllerKey, root.unitNumber))
                self.session.call_task(vm, "ReconfigVM_Task",
                                       vim.vm.ConfigSpec(deviceChange=[add]))
                root = self._root_disk(vm_util.devices_of(self.session, vm))
            self._apply_flavor(vm, flavor, root, 0, notes={SOURCE_HOST_KEY: "", ORIGINAL_KEY: ""})
            source = _note(props, SOURCE_HOST_KEY)
            here = props.get("runtime.host")
            if source and (here is None or here._moId != source):
                host = next((h for h in self.inventory.hosts if h._moId == source), None)
                if host is not None:
                    self._relocate(vm, host)
            if power_on:
                self._power_on_vm(vm)

    # -- live migration -------------------------------------------------------------------------

    def check_can_live_migrate_destination(self, context: Any, instance: Any,
                                           block_migration: bool = False,
                                           disk_over_commit: bool = False) -> dict[str, Any]:
        """This backend's cluster and datastore filter, for the source to check."""
        return {"cluster_name": self.inventory.cluster_name,
                "datastore_regex": self.conf.vmware.datastore_regex}

    def check_can_live_migrate_source(self, context: Any, instance: Any,
                                      dest_check_data: dict[str, Any]) -> dict[str, Any]:
        """The instance exists, and the destination is this vCenter's cluster."""
        self._vm(instance)
        if dest_check_data.get("cluster_name") != self.inventory.cluster_name:
            raise exceptions.MigrationPreCheckError(
                f"live migration only moves between hosts of cluster "
                f"{self.inventory.cluster_name}, not to {dest_check_data.get('cluster_name')}")
        return dict(dest_check_data)

    def pre_live_migration(self, context: Any, instance: Any, block_device_info: Any,
                           network_info: Any, disk_info: Any,
                           migrate_data: dict[str, Any] | None = None) -> dict[str, Any]:
        """Nothing to prepare: hosts of a cluster share networks and datastores."""
        return dict(migrate_data or {})

    def live_migrate(self, context: Any, instance: Any, destination_hostname: str,
                     post_method: Callable[..., Any], recover_method: Callable[..., Any],
                     block_migration: bool = False,
                     migrate_data: dict[str, Any] | None = None) -> None:
        """RelocateVM to the named host of the cluster; post_method or recover_method."""
        try:
            with instance_lock(instance):
                host = self._host_named(destination_hostname)
                if host is None:
                    raise exceptions.MigrationPreCheckError(
                        f"host {destination_hostname!r} is not in cluster "
                        f"{self.inventory.cluster_name}")
                self._relocate(self._vm(instance), host)
        except Exception:
            recover_method(context, instance, destination_hostname, migrate_data)
            raise
        post_method(context, instance, destination_hostname, block_migration, migrate_data)

    def post_live_migration(self, context: Any, instance: Any,
                            migrate_data: dict[str, Any] | None = None) -> None:
        """Nothing stays on the source host: vCenter moved the VM."""

    def post_live_migration_at_destination(self, context: Any, instance: Any, network_info: Any,
                                           block_migration: bool = False,
                                           block_device_info: Any = None) -> None:
        """Nothing to finish: the VM keeps its devices and networks."""

    def rollback_live_migration_at_destination(self, instance: Any,
                                               block_device_info: Any = None) -> None:
        """Nothing to remove: pre_live_migration made nothing."""


def _note(props: dict[str, Any], key: str) -> str:
    # the last value of the key wins: some servers append extraConfig entries
    values = [o.value for o in props.get("config.extraConfig") or [] if o.key == key]
    return values[-1] if values else ""


def _walk(nodes: list[Any]) -> list[Any]:
    out = []
    for node in nodes:
        out.append(node)
        out.extend(_walk(node.childSnapshotList or []))
    return out
