"""VM config specs (pure builders, no I/O) and the few VM helpers that talk to vCenter.

The first section builds ``vim.vm.ConfigSpec`` and device specs from a
:class:`~virtdriver.common.model.VMConfigInfo`; the second section (``session`` argument)
finds VMs and reads their properties through the session.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable, Iterable
from typing import Any, TypeVar

from pyVmomi import vim, vmodl

from virtdriver.common import exceptions
from virtdriver.common.model import ResourceAllocation, VMConfigInfo, field_of, image_property
from virtdriver.vmware import vif as vif_util
from virtdriver.vmware.ds_util import (
    DATASTORE_PATHS,
    Datastore,
    DatastorePath,
    GiB,
    choose_datastore,
)
from virtdriver.vmware.session import VMwareSession, ignoring

T = TypeVar("T")

#: vmware_adaptertype image property -> controller class (None: IDE, built in).
ADAPTER_TYPES: dict[str, type | None] = {
    "lsiLogic": vim.vm.device.VirtualLsiLogicController,
    "lsiLogicsas": vim.vm.device.VirtualLsiLogicSASController,
    "busLogic": vim.vm.device.VirtualBusLogicController,
    "paraVirtual": vim.vm.device.ParaVirtualSCSIController,
    "ide": None,
}
DEFAULT_ADAPTER = "lsiLogic"
DEFAULT_GUEST = "otherGuest"
#: Key of the first IDE controller every new VM gets.
IDE_CONTROLLER_KEY = 200
MANAGED_BY = vim.ext.ManagedByInfo(extensionKey="org.openstack.compute", type="instance")
VM_UUID_KEY = "nvp.vm-uuid"
#: name ending of the disk rescue attaches (told apart from the root disk by it)
RESCUE_SUFFIX = "-rescue.vmdk"

# keys for devices created in one spec (vCenter replaces negative keys)
_SCSI_KEY = -100


def adapter_type(image: Any) -> str:
    """The disk adapter named by ``vmware_adaptertype``; InvalidInput when unknown."""
    value = image_property(image, "vmware_adaptertype", DEFAULT_ADAPTER) if image else \
        DEFAULT_ADAPTER
    if value not in ADAPTER_TYPES:
        raise exceptions.InvalidInput("image.properties['vmware_adaptertype']", value,
                                      f"must be one of {', '.join(ADAPTER_TYPES)}")
    return value


def guest_id(image: Any) -> str:
    """The vSphere guestId named by ``vmware_ostype``."""
    value = image_property(image, "vmware_ostype", DEFAULT_GUEST) if image else DEFAULT_GUEST
    if not isinstance(value, str) or not value.isalnum():
        raise exceptions.InvalidInput("image.properties['vmware_ostype']", value,
                                      "must be a vSphere guest id such as otherLinux64Guest")
    return value


class DiskLayout:
    """Where each disk of a new VM goes: controller key and the next free unit number."""

    def __init__(self, adapter: str) -> None:
        self.adapter = adapter
        self.controller_key = IDE_CONTROLLER_KEY if ADAPTER_TYPES[adapter] is None else _SCSI_KEY
        self._next_unit = 0
        self._next_key = -200

    def slot(self) -> tuple[int, int]:
        """(controller key, unit number) of the next disk; SCSI skips unit 7."""
        unit = self._next_unit
        limit = 2 if self.controller_key == IDE_CONTROLLER_KEY else 16
        if unit == 7 and self.controller_key != IDE_CONTROLLER_KEY:
            unit += 1
        if unit >= limit:
            raise exceptions.InvalidInput("flavor", None, "too many disks for the adapter")
        self._next_unit = unit + 1
        return self.controller_key, unit

    def key(self) -> int:
        """A fresh negative device key."""
        self._next_key -= 1
        return self._next_key


def controller_spec(adapter: str) -> vim.vm.device.VirtualDeviceSpec | None:
    """The spec adding the SCSI controller (None for IDE, which every VM has)."""
    cls = ADAPTER_TYPES[adapter]
    if cls is None:
        return None
    return vim.vm.device.VirtualDeviceSpec(operation="add", device=cls(
        key=_SCSI_KEY, busNumber=0, sharedBus="noSharing"))


def _io_allocation(allocation: ResourceAllocation) -> Any:
    if not allocation.is_set():
        return None
    return vim.StorageResourceManager.IOAllocationInfo(
        limit=allocation.limit, reservation=allocation.reservation,
        shares=_shares(allocation))


def disk_spec(layout: DiskLayout, path: DatastorePath | str, capacity_kb: int, *,
              create: bool, parent: DatastorePath | str | None = None,
              io: ResourceAllocation | None = None,
              slot: tuple[int, int] | None = None) -> vim.vm.device.VirtualDeviceSpec:
    """A disk: created (``create``), optionally as a child of ``parent``, or attached."""
    backing = vim.vm.device.VirtualDisk.FlatVer2BackingInfo(
        fileName=str(path), diskMode="persistent", thinProvisioned=True)
    if parent is not None:
        backing.parent = vim.vm.device.VirtualDisk.FlatVer2BackingInfo(fileName=str(parent))
    controller, unit = slot or layout.slot()
    disk = vim.vm.device.VirtualDisk(key=layout.key(), controllerKey=controller,
                                     unitNumber=unit, capacityInKB=capacity_kb, backing=backing)
    if io is not None and io.is_set():
        disk.storageIOAllocation = _io_allocation(io)
    spec = vim.vm.device.VirtualDeviceSpec(operation="add", device=disk)
    if create:
        spec.fileOperation = "create"
    return spec


def cdrom_spec(iso_path: DatastorePath | str, controller_key: int, unit: int,
               key: int = -50) -> vim.vm.device.VirtualDeviceSpec:
    """A CD-ROM with an ISO file, connected at power-on."""
    cdrom = vim.vm.device.VirtualCdrom(
        key=key, controllerKey=controller_key, unitNumber=unit,
        backing=vim.vm.device.VirtualCdrom.IsoBackingInfo(fileName=str(iso_path)),
        connectable=vim.vm.device.VirtualDevice.ConnectInfo(startConnected=True,
                                                            allowGuestControl=True))
    return vim.vm.device.VirtualDeviceSpec(operation="add", device=cdrom)


def _shares(allocation: ResourceAllocation) -> Any:
    if not allocation.shares_level:
        return None
    return vim.SharesInfo(level=allocation.shares_level, shares=allocation.shares_share or 0)


def resource_allocation(allocation: ResourceAllocation) -> Any:
    """A ResourceAllocationInfo for CPU (MHz) or memory (MiB); None when nothing is set."""
    if not allocation.is_set():
        return None
    return vim.ResourceAllocationInfo(limit=allocation.limit, reservation=allocation.reservation,
                                      shares=_shares(allocation))


def extra_config(instance_uuid: str, vifs: Iterable[Any]) -> list[vim.option.OptionValue]:
    """extraConfig that identifies the instance and each of its ports."""
    options = [vim.option.OptionValue(key=VM_UUID_KEY, value=instance_uuid),
               vim.option.OptionValue(key="disk.EnableUUID", value="TRUE")]
    options += [vim.option.OptionValue(key=vif_util.iface_id_key(n), value=vif.id)
                for n, vif in enumerate(vifs)]
    return options


def create_spec(info: VMConfigInfo, ds: Datastore, networks: dict[str, vif_util.NetworkRef],
                devices: list[vim.vm.device.VirtualDeviceSpec]) -> vim.vm.ConfigSpec:
    """The CreateVM spec: identity, sizing, tuning, NICs and the given disk specs."""
    instance, flavor = info.instance, field_of(info.instance, "flavor")
    uuid = field_of(instance, "uuid")
    specs = info.extra_specs
    model = vif_util.vif_model(image_property(info.image, "hw_vif_model") if info.image
                               else None)
    nics = []
    for n, vif in enumerate(info.vifs):
        nics.append(vif_util.nic_spec(vif, networks[vif.network], model, key=-10 - n,
                                      allocation=specs.vif))
    spec = vim.vm.ConfigSpec(
        name=uuid, instanceUuid=uuid, annotation=info.metadata,
        guestId=guest_id(info.image), numCPUs=field_of(flavor, "vcpus"),
        memoryMB=field_of(flavor, "memory_mb"),
        files=vim.vm.FileInfo(vmPathName=f"[{ds.name}]"),
        managedBy=MANAGED_BY, extraConfig=extra_config(uuid, info.vifs),
        deviceChange=devices + nics)
    if specs.cores_per_socket:
        spec.numCoresPerSocket = specs.cores_per_socket
    cpu, memory = resource_allocation(specs.cpu), resource_allocation(specs.memory)
    if cpu is not None:
        spec.cpuAllocation = cpu
    if memory is not None:
        spec.memoryAllocation = memory
    return spec


def gib_to_kb(gib: int) -> int:
    """GiB as KiB, the unit of capacityInKB."""
    return gib * GiB // 1024


# -- helpers that talk to vCenter -------------------------------------------------------------

class VMRefCache:
    """instanceUuid -> VM reference, filled by lookups and spawns, dropped when stale.

    A lookup costs at most one call (SearchIndex.FindByUuid by instanceUuid).
    """

    def __init__(self) -> None:
        self._refs: dict[str, Any] = {}
        self._lock = threading.Lock()

    def find(self, session: VMwareSession, uuid: str) -> Any | None:
        """The VM of ``uuid``, or None when vCenter has none."""
        with self._lock:
            ref = self._refs.get(uuid)
        if ref is not None:
            return ref
        ref = session.invoke(session.content.searchIndex, "FindByUuid", None, uuid, True, True)
        if ref is not None:
            self.remember(uuid, ref)
        return ref

    def cached(self, uuid: str) -> Any | None:
        """The cached reference of ``uuid``, or None; never a server call."""
        with self._lock:
            return self._refs.get(uuid)

    def remember(self, uuid: str, ref: Any) -> None:
        """Cache a reference (spawn knows it without a lookup)."""
        with self._lock:
            self._refs[uuid] = ref

    def forget(self, uuid: str) -> None:
        """Drop a stale or destroyed reference."""
        with self._lock:
            self._refs.pop(uuid, None)

    def call(self, session: VMwareSession, instance: Any,
             function: Callable[[Any], T]) -> T:
        """Run ``function(vm_ref)``; on a stale reference look the VM up again once."""
        uuid = field_of(instance, "uuid")
        for attempt in (0, 1):
            ref = self.find(session, uuid)
            if ref is None:
                raise exceptions.InstanceNotFound(uuid, "no VM with this instanceUuid")
            try:
                return function(ref)
            except exceptions.BackendError as exc:
                if exc.code != "ManagedObjectNotFound" or attempt:
                    if exc.code == "ManagedObjectNotFound":
                        self.forget(uuid)
                        raise exceptions.InstanceNotFound(uuid, "its VM is gone") from exc
                    raise
                self.forget(uuid)
        raise AssertionError("unreachable")


def devices_of(session: VMwareSession, vm_ref: Any) -> list[Any]:
    """The VM's device list."""
    return list(session.retrieve_one(vm_ref, ["config.hardware.device"]).get(
        "config.hardware.device") or [])


