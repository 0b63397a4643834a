"""Snapshot: XAPI snapshot of the root disk, wait for the VHD chain to coalesce, upload to
the image store; and the cleanup of what an interrupted snapshot left.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from oslo_log import log as logging

from virtdriver.common import exceptions as exc
from virtdriver.common.progress import make_step_decorator
from virtdriver.xen import disks, vm_utils, volume_utils
from virtdriver.xen.backend import XenBackend
from virtdriver.xen.session import is_handle_invalid

LOG = logging.getLogger(__name__)

# Nova's task states for a snapshot's progress. The first report names no expected state:
# the caller's own is the one to expect (image_snapshot, image_backup, or shelving when
# Nova's shelve maps these onto its own), so only states every caller knows are passed.
IMAGE_PENDING_UPLOAD = "image_pending_upload"
IMAGE_UPLOADING = "image_uploading"


def _root_vdi(backend: XenBackend, vm_ref: str) -> str:
    records = vm_utils.vbd_records(backend.session, vm_ref)
    found = disks.instance_vdis(backend.session, vm_ref, records).get(vm_utils.DEVICE_ROOT)
    if found is None and any(
            rec["userdevice"] == vm_utils.DEVICE_ROOT
            for rec in volume_utils.volume_vbds(backend.session, vm_ref, records).values()):
        raise backend.unsupported("snapshot of an instance booted from a volume",
                                  "its root disk is a volume: the volume service snapshots "
                                  "it")
    if found is None:
        raise exc.BackendError("the VM has no root disk", "NO_ROOT_DISK")
    return found[1]


def snapshot(backend: XenBackend, context: Any, instance: Any, image_id: str,
             update_task_state: Callable[..., Any]) -> None:
    """The seed's three steps: XAPI snapshot, wait for coalesce, upload to the image store;
    the snapshot VDI is removed in every case."""
    if backend.image_store is None:
        raise exc.InvalidInput("image_store", None, "is required to snapshot")
    vm_ref = backend.vm_ref_of(instance)
    session = backend.session
    step = make_step_decorator(context, instance, backend.progress)
    state: dict[str, Any] = {}

    @step
    def snapshot_root_disk() -> None:
        root = _root_vdi(backend, vm_ref)
        state["root"] = root
        state["sr"] = backend.sr_of(root)
        # a metadata operation on a copy-on-write SR, as clone is: one plain call costs
        # less than Async + event.from + task.destroy
        state["snap"] = session.call("VDI.snapshot", root, {})
        update_task_state(task_state=IMAGE_PENDING_UPLOAD)

    @step
    def wait_for_coalesce() -> None:
        disks.wait_for_coalesce(session, state["sr"], state["snap"],
                                float(backend.xen.vhd_coalesce_timeout))

    @step
    def upload_to_image_store() -> None:
        update_task_state(task_state=IMAGE_UPLOADING, expected_state=IMAGE_PENDING_UPLOAD)
        # A dynamic VHD carries only the blocks the guest wrote, as Nova uploaded its chains.
        backend.image_store.upload(context, image_id, disks.download(session, state["snap"]),
                                   {"disk_format": "vhd", "container_format": "bare"})

    try:
        snapshot_root_disk()
        wait_for_coalesce()
        upload_to_image_store()
    finally:
        if "snap" in state:
            # the snapshot VDI made above: no image, nothing to check before it goes
            try:
                session.call("VDI.destroy", state["snap"])
            except exc.BackendError as error:
                if not is_handle_invalid(error, "VDI"):
                    raise
    LOG.info("snapshot uploaded as image %s", image_id, instance=instance)


def post_interrupted_snapshot_cleanup(backend: XenBackend, instance: Any) -> None:
    """Destroy snapshot VDIs of the root disk left by an interrupted snapshot."""
    vm_ref = backend.vm_ref_of(instance)
    removed = disks.destroy_snapshots_of_chain(backend.session, _root_vdi(backend, vm_ref))
    if removed:
        LOG.info("removed %d leftover snapshot(s)", len(removed), instance=instance)
