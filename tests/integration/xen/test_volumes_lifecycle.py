"""Xen volumes through every operation, against two XAPI simulators (a pool of two hosts and
a second pool) that share one iSCSI storage network: boot from volume, destroy, power,
snapshot, rescue, resize and cold migration, live migration within and across pools.

The simulators are read with a plain XenAPI client; the volumes' bytes on the storage side
and through their VDIs: bytes written before an operation read back the same after it.
"""

from __future__ import annotations

import pytest

from tests.support.xapi import running_simulator
from virtdriver.common import exceptions as exc
from virtdriver.testing.helpers import Recorder
from virtdriver.xen.simulator.iscsi_targets import Targets

from .conftest import IMAGE_BYTES, make_instance, make_vif, vdi_bytes, vm_of
from .volume_helpers import iscsi_srs, new_target, sr_of, volume_vbds

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def storage(tmp_path_factory):
    """One iSCSI storage network both pools reach."""
    return Targets(str(tmp_path_factory.mktemp("array")))


@pytest.fixture(scope="module")
def sim(storage):
    with running_simulator(hosts=2, iscsi=storage) as simulator:
        yield simulator


@pytest.fixture(scope="module")
def dest_sim(storage):
    """A second pool on the same storage (the conftest's dest_ops and dest_session use it)."""
    with running_simulator(pool_name="pool1", iscsi=storage) as simulator:
        yield simulator


def bdi(*mappings, root="/dev/xvda"):
    return {"root_device_name": root, "block_device_mapping": list(mappings),
            "ephemerals": [], "swap": None}


def image_cache(xapi):
    return {ref for ref, rec in xapi.VDI.get_all_records().items()
            if rec["other_config"].get("nova_disk_type") == "image-cache"}


def test_boot_from_volume(ops, image, sim, xapi, xapi_session):
    volume, = new_target(sim)
    volume.write(IMAGE_BYTES[:4096])
    before = volume.read()
    cached = image_cache(xapi)
    instance = make_instance()
    info = bdi(volume.mapping("/dev/xvda", boot_index=0))
    ops.stats.reset()
    ops.spawn(None, instance, None, [], None, [make_vif(1)], block_device_info=info)
    try:
        ref, vm = vm_of(xapi, instance)
        assert vm["power_state"] == "Running"
        root = volume_vbds(xapi, ref)["0"]
        assert root["bootable"] and root["currently_attached"]
        assert root["vdi_uuid"] == volume.vdi_uuid
        # no image cached, copied or uploaded: the root disk is the volume
        assert image_cache(xapi) == cached
        assert "HTTP PUT /import_raw_vdi" not in ops.stats.snapshot()
        own = [r for r in xapi.VM.get_VBDs(ref)
               if xapi.VBD.get_other_config(r).get("osvol") != "True"
               and xapi.VBD.get_VDI(r) != "OpaqueRef:NULL"]
        assert own == []
        assert vdi_bytes(sim, xapi_session._session, root["VDI"], len(before)) == before
        ops.reboot(instance, reboot_type="HARD")
        ops.power_off(instance)
        ops.power_on(instance)
        assert volume_vbds(xapi, ref)["0"]["currently_attached"]
        with pytest.raises(exc.UnsupportedOperation, match="volume"):
            ops.snapshot(None, instance, "0e0e0e0e-0000-4000-8000-000000000000",
                         lambda **kw: None)
        with pytest.raises(exc.UnsupportedOperation, match="volume"):
            ops.rescue(None, instance, [make_vif(1)], image)
        assert vm_of(xapi, instance)[1]["power_state"] == "Running"  # nothing changed
    finally:
        ops.destroy(instance, block_device_info=info, destroy_disks=True)
    assert vm_of(xapi, instance) is None
    assert sr_of(xapi, volume) is None  # detached, the SR forgotten...
    assert volume.read() == before  # ...and the volume kept, whatever destroy_disks said


def test_a_failed_boot_from_volume_leaves_no_sr(ops, sim, xapi):
    volume, = new_target(sim)
    srs = set(iscsi_srs(xapi))
    sim.inject_fault("VM.start", ["SR_BACKEND_FAILURE_46", "", "injected", ""])
    instance = make_instance()
    with pytest.raises(exc.BackendError):
        ops.spawn(None, instance, None, [], None, [make_vif(1)],
                  block_device_info=bdi(volume.mapping("/dev/xvda", boot_index=0)))
    assert vm_of(xapi, instance) is None and set(iscsi_srs(xapi)) == srs


