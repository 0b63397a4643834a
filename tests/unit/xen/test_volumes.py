"""Xen volumes without a server: connection data checked before any call, mount points,
the SR identity, CHAP kept out of reprs, and VBD.unplug's bounded retries."""

import pytest

import virtdriver
from virtdriver.common import exceptions as exc
from virtdriver.xen import volume_utils

from .fakes import failure
from .test_vmops import instance, make_ops

ISCSI = {"driver_volume_type": "iscsi", "serial": "vol-1",
         "data": {"target_portal": "192.0.2.10:3260", "target_iqn": "iqn.2010-10.org.x:v1",
                  "target_lun": 1, "volume_id": "vol-1"}}


def with_data(**changes):
    data = {k: v for k, v in ISCSI["data"].items() if changes.get(k, 0) is not None}
    data.update({k: v for k, v in changes.items() if v is not None})
    return {**ISCSI, "data": data}


@pytest.mark.parametrize(("info", "error", "named"), [
    ({**ISCSI, "driver_volume_type": "rbd"}, exc.UnsupportedOperation, "rbd"),
    (with_data(target_iqn=None), exc.InvalidInput, "connection_info.data.target_iqn"),
    (with_data(target_portal=None), exc.InvalidInput, "connection_info.data.target_portal"),
    (with_data(target_portal="host:port"), exc.InvalidInput, "target_portal"),
    (with_data(target_lun="x"), exc.InvalidInput, "connection_info.data.target_lun"),
    (with_data(auth_method="CHAP", auth_username="u"), exc.InvalidInput,
     "connection_info.data.auth_password"),
    (with_data(auth_method="CHAP", auth_password="pw"), exc.InvalidInput,
     "connection_info.data.auth_username"),
    (with_data(auth_method="kerberos"), exc.InvalidInput, "auth_method"),
    ({**ISCSI, "multiattach": True}, exc.UnsupportedOperation, "multiattach"),
])
def test_bad_connection_info_fails_before_any_call(info, error, named):
    ops = make_ops({})
    with pytest.raises(error, match=named):
        ops.attach_volume(None, info, instance(), "/dev/xvdb")
    with pytest.raises(error, match=named):
        ops.detach_volume(None, info, instance(), "/dev/xvdb")
    assert ops.session.calls == []


@pytest.mark.parametrize("mountpoint", ["/dev/xvdz", "/dev/nvme0n1", "16", "floppy"])
def test_bad_mountpoint_fails_before_any_call(mountpoint):
    ops = make_ops({})
    with pytest.raises(exc.InvalidInput, match="mountpoint"):
        ops.attach_volume(None, ISCSI, instance(), mountpoint)
    assert ops.session.calls == []


def test_encrypted_or_cdrom_volumes_are_unsupported_before_any_call():
    ops = make_ops({})
    with pytest.raises(exc.UnsupportedOperation, match="cdrom"):
        ops.attach_volume(None, ISCSI, instance(), "/dev/xvdb", device_type="cdrom")
    with pytest.raises(exc.UnsupportedOperation, match="encrypted"):
        ops.attach_volume(None, ISCSI, instance(), "/dev/xvdb", encryption={"cipher": "x"})
    assert ops.session.calls == []


@pytest.mark.parametrize(("mountpoint", "device"), [
    ("/dev/xvda", "0"), ("/dev/xvdb", "1"), ("/dev/sdc", "2"), ("vdp", "15"), ("/dev/hdb", "1"),
    ("7", "7")])
def test_device_number(mountpoint, device):
    assert volume_utils.device_number(mountpoint) == device


def test_sr_identity_is_novas_and_chap_stays_out_of_reprs():
    info = make_ops({}).connection_info(with_data(auth_method="CHAP", auth_username="u",
                                                  auth_password="pw-secret-1"))
    volume = volume_utils.parse_iscsi(info)
    # Nova's XenAPI driver: uuid5(3cca4135-..., "host/port/iqn"), one SR per target
    assert volume.sr_uuid == "f45d01b0-4156-52d0-801a-906fab86b967"
    other_lun = volume_utils.parse_iscsi(make_ops({}).connection_info(with_data(target_lun=7)))
    assert other_lun.sr_uuid == volume.sr_uuid
    assert volume.device_config()["chappassword"] == "pw-secret-1"
    assert "pw-secret-1" not in repr(volume) and "pw-secret-1" not in repr(info)
    assert (volume.host, volume.port, volume.lun) == ("192.0.2.10", 3260, 1)


def test_ipv6_and_default_port():
    ops = make_ops({})
    v6 = volume_utils.parse_iscsi(ops.connection_info(
        with_data(target_portal="[2001:db8::1]:3261")))
    assert (v6.host, v6.port) == ("2001:db8::1", 3261)
    bare = volume_utils.parse_iscsi(ops.connection_info(with_data(target_portal="192.0.2.10")))
    assert bare.port == 3260


def test_unplug_retries_refusals_with_a_bound():
    attempts = []

    def unplug(vbd):
        attempts.append(vbd)
        return failure("DEVICE_DETACH_REJECTED", "VBD", vbd, "guest busy")

    ops = make_ops({"VBD.unplug": unplug})
    sleeps = []
    with pytest.raises(exc.VolumeError, match="DEVICE_DETACH_REJECTED"):
        volume_utils.unplug_vbd(ops.session, "OpaqueRef:vbd", 3, "vol-1", sleeps.append)
    assert len(attempts) == 4 and len(sleeps) == 3 and max(sleeps) <= 2.0


def test_unplug_already_detached_is_done_and_other_errors_are_not_retried():
    ops = make_ops({"VBD.unplug": failure("DEVICE_ALREADY_DETACHED", "OpaqueRef:vbd")})
    volume_utils.unplug_vbd(ops.session, "OpaqueRef:vbd", 3, "vol-1", lambda s: None)
    ops = make_ops({"VBD.unplug": failure("VBD_NOT_UNPLUGGABLE", "OpaqueRef:vbd")})
    with pytest.raises(exc.VolumeError):
        volume_utils.unplug_vbd(ops.session, "OpaqueRef:vbd", 3, "vol-1", lambda s: None)
    assert len(ops.session.calls) == 1


def test_boot_volume_and_data_volume_slots_checked_before_any_call():
    ops = make_ops({}, store=object())
    image = virtdriver.ImageMeta(id="99999999-2222-4333-8444-555555555555", disk_format="raw")
    clash = virtdriver.BlockDeviceInfo(block_device_mapping=[
        {"connection_info": ISCSI, "mount_device": "/dev/xvda"}])
    # an image-backed instance has its root disk at xvda: a data volume cannot go there
    with pytest.raises(exc.InvalidInput, match="mount_device"):
        ops.spawn(None, instance(), image, [], None, [], block_device_info=clash)
    no_mount = virtdriver.BlockDeviceInfo(block_device_mapping=[{"connection_info": ISCSI}])
    with pytest.raises(exc.InvalidInput, match="mount_device"):
        ops.spawn(None, instance(), image, [], None, [], block_device_info=no_mount)
    assert ops.session.calls == []
