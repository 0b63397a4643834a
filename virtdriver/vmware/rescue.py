"""Rescue on vCenter: boot from a copy of a rescue image, the instance's disk attached second.

The rescue disk sits beside the root disk, named ``<uuid>-rescue.vmdk``
(:data:`vm_util.RESCUE_SUFFIX`), which is how unrescue and the disk helpers tell it apart.
The face holds the instance's lock around each call.
"""

from __future__ import annotations

from typing import Any

from oslo_log import log as logging
from pyVmomi import vim

from virtdriver.common import exceptions
from virtdriver.common.model import field_of
from virtdriver.common.progress import Rollback
from virtdriver.vmware import ds_util, vm_util, volume_util
from virtdriver.vmware.backend import VMwareBackend
from virtdriver.vmware.ds_util import DatastorePath
from virtdriver.vmware.images import check_image
from virtdriver.vmware.vm_util import RESCUE_SUFFIX

LOG = logging.getLogger(__name__)


def rescue(backend: VMwareBackend, context: Any, instance: Any, image_meta: Any) -> None:
    """Boot from a copy of ``image_meta`` with the instance's disk attached second."""
    check_image(image_meta)
    if field_of(image_meta, "disk_format") == "iso":
        raise exceptions.InvalidInput("image.disk_format", "iso",
                                      "rescue needs a disk image (vmdk or raw)")
    uuid = field_of(instance, "uuid")
    session = backend.session
    vm, devices, props = backend.read_devices(instance)
    if any(d.backing.fileName.endswith(RESCUE_SUFFIX) for d in vm_util.disks_of(devices)):
        raise exceptions.InstanceInvalidState(uuid, "rescue", "rescued")
    # attached volumes stay attached; the rescue disk goes beside the instance's own disk
    root = volume_util.require_own_root_disk(devices, props, "rescue")
    ds = backend.vm_datastore(root.backing.fileName)
    cached = backend.image_cache.ensure(context, image_meta, ds,
                                        vm_util.adapter_type(image_meta))
    vm_util.power_off(session, vm)
    rescue_path = DatastorePath.parse(root.backing.fileName).parent.join(
        f"{uuid}{RESCUE_SUFFIX}")
    with Rollback(f"rescue of {uuid}") as undo:
        ds_util.copy_disk(session, ds, cached, rescue_path)
        undo.push(ds_util.delete_disk, session, ds, rescue_path)
        unit = vm_util.free_unit(devices, root.controllerKey)
        layout = vm_util.DiskLayout("lsiLogic")
        add = vm_util.disk_spec(layout, rescue_path, root.capacityInKB, create=False,
                                slot=(root.controllerKey, unit))
        session.call_task(vm, "ReconfigVM_Task", vim.vm.ConfigSpec(deviceChange=[add]))
        rescue_disk = next(d for d in vm_util.disks_of(vm_util.devices_of(session, vm))
                           if d.backing.fileName.endswith(RESCUE_SUFFIX))
        undo.push(vm_util.detach_disk, session, vm, rescue_disk)
        vm_util.set_boot_disk(session, vm, rescue_disk.key)
        vm_util.power_on(session, vm)
    LOG.info("rescued from image %s", field_of(image_meta, "id"), instance=instance)


def unrescue(backend: VMwareBackend, instance: Any, power_on: bool = True) -> None:
    """Remove the rescue disk, boot from the instance's own disk again."""
    session = backend.session
    vm, devices, props = backend.read_devices(instance)
    rescue_disks = [d for d in vm_util.disks_of(devices)
                    if d.backing.fileName.endswith(RESCUE_SUFFIX)]
    if not rescue_disks:
        raise exceptions.InstanceNotInRescueMode(field_of(instance, "uuid"))
    root = volume_util.require_own_root_disk(devices, props, "unrescue")
    vm_util.power_off(session, vm)
    spec = vim.vm.ConfigSpec(
        deviceChange=[vim.vm.device.VirtualDeviceSpec(operation="remove", device=d,
                                                      fileOperation="destroy")
                      for d in rescue_disks],
        bootOptions=vim.vm.BootOptions(bootOrder=[
            vim.vm.BootOptions.BootableDiskDevice(deviceKey=root.key)]))
    session.call_task(vm, "ReconfigVM_Task", spec)
    if power_on:
        vm_util.power_on(session, vm)
    LOG.info("unrescued", instance=instance)
