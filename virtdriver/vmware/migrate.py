"""Resize and cold migration on vCenter, within a cluster or to another of the vCenter.

The VM itself moves; nothing is copied between computes. The source
(:func:`migrate_disk_and_power_off`) powers it off, keeps a grown root disk's old self as
``original.vmdk``, applies the new flavor and leaves notes in extraConfig: the host it came
from and the path of what was kept, for a revert or a confirm. The destination
(:func:`finish_migration`) finds it vCenter-wide by instance uuid and, when it sits in
another cluster, relocates it into its own cluster's resource pool, onto a host and a
datastore of it, then powers it on. Confirm (source) deletes the kept disk; revert (source)
restores it and relocates the VM back. Nova's ``destroy`` on the destination during a
revert must leave this one VM alone (see spawn.destroy). The face holds the instance's lock
around each call.
"""

from __future__ import annotations

from typing import Any

from oslo_log import log as logging
from pyVmomi import vim

from virtdriver.common import exceptions
from virtdriver.common.model import ExtraSpecs, field_of, validate_flavor
from virtdriver.common.progress import make_step_decorator
from virtdriver.common.volumes import NO_VOLUMES, BlockDevices
from virtdriver.vmware import ds_util, vm_util, volume_util, volumes
from virtdriver.vmware.backend import VMwareBackend
from virtdriver.vmware.ds_util import DatastorePath

LOG = logging.getLogger(__name__)

#: extraConfig key holding the host a resize moved the VM from ("" when none)
SOURCE_HOST_KEY = "virtdriver.resize.source_host"
#: extraConfig key holding the datastore path of the old root disk a resize kept ("" when
#: none; "yes" from older releases means original.vmdk beside the root disk)
ORIGINAL_KEY = "virtdriver.resize.original"
#: extraConfig key holding the kept disk's capacity in KB (a flavor of root_gb 0 keeps the
#: image's size, which only the disk itself knows)
ORIGINAL_SIZE_KEY = "virtdriver.resize.original_kb"
ORIGINAL_DISK = "original.vmdk"


def migrate_disk_and_power_off(backend: VMwareBackend, context: Any, instance: Any, dest: str,
                               flavor: Any) -> Any:
    """Power off, keep the old root disk as ``original.vmdk``, apply the new flavor."""
    validate_flavor(flavor)
    uuid = field_of(instance, "uuid")
    old_root_gb = field_of(field_of(instance, "flavor"), "root_gb", 0) or 0
    new_root_gb = field_of(flavor, "root_gb", 0) or 0
    session = backend.session
    step = make_step_decorator(context, instance, backend.progress)
    vm, devices, props = backend.read_devices(instance)
    # the instance's own root disk; attached volumes stay attached, untouched (a
    # volume-backed instance has none: nothing to grow, shrink or keep)
    root = volume_util.own_root_disk(devices, props)
    if root is None:
        old_root_gb = new_root_gb = 0
    if new_root_gb < old_root_gb:
        raise exceptions.MigrationError(
            f"instance {uuid}: root disk cannot shrink from {old_root_gb} GB to "
            f"{new_root_gb} GB")
    host = backend.host_named(dest)
    step(_power_off_hard)(backend, vm)
    original = DatastorePath.parse(root.backing.fileName).parent.join(ORIGINAL_DISK) \
        if root is not None else ""
    grows = root is not None and new_root_gb > old_root_gb
    if grows:
        ds = backend.vm_datastore(root.backing.fileName)
        # only a grown disk needs its old self kept for a revert
        ds_util.delete_disk(session, ds, original)
        step(ds_util.copy_disk)(session, ds, DatastorePath.parse(root.backing.fileName),
                                original)
    # notes on the VM for a revert or confirm: where it came from, what was kept
    source = props.get("runtime.host")
    step(_apply_flavor)(backend, vm, flavor, root, new_root_gb, notes={
        SOURCE_HOST_KEY: source._moId if source is not None else "",
        ORIGINAL_KEY: str(original) if grows else "",
        ORIGINAL_SIZE_KEY: str(root.capacityInKB) if grows else ""})
    if host is not None:
        step(_relocate)(backend, vm, host)
    LOG.info("resized to %s vCPU / %s MB / %s GB%s", field_of(flavor, "vcpus"),
             field_of(flavor, "memory_mb"), new_root_gb,
             f" on host {dest}" if host is not None else "", instance=instance)
    return {"original": str(original), "old_root_gb": old_root_gb}


#: Nova's task state while a resize is reverted
RESIZE_REVERTING = "resize_reverting"


def keeps_vm_for_revert(instance: Any) -> bool:
    """Whether a destroy now must leave the VM alone: during a revert Nova destroys the
    instance on the destination before finish_revert_migration runs on the source, and a
    resize moved this one VM (nothing was copied), which the revert brings back."""
    return field_of(instance, "task_state", None) == RESIZE_REVERTING


def _power_off_hard(backend: VMwareBackend, vm: Any) -> None:
    vm_util.power_off(backend.session, vm)


def _relocate(backend: VMwareBackend, vm: Any, host: Any) -> None:
    vm_util.relocate(backend.session, vm, host, backend.inventory.pool)


