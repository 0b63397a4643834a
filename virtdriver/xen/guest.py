"""Operations on a built instance: snapshot, VIFs, xenstore data and address locking.

Each function takes the backend (for its session, configuration and VM lookup) and the
instance; :class:`~virtdriver.xen.vmops.XenVMOps` holds the per-instance lock around them.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from virtdriver.common import exceptions as exc
from virtdriver.common.model import VIF, field_of
from virtdriver.common.progress import make_step_decorator
from virtdriver.xen import disks, vm_utils
from virtdriver.xen import vif as vif_utils

if TYPE_CHECKING:
    from virtdriver.xen.vmops import XenVMOps

LOG = logging.getLogger(__name__)

IMAGE_SNAPSHOT = "image_snapshot"
IMAGE_PENDING_UPLOAD = "image_pending_upload"
IMAGE_UPLOADING = "image_uploading"


# -- snapshot -------------------------------------------------------------------------------------

def _root_vdi(ops: XenVMOps, vm_ref: str) -> str:
    found = disks.instance_vdis(ops.session, vm_ref).get(vm_utils.DEVICE_ROOT)
    if found is None:
        raise exc.BackendError("the VM has no root disk", "NO_ROOT_DISK")
    return found[1]


def snapshot(ops: XenVMOps, context: Any, instance: Any, image_id: str,
             update_task_state: Callable[..., Any]) -> None:
    """The seed's three steps: XAPI snapshot, wait for coalesce, upload to the image store."""
    if ops.image_store is None:
        raise exc.InvalidInput("image_store", None, "is required to snapshot")
    vm_ref = ops.vm_ref_of(instance)
    session = ops.session
    step = make_step_decorator(context, instance, ops.progress)
    state: dict[str, Any] = {}

    @step
    def snapshot_root_disk() -> None:
        root = _root_vdi(ops, vm_ref)
        state["root"] = root
        state["sr"] = session.call("VDI.get_SR", root)
        state["snap"] = session.call_async("VDI.snapshot", root, {})
        update_task_state(task_state=IMAGE_PENDING_UPLOAD, expected_state=IMAGE_SNAPSHOT)

    @step
    def wait_for_coalesce() -> None:
        disks.wait_for_coalesce(session, state["sr"], state["snap"],
                                float(ops.xen.vhd_coalesce_timeout))

    @step
    def upload_to_image_store() -> None:
        update_task_state(task_state=IMAGE_UPLOADING, expected_state=IMAGE_PENDING_UPLOAD)
        # A dynamic VHD carries only the blocks the guest wrote, as Nova uploaded its chains.
        ops.image_store.upload(context, image_id, disks.download(session, state["snap"]),
                               {"disk_format": "vhd", "container_format": "bare"})

    try:
        snapshot_root_disk()
        wait_for_coalesce()
        upload_to_image_store()
    finally:
        if "snap" in state:
            vm_utils.destroy_vdi(session, state["snap"])


def post_interrupted_snapshot_cleanup(ops: XenVMOps, instance: Any) -> None:
    """Destroy snapshot VDIs of the root disk left by an interrupted snapshot."""
    vm_ref = ops.vm_ref_of(instance)
    removed = disks.destroy_snapshots_of_chain(ops.session, _root_vdi(ops, vm_ref))
    if removed:
        LOG.info("instance %s: removed %d leftover snapshot(s)", field_of(instance, "uuid"),
                 len(removed))


# -- VIFs ------------------------------------------------------------------------------------------

def plug_vifs(ops: XenVMOps, instance: Any, vifs: list[VIF]) -> None:
    """Create (and hot-plug when running) each VIF the VM does not have yet (by MAC)."""
    vm_ref = ops.vm_ref_of(instance)
    session = ops.session
    existing = vif_utils.vm_vifs(session, vm_ref)
    missing = [vif for vif in vifs if vif.address not in existing]
    if not missing:
        return
    networks = vif_utils.find_networks(session, missing)
    running = ops.vm_power_state(vm_ref) == "running"
    used = {record["device"] for _, record in existing.values()}
    for vif in missing:
        device = vif_utils.free_device(session, vm_ref, used)
        vif_utils.create_vif(session, vm_ref, networks[vif.network], vif, device, running)
        used.add(str(device))


