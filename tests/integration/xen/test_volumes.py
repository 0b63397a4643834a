"""Xen iSCSI volumes through the library against the XAPI simulator: attach, detach, swap,
extend and the connector. What the simulator holds is read with a plain XenAPI client;
the LUNs' bytes on the storage side."""

from __future__ import annotations

import logging

import pytest

from virtdriver.common import exceptions as exc
from virtdriver.xen.vmops import XenVMOps

from .conftest import make_conf, make_instance, make_vif, vdi_bytes, vm_of
from .volume_helpers import MiB, iscsi_srs, new_target, sr_of, volume_vbds

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def vops(sim, store):
    """A backend that retries a refused unplug twice (the default is 10)."""
    backend = XenVMOps(make_conf(sim.url, num_vbd_unplug_retries=2), image_store=store)
    yield backend
    backend.close()


@pytest.fixture
def running(vops, image):
    instance = make_instance()
    vops.spawn(None, instance, image, [], None, [make_vif(1)])
    yield instance
    vops.destroy(instance)


def test_attach_to_a_running_vm_then_detach(vops, running, sim, xapi, xapi_session):
    volume, = new_target(sim)
    before = volume.read()
    vops.attach_volume(None, volume.connection_info(), running, "/dev/xvdb")
    ref, _ = vm_of(xapi, running)
    vbd = volume_vbds(xapi, ref)["1"]
    assert vbd["vdi_uuid"] == volume.vdi_uuid and vbd["sr_type"] == "iscsi"
    assert vbd["currently_attached"] and vbd["mode"] == "RW" and not vbd["bootable"]
    sr = vbd["sr"]
    pbd = xapi.PBD.get_record(xapi.SR.get_PBDs(sr)[0])
    assert pbd["currently_attached"] and pbd["device_config"]["targetIQN"] == volume.iqn
    # what the guest sees through the VBD is the LUN
    assert vdi_bytes(sim, xapi_session._session, vbd["VDI"], len(before)) == before

    vops.detach_volume(None, volume.connection_info(), running, "/dev/xvdb")
    assert volume_vbds(xapi, ref) == {}
    assert sr not in xapi.SR.get_all() and sr_of(xapi, volume) is None  # forgotten: unused
    assert volume.read() == before  # the LUN and its bytes stay on the target


def test_attach_to_a_stopped_vm_is_plugged_when_it_starts(vops, running, sim, xapi):
    volume, = new_target(sim)
    vops.power_off(running)
    vops.attach_volume(None, volume.connection_info(), running, "/dev/xvdc")
    ref, _ = vm_of(xapi, running)
    assert not volume_vbds(xapi, ref)["2"]["currently_attached"]
    vops.power_on(running)
    assert volume_vbds(xapi, ref)["2"]["currently_attached"]
    vops.reboot(running, reboot_type="HARD")
    vops.reboot(running, reboot_type="SOFT")
    assert volume_vbds(xapi, ref)["2"]["vdi_uuid"] == volume.vdi_uuid
    vops.detach_volume(None, volume.connection_info(), running, "/dev/xvdc")


def test_luns_of_one_target_share_one_sr(vops, running, sim, xapi):
    first, second = new_target(sim, luns=2)
    vops.attach_volume(None, first.connection_info(), running, "/dev/xvdb")
    vops.attach_volume(None, second.connection_info(), running, "/dev/xvdc")
    ref, _ = vm_of(xapi, running)
    vbds = volume_vbds(xapi, ref)
    assert vbds["1"]["sr"] == vbds["2"]["sr"]
    assert {vbds["1"]["vdi_uuid"], vbds["2"]["vdi_uuid"]} == {first.vdi_uuid, second.vdi_uuid}
    vops.detach_volume(None, first.connection_info(), running, "/dev/xvdb")
    assert xapi.SR.get_uuid(vbds["2"]["sr"])  # still used by the second volume
    vops.detach_volume(None, second.connection_info(), running, "/dev/xvdc")
    assert vbds["2"]["sr"] not in xapi.SR.get_all()


def test_detach_of_a_volume_not_attached_is_volume_not_found(vops, running, sim, xapi):
    volume, = new_target(sim)
    with pytest.raises(exc.VolumeNotFound):
        vops.detach_volume(None, volume.connection_info(), running, "/dev/xvdb")
    vops.attach_volume(None, volume.connection_info(), running, "/dev/xvdb")
    vops.detach_volume(None, volume.connection_info(), running, "/dev/xvdb")
    with pytest.raises(exc.VolumeNotFound):
        vops.detach_volume(None, volume.connection_info(), running, "/dev/xvdb")


