"""VMwareVMOps: the seed's operations on vCenter, over one :class:`VMwareSession`.

Spawn reads like its list of steps; each step is a method that can be tested alone and that
registers its own undo with a :class:`Rollback` as soon as it succeeds. The rarer operations
(snapshot, rescue, resize, live migration, NICs, consoles, image cache) live in
:mod:`virtdriver.vmware.vmops_more` and are mixed in, so each module stays readable.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from typing import Any

from pyVmomi import vim

from virtdriver.common import exceptions
from virtdriver.common.base import DEFAULT_CAPABILITIES, VMOps
from virtdriver.common.locks import instance_lock
from virtdriver.common.model import (
    Diagnostics,
    InstanceInfo,
    MemoryDiagnostics,
    VMConfigInfo,
    field_of,
    image_property,
    instance_name_from_metadata,
)
from virtdriver.common.power_state import PowerState
from virtdriver.common.progress import Rollback, make_step_decorator
from virtdriver.vmware import ds_util, vm_util
from virtdriver.vmware import vif as vif_util
from virtdriver.vmware.ds_util import Datastore, DatastorePath
from virtdriver.vmware.images import ImageCache, build_config_drive, check_image, config_drive_files
from virtdriver.vmware.session import VMwareSession, ignoring
from virtdriver.vmware.vmops_more import MoreOpsMixin

LOG = logging.getLogger(__name__)

POWER_STATES = {"poweredOn": PowerState.RUNNING, "poweredOff": PowerState.SHUTDOWN,
                "suspended": PowerState.SUSPENDED}
CONFIG_DRIVE_NAME = "configdrive.iso"


class VMwareVMOps(MoreOpsMixin, VMOps):
    """Nova-style operations on vCenter VMs (one cluster, chosen by ``[vmware] cluster_name``).

    The session is opened on first use (or pass one in ``session=`` for tests). VMs are
    named after the instance uuid, carry it as ``instanceUuid`` and in extraConfig
    ``nvp.vm-uuid``, and are marked ``managedBy`` ``org.openstack.compute``.
    """

    backend_name = "vmware"
    capabilities = {
        **DEFAULT_CAPABILITIES,
        "has_imagecache": True,
        "supports_migrate_to_same_host": True,
        "supports_attach_interface": True,
        "supports_image_type_vmdk": True,
        "supports_image_type_raw": True,
        "supports_image_type_iso": True,
        "supports_config_drive": True,
        "supports_live_migration": True,
        "supports_rescue": True,
        "supports_suspend": True,
        # vSphere has no in-memory pause, no guest agent for passwords/files/network
        # resets, no per-instance security rules and no serial log without a vSPC.
        "supports_pause": False,
        "supports_soft_delete": False,
        "supports_set_admin_password": False,
        "supports_inject_file": False,
        "supports_reset_network": False,
        "supports_console_output": False,
        "supports_bandwidth_counters": False,
        "supports_security_rules": False,
    }

    def __init__(self, conf: Any, image_store: Any = None,
                 progress_callback: Callable[[Any, int, str], None] | None = None,
                 session: VMwareSession | None = None) -> None:
        super().__init__(conf, image_store, progress_callback)
        self._session = session
        if session is not None:  # one set of figures: the session's
            self.stats = session.stats
        self._inventory: vm_util.Inventory | None = None
        self._networks: dict[str, vif_util.NetworkRef] | None = None
        self._image_cache: ImageCache | None = None
        self._datastore_refs: dict[str, Any] | None = None
        self.vm_refs = vm_util.VMRefCache()

    # -- plumbing --------------------------------------------------------------------------------

    @property
    def session(self) -> VMwareSession:
        """The vCenter session, logged in on first use."""
        if self._session is None:
            self._session = VMwareSession.from_conf(self.conf, stats=self.stats)
        return self._session

    @property
    def inventory(self) -> vm_util.Inventory:
        """The cluster, datacenter and folder this backend uses (read once)."""
        if self._inventory is None:
            self._inventory = vm_util.load_inventory(self.session, self.conf.vmware.cluster_name)
        return self._inventory

    @property
    def image_cache(self) -> ImageCache:
        """The datastore image cache."""
        if self._image_cache is None:
            self._image_cache = ImageCache(self.session, self.image_store,
                                           ds_util.cache_folder_name(self.conf),
                                           self.conf.vmware.temp_folder)
        return self._image_cache

    def close(self) -> None:
        """Log out of vCenter."""
        if self._session is not None:
            self._session.logout()

    def _networks_for(self, vifs: Iterable[Any]) -> dict[str, vif_util.NetworkRef]:
        names = {vif.network for vif in vifs}
        if self._networks is None or not names <= set(self._networks):
            # read once; again only when a VIF names a network we have not seen
            self._networks = vif_util.find_networks(self.session, self.inventory.networks)
        missing = names - set(self._networks)
        if missing:
            raise exceptions.InvalidInput("vif.network", sorted(missing)[0],
                                          f"is not a network of cluster "
                                          f"{self.inventory.cluster_name}")
        return self._networks

    def _vm(self, instance: Any) -> Any:
        uuid = field_of(instance, "uuid")
        ref = self.vm_refs.find(self.session, uuid)
        if ref is None:
            raise exceptions.InstanceNotFound(uuid, "no VM with this instanceUuid")
        return ref

    def _read(self, instance: Any, paths: list[str]) -> tuple[Any, dict[str, Any]]:
        """The VM and the given properties; a stale cached reference is looked up again."""
        return self.vm_refs.call(self.session, instance,
                                 lambda ref: (ref, self.session.retrieve_one(ref, paths)))

    def _datastore(self, ds_ref: Any, props: dict[str, Any] | None = None) -> Datastore:
        props = props or self.session.retrieve_one(ds_ref, ds_util.DATASTORE_PATHS)
        inv = self.inventory
        return Datastore(ds_ref, props["summary.name"], props.get("summary.freeSpace", 0),
                         props.get("summary.capacity", 0), inv.dc_ref, inv.dc_name)

    def _vm_datastore(self, vm_path: str) -> Datastore:
        """The datastore of a ``[ds] path``; names are read once and kept."""
        name = DatastorePath.parse(vm_path).datastore
        if self._datastore_refs is None or name not in self._datastore_refs:
            names = self.session.retrieve(self.inventory.datastores, ["summary.name"])
            self._datastore_refs = {names[ref._moId]["summary.name"]: ref
                                    for ref in self.inventory.datastores if ref._moId in names}
        if name not in self._datastore_refs:
            raise exceptions.BackendError(f"datastore {name} is not in cluster "
                                          f"{self.inventory.cluster_name}", code="NotFound")
        inv = self.inventory
        return Datastore(self._datastore_refs[name], name, 0, 0, inv.dc_ref, inv.dc_name)

    # -- spawn -----------------------------------------------------------------------------------

    def spawn(self, context: Any, instance: Any, image_meta: Any, injected_files: Any,
              admin_password: str | None, network_info: Any = None,
              block_device_info: Any = None) -> None:
        """Create the VM from the image and flavor, then power it on (see VMOps.spawn)."""
        info = self._spawn_config(instance, image_meta, network_info)
        step = make_step_decorator(context, instance, self.progress)
        check_absent = step(self._check_absent)
        find_networks = step(self._networks_for)
        choose_datastore = step(self._choose_datastore)
        cache_image = step(self._cache_image)
        create_vm = step(self._create_vm)
        attach_disks = step(self._attach_root_and_config_drive)
        power_on = step(self._power_on_new_vm)
        with instance_lock(instance), Rollback(f"spawn of {field_of(instance, 'uuid')}") as undo:
            check_absent(instance)
            find_networks(info.vifs)
            ds = choose_datastore(info)
            cached = cache_image(context, info, ds)
            vm = create_vm(info, ds, cached, undo)
            attach_disks(context, info, ds, cached, vm, injected_files, admin_password)
            power_on(vm)

    def _spawn_config(self, instance: Any, image_meta: Any, network_info: Any) -> VMConfigInfo:
        """Every input checked, before the first server call."""
        if self.image_store is None:
            raise exceptions.InvalidInput("image_store", None,
                                          "is required to spawn from an image")
        check_image(image_meta)
        info = VMConfigInfo.build(instance, image_meta, network_info)
        vm_util.adapter_type(image_meta)
        vm_util.guest_id(image_meta)
        vif_util.vif_model(image_property(image_meta, "hw_vif_model"))
        size = field_of(image_meta, "size", 0) or 0
        if info.root_gb and size > info.root_gb * ds_util.GiB and \
                field_of(image_meta, "disk_format") != "iso":
            raise exceptions.InvalidInput("flavor.root_gb", info.root_gb,
                                          f"is smaller than the image ({size} bytes)")
        return info

    def _check_absent(self, instance: Any) -> None:
        if self.vm_refs.find(self.session, field_of(instance, "uuid")) is not None:
            raise exceptions.InstanceExists(field_of(instance, "name"))

    def _choose_datastore(self, info: VMConfigInfo) -> Datastore:
        needed = (info.root_gb + info.ephemeral_gb) * ds_util.GiB + info.swap_mb * 1024 ** 2
        candidates = {ref._moId: (ref, props) for ref, props in self._datastore_props().items()}
        ref, props = ds_util.choose_datastore(candidates, self.conf.vmware.datastore_regex,
                                              needed)
        return self._datastore(ref, props)

    def _datastore_props(self) -> dict[Any, dict[str, Any]]:
        found = self.session.retrieve(self.inventory.datastores, ds_util.DATASTORE_PATHS)
        return {ref: found[ref._moId] for ref in self.inventory.datastores if ref._moId in found}

    def _cache_image(self, context: Any, info: VMConfigInfo, ds: Datastore) -> DatastorePath:
        image_id = field_of(info.image, "id")
        if self._linked_clone(info) and info.root_gb:
            # the sized copy exists only if the image is cached: one look is enough
            sized = self.image_cache.disk_path(ds, image_id, info.root_gb)
            if self.image_cache.http.exists(ds.dc_name, ds.name, sized.rel_path):
                return sized
        cached = self.image_cache.ensure(context, info.image, ds,
                                         vm_util.adapter_type(info.image))
        if self._linked_clone(info) and info.root_gb:
            return self.image_cache.sized_copy(ds, image_id, info.root_gb,
                                               field_of(info.image, "size", 0) or 0,
                                               known_absent=True)
        return cached

    def _linked_clone(self, info: VMConfigInfo) -> bool:
        if field_of(info.image, "disk_format") == "iso":
            return False
        value = image_property(info.image, "img_linked_clone",
                               image_property(info.image, "vmware_linked_clone"))
        if value is None:
            return bool(self.conf.vmware.use_linked_clone)
        return str(value).lower() in ("true", "1", "yes")

    def _create_vm(self, info: VMConfigInfo, ds: Datastore, cached: DatastorePath,
                   undo: Rollback) -> Any:
        uuid = field_of(info.instance, "uuid")
        adapter = vm_util.adapter_type(info.image)
        layout = vm_util.DiskLayout(adapter)
        devices = [s for s in [vm_util.controller_spec(adapter)] if s is not None]
        folder = ds.path(uuid)
        io = info.extra_specs.disk_io
        if self._linked_clone(info) and info.root_gb:
            devices.append(vm_util.disk_spec(layout, folder.join(f"{uuid}.vmdk"),
                                             vm_util.gib_to_kb(info.root_gb), create=True,
                                             parent=cached, io=io))
        else:
            layout.slot()  # unit 0 is the root disk's, attached after the copy
        if info.ephemeral_gb:
            devices.append(vm_util.disk_spec(layout, folder.join("ephemeral_0.vmdk"),
                                             vm_util.gib_to_kb(info.ephemeral_gb), create=True,
                                             io=io))
        if info.swap_mb:
            devices.append(vm_util.disk_spec(layout, folder.join("swap.vmdk"),
                                             info.swap_mb * 1024, create=True, io=io))
        spec = vm_util.create_spec(info, ds, self._networks_for(info.vifs), devices)
        inv = self.inventory
        vm = self.session.call_task(inv.vm_folder, "CreateVM_Task", spec, inv.pool)
        undo.push(self._remove_vm, vm, ds, folder, uuid)
        self.vm_refs.remember(uuid, vm)
        return vm

    def _remove_vm(self, vm: Any, ds: Datastore, folder: DatastorePath, uuid: str) -> None:
        """Undo of create: the VM and everything in its folder."""
        with ignoring("InvalidPowerState"):
            self.session.call_task(vm, "PowerOffVM_Task")
        with ignoring("ManagedObjectNotFound"):
            self.session.call_task(vm, "Destroy_Task")
        ds_util.delete_path(self.session, ds, folder)
        self.vm_refs.forget(uuid)

    def _attach_root_and_config_drive(self, context: Any, info: VMConfigInfo, ds: Datastore,
                                      cached: DatastorePath, vm: Any, injected_files: Any,
                                      admin_password: str | None) -> None:
        """What CreateVM could not hold: a copied root disk, an ISO, the config drive."""
        changes = []
        if not (self._linked_clone(info) and info.root_gb):
            changes += self._root_disk_changes(info, ds, cached, vm)
        if field_of(info.instance, "config_drive"):
            changes.append(self._config_drive(info, ds, injected_files, admin_password))
        if changes:
            self.session.call_task(vm, "ReconfigVM_Task", vim.vm.ConfigSpec(deviceChange=changes))

    def _root_disk_changes(self, info: VMConfigInfo, ds: Datastore, cached: DatastorePath,
                           vm: Any) -> list[Any]:
        uuid = field_of(info.instance, "uuid")
        root = ds.path(uuid).join(f"{uuid}.vmdk")
        layout = vm_util.DiskLayout(vm_util.adapter_type(info.image))
        controller = layout.controller_key
        if controller < 0:
            # CreateVM gave the SCSI controller its real key; read it
            controller = next(d.key for d in vm_util.devices_of(self.session, vm)
                              if isinstance(d, vim.vm.device.VirtualSCSIController))
        io = info.extra_specs.disk_io
        if field_of(info.image, "disk_format") == "iso":
            # boot from the cached ISO; the root disk, if any, starts blank
            changes = [vm_util.cdrom_spec(cached, vm_util.IDE_CONTROLLER_KEY + 1, 0, key=-60)]
            if info.root_gb:
                changes.append(vm_util.disk_spec(layout, root, vm_util.gib_to_kb(info.root_gb),
                                                 create=True, slot=(controller, 0), io=io))
            return changes
        ds_util.copy_disk(self.session, ds, cached, root)
        size = field_of(info.image, "size", 0) or 0
        capacity_kb = vm_util.gib_to_kb(info.root_gb) if info.root_gb else \
            max(1, (size + 1023) // 1024)
        if info.root_gb and info.root_gb * ds_util.GiB > size:
            ds_util.extend_disk(self.session, ds, root, capacity_kb)
        return [vm_util.disk_spec(layout, root, capacity_kb, create=False,
                                  slot=(controller, 0), io=io)]

    def _config_drive(self, info: VMConfigInfo, ds: Datastore, injected_files: Any,
                      admin_password: str | None) -> Any:
        """Upload the config-drive ISO into the VM's folder; return its CD-ROM spec."""
        uuid = field_of(info.instance, "uuid")
        data = build_config_drive(config_drive_files(info.instance, injected_files,
                                                     admin_password, info.vifs))
        iso = ds.path(uuid).join(CONFIG_DRIVE_NAME)
        self.image_cache.http.put(ds.dc_name, ds.name, iso.rel_path, [data], len(data))
        # second IDE channel: the first one may hold IDE disks
        return vm_util.cdrom_spec(iso, vm_util.IDE_CONTROLLER_KEY + 1, 1, key=-61)

    def _power_on_new_vm(self, vm: Any) -> None:
        self.session.call_task(vm, "PowerOnVM_Task")

    # -- destroy ---------------------------------------------------------------------------------

    def destroy(self, instance: Any, network_info: Any = None, block_device_info: Any = None,
                destroy_disks: bool = True) -> None:
        """Power off, unregister, delete the VM's folder; a gone VM is a no-op."""
        uuid = field_of(instance, "uuid")
        with instance_lock(instance):
            try:
                vm, props = self._read(instance, ["runtime.powerState",
                                                  "config.files.vmPathName"])
            except exceptions.InstanceNotFound:
                LOG.info("instance %s: no VM to destroy", uuid)
                return
            self._destroy_vm(vm, props, destroy_disks)
            self.vm_refs.forget(uuid)

    def _destroy_vm(self, vm: Any, props: dict[str, Any], destroy_disks: bool) -> None:
        # 1. power off, 2. unregister, 3. delete the folder holding the VM's files
        if props.get("runtime.powerState") != "poweredOff":
            with ignoring("InvalidPowerState"):
                self.session.call_task(vm, "PowerOffVM_Task")
        self.session.invoke(vm, "UnregisterVM")
        vm_path = props.get("config.files.vmPathName")
        if destroy_disks and vm_path:
            ds = self._vm_datastore(vm_path)
            ds_util.delete_path(self.session, ds, DatastorePath.parse(vm_path).parent)

    # -- power -----------------------------------------------------------------------------------

    def _power_state(self, instance: Any) -> tuple[Any, str]:
        vm, props = self._read(instance, ["runtime.powerState"])
        return vm, props.get("runtime.powerState", "poweredOff")

    def power_off(self, instance: Any, timeout: int = 0, retry_interval: int = 0) -> None:
        """Guest shutdown first when ``timeout`` > 0 (waited on by push), then hard off."""
        with instance_lock(instance):
            vm, state = self._power_state(instance)
            if state == "poweredOff":
                return
            if timeout > 0 and state == "poweredOn" and self._clean_shutdown(
                    vm, timeout, retry_interval):
                return
            with ignoring("InvalidPowerState"):
                self.session.call_task(vm, "PowerOffVM_Task")

    def _clean_shutdown(self, vm: Any, timeout: int, retry_interval: int) -> bool:
        interval = retry_interval if retry_interval > 0 else timeout
        waited = 0
        while waited < timeout:
            try:
                self.session.invoke(vm, "ShutdownGuest")
            except exceptions.BackendError as exc:
                LOG.info("guest shutdown refused (%s); powering off", exc.code)
                return False
            wait = min(interval, timeout - waited)
            if vm_util.wait_for_property(self.session, vm, "runtime.powerState",
                                 lambda state: state == "poweredOff", wait) is not None:
                return True
            waited += wait
        return False

    def power_on(self, instance: Any) -> None:
        """Power on; an already running VM stays running."""
        with instance_lock(instance):
            vm = self._vm(instance)
            with ignoring("InvalidPowerState"):
                self.session.call_task(vm, "PowerOnVM_Task")

    def reboot(self, instance: Any, network_info: Any = None, reboot_type: str = "SOFT",
               bad_volumes_callback: Callable[..., Any] | None = None) -> None:
        """SOFT: RebootGuest when the tools run, else reset; HARD: reset."""
        if reboot_type not in ("SOFT", "HARD"):
            raise exceptions.InvalidInput("reboot_type", reboot_type, "must be SOFT or HARD")
        with instance_lock(instance):
            vm, props = self._read(instance, ["runtime.powerState", "guest.toolsRunningStatus"])
            if props.get("runtime.powerState") != "poweredOn":
                raise exceptions.InstanceInvalidState(field_of(instance, "uuid"), "reboot",
                                                      props.get("runtime.powerState", "?"))
            if reboot_type == "SOFT" and \
                    props.get("guest.toolsRunningStatus") == "guestToolsRunning":
                try:
                    self.session.invoke(vm, "RebootGuest")
                    return
                except exceptions.BackendError as exc:
                    LOG.info("guest reboot refused (%s); resetting", exc.code)
            self.session.call_task(vm, "ResetVM_Task")

    def suspend(self, instance: Any) -> None:
        """Suspend a running VM; a suspended one stays suspended."""
        with instance_lock(instance):
            vm, state = self._power_state(instance)
            if state == "suspended":
                return
            if state != "poweredOn":
                raise exceptions.InstanceInvalidState(field_of(instance, "uuid"), "suspend",
                                                      state)
            self.session.call_task(vm, "SuspendVM_Task")

    def resume(self, instance: Any) -> None:
        """Resume a suspended VM."""
        with instance_lock(instance):
            vm, state = self._power_state(instance)
            if state != "suspended":
                raise exceptions.InstanceInvalidState(field_of(instance, "uuid"), "resume",
                                                      state)
            self.session.call_task(vm, "PowerOnVM_Task")

    # -- facts -----------------------------------------------------------------------------------

    def get_info(self, instance: Any) -> InstanceInfo:
        """The power state (one call once the VM's reference is cached)."""
        vm, state = self._power_state(instance)
        return InstanceInfo(state=POWER_STATES.get(state, PowerState.NOSTATE))

    def _managed_vms(self) -> dict[str, tuple[Any, dict[str, Any]]]:
        found = self.session.list_objects(
            vim.VirtualMachine, ["name", "config.instanceUuid", "config.managedBy",
                                 "config.annotation"],
            root=self.inventory.vm_folder)
        return {key: (ref, props) for key, (ref, props) in found.items()
                if getattr(props.get("config.managedBy"), "extensionKey", None)
                == vm_util.MANAGED_BY.extensionKey}

    def list_instances(self) -> list[str]:
        """Names of the instances this backend's VMs belong to (one container-view pass).

        A VM is named after its instance's uuid; the instance's name is in its annotation.
        """
        return sorted(instance_name_from_metadata(props.get("config.annotation"))
                      or props["name"] for _, props in self._managed_vms().values())

    def list_instance_uuids(self) -> list[str]:
        """Instance uuids of this backend's VMs (one container-view pass)."""
        return sorted(props["config.instanceUuid"] for _, props in self._managed_vms().values()
                      if props.get("config.instanceUuid"))

    def get_diagnostics(self, instance: Any) -> dict[str, Any]:
        """summary.config, quickStats and runtime, flattened with a ``vmware:`` prefix."""
        _, props = self._read(instance, ["summary.config", "summary.quickStats",
                                         "summary.runtime"])
        out: dict[str, Any] = {}
        for value in props.values():
            for name in getattr(value, "_propInfo", {}) or {}:
                item = getattr(value, name, None)
                if item is not None and isinstance(item, (str, int, float, bool)):
                    out[f"vmware:{name}"] = item
        return out

    def get_instance_diagnostics(self, instance: Any) -> Diagnostics:
        """Nova's common diagnostics shape."""
        _, props = self._read(instance, ["runtime.powerState", "config.hardware",
                                         "summary.quickStats", "summary.runtime.bootTime"])
        hardware = props.get("config.hardware")
        devices = list(getattr(hardware, "device", None) or [])
        stats = props.get("summary.quickStats")
        state = props.get("runtime.powerState", "poweredOff")
        return Diagnostics(
            state={"poweredOn": "running", "poweredOff": "shutdown",
                   "suspended": "suspended"}.get(state, "pending"),
            driver="vmwareapi", hypervisor="esxi", hypervisor_os="esxi",
            uptime=getattr(stats, "uptimeSeconds", None),
            config_drive=any(isinstance(d, vim.vm.device.VirtualCdrom)
                             and CONFIG_DRIVE_NAME in getattr(d.backing, "fileName", "")
                             for d in devices),
            num_cpus=getattr(hardware, "numCPU", 0) or 0,
            num_nics=len(vif_util.nics_by_mac(devices)),
            num_disks=len(vm_util.disks_of(devices)),
            memory_details=MemoryDiagnostics(
                maximum=getattr(hardware, "memoryMB", None),
                used=getattr(stats, "guestMemoryUsage", None)))


__all__ = ["VMwareVMOps"]
