"""Resize and cold migration between two pools (two simulators), live migration within a
pool (pool_migrate) and across pools with storage (migrate_receive / migrate_send)."""

from __future__ import annotations

import pytest

import virtdriver
from tests.support.xapi import running_simulator
from virtdriver.common import exceptions as exc
from virtdriver.testing.helpers import Recorder

from .conftest import (
    IMAGE_BYTES,
    disks_of,
    instance_vdis,
    make_instance,
    make_vif,
    vdi_bytes,
    vm_of,
)

pytestmark = pytest.mark.integration

GiB = 1024 ** 3


@pytest.fixture(scope="module")
def sim():
    with running_simulator(hosts=2) as simulator:
        yield simulator


@pytest.fixture(scope="module")
def dest_sim():
    """A second pool (the conftest's dest_ops and dest_session use it)."""
    with running_simulator(pool_name="pool1") as simulator:
        yield simulator


def small_flavor(root_gb=0, ephemeral_gb=0):
    return virtdriver.Flavor(vcpus=1, memory_mb=256, root_gb=root_gb, ephemeral_gb=ephemeral_gb)


@pytest.fixture
def spawned(ops, image):
    # root_gb 0 keeps the root disk at the image's 1 MiB, so moving its bytes is quick
    instance = make_instance(flavor=small_flavor())
    ops.spawn(None, instance, image, [], None, [make_vif(1)])
    yield instance
    ops.destroy(instance)
    ops.confirm_migration(None, instance, None)


# -- resize / cold migration --------------------------------------------------------------------

def test_resize_to_another_pool_then_confirm(ops, dest_ops, spawned, image, xapi, dest_sim,
                                            dest_session):
    dx = dest_session.xenapi
    disk_info = ops.migrate_disk_and_power_off(None, spawned, dest_sim.url, small_flavor(1))
    orig_ref, orig = vm_of(xapi, spawned, "-orig")
    assert orig["power_state"] == "Halted"
    assert vm_of(xapi, spawned) is None
    # the source only says where the disks are: its URL and uuids, nothing secret
    assert set(disk_info) == {"url", "vdis"}
    assert disk_info["url"] == ops.session.url and "secret" not in repr(disk_info)
    assert instance_vdis(dx, spawned.uuid) == {}  # the destination copies them


    spawned.flavor = small_flavor(1)
    dest_ops.finish_migration(None, None, spawned, disk_info, [make_vif(1)], image,
                              resize_instance=True)
    ref, vm = vm_of(dx, spawned)
    assert vm["power_state"] == "Running"
    assert len(instance_vdis(dx, spawned.uuid)) == 1
    root = disks_of(dx, ref)["0"]
    assert root["virtual_size"] == str(1 * GiB)
    assert vdi_bytes(dest_sim, dest_session._session, root["ref"], len(IMAGE_BYTES)) \
        == IMAGE_BYTES
    assert [dx.VIF.get_MAC(v) for v in vm["VIFs"]] == ["fa:16:3e:00:00:01"]
    assert spawned.progress == 100

    ops.confirm_migration(None, spawned, None)
    assert vm_of(xapi, spawned, "-orig") is None
    assert instance_vdis(xapi, spawned.uuid) == {}
    dest_ops.destroy(spawned)
    assert instance_vdis(dx, spawned.uuid) == {}


def test_resize_revert_restores_the_source(ops, dest_ops, spawned, image, xapi, dest_sim,
                                           dest_session):
    disk_info = ops.migrate_disk_and_power_off(None, spawned, dest_sim.url, small_flavor(1))
    dest_ops.finish_migration(None, None, spawned, disk_info, [make_vif(1)], image, True)
    dest_ops.destroy(spawned)  # the compute manager's revert destroys the new VM first
    ops.finish_revert_migration(None, spawned, [make_vif(1)])
    _, vm = vm_of(xapi, spawned)
    assert vm["power_state"] == "Running"
    assert vm_of(xapi, spawned, "-orig") is None
    assert vm_of(dest_session.xenapi, spawned) is None
    assert instance_vdis(dest_session.xenapi, spawned.uuid) == {}


