"""Spawn and destroy on vCenter: their steps and spawn's rollback.

Spawn reads like its list of steps; each step is a function that can be tested alone and
that registers its own undo with a :class:`Rollback` as soon as it succeeds.
"""

from __future__ import annotations

from typing import Any

from oslo_log import log as logging
from pyVmomi import vim

from virtdriver.common import exceptions
from virtdriver.common.config_drive import build_config_drive
from virtdriver.common.model import VMConfigInfo, field_of, image_property
from virtdriver.common.progress import Rollback, make_step_decorator
from virtdriver.common.validation import require_admin_password, require_injected_files
from virtdriver.common.volumes import NO_VOLUMES, BlockDevices
from virtdriver.vmware import ds_util, vm_util, volumes
from virtdriver.vmware import vif as vif_util
from virtdriver.vmware.backend import VMwareBackend
from virtdriver.vmware.ds_util import Datastore, DatastorePath
from virtdriver.vmware.images import CONFIG_DRIVE_NAME, check_image
from virtdriver.vmware.session import ignoring

LOG = logging.getLogger(__name__)

#: Fault codes of a file (a cached parent disk) that is not there.
MISSING_FILE_CODES = ("FileNotFound", "NotFound")


def spawn(backend: VMwareBackend, context: Any, instance: Any, image_meta: Any,
          injected_files: Any, admin_password: str | None, network_info: Any = None,
          block_devices: BlockDevices = NO_VOLUMES) -> None:
    """Create the VM from the image and flavor, then power it on; a failed step leaves nothing.

    With a boot volume in ``block_devices`` the root disk is that volume: no image is
    cached or copied. Every volume is attached before power-on (and detached again if a
    later step fails). The caller holds the instance's lock.
    """
    boot_volume = block_devices.boot_volume
    info = spawn_config(backend, instance, image_meta, network_info, boot_volume is not None)
    injected_files, admin_password = guest_data(instance, injected_files, admin_password)
    step = make_step_decorator(context, instance, backend.progress)
    # module globals looked up at call time, so a test can wrap one step
    check_absent = step(_check_absent)
    find_networks = step(_networks_for)
    choose_datastore = step(_choose_datastore)
    # a volume-backed instance has no image disk: nothing to cache
    cache_image = None if boot_volume else step(_cache_image)
    create_vm = step(_create_vm)
    attach_disks = step(_attach_root_and_config_drive)
    # steps count when decorated: only the ones this spawn runs (progress ends at 100)
    attach_volumes = step(_attach_volumes) if block_devices else None
    power_on = step(_power_on_new_vm)
    with Rollback(f"spawn of {field_of(instance, 'uuid')}") as undo:
        check_absent(backend, instance)
        find_networks(backend, info.vifs)
        ds = choose_datastore(backend, info)
        cached = cache_image(backend, context, info, ds) if cache_image else None
        try:
            vm = create_vm(backend, info, ds, cached, undo)
        except exceptions.BackendError as error:
            # a cached image this process remembered (so did not look for) went away: another
            # compute sharing the datastore aged it out. Cache it again, once.
            if cached is None or error.code not in MISSING_FILE_CODES or \
                    not backend.image_cache.known(cached):
                raise
            backend.image_cache.forget(ds, field_of(info.image, "id"))
            LOG.info("cached image %s is gone; caching it again", cached, instance=instance)
            cached = _cache_image(backend, context, info, ds)
            vm = _create_vm(backend, info, ds, cached, undo)
        attach_disks(backend, info, ds, cached, vm, injected_files, admin_password)
        if attach_volumes:
            attach_volumes(backend, instance, block_devices, undo)
        power_on(backend, vm)
    LOG.info("spawned on datastore %s", ds.name, instance=instance)