def disks_of(devices: Iterable[Any]) -> list[Any]:
    """The VM's disks, in controller/unit order."""
    disks = [d for d in devices if isinstance(d, vim.vm.device.VirtualDisk)]
    return sorted(disks, key=lambda d: (d.controllerKey, d.unitNumber or 0))


def adapter_of(devices: Iterable[Any], disk: Any) -> str:
    """The ``vmware_adaptertype`` name of the controller a disk hangs on."""
    controller = next((d for d in devices if d.key == disk.controllerKey), None)
    if isinstance(controller, vim.vm.device.VirtualIDEController):
        return "ide"
    for name, cls in ADAPTER_TYPES.items():
        if cls is not None and type(controller) is cls:
            return name
    return DEFAULT_ADAPTER


def free_unit(devices: Iterable[Any], controller_key: int) -> int:
    """The first free unit number on a controller."""
    devices = list(devices)
    used = {d.unitNumber for d in devices if getattr(d, "controllerKey", None) == controller_key}
    limit = 2 if controller_key in (200, 201) else 16
    for unit in range(limit):
        if unit not in used and not (limit == 16 and unit == 7):
            return unit
    raise exceptions.BackendError(f"controller {controller_key} has no free unit",
                                  code="NoFreeUnit")


def root_disk(devices: Iterable[Any]) -> Any:
    """The VM's first disk that is not a rescue disk."""
    disks = [d for d in disks_of(devices) if not d.backing.fileName.endswith(RESCUE_SUFFIX)]
    if not disks:
        raise exceptions.BackendError("the VM has no root disk", code="NoRootDiskDefined")
    return disks[0]