def test_data_volume_through_spawn_power_snapshot_rescue_and_destroy(ops, image, store, sim,
                                                                     xapi, xapi_session):
    volume, = new_target(sim)
    before = volume.read()
    instance = make_instance()
    info = bdi(volume.mapping("/dev/xvdb"))
    ops.spawn(None, instance, image, [], None, [make_vif(1)], block_device_info=info)
    ref, _ = vm_of(xapi, instance)
    assert volume_vbds(xapi, ref)["1"]["currently_attached"]
    ops.reboot(instance, reboot_type="SOFT")
    ops.suspend(instance)
    ops.resume(instance)
    assert volume_vbds(xapi, ref)["1"]["vdi_uuid"] == volume.vdi_uuid

    target = store.create(None, {"name": "with-volume", "disk_format": "vhd"})
    ops.snapshot(None, instance, target.id, lambda **kw: None)
    uploaded = b"".join(store.download(None, target.id))
    # the root disk only: the image's bytes are in it, the volume's are not
    assert IMAGE_BYTES[:4096] in uploaded and f"volume {volume.id} ".encode() not in uploaded

    ops.rescue(None, instance, [make_vif(1)], image)
    rescue_ref, rescue_vm = vm_of(xapi, instance, "-rescue")
    assert rescue_vm["power_state"] == "Running" and volume_vbds(xapi, rescue_ref) == {}
    assert volume_vbds(xapi, ref)["1"]["vdi_uuid"] == volume.vdi_uuid  # stays on the instance
    ops.unrescue(instance)
    assert volume_vbds(xapi, ref)["1"]["currently_attached"]

    ops.destroy(instance, block_device_info=info)
    assert sr_of(xapi, volume) is None and volume.read() == before


def test_resize_in_place_reattaches_the_volumes(ops, image, sim, xapi, xapi_session):
    boot, data = new_target(sim, luns=2)
    boot_bytes, data_bytes = boot.read(), data.read()
    instance = make_instance()
    info = bdi(boot.mapping("/dev/xvda", 0), data.mapping("/dev/xvdc"))
    ops.spawn(None, instance, None, [], None, [make_vif(1)], block_device_info=info)
    try:
        disk_info = ops.migrate_disk_and_power_off(None, instance, "", instance.flavor,
                                                   info)
        assert disk_info["vdis"] == {}  # no own disk to copy: volumes are not copied
        orig_ref, _ = vm_of(xapi, instance, "-orig")
        assert volume_vbds(xapi, orig_ref) == {}
        ops.finish_migration(None, None, instance, disk_info, [make_vif(1)], None, True,
                             info)
        ref, vm = vm_of(xapi, instance)
        vbds = volume_vbds(xapi, ref)
        assert vm["power_state"] == "Running"
        assert (vbds["0"]["vdi_uuid"], vbds["2"]["vdi_uuid"]) == (boot.vdi_uuid, data.vdi_uuid)
        assert vbds["0"]["bootable"] and vbds["2"]["currently_attached"]
        assert vdi_bytes(sim, xapi_session._session, vbds["2"]["VDI"],
                         len(data_bytes)) == data_bytes
        ops.confirm_migration(None, instance, None)
        assert vm_of(xapi, instance, "-orig") is None
        assert sr_of(xapi, boot) is not None  # still used by the resized VM
    finally:
        ops.destroy(instance, block_device_info=info)
    assert (boot.read(), data.read()) == (boot_bytes, data_bytes)


def test_a_reverted_resize_gets_its_volumes_back(ops, image, sim, xapi):
    volume, = new_target(sim)
    instance = make_instance()
    info = bdi(volume.mapping("/dev/xvdb"))
    ops.spawn(None, instance, image, [], None, [make_vif(1)], block_device_info=info)
    try:
        ops.migrate_disk_and_power_off(None, instance, "", instance.flavor, info)
        ops.finish_revert_migration(None, instance, [make_vif(1)], info)
        ref, vm = vm_of(xapi, instance)
        assert vm["power_state"] == "Running"
        assert volume_vbds(xapi, ref)["1"]["currently_attached"]
    finally:
        ops.destroy(instance, block_device_info=info)


def test_live_migration_within_the_pool_moves_the_connection(ops, image, sim, xapi):
    volume, = new_target(sim)
    instance = make_instance()
    info = bdi(volume.mapping("/dev/xvdb"))
    ops.spawn(None, instance, image, [], None, [make_vif(1)], block_device_info=info)
    try:
        ref, vm = vm_of(xapi, instance)
        source = vm["resident_on"]
        other = next(h for h in xapi.host.get_all() if h != source)
        data = ops.check_can_live_migrate_source(
            None, instance, ops.check_can_live_migrate_destination(None, instance, False))
        data = ops.pre_live_migration(None, instance, info, [make_vif(1)], None, data)
        post, recover = Recorder(), Recorder()
        ops.live_migrate(None, instance, xapi.host.get_name_label(other), post, recover,
                         False, data)
        assert len(post.calls) == 1 and recover.calls == []
        assert xapi.VM.get_resident_on(ref) == other
        vbd = volume_vbds(xapi, ref)["1"]
        assert vbd["currently_attached"]
        pbds = {xapi.PBD.get_host(p): xapi.PBD.get_currently_attached(p)
                for p in xapi.SR.get_PBDs(vbd["sr"])}
        assert pbds == {other: True}  # connected there, disconnected here
    finally:
        ops.destroy(instance, block_device_info=info)
    assert sr_of(xapi, volume) is None


