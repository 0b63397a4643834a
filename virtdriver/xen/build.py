"""Building a VM: the steps of spawn (and of rescue's and finish_migration's VM), each
testable alone.

:func:`plan` validates everything before the first server call and returns a
:class:`SpawnPlan`; each step then does one part of the work on the given
:class:`~virtdriver.xen.backend.XenBackend` and, as soon as it has made something, registers
how to undo it on the :class:`~virtdriver.common.progress.Rollback`.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from oslo_log import log as logging

from virtdriver.common import exceptions as exc
from virtdriver.common.config_drive import build_config_drive
from virtdriver.common.model import VIF, VMConfigInfo, field_of, image_property
from virtdriver.common.progress import Rollback
from virtdriver.common.validation import require_admin_password, require_injected_files
from virtdriver.common.volumes import NO_VOLUMES, BlockDevices
from virtdriver.xen import disks, vm_utils, volumes
from virtdriver.xen import vif as vif_utils
from virtdriver.xen.agent import GuestAgent
from virtdriver.xen.backend import XenBackend
from virtdriver.xen.session import is_handle_invalid
from virtdriver.xen.volumes import Planned

LOG = logging.getLogger(__name__)


@dataclasses.dataclass
class SpawnPlan:
    """Everything spawn needs, validated; filled in with server refs as steps run."""

    instance: Any
    image: Any
    config: VMConfigInfo
    mode: str
    os_type: str
    injected_files: list[tuple[str, bytes]]
    admin_password: str | None = dataclasses.field(default=None, repr=False)
    rescue: bool = False
    sr_ref: str | None = None
    vdis: dict[str, str] = dataclasses.field(default_factory=dict)
    networks: dict[str, str] | None = None
    affinity: str | None = None
    original_disks: dict[str, tuple[str, str]] = dataclasses.field(default_factory=dict)
    #: the instance's volumes (block_device_info), placed
    volumes: list[Planned] = dataclasses.field(default_factory=list)

    @property
    def boot_from_volume(self) -> bool:
        """True when the root disk is a volume (no image is cached or copied)."""
        return any(item.bootable for item in self.volumes)

    @property
    def uuid(self) -> str:
        """The instance's uuid."""
        return str(field_of(self.instance, "uuid"))

    @property
    def vifs(self) -> list[VIF]:
        """The validated VIFs."""
        return self.config.vifs

    @property
    def wants_config_drive(self) -> bool:
        """True when the instance asks for a config drive (never for a rescue VM)."""
        return bool(field_of(self.instance, "config_drive", False)) and not self.rescue


# -- validation (no server call) ------------------------------------------------------


def plan(backend: XenBackend, instance: Any, image: Any, injected_files: Any,
         admin_password: Any, network_info: Any, rescue: bool = False,
         block_devices: BlockDevices = NO_VOLUMES) -> SpawnPlan:
    """Validate every input and return the plan; InvalidInput before any server call.

    With a boot volume in ``block_devices`` the image is only read for its properties
    (it may be None): the root disk is the volume.
    """
    boot_from_volume = block_devices.boot_volume is not None
    config = VMConfigInfo.build(instance, image, network_info)
    if not boot_from_volume:
        if backend.image_store is None:
            raise exc.InvalidInput("image_store", None, "is required to spawn on Xen")
        disk_format = field_of(image, "disk_format")
        if disk_format not in disks.IMPORT_FORMATS or disk_format == "iso":
            raise exc.InvalidInput("image.disk_format", disk_format,
                                   "must be raw or vhd on the Xen backend")
        image_size = int(field_of(image, "size", 0) or 0)
        if config.root_gb and image_size > config.root_gb * vm_utils.GiB:
            raise exc.InvalidInput("flavor.root_gb", config.root_gb,
                                   f"is smaller than the image ({image_size} bytes)")
    admin_password = require_admin_password("admin_password", admin_password)
    files = require_injected_files(injected_files)
    mode = vm_utils.vm_mode(image, instance, backend.xen.default_os_type)
    guest_os = vm_utils.os_type(image, instance, backend.xen.default_os_type)
    needs_agent = bool(admin_password or files)
    if needs_agent and backend.xen.disable_agent and not (
            field_of(instance, "config_drive", False) and not rescue):
        raise exc.InvalidInput("admin_password/injected_files", "<hidden>",
                               "need the guest agent ([xenserver] disable_agent is set) "
                               "or a config drive")
    taken = {device for device, used in (
        (vm_utils.DEVICE_ROOT, not boot_from_volume),
        (vm_utils.DEVICE_SWAP, bool(config.swap_mb)),
        (vm_utils.DEVICE_CONFIGDRIVE, bool(field_of(instance, "config_drive", False))),
        (str(vm_utils.DEVICE_EPHEMERAL), bool(config.ephemeral_gb))) if used}
    planned = volumes.plan(block_devices, taken)
    return SpawnPlan(instance=instance, image=image, config=config, mode=mode,
                     os_type=guest_os, injected_files=files, volumes=planned,
                     admin_password=admin_password, rescue=rescue)


