"""XenVMOps logic over a fake session: lookups and their cache, validation, rollback,
disk-chain reasoning."""

import pytest
from oslo_config import cfg

import virtdriver
from virtdriver.common import exceptions as exc
from virtdriver.xen import disks
from virtdriver.xen.vmops import XenVMOps

from .fakes import FakeSession, failure

UUID = "11111111-2222-4333-8444-555555555555"
IMAGE = "99999999-2222-4333-8444-555555555555"


def make_ops(handlers, store=None):
    conf = cfg.ConfigOpts()
    virtdriver.register_opts(conf)
    conf([])
    return XenVMOps(conf, image_store=store, session=FakeSession(handlers))


def instance():
    return virtdriver.Instance(uuid=UUID, name="inst",
                               flavor=virtdriver.Flavor(vcpus=1, memory_mb=64, root_gb=1))


def records(ref="OpaqueRef:vm", state="Running"):
    return {ref: {"power_state": state, "uuid": "vm-uuid",
                  "other_config": {"nova_uuid": UUID}}}


def test_lookup_costs_one_call_then_is_cached():
    ops = make_ops({"VM.get_all_records_where": records(), "VM.pause": None,
                    "VM.unpause": None, "VM.get_power_state": "Running"})
    ops.pause(instance())
    ops.unpause(instance())
    assert ops.get_info(instance()).state == virtdriver.PowerState.RUNNING
    assert ops.session.methods() == ["VM.get_all_records_where", "VM.pause", "VM.unpause",
                                     "VM.get_power_state"]


def test_get_info_cold_reads_the_state_from_the_lookup():
    ops = make_ops({"VM.get_all_records_where": records(state="Paused")})
    assert ops.get_info(instance()).state == virtdriver.PowerState.PAUSED
    assert ops.session.methods() == ["VM.get_all_records_where"]


def test_stale_cached_ref_is_looked_up_again():
    answers = iter([records("OpaqueRef:old"), records("OpaqueRef:new")])
    ops = make_ops({"VM.get_all_records_where": lambda expr: next(answers),
                    "VM.pause": lambda ref: failure("HANDLE_INVALID", "VM", ref)
                    if ref == "OpaqueRef:old" else None})
    ops.pause(instance())
    assert [args for method, args in ops.session.calls if method == "VM.pause"] == [
        ("OpaqueRef:old",), ("OpaqueRef:new",)]


def test_vm_gone_is_instance_not_found():
    ops = make_ops({"VM.get_all_records_where": {}})
    with pytest.raises(exc.InstanceNotFound):
        ops.power_on(instance())


def test_reboot_soft_falls_back_to_hard():
    ops = make_ops({"VM.get_all_records_where": records(),
                    "VM.clean_reboot": failure("VM_MISSING_PV_DRIVERS", "vm"),
                    "VM.hard_reboot": None})
    ops.reboot(instance(), reboot_type="SOFT")
    assert ops.session.methods()[-1] == "VM.hard_reboot"
    with pytest.raises(exc.InvalidInput):
        ops.reboot(instance(), reboot_type="GENTLE")


def test_suspend_releases_the_bootlock_when_it_fails():
    ops = make_ops({"VM.get_all_records_where": records(),
                    "VM.get_blocked_operations": {}, "VM.set_blocked_operations": None,
                    "VM.remove_from_blocked_operations": None,
                    "VM.suspend": failure("VM_BAD_POWER_STATE", "vm", "running",
                                                "paused")})
    with pytest.raises(exc.BackendError):
        ops.suspend(instance())
    assert ops.session.methods()[-2:] == ["VM.remove_from_blocked_operations"] * 2


def test_spawn_needs_an_image_store_and_makes_no_call():
    ops = make_ops({})
    image = virtdriver.ImageMeta(id=IMAGE, disk_format="raw")
    with pytest.raises(exc.InvalidInput):
        ops.spawn(None, instance(), image, [], None, [])
    assert ops.session.calls == []