def spawn_config(backend: VMwareBackend, instance: Any, image_meta: Any,
                 network_info: Any, from_volume: bool = False) -> VMConfigInfo:
    """Every input of spawn checked, before the first server call.

    ``from_volume``: the root disk is a volume, so no image is needed (one given only
    supplies hints such as the adapter and guest type).
    """
    if from_volume:
        return _volume_backed_config(instance, image_meta, network_info)
    if backend.image_store is None:
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


def guest_data(instance: Any, injected_files: Any,
               admin_password: Any) -> tuple[list[tuple[str, bytes]], str | None]:
    """The files and password checked, before any server call (InvalidInput).

    vSphere has no guest agent: the config drive is the only way into the guest, so files
    or a password without one are refused rather than lost. (Nova generates a password for
    every server; its adapter hands one over only where the backend can deliver it.)
    """
    files = require_injected_files(injected_files)
    password = require_admin_password("admin_password", admin_password)
    if field_of(instance, "config_drive"):
        return files, password
    if files:
        raise exceptions.InvalidInput("injected_files", [path for path, _ in files],
                                      "need a config drive (instance.config_drive): "
                                      "vSphere has no guest agent to deliver them")
    if password:
        raise exceptions.InvalidInput("admin_password", "<hidden>",
                                      "needs a config drive (instance.config_drive): "
                                      "vSphere has no guest agent to set it")
    return files, None


def _volume_backed_config(instance: Any, image_meta: Any, network_info: Any) -> VMConfigInfo:
    image = image_meta if field_of(image_meta, "id") else None
    info = VMConfigInfo.build(instance, image, network_info)
    vm_util.adapter_type(image)
    vm_util.guest_id(image)
    vif_util.vif_model(image_property(image, "hw_vif_model"))
    info.root_gb = 0  # the flavor's root disk is the volume's: nothing to create
    return info


def _check_absent(backend: VMwareBackend, instance: Any) -> None:
    """Refuse an instance whose VM this process knows (the VM is named after the instance
    uuid, so CreateVM's DuplicateName refuses any other, see :func:`_create_vm`). A cached
    reference may be stale: another compute of the vCenter may have destroyed the VM (a
    shelve offload there, then an unshelve here), so a cached one is read once to be sure."""
    uuid = field_of(instance, "uuid")
    ref = backend.vm_refs.cached(uuid)
    if ref is None:
        return
    if backend.session.retrieve([ref], ["name"], missing_ok=True):
        raise exceptions.InstanceExists(field_of(instance, "name"))
    backend.vm_refs.forget(uuid)


def _networks_for(backend: VMwareBackend, vifs: Any) -> None:
    backend.networks_for(vifs)


def _choose_datastore(backend: VMwareBackend, info: VMConfigInfo) -> Datastore:
    needed = (info.root_gb + info.ephemeral_gb) * ds_util.GiB + info.swap_mb * 1024 ** 2
    candidates = {ref._moId: (ref, props) for ref, props in backend.datastore_props().items()}
    ref, props = ds_util.choose_datastore(candidates, backend.conf.vmware.datastore_regex,
                                          needed)
    return backend.datastore(ref, props)


def _cache_image(backend: VMwareBackend, context: Any, info: VMConfigInfo,
                 ds: Datastore) -> DatastorePath:
    image_id = field_of(info.image, "id")
    cache = backend.image_cache
    if linked_clone(backend, info) and info.root_gb:
        # the sized copy exists only if the image is cached: one look is enough, and none
        # once this process has seen it (spawn caches it again if it went away since)
        sized = cache.disk_path(ds, image_id, info.root_gb)
        if cache.known(sized):
            return sized
        if cache.http.exists(ds.dc_name, ds.name, sized.rel_path):
            cache.seen(sized)
            return sized
    cached = cache.ensure(context, info.image, ds, vm_util.adapter_type(info.image))
    if linked_clone(backend, info) and info.root_gb:
        return cache.sized_copy(ds, image_id, info.root_gb,
                                field_of(info.image, "size", 0) or 0, known_absent=True)
    return cached