# -- steps ------------------------------------------------------------------------------


def check_no_vm(backend: XenBackend, plan: SpawnPlan, name_label: str) -> None:
    """What only the server can tell, before anything is made: no VM of that name yet
    (else InstanceExists), and every VIF's network exists (else InvalidInput)."""
    if vm_utils.find_vm(backend.session, name_label) is not None:
        raise exc.InstanceExists(name_label)
    plan.networks = backend.networks_for(plan.vifs)


def create_disks(backend: XenBackend, context: Any, plan: SpawnPlan, undo: Rollback) -> None:
    """Root disk (CoW clone of the cached image, grown to root_gb; none when the root is
    a volume), ephemeral, swap and config drive VDIs on the configured SR."""
    plan.sr_ref = backend.sr_ref()
    if not plan.boot_from_volume:
        create_root_disk(backend, context, plan, undo)
    if plan.rescue:
        return
    name = field_of(plan.instance, "name")
    other = {"nova_instance_uuid": plan.uuid}
    if plan.config.swap_mb:
        swap = disks.create_vdi(backend.session, plan.sr_ref, f"{name} swap",
                                plan.config.swap_mb * vm_utils.MiB, "swap", other)
        undo.push(vm_utils.destroy_vdi, backend.session, swap)
        plan.vdis[vm_utils.DEVICE_SWAP] = swap
    if plan.config.ephemeral_gb:
        eph = disks.create_vdi(backend.session, plan.sr_ref, f"{name} ephemeral",
                               plan.config.ephemeral_gb * vm_utils.GiB, "ephemeral", other)
        undo.push(vm_utils.destroy_vdi, backend.session, eph)
        plan.vdis[str(vm_utils.DEVICE_EPHEMERAL)] = eph
    if plan.wants_config_drive:
        create_config_drive(backend, plan, undo)


def create_root_disk(backend: XenBackend, context: Any, plan: SpawnPlan,
                     undo: Rollback) -> None:
    """The root disk: a copy-on-write clone of the cached image, grown to root_gb."""
    root_size = plan.config.root_gb * vm_utils.GiB if not plan.rescue else None
    for again in (False, True):
        try:
            base, base_size = backend.cached_image(context, plan.sr_ref, plan.image)
            root = disks.clone_for_instance(backend.session, base, plan.instance,
                                            "rescue" if plan.rescue else "root", root_size,
                                            base_size)
            break
        except exc.BackendError as error:
            if is_handle_invalid(error, "SR"):
                backend.forget_sr()  # the SR went away: choose again next time
            if again or not is_handle_invalid(error, "VDI"):
                raise
            # the cached image kept since an earlier spawn was removed: find or import it
            backend.forget_image(plan.sr_ref, str(field_of(plan.image, "id")))
    undo.push(vm_utils.destroy_vdi, backend.session, root)
    backend.note_sr_of(root, plan.sr_ref)
    plan.vdis[vm_utils.DEVICE_ROOT] = root


def create_config_drive(backend: XenBackend, plan: SpawnPlan, undo: Rollback) -> None:
    """An ISO 9660 config drive VDI (OpenStack metadata layout) on the plan's SR."""
    # the EC2 metadata also carries the agent's networking blobs, as the xenstore does
    iso = build_config_drive(plan.instance, plan.injected_files, plan.admin_password,
                             plan.vifs,
                             ec2_extra={"network": [vm_utils.network_blob(v)
                                                    for v in plan.vifs]})
    drive = disks.create_vdi(backend.session, plan.sr_ref,
                             f"{field_of(plan.instance, 'name')} config drive", len(iso),
                             "configdrive", {"nova_instance_uuid": plan.uuid})
    undo.push(vm_utils.destroy_vdi, backend.session, drive)
    disks.upload(backend.session, drive, [iso], len(iso))
    plan.vdis[vm_utils.DEVICE_CONFIGDRIVE] = drive


def create_vm_record(backend: XenBackend, plan: SpawnPlan, name_label: str, undo: Rollback,
                     rescue_of: str | None = None) -> str:
    """``VM.create`` from the flavor, image properties and extra specs, with the
    instance data (metadata, hostname, networking) in its xenstore_data: one call
    where Nova made two."""
    record = vm_utils.vm_record(plan.instance, plan.image, plan.config.extra_specs,
                                plan.mode, plan.os_type, name_label,
                                instance_data(plan))
    if rescue_of is not None:
        record["other_config"]["nova_rescue"] = "true"
    if plan.affinity:
        record["affinity"] = plan.affinity
    vm_ref = backend.session.call("VM.create", record)
    undo.push(backend.session.call, "VM.destroy", vm_ref)
    return vm_ref