def power_off(session: VMwareSession, vm: Any) -> None:
    """Hard power-off; an already powered-off VM stays so."""
    with ignoring("InvalidPowerState"):
        session.call_task(vm, "PowerOffVM_Task")


def power_on(session: VMwareSession, vm: Any) -> None:
    """Power on; an already running VM stays running."""
    with ignoring("InvalidPowerState"):
        session.call_task(vm, "PowerOnVM_Task")


def detach_disk(session: VMwareSession, vm: Any, disk: Any, destroy: bool = False) -> None:
    """Remove a disk device from the VM (and delete its files when ``destroy``)."""
    spec = vim.vm.device.VirtualDeviceSpec(operation="remove", device=disk)
    if destroy:
        spec.fileOperation = "destroy"
    session.call_task(vm, "ReconfigVM_Task", vim.vm.ConfigSpec(deviceChange=[spec]))


def set_boot_disk(session: VMwareSession, vm: Any, key: int | None) -> None:
    """Boot from the disk with device ``key`` (None: the server's default order)."""
    order = [vim.vm.BootOptions.BootableDiskDevice(deviceKey=key)] if key is not None else []
    session.call_task(vm, "ReconfigVM_Task", vim.vm.ConfigSpec(
        bootOptions=vim.vm.BootOptions(bootOrder=order)))