def test_spawn_rolls_back_in_reverse_order(tmp_path):
    store = virtdriver.LocalImageStore(tmp_path)
    src = tmp_path / "img.raw"
    src.write_bytes(b"x" * 512)
    image = store.import_file(src, disk_format="raw")
    created = iter(["OpaqueRef:root"])
    ops = make_ops({
        "VM.get_all_records_where": {}, "network.get_all_records_where": {},
        "pool.get_all": ["OpaqueRef:pool"], "pool.get_default_SR": "OpaqueRef:sr",
        "VDI.get_all_records_where": {"OpaqueRef:base": {"virtual_size": "1024", "other_config": {
            "image-id": image.id}}},
        "VDI.clone": lambda base, params: next(created),
        "VDI.set_name_label": None, "VDI.set_other_config": None, "VDI.resize": None,
        "VM.create": "OpaqueRef:vm", "VBD.create": "OpaqueRef:vbd",
        "VM.set_xenstore_data": None, "VM.start": failure("HOST_NOT_ENOUGH_FREE_MEMORY",
                                                                "1", "0"),
        "VM.destroy": None, "VDI.get_other_config": {"nova_disk_type": "root"},
        "VDI.destroy": None}, store=store)
    with pytest.raises(exc.BackendError) as caught:
        ops.spawn(None, instance(), image, [], None, [])
    assert caught.value.code == "HOST_NOT_ENOUGH_FREE_MEMORY"
    tail = ops.session.methods()[ops.session.methods().index("VM.start"):]
    assert tail == ["VM.start", "VM.destroy", "VDI.get_other_config", "VDI.destroy"]


def test_parse_sr_filter():
    assert disks.parse_sr_filter("default-sr:true") == ("default", "", "")
    assert disks.parse_sr_filter("other-config:i18n-key=local-storage") == (
        "other-config", "i18n-key", "local-storage")
    with pytest.raises(exc.InvalidInput):
        disks.parse_sr_filter("nonsense")


def vdi(uuid, parent=None, managed=True):
    sm = {"vhd-parent": parent} if parent else {}
    return {"uuid": uuid, "sm_config": sm, "managed": managed}


def test_pending_coalesce_finds_single_child_base_copies():
    chain = {"live": vdi("L", "B2"), "snap": vdi("S", "B2"),
             "b2": vdi("B2", "B1", managed=False), "b1": vdi("B1", managed=False)}
    assert disks.pending_coalesce(chain, "snap") == ["b1"]
    merged = {"live": vdi("L", "B2"), "snap": vdi("S", "B2"), "b2": vdi("B2", managed=False)}
    assert disks.pending_coalesce(merged, "snap") == []


def test_wait_for_coalesce_gives_up_at_the_deadline():
    chain = {"live": vdi("L", "B1"), "b1": vdi("B1", managed=False)}
    session = FakeSession({"SR.scan": None, "VDI.get_all_records_where": chain})
    with pytest.raises(exc.BackendError) as caught:
        disks.wait_for_coalesce(session, "sr", "live", timeout=0, sleep=lambda s: None)
    assert caught.value.code == "COALESCE_TIMEOUT"


def test_capabilities_and_unsupported():
    ops = make_ops({})
    assert ops.capabilities["supports_rescue"] and ops.backend_name == "xen"
    with pytest.raises(exc.UnsupportedOperation):
        ops.get_datacenter_ref_and_name(None)


def test_spawn_with_a_volume_of_an_unknown_type_is_unsupported_before_any_call():
    ops = make_ops({})
    image = virtdriver.ImageMeta(id=IMAGE, disk_format="raw")
    bdi = virtdriver.BlockDeviceInfo(block_device_mapping=[{
        "connection_info": {"driver_volume_type": "rbd", "data": {}},
        "mount_device": "/dev/xvdb"}])
    with pytest.raises(exc.UnsupportedOperation, match="rbd"):
        ops.spawn(None, instance(), image, [], None, [], block_device_info=bdi)
    assert ops.session.calls == []


def test_after_a_move_within_the_pool_the_vm_keeps_its_ref_and_disks():
    """pool_migrate moves no disk and keeps the VM's ref: the post steps cost nothing and
    the next operation needs no lookup."""
    ops = make_ops({"VM.get_all_records_where": records(), "VM.pause": None})
    ops.pause(instance())
    ops.post_live_migration(None, instance(), {"block_migration": False})
    ops.post_live_migration_at_destination(None, instance(), [], False)
    ops.pause(instance())
    assert ops.session.methods() == ["VM.get_all_records_where", "VM.pause", "VM.pause"]


def test_after_a_block_migration_base_mirror_is_stripped():
    vbds = {"OpaqueRef:vbd": {"VDI": "OpaqueRef:vdi", "userdevice": "0", "other_config": {}}}
    ops = make_ops({"VM.get_all_records_where": records(), "VBD.get_all_records_where": vbds,
                    "VDI.remove_from_sm_config": None})
    ops.post_live_migration_at_destination(None, instance(), [], True)
    assert ops.session.calls[-1] == ("VDI.remove_from_sm_config",
                                     ("OpaqueRef:vdi", "base_mirror"))