def _apply_flavor(backend: VMwareBackend, vm: Any, flavor: Any, root: Any, root_gb: int,
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
    backend.session.call_task(vm, "ReconfigVM_Task", spec)


def finish_migration(backend: VMwareBackend, instance: Any, power_on: bool = True,
                     block_devices: BlockDevices = NO_VOLUMES) -> None:
    """Bring the VM into this cluster (if another cluster's compute resized it), with every
    volume of ``block_devices`` attached, and up."""
    vm, props = backend.read(instance, ["runtime.host", "datastore"])
    if not _in_this_cluster(backend, props):
        host, datastore = vm_util.placement(backend.session, backend.inventory,
                                            backend.conf.vmware.datastore_regex,
                                            props.get("datastore") or [])
        vm_util.relocate(backend.session, vm, host, backend.inventory.pool, datastore)
        LOG.info("moved into cluster %s", backend.inventory.cluster_name, instance=instance)
    volumes.ensure_attached(backend, instance, block_devices)
    if power_on:
        vm_util.power_on(backend.session, vm)


def _in_this_cluster(backend: VMwareBackend, props: dict[str, Any]) -> bool:
    here = props.get("runtime.host")
    return here is not None and here._moId in {h._moId for h in backend.inventory.hosts}


def _original_path(props: dict[str, Any], root: Any) -> DatastorePath | None:
    """Where the kept old root disk is, from the note (None when nothing was kept)."""
    note = _note(props, ORIGINAL_KEY)
    if not note:
        return None
    if note == "yes":  # an older note: beside the root disk
        return DatastorePath.parse(root.backing.fileName).parent.join(ORIGINAL_DISK) \
            if root is not None else None
    return DatastorePath.parse(note)


def confirm_migration(backend: VMwareBackend, instance: Any) -> None:
    """Delete ``original.vmdk`` and the source host note, which only a revert needed."""
    session = backend.session
    # the notes alone: the devices only for an older note that names no path
    vm, props = backend.read(instance, ["config.extraConfig"])
    root = None
    if _note(props, ORIGINAL_KEY) == "yes":
        vm, devices, props = backend.read_devices(instance)
        root = volume_util.own_root_disk(devices, props)
    original = _original_path(props, root)
    if original is not None:
        # on this compute's datastore, wherever the VM went since
        ds_util.delete_disk(session, backend.vm_datastore(str(original)), original)
    if _note(props, SOURCE_HOST_KEY) or _note(props, ORIGINAL_KEY):
        session.call_task(vm, "ReconfigVM_Task", vim.vm.ConfigSpec(extraConfig=[
            vim.option.OptionValue(key=key, value="")
            for key in (SOURCE_HOST_KEY, ORIGINAL_KEY, ORIGINAL_SIZE_KEY)]))


def finish_revert_migration(backend: VMwareBackend, instance: Any,
                            power_on: bool = True,
                            block_devices: BlockDevices = NO_VOLUMES) -> None:
    """Restore the old flavor (``instance.flavor``), the kept disk as root, and the VM's
    place in this cluster (its old host), from wherever the resize took it, with every
    volume of ``block_devices`` attached."""
    session = backend.session
    vm, devices, props = backend.read_devices(instance)
    root = volume_util.own_root_disk(devices, props)  # None: volume-backed
    vm_util.power_off(session, vm)
    flavor = field_of(instance, "flavor")
    original = _original_path(props, root)
    home = None  # the kept disk's datastore, where the VM's root is again after this
    if original is not None and root is not None:
        ds = backend.vm_datastore(str(original))
        home = ds.ref
        root_path = DatastorePath.parse(root.backing.fileName)
        if root_path.datastore != original.datastore:  # the resized disk moved: back home
            root_path = original.parent.join(root_path.basename)
        vm_util.detach_disk(session, vm, root, destroy=True)
        session.call_task(session.content.virtualDiskManager, "MoveVirtualDisk_Task",
                          sourceName=str(original), sourceDatacenter=ds.dc_ref,
                          destName=str(root_path), destDatacenter=ds.dc_ref, force=False)
        layout = vm_util.DiskLayout("lsiLogic")
        root_gb = field_of(flavor, "root_gb", 0) or 0
        kept_kb = _note(props, ORIGINAL_SIZE_KEY)
        capacity = vm_util.gib_to_kb(root_gb) if root_gb else \
            int(kept_kb) if kept_kb.isdigit() else root.capacityInKB
        add = vm_util.disk_spec(layout, root_path, capacity, create=False,
                                slot=(root.controllerKey, root.unitNumber))
        session.call_task(vm, "ReconfigVM_Task", vim.vm.ConfigSpec(deviceChange=[add]))
        vm, devices, props = backend.read_devices(instance)
        root = volume_util.own_root_disk(devices, props)
    _apply_flavor(backend, vm, flavor, root, 0, notes={SOURCE_HOST_KEY: "", ORIGINAL_KEY: "",
                                                       ORIGINAL_SIZE_KEY: ""})
    source = _note(props, SOURCE_HOST_KEY)
    here = props.get("runtime.host")
    if (source and (here is None or here._moId != source)) or \
            not _in_this_cluster(backend, props):
        host = next((h for h in backend.inventory.hosts if h._moId == source), None)
        if host is None:
            host, _ = vm_util.placement(session, backend.inventory,
                                        backend.conf.vmware.datastore_regex)
        vm_util.relocate(session, vm, host, backend.inventory.pool, home)
    volumes.ensure_attached(backend, instance, block_devices)
    if power_on:
        vm_util.power_on(session, vm)
    LOG.info("resize reverted", instance=instance)


def _note(props: dict[str, Any], key: str) -> str:
    # the last value of the key wins: some servers append extraConfig entries
    values = [o.value for o in props.get("config.extraConfig") or [] if o.key == key]
    return values[-1] if values else ""