def test_attaching_twice_or_on_a_taken_slot_is_refused(vops, running, sim, xapi):
    volume, other = new_target(sim, luns=2)
    vops.attach_volume(None, volume.connection_info(), running, "/dev/xvdb")
    ref, _ = vm_of(xapi, running)
    with pytest.raises(exc.InvalidInput, match="already attached"):
        vops.attach_volume(None, volume.connection_info(), running, "/dev/xvdd")
    with pytest.raises(exc.InvalidInput, match="mountpoint"):
        vops.attach_volume(None, other.connection_info(), running, "/dev/xvda")  # root disk
    assert list(volume_vbds(xapi, ref)) == ["1"]
    vops.detach_volume(None, volume.connection_info(), running, None)


def test_a_failed_attach_leaves_the_vm_and_the_volume_as_they_were(vops, running, sim, xapi):
    volume, = new_target(sim)
    before = volume.read()
    ref, _ = vm_of(xapi, running)
    vbds_before = sorted(xapi.VM.get_VBDs(ref))
    sim.inject_fault("VBD.plug", ["SR_BACKEND_FAILURE_46", "", "injected", ""])
    with pytest.raises(exc.BackendError) as info:
        vops.attach_volume(None, volume.connection_info(), running, "/dev/xvdb")
    assert info.value.code == "SR_BACKEND_FAILURE_46"
    assert sorted(xapi.VM.get_VBDs(ref)) == vbds_before
    assert sr_of(xapi, volume) is None and volume.read() == before
    # a target the storage network does not have: the login fails, nothing is left
    bad = volume.connection_info()
    bad["data"]["target_iqn"] = "iqn.2010-10.org.openstack:no-such-target"
    srs_before = set(iscsi_srs(xapi))
    with pytest.raises(exc.BackendError) as info:
        vops.attach_volume(None, bad, running, "/dev/xvdb")
    assert info.value.code == "SR_BACKEND_FAILURE_68"
    assert set(iscsi_srs(xapi)) == srs_before
    # a LUN the target does not export
    missing = volume.connection_info()
    missing["data"]["target_lun"] = 9
    with pytest.raises(exc.VolumeNotFound):
        vops.attach_volume(None, missing, running, "/dev/xvdb")
    assert sr_of(xapi, volume) is None and sorted(xapi.VM.get_VBDs(ref)) == vbds_before


def test_refused_unplugs_are_retried_with_a_bound(vops, running, sim, xapi):
    volume, = new_target(sim)
    vops.attach_volume(None, volume.connection_info(), running, "/dev/xvdb")
    ref, _ = vm_of(xapi, running)
    refusal = ["DEVICE_DETACH_REJECTED", "VBD", "ref", "the guest holds it"]
    sim.inject_fault("VBD.unplug", refusal, count=3)  # retries: 2, so 3 attempts in all
    with pytest.raises(exc.VolumeError, match="DEVICE_DETACH_REJECTED"):
        vops.detach_volume(None, volume.connection_info(), running, "/dev/xvdb")
    assert volume_vbds(xapi, ref)["1"]["currently_attached"]  # still there, still plugged
    sim.inject_fault("VBD.unplug", refusal, count=2)
    vops.detach_volume(None, volume.connection_info(), running, "/dev/xvdb")
    assert volume_vbds(xapi, ref) == {}


def test_chap_credentials_reach_the_pbd_and_no_log(vops, running, sim, xapi, caplog):
    volume, = new_target(sim, chap=("chap-user", "chap-Secret-42"))
    with caplog.at_level(logging.DEBUG):
        vops.attach_volume(None, volume.connection_info(), running, "/dev/xvdb")
        ref, _ = vm_of(xapi, running)
        sr = volume_vbds(xapi, ref)["1"]["sr"]
        assert xapi.SR.get_sm_config(sr) == {}
        config = xapi.PBD.get_device_config(xapi.SR.get_PBDs(sr)[0])
        assert config["chapuser"] == "chap-user"
        vops.detach_volume(None, volume.connection_info(), running, "/dev/xvdb")
    assert "chap-Secret-42" not in caplog.text
    wrong = volume.connection_info()
    wrong["data"]["auth_password"] = "not-it"
    with pytest.raises(exc.BackendError) as info:
        vops.attach_volume(None, wrong, running, "/dev/xvdb")
    assert info.value.code == "SR_BACKEND_FAILURE_68" and "not-it" not in str(info.value)