def test_shrinking_is_refused_before_anything_changes(ops, spawned, dest_sim, xapi):
    spawned.flavor = small_flavor(root_gb=2)
    with pytest.raises(exc.MigrationError):
        ops.migrate_disk_and_power_off(None, spawned, dest_sim.url, small_flavor(root_gb=1))
    assert vm_of(xapi, spawned)[1]["power_state"] == "Running"


def test_failed_copy_leaves_nothing_on_the_destination_and_can_revert(
        ops, dest_ops, spawned, image, dest_sim, xapi, dest_session):
    disk_info = ops.migrate_disk_and_power_off(None, spawned, dest_sim.url, small_flavor(1))
    dest_sim.inject_fault("VDI.create", ["SR_FULL", "1", "0"])
    with pytest.raises(exc.BackendError):
        dest_ops.finish_migration(None, None, spawned, disk_info, [make_vif(1)], image, True)
    assert vm_of(dest_session.xenapi, spawned) is None
    assert instance_vdis(dest_session.xenapi, spawned.uuid) == {}
    assert vm_of(xapi, spawned, "-orig")[1]["power_state"] == "Halted"  # untouched
    ops.finish_revert_migration(None, spawned, [make_vif(1)])
    _, vm = vm_of(xapi, spawned)
    assert vm["power_state"] == "Running"
    assert vm_of(xapi, spawned, "-orig") is None


def test_destroy_during_a_revert_keeps_the_original(ops, spawned, image, xapi):
    """Nova's revert destroys the resized VM (task_state resize_reverting) before the
    source's finish_revert_migration: in one pool, the -orig VM must survive it."""
    disk_info = ops.migrate_disk_and_power_off(None, spawned, "", small_flavor(1))
    ops.finish_migration(None, None, spawned, disk_info, [make_vif(1)], image, True)
    spawned.task_state = "resize_reverting"
    ops.destroy(spawned)
    assert vm_of(xapi, spawned) is None
    assert vm_of(xapi, spawned, "-orig") is not None
    spawned.task_state = None
    ops.finish_revert_migration(None, spawned, [make_vif(1)])
    ref, vm = vm_of(xapi, spawned)
    assert vm["power_state"] == "Running"
    assert len(instance_vdis(xapi, spawned.uuid)) == len(disks_of(xapi, ref))


# -- live migration -----------------------------------------------------------------------------

def test_live_migration_to_the_current_host_is_refused(ops, spawned, xapi):
    _, vm = vm_of(xapi, spawned)
    here = xapi.host.get_name_label(vm["resident_on"])
    data = ops.check_can_live_migrate_source(
        None, spawned, ops.check_can_live_migrate_destination(None, spawned, False))
    post, recover = Recorder(), Recorder()
    with pytest.raises(exc.MigrationError):
        ops.live_migrate(None, spawned, here, post, recover, False, data)
    assert post.calls == [] and len(recover.calls) == 1


def test_resize_in_place_copies_server_side(ops, spawned, image, xapi):
    ops.stats.reset()
    disk_info = ops.migrate_disk_and_power_off(None, spawned, "", small_flavor(1))
    spawned.flavor = small_flavor(1)
    ops.finish_migration(None, None, spawned, disk_info, [make_vif(1)], image, True)
    assert "HTTP PUT /import_raw_vdi" not in ops.stats.snapshot()
    assert ops.stats.calls["VDI.copy"] == 1
    ref, vm = vm_of(xapi, spawned)
    assert vm["power_state"] == "Running"
    assert disks_of(xapi, ref)["0"]["virtual_size"] == str(GiB)
    ops.confirm_migration(None, spawned, None)
    assert vm_of(xapi, spawned, "-orig") is None