def linked_clone(backend: VMwareBackend, info: VMConfigInfo) -> bool:
    """Whether the root disk is a child of the cached image (image property, else conf)."""
    if field_of(info.image, "disk_format") == "iso":
        return False
    value = image_property(info.image, "img_linked_clone",
                           image_property(info.image, "vmware_linked_clone"))
    if value is None:
        return bool(backend.conf.vmware.use_linked_clone)
    return str(value).lower() in ("true", "1", "yes")


def _create_vm(backend: VMwareBackend, info: VMConfigInfo, ds: Datastore,
               cached: DatastorePath | None, undo: Rollback) -> Any:
    uuid = field_of(info.instance, "uuid")
    adapter = vm_util.adapter_type(info.image)
    layout = vm_util.DiskLayout(adapter)
    devices = [s for s in [vm_util.controller_spec(adapter)] if s is not None]
    folder = ds.path(uuid)
    io = info.extra_specs.disk_io
    if cached is None:
        pass  # volume-backed: the boot volume takes the first free unit when attached
    elif linked_clone(backend, info) and info.root_gb:
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
    spec = vm_util.create_spec(info, ds, backend.networks_for(info.vifs), devices)
    inv = backend.inventory
    try:
        vm = backend.session.call_task(inv.vm_folder, "CreateVM_Task", spec, inv.pool)
    except exceptions.BackendError as error:
        if error.code == "DuplicateName":  # a VM named after this uuid exists: not ours
            raise exceptions.InstanceExists(field_of(info.instance, "name")) from error
        raise
    undo.push(_remove_vm, backend, vm, ds, folder, info.instance)
    backend.vm_refs.remember(uuid, vm)
    return vm


def _remove_vm(backend: VMwareBackend, vm: Any, ds: Datastore, folder: DatastorePath,
               instance: Any) -> None:
    """Undo of create: the VM and everything in its folder."""
    LOG.info("removing the VM of a failed spawn", instance=instance)
    session = backend.session
    with ignoring("InvalidPowerState"):
        session.call_task(vm, "PowerOffVM_Task")
    with ignoring("ManagedObjectNotFound"):
        session.call_task(vm, "Destroy_Task")
    ds_util.delete_path(session, ds, folder)
    backend.vm_refs.forget(field_of(instance, "uuid"))


def _attach_root_and_config_drive(backend: VMwareBackend, info: VMConfigInfo, ds: Datastore,
                                  cached: DatastorePath | None, vm: Any, injected_files: Any,
                                  admin_password: str | None) -> None:
    """What CreateVM could not hold: a copied root disk, an ISO, the config drive."""
    changes = []
    if cached is not None and not (linked_clone(backend, info) and info.root_gb):
        changes += _root_disk_changes(backend, info, ds, cached, vm)
    if field_of(info.instance, "config_drive"):
        changes.append(_config_drive(backend, info, ds, injected_files, admin_password))
    if changes:
        backend.session.call_task(vm, "ReconfigVM_Task", vim.vm.ConfigSpec(deviceChange=changes))