def test_swap_puts_the_new_volume_in_the_same_slot(vops, running, sim, xapi, xapi_session):
    old, = new_target(sim)
    new, = new_target(sim)
    old_bytes, new_bytes = old.read(), new.read()
    vops.attach_volume(None, old.connection_info(), running, "/dev/xvdb")
    vops.swap_volume(None, old.connection_info(), new.connection_info(), running,
                     "/dev/xvdb", 0)
    ref, _ = vm_of(xapi, running)
    vbd = volume_vbds(xapi, ref)["1"]
    assert vbd["vdi_uuid"] == new.vdi_uuid and vbd["currently_attached"]
    assert vdi_bytes(sim, xapi_session._session, vbd["VDI"], len(new_bytes)) == new_bytes
    assert sr_of(xapi, old) is None and old.read() == old_bytes  # detached, kept
    vops.detach_volume(None, new.connection_info(), running, "/dev/xvdb")


def test_a_failed_swap_puts_the_old_volume_back(vops, running, sim, xapi):
    old, = new_target(sim)
    vops.attach_volume(None, old.connection_info(), running, "/dev/xvdb")
    gone = old.connection_info()
    gone["data"]["target_iqn"] = "iqn.2010-10.org.openstack:no-such-target"
    gone["serial"] = gone["data"]["volume_id"] = "vol-gone"
    with pytest.raises(exc.BackendError):
        vops.swap_volume(None, old.connection_info(), gone, running, "/dev/xvdb", 0)
    ref, _ = vm_of(xapi, running)
    vbd = volume_vbds(xapi, ref)["1"]
    assert vbd["vdi_uuid"] == old.vdi_uuid and vbd["currently_attached"]
    vops.detach_volume(None, old.connection_info(), running, "/dev/xvdb")


def test_extend_rescans_so_xapi_sees_the_new_size(vops, running, sim, xapi):
    volume, = new_target(sim, size=4 * MiB)
    vops.attach_volume(None, volume.connection_info(), running, "/dev/xvdb")
    sim.controls.resize_iscsi_lun(volume.iqn, volume.lun, 8 * MiB)  # Cinder grew it
    vops.extend_volume(None, volume.connection_info(), running, 8 * MiB)
    ref, _ = vm_of(xapi, running)
    assert xapi.VDI.get_virtual_size(volume_vbds(xapi, ref)["1"]["VDI"]) == str(8 * MiB)
    with pytest.raises(exc.VolumeError):  # the LUN did not grow that far
        vops.extend_volume(None, volume.connection_info(), running, 16 * MiB)
    with pytest.raises(exc.InvalidInput):  # shrinking
        vops.extend_volume(None, volume.connection_info(), running, MiB)
    vops.detach_volume(None, volume.connection_info(), running, "/dev/xvdb")


def test_connector_names_the_pool_masters_initiator(vops, xapi):
    connector = vops.get_volume_connector({"id": "fake"})
    master = xapi.pool.get_master(xapi.pool.get_all()[0])
    assert connector["initiator"] == xapi.host.get_other_config(master)["iscsi_iqn"]
    assert connector["host"] == xapi.host.get_hostname(master)
    assert connector["ip"] == "127.0.0.1"
    assert vops.capabilities["supports_volume_type_iscsi"]
    assert not vops.capabilities["supports_multiattach"]


def test_concurrent_attach_and_detach_on_one_target(vops, image, sim, xapi):
    """Instances attaching and detaching LUNs of one target at once share its one SR: no
    second SR.introduce of the same uuid, no SR forgotten while another attach needs it."""
    from concurrent.futures import ThreadPoolExecutor

    volumes = new_target(sim, luns=4)
    instances = [make_instance(), make_instance()]
    for instance in instances:
        vops.spawn(None, instance, image, [], None, [make_vif(1)])
    pairs = [(instances[i % 2], volume, f"/dev/xvd{'bc'[i // 2]}")
             for i, volume in enumerate(volumes)]
    try:
        with ThreadPoolExecutor(4) as pool:
            list(pool.map(lambda p: vops.attach_volume(None, p[1].connection_info(), p[0],
                                                       p[2]), pairs))
        srs = {sr_of(xapi, volume) for volume in volumes}
        assert len(srs) == 1 and None not in srs
        with ThreadPoolExecutor(4) as pool:
            list(pool.map(lambda p: vops.detach_volume(None, p[1].connection_info(), p[0],
                                                       p[2]), pairs))
        assert srs.pop() not in xapi.SR.get_all()
    finally:
        for instance in instances:
            vops.destroy(instance)