def test_resize_within_the_pool_reads_each_disk_once(ops, spawned, image, xapi):
    """The source describes the disks (one VBD read, one VDI record); the destination
    copies by the ref it was handed; confirm deletes ``-orig`` and its disk without a
    lookup; nothing of the instance is left but the new VM and its disk."""
    orig_root = disks_of(xapi, vm_of(xapi, spawned)[0])["0"]["ref"]
    ops.stats.reset()
    disk_info = ops.migrate_disk_and_power_off(None, spawned, "", small_flavor())
    ops.finish_migration(None, None, spawned, disk_info, [make_vif(1)], image, False,
                         power_on=True)
    ops.confirm_migration(None, spawned, None)
    calls = ops.stats.snapshot()
    assert calls["VBD.get_all_records_where"] == 1 and calls["VDI.get_record"] == 1
    assert "VM.get_power_state" not in calls and "VDI.get_by_uuid" not in calls
    assert calls["VM.get_all_records_where"] == 1  # the destination's name check only
    assert calls["VM.destroy"] == 1 and calls["VDI.destroy"] == 1
    assert vm_of(xapi, spawned, "-orig") is None
    ref, vm = vm_of(xapi, spawned)
    assert vm["power_state"] == "Running"
    assert orig_root not in xapi.VDI.get_all()
    assert set(instance_vdis(xapi, spawned.uuid)) == {disks_of(xapi, ref)["0"]["ref"]}


def test_confirm_after_the_kept_vm_was_started_looks_it_up(ops, spawned, image, xapi):
    """An operator started ``-orig`` after the source kept it: confirm does not trust what
    it remembered, halts it and deletes it with its disk."""
    disk_info = ops.migrate_disk_and_power_off(None, spawned, "", small_flavor())
    ops.finish_migration(None, None, spawned, disk_info, [make_vif(1)], image, False,
                         power_on=True)
    orig_ref, _ = vm_of(xapi, spawned, "-orig")
    orig_root = disks_of(xapi, orig_ref)["0"]["ref"]
    xapi.VM.start(orig_ref, False, False)
    ops.confirm_migration(None, spawned, None)
    assert vm_of(xapi, spawned, "-orig") is None
    assert orig_root not in xapi.VDI.get_all()
    assert vm_of(xapi, spawned)[1]["power_state"] == "Running"


def test_disk_info_of_an_older_source_still_finishes(ops, spawned, image, xapi):
    """disk_info naming each disk by uuid alone (as sources before the full description
    sent it) is looked up on the source pool."""
    disk_info = ops.migrate_disk_and_power_off(None, spawned, "", small_flavor())
    older = dict(disk_info, vdis={dev: d["uuid"] for dev, d in disk_info["vdis"].items()})
    ops.finish_migration(None, None, spawned, older, [make_vif(1)], image, False,
                         power_on=True)
    assert vm_of(xapi, spawned)[1]["power_state"] == "Running"
    ops.confirm_migration(None, spawned, None)
    assert vm_of(xapi, spawned, "-orig") is None


def test_cold_migration_to_another_host_of_the_pool(ops, spawned, image, xapi):
    _, vm = vm_of(xapi, spawned)
    other = [h for h in xapi.host.get_all() if h != vm["resident_on"]][0]
    disk_info = ops.migrate_disk_and_power_off(None, spawned, xapi.host.get_name_label(other),
                                               spawned.flavor)
    ops.finish_migration(None, None, spawned, disk_info, [make_vif(1)], image, False)
    _, vm = vm_of(xapi, spawned)
    assert vm["affinity"] == other
    ops.finish_revert_migration(None, spawned, [make_vif(1)])
    assert vm_of(xapi, spawned, "-orig") is None
    assert vm_of(xapi, spawned)[1]["power_state"] == "Running"


