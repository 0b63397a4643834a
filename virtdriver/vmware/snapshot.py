"""Snapshot on vCenter: the root disk, frozen by a server snapshot, uploaded as an image.

What a snapshot makes on the server (the server snapshot, the temp copy) goes whether it
succeeded or failed.
"""

from __future__ import annotations

import uuid as uuid_module
from collections.abc import Callable
from typing import Any

from oslo_log import log as logging

from virtdriver.common.model import field_of
from virtdriver.common.progress import make_step_decorator
from virtdriver.vmware import ds_util, vm_util, volume_util
from virtdriver.vmware.backend import VMwareBackend
from virtdriver.vmware.ds_util import Datastore, DatastorePath
from virtdriver.vmware.session import ignoring

LOG = logging.getLogger(__name__)


def snapshot_name(uuid: str) -> str:
    """The name of the server snapshot taken for an image of instance ``uuid``."""
    return f"{uuid}-snapshot"


def snapshot(backend: VMwareBackend, context: Any, instance: Any, image_id: str,
             update_task_state: Callable[..., Any]) -> None:
    """Upload the root disk to the image store under ``image_id``.

    The seed's six steps, with its linked clone replaced by a disk copy: 1. find the
    root disk the VM writes to now; 2. take a server snapshot, which freezes that disk;
    3. copy the frozen disk (the copy flattens its chain) into a temp folder; 4. upload
    it; 5. delete the temp folder; 6. remove the server snapshot. No clone VM exists
    to leak (Nova's own TODO), and vcsim's CloneVM would rewrite the source VM's disk
    backing. Steps 5 and 6 run whatever happened before them. The caller holds the
    instance's lock.
    """
    uuid = field_of(instance, "uuid")
    step = make_step_decorator(context, instance, backend.progress)
    find_disk = step(_snapshot_find_disk)
    take = step(_snapshot_take)
    copy = step(_snapshot_copy)
    upload = step(_snapshot_upload)
    delete_temp = step(ds_util.delete_path)
    remove = step(_snapshot_remove)
    vm, ds, root, props = find_disk(backend, instance)
    # No expected state on the first report: the caller's own is the one to expect
    # (image_snapshot, image_backup, or shelving, which Nova's shelve maps these onto).
    update_task_state(task_state="image_pending_upload")
    snap = take(backend, vm, uuid)
    try:
        update_task_state(task_state="image_uploading", expected_state="image_pending_upload")
        temp = ds.path(backend.image_cache.temp_folder, str(uuid_module.uuid4()))
        try:
            flat = copy(backend, ds, root, temp, image_id)
            upload(backend, context, ds, flat, image_id,
                   vm_util.adapter_of(props.get("config.hardware.device") or [], root), props)
        finally:
            delete_temp(backend.session, ds, temp)
    finally:
        remove(backend, snap)
    LOG.info("snapshot uploaded as image %s", image_id, instance=instance)


def _snapshot_find_disk(backend: VMwareBackend,
                        instance: Any) -> tuple[Any, Datastore, Any, dict[str, Any]]:
    vm, devices, props = backend.read_devices(instance)
    # the instance's own disk only: attached volumes are the volume service's
    root = volume_util.require_own_root_disk(devices, props, "snapshot")
    ds = backend.vm_datastore(root.backing.fileName)
    return vm, ds, root, props


def _snapshot_take(backend: VMwareBackend, vm: Any, uuid: str) -> Any:
    return backend.session.call_task(vm, "CreateSnapshot_Task", name=snapshot_name(uuid),
                                     description="virtdriver snapshot", memory=False,
                                     quiesce=True)


def _snapshot_copy(backend: VMwareBackend, ds: Datastore, root: Any, temp: DatastorePath,
                   image_id: str) -> DatastorePath:
    """Copy the disk frozen by the snapshot; return the copy's flat extent."""
    ds_util.make_directory(backend.session, ds, temp)
    ds_util.copy_disk(backend.session, ds, DatastorePath.parse(root.backing.fileName),
                      temp.join(f"{image_id}.vmdk"))
    return temp.join(f"{image_id}-flat.vmdk")


def _snapshot_upload(backend: VMwareBackend, context: Any, ds: Datastore, flat: DatastorePath,
                     image_id: str, adapter: str, props: dict[str, Any]) -> None:
    size, chunks = backend.image_cache.http.stream(ds.dc_name, ds.name, flat.rel_path)
    meta = {"disk_format": "vmdk", "container_format": "bare", "size": size,
            "properties": {"vmware_adaptertype": adapter,
                           "vmware_ostype": props.get("config.guestId", "otherGuest"),
                           "vmware_disktype": "preallocated"}}
    backend.image_store.upload(context, image_id, chunks, meta)


def _snapshot_remove(backend: VMwareBackend, snap: Any) -> None:
    with ignoring("ManagedObjectNotFound"):
        backend.session.call_task(snap, "RemoveSnapshot_Task", removeChildren=False,
                                  consolidate=True)


def post_interrupted_snapshot_cleanup(backend: VMwareBackend, context: Any,
                                      instance: Any) -> None:
    """Remove a server snapshot an interrupted snapshot left."""
    uuid = field_of(instance, "uuid")
    _, props = backend.read(instance, ["snapshot"])
    for node in _walk(getattr(props.get("snapshot"), "rootSnapshotList", None) or []):
        if node.name == snapshot_name(uuid):
            LOG.info("removing server snapshot %s left by an interrupted snapshot", node.name,
                     instance=instance)
            _snapshot_remove(backend, node.snapshot)


def _walk(nodes: list[Any]) -> list[Any]:
    out = []
    for node in nodes:
        out.append(node)
        out.extend(_walk(node.childSnapshotList or []))
    return out