def relocate(session: VMwareSession, vm: Any, host: Any, pool: Any,
             datastore: Any = None) -> None:
    """Move the VM to ``host`` (a host of the cluster whose resource pool is ``pool``), and
    its files to ``datastore`` when given (another cluster's, say)."""
    spec = vim.vm.RelocateSpec(host=host, pool=pool)
    if datastore is not None:
        spec.datastore = datastore
    session.call_task(vm, "RelocateVM_Task", spec)


def placement(session: VMwareSession, inventory: Inventory, datastore_regex: str | None,
              current: Iterable[Any] = ()) -> tuple[Any, Any]:
    """Where a VM moving into ``inventory``'s cluster goes: (host, datastore).

    The datastore is one the VM already uses when the cluster mounts it and it matches
    ``datastore_regex`` (no bytes to move), else the cluster's usable datastore with the
    most free space; the host is a connected one, not in maintenance, that mounts it.
    Two reads: the cluster's datastores, then its hosts.
    """
    found = session.retrieve(inventory.datastores, DATASTORE_PATHS)
    candidates = {ref._moId: (ref, found[ref._moId]) for ref in inventory.datastores
                  if ref._moId in found}
    usable = {key: item for key, item in candidates.items()
              if key in {ref._moId for ref in current}}
    try:
        ds_ref, _ = choose_datastore(usable, datastore_regex)
    except exceptions.BackendError:
        ds_ref, _ = choose_datastore(candidates, datastore_regex)
    hosts = session.retrieve(inventory.hosts, ["runtime.connectionState",
                                               "runtime.inMaintenanceMode", "datastore"])
    for host in inventory.hosts:
        props = hosts.get(host._moId, {})
        if props.get("runtime.connectionState", "connected") != "connected" or \
                props.get("runtime.inMaintenanceMode", False):
            continue
        if ds_ref._moId in {ref._moId for ref in props.get("datastore") or []}:
            return host, ds_ref
    raise exceptions.BackendError(f"no usable host of cluster {inventory.cluster_name} "
                                  f"mounts the chosen datastore", code="NoValidHost")