def attach_devices(backend: XenBackend, plan: SpawnPlan, vm_ref: str, undo: Rollback,
                   rescue_of: str | None = None) -> None:
    """A VBD per disk: root 0 (bootable), swap 2, config drive 3 (read-only),
    ephemerals 4+, volumes (``osvol``, their target's SR connected first, on the host
    the VM is pinned to if any) at their mount points (a boot volume at 0, bootable); for
    rescue the original disks at 1, 2 and 4+."""
    for device, vdi in sorted(plan.vdis.items()):
        read_only = device == vm_utils.DEVICE_CONFIGDRIVE
        backend.session.call("VBD.create", vm_utils.vbd_record(
            vm_ref, vdi, device, bootable=device == vm_utils.DEVICE_ROOT,
            read_only=read_only))
    for device, (_, vdi) in sorted(plan.original_disks.items()):
        if device == vm_utils.DEVICE_CONFIGDRIVE:
            continue
        target = vm_utils.DEVICE_RESCUE if device == vm_utils.DEVICE_ROOT else device
        backend.session.call("VBD.create", vm_utils.vbd_record(vm_ref, vdi, target))
    volumes.attach_planned(backend, vm_ref, plan.volumes, undo, plan.instance, plan.affinity)


def instance_data(plan: SpawnPlan) -> dict[str, str]:
    """Metadata, hostname and per-VIF networking, as the VM's xenstore_data."""
    hostname = field_of(plan.instance, "hostname") or field_of(plan.instance, "name")
    if plan.rescue:
        hostname = f"RESCUE-{hostname}"
    if plan.os_type == "windows":
        hostname = hostname[:15]  # NetBIOS names are at most 15 characters
    return vm_utils.metadata_xenstore(plan.instance, plan.vifs, hostname)


def setup_network(backend: XenBackend, plan: SpawnPlan, vm_ref: str, undo: Rollback) -> None:
    """A VIF per network_info entry, with its MAC, network and address locking."""
    if plan.networks is None:
        plan.networks = backend.networks_for(plan.vifs)
    for device, vif in enumerate(plan.vifs):
        try:
            vif_utils.create_vif(backend.session, vm_ref, plan.networks[vif.network], vif,
                                 device, running=False)
        except exc.BackendError as error:
            if not is_handle_invalid(error, "network"):
                raise
            # the network kept since an earlier spawn is gone: look it up again, once
            backend.forget_networks()
            plan.networks = backend.networks_for(plan.vifs)
            vif_utils.create_vif(backend.session, vm_ref, plan.networks[vif.network], vif,
                                 device, running=False)


def boot_instance(backend: XenBackend, vm_ref: str, undo: Rollback) -> None:
    """``VM.start``; the rollback hard-stops it again."""
    vm_utils.start(backend.session, vm_ref)
    undo.push(vm_utils.hard_shutdown, backend.session, vm_ref)


def configure_booted_instance(backend: XenBackend, plan: SpawnPlan, vm_ref: str) -> None:
    """Through the guest agent: files, admin password, network reset."""
    if backend.xen.disable_agent:
        return
    # As Nova did: a network reset only for images that say they carry the agent (it
    # would otherwise wait agent_version_timeout for nobody); files and a password
    # were asked for explicitly, so they need the agent whatever the image says.
    reset_network = bool(plan.vifs) and image_has_agent(backend, plan.image)
    if not (plan.injected_files or plan.admin_password or reset_network):
        return
    agent = GuestAgent(backend.session, vm_ref, plan.uuid, backend.xen.agent_timeout,
                       backend.xen.agent_resetnetwork_timeout)
    try:
        agent.version(backend.xen.agent_version_timeout)
    except exc.AgentError as error:
        if plan.injected_files or plan.admin_password:
            raise
        # Only a network reset was wanted: the guest reads vm-data/networking at boot
        # anyway, so a guest without an agent still gets its configuration.
        LOG.warning("no guest agent (%s); network not reset", error,
                    instance=plan.instance)
        return
    for path, contents in plan.injected_files:
        agent.inject_file(path, contents)
    if plan.admin_password:
        agent.set_password(plan.admin_password)
    if reset_network:
        agent.reset_network()


def image_has_agent(backend: XenBackend, image: Any) -> bool:
    """Whether the image's guest runs the agent: its ``xenapi_use_agent`` property, or
    ``[xenserver] use_agent_default``."""
    value = image_property(image, "xenapi_use_agent")
    if value is None:
        return bool(backend.xen.use_agent_default)
    return str(value).strip().lower() in ("true", "1", "yes", "on")