def test_block_live_migration_across_pools(ops, dest_ops, image, xapi, dest_sim,
                                           dest_session):
    dx = dest_session.xenapi
    instance = make_instance(flavor=small_flavor())
    ops.spawn(None, instance, image, [], None, [make_vif(1)])
    try:
        dest = dest_ops.check_can_live_migrate_destination(None, instance, True)
        data = ops.check_can_live_migrate_source(None, instance, dest)
        data = dest_ops.pre_live_migration(None, instance, None, [make_vif(1)], None, data)
        post, recover = Recorder(), Recorder()
        ops.live_migrate(None, instance, "pool1", post, recover, True, data)
        assert len(post.calls) == 1 and recover.calls == []
        assert vm_of(xapi, instance) is None
        ref, vm = vm_of(dx, instance)
        assert vm["power_state"] == "Running"
        root = disks_of(dx, ref)["0"]
        assert vdi_bytes(dest_sim, dest_session._session, root["ref"], len(IMAGE_BYTES)) \
            == IMAGE_BYTES
        dest_ops.post_live_migration_at_destination(None, instance, [make_vif(1)], True)
        ops.post_live_migration(None, instance, data)
    finally:
        ops.destroy(instance)
        dest_ops.destroy(instance)
    assert instance_vdis(dx, instance.uuid) == {}


def test_failed_live_migration_calls_recover(ops, dest_ops, spawned, sim, xapi):
    dest = dest_ops.check_can_live_migrate_destination(None, spawned, True)
    data = ops.check_can_live_migrate_source(None, spawned, dest)
    sim.inject_fault("VM.migrate_send", ["VM_MIGRATE_FAILED", "vm", "a", "b", "injected"])
    post, recover = Recorder(), Recorder()
    with pytest.raises(exc.MigrationError):
        ops.live_migrate(None, spawned, "pool1", post, recover, True, data)
    assert post.calls == [] and len(recover.calls) == 1
    assert vm_of(xapi, spawned)[1]["power_state"] == "Running"
    dest_ops.rollback_live_migration_at_destination(spawned)


def test_precheck_refuses_an_unknown_host(ops, spawned, dest_sim):
    with pytest.raises(exc.MigrationPreCheckError):
        ops.check_can_live_migrate_source(None, spawned, {
            "block_migration": False, "destination_url": dest_sim.url,
            "destination_host_uuid": "00000000-0000-4000-8000-000000000000",
            "destination_network_uuid": "00000000-0000-4000-8000-000000000001"})


def test_migrate_data_carries_no_session_or_secret(ops, dest_ops, spawned):
    """host.migrate_receive's token holds a session id: the source gets it itself and
    never returns it; what travels between computes is URLs and uuids."""
    dest = dest_ops.check_can_live_migrate_destination(None, spawned, False)
    data = ops.check_can_live_migrate_source(None, spawned, dest)
    data = dest_ops.pre_live_migration(None, spawned, None, [make_vif(1)], None, data)
    assert set(data) == {"block_migration", "destination_url", "destination_host_uuid",
                         "destination_sr_uuid", "destination_network_uuid", "vif_networks"}
    assert data["block_migration"] is True  # another pool: the disks go along
    assert "OpaqueRef" not in repr(data) and "session" not in repr(data).lower()
    assert "secret" not in repr(data)


def test_config_drive_is_rebuilt_after_migration(ops, dest_ops, image, xapi, dest_sim,
                                                 dest_session):
    instance = make_instance(flavor=small_flavor(), config_drive=True)
    ops.spawn(None, instance, image, [], None, [make_vif(1)])
    try:
        disk_info = ops.migrate_disk_and_power_off(None, instance, dest_sim.url,
                                                   small_flavor())
        assert set(disk_info["vdis"]) == {"0"}  # the drive is rebuilt, not copied
        dest_ops.finish_migration(None, None, instance, disk_info, [make_vif(1)], image,
                                  False)
        ref, _ = vm_of(dest_session.xenapi, instance)
        drive = disks_of(dest_session.xenapi, ref)["3"]
        assert drive["other_config"]["nova_disk_type"] == "configdrive"
        ops.confirm_migration(None, instance, None)
    finally:
        dest_ops.destroy(instance)
        ops.destroy(instance)
    assert instance_vdis(xapi, instance.uuid) == {}
    assert instance_vdis(dest_session.xenapi, instance.uuid) == {}