class Inventory:
    """Where this backend's VMs live: the cluster, its pool, datastores, networks and hosts."""

    def __init__(self, dc_ref: Any, dc_name: str, vm_folder: Any, cluster_ref: Any,
                 cluster_props: dict[str, Any]) -> None:
        self.dc_ref = dc_ref
        self.dc_name = dc_name
        self.vm_folder = vm_folder
        self.cluster_ref = cluster_ref
        self.cluster_name = cluster_props.get("name", "")
        self.pool = cluster_props.get("resourcePool")
        self.datastores = list(cluster_props.get("datastore") or [])
        self.networks = list(cluster_props.get("network") or [])
        self.hosts = list(cluster_props.get("host") or [])


def load_inventory(session: VMwareSession, cluster_name: str | None) -> Inventory:
    """Find the cluster (by name, or the only/first one) and its datacenter: 6 calls, once."""
    clusters = session.list_objects(vim.ClusterComputeResource,
                                    ["name", "resourcePool", "datastore", "network", "host",
                                     "parent"])
    chosen = [(ref, p) for ref, p in clusters.values()
              if cluster_name is None or p.get("name") == cluster_name]
    if not chosen:
        raise exceptions.BackendError(
            f"cluster {cluster_name!r} not found; vCenter has "
            f"{sorted(p.get('name', '') for _, p in clusters.values())}", code="NotFound")
    chosen.sort(key=lambda item: item[1].get("name", ""))
    cluster_ref, props = chosen[0]
    datacenters = session.list_objects(vim.Datacenter, ["name", "vmFolder", "hostFolder"])
    parent = props.get("parent")
    match = [(ref, p) for ref, p in datacenters.values()
             if parent is not None and p.get("hostFolder") is not None
             and p["hostFolder"]._moId == parent._moId]
    dc_ref, dc_props = (match or sorted(datacenters.values(),
                                        key=lambda item: item[1].get("name", "")))[0]
    return Inventory(dc_ref, dc_props["name"], dc_props["vmFolder"], cluster_ref, props)


def wait_for_property(session: VMwareSession, obj: Any, path: str,
                      accept: Callable[[Any], bool], timeout: float) -> Any:
    """Wait by push until ``path`` of ``obj`` has a value ``accept`` likes; None on timeout.

    Uses a collector of its own, destroyed afterwards, so it never disturbs task waits.
    """
    pc = vmodl.query.PropertyCollector
    collector = session.invoke(session.content.propertyCollector, "CreatePropertyCollector")
    try:
        session.invoke(collector, "CreateFilter", pc.FilterSpec(
            objectSet=[pc.ObjectSpec(obj=obj)],
            propSet=[pc.PropertySpec(type=type(obj), pathSet=[path])]), partialUpdates=False)
        deadline = time.monotonic() + timeout
        version = ""
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0 and version:
                return None
            update = session.invoke(collector, "WaitForUpdatesEx", version,
                                    pc.WaitOptions(maxWaitSeconds=max(0, int(remaining))))
            if update is None:
                return None
            version = update.version
            for filter_update in update.filterSet or []:
                for obj_update in filter_update.objectSet or []:
                    for change in obj_update.changeSet or []:
                        if change.name == path and accept(change.val):
                            return change.val
    finally:
        with contextlib.suppress(exceptions.VirtDriverError):
            session.invoke(collector, "DestroyPropertyCollector")