def unplug_vifs(ops: XenVMOps, instance: Any, vifs: list[VIF], strict: bool = False) -> None:
    """Unplug and delete the VM's VIFs with the MACs of ``vifs``."""
    vm_ref = ops.vm_ref_of(instance)
    existing = vif_utils.vm_vifs(ops.session, vm_ref)
    for vif in vifs:
        found = existing.get(vif.address)
        if found is None:
            if strict:
                raise exc.InvalidInput("vif.address", vif.address,
                                       "is not a VIF of this instance")
            continue
        vif_utils.destroy_vif(ops.session, found[0])


def refresh_locking(ops: XenVMOps, instance: Any) -> None:
    """Re-apply locking to each VIF from the fixed IPs recorded at ``vm-data/networking``."""
    vm_ref = ops.vm_ref_of(instance)
    xenstore = ops.session.call("VM.get_xenstore_data", vm_ref)
    for mac, (ref, record) in vif_utils.vm_vifs(ops.session, vm_ref).items():
        blob = xenstore.get(vm_utils.networking_path(mac))
        ips: list[str] = []
        if blob:
            data = json.loads(blob)
            ips = [ip["ip"] for ip in data.get("ips", []) + data.get("ip6s", [])]
        port = (record.get("other_config") or {}).get("neutron-port-id")
        vif = VIF(id=port or "00000000-0000-0000-0000-000000000000", address=mac,
                  network="unused", fixed_ips=ips)
        vif_utils.apply_locking(ops.session, ref, vif)


def unlock_vifs(ops: XenVMOps, instance: Any, vifs: list[VIF]) -> None:
    """Put the VIFs of ``vifs`` back to the network's default locking, no allowed IPs."""
    vm_ref = ops.vm_ref_of(instance)
    existing = vif_utils.vm_vifs(ops.session, vm_ref)
    for vif in vifs:
        found = existing.get(vif.address)
        if found is not None:
            vif_utils.apply_locking(ops.session, found[0], VIF(
                id=vif.id, address=vif.address, network=vif.network, fixed_ips=[]))


# -- xenstore --------------------------------------------------------------------------------------

def inject_network_info(ops: XenVMOps, instance: Any, vifs: list[VIF]) -> None:
    """``vm-data/networking/<mac>`` for each VIF, in xenstore_data and the live xenstore."""
    vm_ref = ops.vm_ref_of(instance)
    running = ops.vm_power_state(vm_ref) in ("running", "paused")
    for vif in vifs:
        vm_utils.write_xenstore(ops.session, vm_ref, vm_utils.networking_path(vif.address),
                                json.dumps(vm_utils.network_blob(vif)), running)


def change_instance_metadata(ops: XenVMOps, instance: Any, diff: dict[str, list[Any]]) -> None:
    """Apply a ``{key: ['+', value] | ['-']}`` diff under ``vm-data/user-metadata``."""
    if not isinstance(diff, dict):
        raise exc.InvalidInput("diff", diff, "must be a mapping")
    changes: list[tuple[str, str | None]] = []
    for key, change in diff.items():
        if not isinstance(change, (list, tuple)) or not change or change[0] not in "+-":
            raise exc.InvalidInput(f"diff[{key!r}]", change, "must be ['+', value] or ['-']")
        if change[0] == "+" and len(change) < 2:
            raise exc.InvalidInput(f"diff[{key!r}]", change, "'+' needs a value")
        value = json.dumps(change[1]) if change[0] == "+" else None
        changes.append((vm_utils.user_metadata_path(key), value))
    vm_ref = ops.vm_ref_of(instance)
    running = ops.vm_power_state(vm_ref) in ("running", "paused")
    for path, value in changes:
        vm_utils.write_xenstore(ops.session, vm_ref, path, value, running)