def _root_disk_changes(backend: VMwareBackend, info: VMConfigInfo, ds: Datastore,
                       cached: DatastorePath, vm: Any) -> list[Any]:
    session = backend.session
    uuid = field_of(info.instance, "uuid")
    root = ds.path(uuid).join(f"{uuid}.vmdk")
    layout = vm_util.DiskLayout(vm_util.adapter_type(info.image))
    controller = layout.controller_key
    if controller < 0:
        # CreateVM gave the SCSI controller its real key; read it
        controller = next(d.key for d in vm_util.devices_of(session, vm)
                          if isinstance(d, vim.vm.device.VirtualSCSIController))
    io = info.extra_specs.disk_io
    if field_of(info.image, "disk_format") == "iso":
        # boot from the cached ISO; the root disk, if any, starts blank
        changes = [vm_util.cdrom_spec(cached, vm_util.IDE_CONTROLLER_KEY + 1, 0, key=-60)]
        if info.root_gb:
            changes.append(vm_util.disk_spec(layout, root, vm_util.gib_to_kb(info.root_gb),
                                             create=True, slot=(controller, 0), io=io))
        return changes
    ds_util.copy_disk(session, ds, cached, root)
    size = field_of(info.image, "size", 0) or 0
    capacity_kb = vm_util.gib_to_kb(info.root_gb) if info.root_gb else \
        max(1, (size + 1023) // 1024)
    if info.root_gb and info.root_gb * ds_util.GiB > size:
        ds_util.extend_disk(session, ds, root, capacity_kb)
    return [vm_util.disk_spec(layout, root, capacity_kb, create=False,
                              slot=(controller, 0), io=io)]


def _config_drive(backend: VMwareBackend, info: VMConfigInfo, ds: Datastore,
                  injected_files: Any, admin_password: str | None) -> Any:
    """Upload the config-drive ISO into the VM's folder; return its CD-ROM spec."""
    uuid = field_of(info.instance, "uuid")
    data = build_config_drive(info.instance, injected_files, admin_password, info.vifs)
    iso = ds.path(uuid).join(CONFIG_DRIVE_NAME)
    backend.image_cache.http.put(ds.dc_name, ds.name, iso.rel_path, [data], len(data))
    # second IDE channel: the first one may hold IDE disks
    return vm_util.cdrom_spec(iso, vm_util.IDE_CONTROLLER_KEY + 1, 1, key=-61)


def _attach_volumes(backend: VMwareBackend, instance: Any, block_devices: BlockDevices,
                    undo: Rollback) -> None:
    """Attach the boot volume (made the boot disk) and the data volumes; undone by detach."""
    if not block_devices:
        return
    attached = volumes.attach_block_devices(backend, instance, block_devices)
    undo.push(volumes.detach_block_devices, backend, instance, attached)


def _power_on_new_vm(backend: VMwareBackend, vm: Any) -> None:
    backend.session.call_task(vm, "PowerOnVM_Task")


def destroy(backend: VMwareBackend, instance: Any, destroy_disks: bool = True,
            block_devices: BlockDevices = NO_VOLUMES) -> None:
    """Power off, detach volumes, unregister, delete the VM's folder; a gone VM is a no-op.

    Volumes are detached first and never deleted, whatever ``destroy_disks`` says. The
    caller holds the instance's lock.
    """
    try:
        # one read: the power state, the VM's folder and the devices volumes may hold
        vm, devices, props = backend.read_devices(instance)
    except exceptions.InstanceNotFound:
        LOG.info("no VM to destroy", instance=instance)
        return
    if props.get("runtime.powerState") != "poweredOff":
        with ignoring("InvalidPowerState"):
            backend.session.call_task(vm, "PowerOffVM_Task")
        props["runtime.powerState"] = "poweredOff"
    volumes.detach_block_devices(backend, instance, block_devices.volumes)
    # the devices read above are still current unless named volumes were just detached
    volumes.release_leftover_volumes(
        backend, instance, None if block_devices.volumes else (vm, devices, props))
    _destroy_vm(backend, vm, props, destroy_disks)
    backend.vm_refs.forget(field_of(instance, "uuid"))
    LOG.info("destroyed%s", "" if destroy_disks else " (disks kept)", instance=instance)


def _destroy_vm(backend: VMwareBackend, vm: Any, props: dict[str, Any],
                destroy_disks: bool) -> None:
    # 1. power off, 2. unregister, 3. delete the folder holding the VM's files
    session = backend.session
    if props.get("runtime.powerState") != "poweredOff":
        with ignoring("InvalidPowerState"):
            session.call_task(vm, "PowerOffVM_Task")
    session.invoke(vm, "UnregisterVM")
    vm_path = props.get("config.files.vmPathName")
    if destroy_disks and vm_path:
        ds = backend.vm_datastore(vm_path)
        ds_util.delete_path(session, ds, DatastorePath.parse(vm_path).parent)