def test_live_migration_across_pools_maps_the_volume_sr(ops, dest_ops, image, sim, xapi,
                                                         dest_sim, dest_session):
    volume, = new_target(sim)
    before = volume.read()
    instance = make_instance()
    info = bdi(volume.mapping("/dev/xvdb"))
    ops.spawn(None, instance, image, [], None, [make_vif(1)], block_device_info=info)
    try:
        dest = dest_ops.check_can_live_migrate_destination(None, instance, True)
        data = ops.check_can_live_migrate_source(None, instance, dest)
        data = dest_ops.pre_live_migration(None, instance, info, [make_vif(1)], None, data)
        dest_sr = sr_of(dest_session.xenapi, volume)
        assert dest_sr is not None  # connected on the destination before the move
        assert "OpaqueRef" not in repr(data)
        post, recover = Recorder(), Recorder()
        ops.live_migrate(None, instance, "pool1", post, recover, True, data)
        assert len(post.calls) == 1 and recover.calls == []
        assert vm_of(xapi, instance) is None
        assert sr_of(xapi, volume) is None  # disconnected from the source after
        ref, vm = vm_of(dest_session.xenapi, instance)
        vbd = volume_vbds(dest_session.xenapi, ref)["1"]
        assert vm["power_state"] == "Running" and vbd["currently_attached"]
        assert vbd["sr"] == dest_sr and vbd["vdi_uuid"] == volume.vdi_uuid  # not a copy
        assert vdi_bytes(dest_sim, dest_session._session, vbd["VDI"], len(before)) == before
        dest_ops.post_live_migration_at_destination(None, instance, [make_vif(1)], True)
        ops.post_live_migration(None, instance, data)
    finally:
        ops.destroy(instance, block_device_info=info)
        dest_ops.destroy(instance, block_device_info=info)
    assert sr_of(dest_session.xenapi, volume) is None and volume.read() == before


def test_a_failed_live_migration_leaves_the_volume_on_the_source(ops, dest_ops, image, sim,
                                                                 xapi, dest_session):
    volume, = new_target(sim)
    instance = make_instance()
    info = bdi(volume.mapping("/dev/xvdb"))
    ops.spawn(None, instance, image, [], None, [make_vif(1)], block_device_info=info)
    try:
        dest = dest_ops.check_can_live_migrate_destination(None, instance, True)
        data = ops.check_can_live_migrate_source(None, instance, dest)
        data = dest_ops.pre_live_migration(None, instance, info, [make_vif(1)], None, data)
        sim.inject_fault("VM.migrate_send", ["VM_MIGRATE_FAILED", "vm", "a", "b", "injected"])
        post, recover = Recorder(), Recorder()
        with pytest.raises(exc.MigrationError):
            ops.live_migrate(None, instance, "pool1", post, recover, True, data)
        assert len(recover.calls) == 1
        dest_ops.rollback_live_migration_at_destination(instance, info)
        assert sr_of(dest_session.xenapi, volume) is None  # the destination let go of it
        ref, _ = vm_of(xapi, instance)
        assert volume_vbds(xapi, ref)["1"]["currently_attached"]
    finally:
        ops.destroy(instance, block_device_info=info)


def test_cold_migration_to_another_pool_reattaches_the_volume(ops, dest_ops, image, sim,
                                                              xapi, dest_session):
    volume, = new_target(sim)
    instance = make_instance()
    info = bdi(volume.mapping("/dev/xvdb"))
    ops.spawn(None, instance, image, [], None, [make_vif(1)], block_device_info=info)
    try:
        disk_info = ops.migrate_disk_and_power_off(None, instance, "", instance.flavor, info)
        assert sr_of(xapi, volume) is None  # detached from -orig, SR unused
        dest_ops.finish_migration(None, None, instance, disk_info, [make_vif(1)], image,
                                  False, info)
        ref, _ = vm_of(dest_session.xenapi, instance)
        assert volume_vbds(dest_session.xenapi, ref)["1"]["vdi_uuid"] == volume.vdi_uuid
        ops.confirm_migration(None, instance, None)
    finally:
        dest_ops.destroy(instance, block_device_info=info)
        ops.destroy(instance, block_device_info=info)
    assert sr_of(dest_session.xenapi, volume) is None
