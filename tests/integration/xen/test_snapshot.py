"""Snapshot and its cleanup, on a simulator whose SR coalesces VHD chains after a delay."""

from __future__ import annotations

import pytest

import virtdriver
from tests.support.xapi import running_simulator
from virtdriver.common import exceptions as exc

from .conftest import IMAGE_BYTES, disks_of, make_instance, vm_of

pytestmark = pytest.mark.integration

COALESCE_DELAY = 0.3


@pytest.fixture(scope="module")
def sim():
    with running_simulator(coalesce_delay=COALESCE_DELAY) as simulator:
        yield simulator


@pytest.fixture
def spawned(ops, image):
    # root_gb 0: the root disk keeps the image's size, so its bytes are quick to compare
    instance = make_instance(flavor=virtdriver.Flavor(vcpus=1, memory_mb=256, root_gb=0))
    ops.spawn(None, instance, image, [], None, [])
    yield instance
    ops.destroy(instance)


class TaskStates:
    def __init__(self):
        self.calls = []

    def __call__(self, task_state, expected_state=None):
        self.calls.append((task_state, expected_state))


def snapshots_of(xapi, vdi_ref):
    return [ref for ref, rec in xapi.VDI.get_all_records().items()
            if rec["is_a_snapshot"] and rec["snapshot_of"] == vdi_ref]


def test_snapshot_uploads_the_root_disk_and_removes_the_snapshot(ops, store, spawned, xapi,
                                                                 progress, read_vdi):
    target = store.create(None, {"name": "snap", "disk_format": "raw"})
    states = TaskStates()
    progress.clear()
    ops.snapshot(None, spawned, target.id, states)
    # the first report leaves the expected state to the caller (image_snapshot, image_backup
    # or shelving): only states every caller of Nova's knows are named
    assert states.calls == [("image_pending_upload", None),
                            ("image_uploading", "image_pending_upload")]
    uploaded = store.show(None, target.id)
    assert (uploaded.status, uploaded.disk_format) == ("active", "vhd")
    assert b"".join(store.download(None, target.id)).startswith(b"conectix")  # a dynamic VHD
    root = disks_of(xapi, vm_of(xapi, spawned)[0])["0"]["ref"]
    assert snapshots_of(xapi, root) == []
    assert [step for _, step in progress] == ["snapshot_root_disk", "wait_for_coalesce",
                                             "upload_to_image_store"]
    # The image is usable: an instance booted from it holds the original disk's bytes.
    clone = make_instance(flavor=virtdriver.Flavor(vcpus=1, memory_mb=256, root_gb=0))
    ops.spawn(None, clone, uploaded, [], None, [])
    try:
        clone_root = disks_of(xapi, vm_of(xapi, clone)[0])["0"]
        assert int(clone_root["virtual_size"]) == int(disks_of(
            xapi, vm_of(xapi, spawned)[0])["0"]["virtual_size"])
        assert read_vdi(clone_root["ref"], len(IMAGE_BYTES)) == IMAGE_BYTES
    finally:
        ops.destroy(clone)


def test_second_snapshot_waits_for_the_first_chain_to_coalesce(ops, store, spawned, xapi):
    target = store.create(None, {"name": "first", "disk_format": "raw"})
    ops.snapshot(None, spawned, target.id, TaskStates())
    # The first snapshot's base copy now has one child and is merged COALESCE_DELAY later;
    # the second snapshot must not upload before that.
    ops.session.stats.reset()
    target = store.create(None, {"name": "second", "disk_format": "raw"})
    ops.snapshot(None, spawned, target.id, TaskStates())
    assert ops.session.stats.calls["SR.scan"] >= 2
    # The first base is gone: at most the second snapshot's base is left above the root
    # (that one too once its own coalesce delay has passed, which a loaded machine may take).
    chain = []
    sm_config = disks_of(xapi, vm_of(xapi, spawned)[0])["0"]["sm_config"]
    while "vhd-parent" in sm_config:
        chain.append(sm_config["vhd-parent"])
        sm_config = xapi.VDI.get_sm_config(xapi.VDI.get_by_uuid(chain[-1]))
    assert len(chain) <= 1, chain


def test_failed_upload_still_removes_the_snapshot(ops, store, spawned, xapi):
    states = TaskStates()
    with pytest.raises(exc.ImageNotFound):
        ops.snapshot(None, spawned, "6f1c7c8e-0000-4000-8000-000000000000", states)
    root = disks_of(xapi, vm_of(xapi, spawned)[0])["0"]["ref"]
    assert snapshots_of(xapi, root) == []


def test_post_interrupted_snapshot_cleanup(ops, spawned, xapi):
    root = disks_of(xapi, vm_of(xapi, spawned)[0])["0"]["ref"]
    xapi.VDI.snapshot(root, {})  # what an interrupted snapshot leaves
    assert len(snapshots_of(xapi, root)) == 1
    ops.post_interrupted_snapshot_cleanup(None, spawned)
    assert snapshots_of(xapi, root) == []


def test_snapshot_of_an_instance_without_a_vm_is_instance_not_found(ops, store, xapi):
    """Finding the VM needs only uuid and name: a database row without a flavor (as Nova
    passes for an instance that never ran) is InstanceNotFound, not a flavor error."""
    import types
    import uuid

    target = store.create(None, {"name": "never", "disk_format": "vhd"})
    row = types.SimpleNamespace(uuid=str(uuid.uuid4()), name="never-ran", flavor=None)
    before = len(xapi.VDI.get_all())
    with pytest.raises(exc.InstanceNotFound):
        ops.snapshot(None, row, target.id, TaskStates())
    assert len(xapi.VDI.get_all()) == before
    assert store.show(None, target.id).status == "queued"


def test_snapshot_reports_progress_shelve_understands(ops, store, spawned):
    """Nova's shelve maps each reported state onto its own and knows only these; a state
    outside them (image_snapshot) was a KeyError that failed every shelve."""
    shelving = {"image_pending_upload": "shelving_image_pending_upload",
                "image_uploading": "shelving_image_uploading", "shelving": "shelving"}
    seen = []

    def update_task_state(task_state, expected_state="shelving"):
        seen.append((shelving[task_state], shelving[expected_state]))

    target = store.create(None, {"name": "shelved", "disk_format": "raw"})
    ops.snapshot(None, spawned, target.id, update_task_state)
    assert seen == [("shelving_image_pending_upload", "shelving"),
                    ("shelving_image_uploading", "shelving_image_pending_upload")]
