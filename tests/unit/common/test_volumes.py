"""Cinder's connection_info and Nova's block_device_info, parsed and checked once."""

import pytest

import virtdriver
from virtdriver.common.base import DEFAULT_CAPABILITIES, VMOps
from virtdriver.common.exceptions import InvalidInput, UnsupportedOperation
from virtdriver.common.volumes import (
    BlockDevices,
    ConnectionInfo,
    connector_ip,
    parse_block_device_info,
    parse_connection_info,
    supported_volume_types,
)

VOL = "5f4a3c1e-0000-4000-8000-000000000001"
VOL2 = "5f4a3c1e-0000-4000-8000-000000000002"
ALL = ("vmdk", "iscsi", "vstorageobject")


def vmdk(volume_id=VOL, **extra):
    return {"driver_volume_type": "vmdk", "serial": volume_id,
            "data": {"volume": "vm-42", "volume_id": volume_id, "name": f"volume-{volume_id}",
                     "profile_id": None, **extra}}


def iscsi(**data):
    base = {"target_portal": "10.0.0.5:3260", "target_iqn": "iqn.2010-10.org.openstack:v1",
            "target_lun": 1, "volume_id": VOL}
    base.update(data)
    return {"driver_volume_type": "iscsi", "data": base}


def test_vmdk_connection_info_is_read():
    info = parse_connection_info(vmdk(), "vmware", ALL)
    assert info.driver_volume_type == "vmdk"
    assert info.get("volume") == "vm-42" and info.volume_id == VOL
    assert info.to_dict()["data"]["name"] == f"volume-{VOL}"


def test_volume_id_falls_back_to_serial():
    value = vmdk()
    del value["data"]["volume_id"]
    info = parse_connection_info(iscsi(volume_id=None) | {"serial": VOL2}, "xen", ALL)
    assert info.volume_id == VOL2
    with pytest.raises(InvalidInput) as caught:
        parse_connection_info(value, "vmware", ALL)
    assert caught.value.field == "connection_info.data.volume_id"


def test_unknown_type_is_unsupported_naming_it():
    with pytest.raises(UnsupportedOperation) as caught:
        parse_connection_info({"driver_volume_type": "fake", "data": {}}, "vmware", ("vmdk",))
    assert "'fake'" in str(caught.value) and caught.value.backend == "vmware"
    assert "vmdk" in str(caught.value)


def test_multiattach_is_unsupported():
    with pytest.raises(UnsupportedOperation, match="multiattach"):
        parse_connection_info(vmdk() | {"multiattach": True}, "vmware", ALL)


@pytest.mark.parametrize("volume_type,key", [("vmdk", "volume"), ("vmdk", "volume_id"),
                                             ("iscsi", "target_portal"),
                                             ("iscsi", "target_iqn"),
                                             ("vstorageobject", "id"),
                                             ("vstorageobject", "ds_ref_val")])
def test_missing_data_key_is_invalid_input_naming_it(volume_type, key):
    data = {"volume": "vm-1", "volume_id": VOL, "target_portal": "h:3260",
            "target_iqn": "iqn.x", "id": "fcd-1", "ds_ref_val": "datastore-1"}
    del data[key]
    with pytest.raises(InvalidInput) as caught:
        parse_connection_info({"driver_volume_type": volume_type, "data": data}, "vmware", ALL)
    assert caught.value.field == f"connection_info.data.{key}"
    assert key in str(caught.value)


@pytest.mark.parametrize("value,field", [
    (None, "connection_info"),
    ("vmdk", "connection_info"),
    ({"data": {}}, "connection_info.driver_volume_type"),
    ({"driver_volume_type": "vmdk", "data": ["x"]}, "connection_info.data"),
])
def test_malformed_shape_is_invalid_input(value, field):
    with pytest.raises(InvalidInput) as caught:
        parse_connection_info(value, "vmware", ALL)
    assert caught.value.field == field


def test_secrets_stay_out_of_repr():
    info = parse_connection_info(iscsi(auth_method="CHAP", auth_username="u",
                                       auth_password="s3cret"), "xen", ALL)
    assert "s3cret" not in repr(info) and "<hidden>" in repr(info)
    os_brick = parse_connection_info(vmdk(config={"password": "pw-1"}), "vmware", ALL)
    assert "pw-1" not in repr(os_brick)


def bdm(info, mount="/dev/sdb", boot_index=None, **extra):
    return {"connection_info": info, "mount_device": mount, "boot_index": boot_index,
            "disk_bus": None, "device_type": "disk", "delete_on_termination": True, **extra}


def test_block_device_info_volumes_and_boot_volume():
    devices = parse_block_device_info(
        {"root_device_name": "/dev/sda", "ephemerals": [], "swap": None,
         "block_device_mapping": [bdm(vmdk(VOL2), "/dev/sdb"),
                                  bdm(vmdk(), "/dev/sda", boot_index=0)]}, "vmware", ALL)
    assert devices and len(devices.volumes) == 2
    assert devices.boot_volume.volume_id == VOL
    assert [v.volume_id for v in devices.data_volumes] == [VOL2]
    assert devices.volumes[0].delete_on_termination is True


def test_boot_volume_by_root_device_name_when_no_boot_index():
    devices = parse_block_device_info({"root_device_name": "/dev/xvda",
                                       "block_device_mapping": [bdm(iscsi(), "/dev/xvda")]},
                                      "xen", ALL)
    assert devices.boot_volume is devices.volumes[0]


def test_no_volumes_is_falsy_for_none_empty_and_our_dataclass():
    assert not parse_block_device_info(None, "vmware", ALL)
    assert not parse_block_device_info({"block_device_mapping": []}, "vmware", ALL)
    ours = virtdriver.BlockDeviceInfo(root_device_name="/dev/sda")
    assert parse_block_device_info(ours, "vmware", ALL) == BlockDevices("/dev/sda", ())
    ours.block_device_mapping = [bdm(vmdk())]
    assert parse_block_device_info(ours, "vmware", ALL).volumes[0].volume_id == VOL


def test_minus_one_boot_index_is_not_bootable():
    devices = parse_block_device_info({"block_device_mapping": [bdm(vmdk(), boot_index=-1)]},
                                      "vmware", ALL)
    assert devices.volumes[0].boot_index is None and devices.boot_volume is None


@pytest.mark.parametrize("mappings,field", [
    ([bdm(vmdk(), boot_index="first")], "block_device_mapping[0].boot_index"),
    ([bdm(vmdk(), device_type="tape")], "block_device_mapping[0].device_type"),
    ([bdm(vmdk(), mount=5)], "block_device_mapping[0].mount_device"),
    ([bdm(vmdk()), bdm(vmdk(VOL2))], "block_device_mapping[1].mount_device"),
    ([bdm(vmdk(), "/dev/sdb"), bdm(vmdk(), "/dev/sdc")],
     "block_device_mapping[1].connection_info.serial"),
    ([bdm(vmdk(), "/dev/sda", 0), bdm(vmdk(VOL2), "/dev/sdb", 0)],
     "block_device_mapping[1].boot_index"),
    ([bdm({"driver_volume_type": "vmdk", "data": {"volume": "vm-1"}})],
     "block_device_mapping[0].connection_info.data.volume_id"),
])
def test_bad_mappings_are_invalid_input_naming_the_field(mappings, field):
    with pytest.raises(InvalidInput) as caught:
        parse_block_device_info({"block_device_mapping": mappings}, "vmware", ALL)
    assert caught.value.field == field


def test_unsupported_type_in_a_mapping_is_unsupported():
    with pytest.raises(UnsupportedOperation, match="'iscsi'"):
        parse_block_device_info({"block_device_mapping": [bdm(iscsi())]}, "vmware", ("vmdk",))


def test_supported_types_come_from_capabilities():
    assert supported_volume_types(DEFAULT_CAPABILITIES) == frozenset()
    caps = {**DEFAULT_CAPABILITIES, "supports_volume_type_vmdk": True,
            "supports_volume_type_iscsi": True}
    assert supported_volume_types(caps) == {"vmdk", "iscsi"}


def test_backend_helpers_check_against_the_backends_own_types():
    operations = {name: lambda self, *a, **k: None for name in VMOps.__abstractmethods__}
    backend = type("Hv", (VMOps,), {
        "backend_name": "hv", **operations,
        "capabilities": {**DEFAULT_CAPABILITIES, "supports_volume_type_iscsi": True}})
    ops = backend(conf=None)
    assert isinstance(ops.connection_info(iscsi()), ConnectionInfo)
    with pytest.raises(UnsupportedOperation, match="hv backend"):
        ops.connection_info(vmdk())
    assert ops.block_devices({"block_device_mapping": [bdm(iscsi())]}).volumes


def test_connector_ip_prefers_my_block_storage_ip():
    class Conf:
        my_block_storage_ip = "192.0.2.7"
    assert connector_ip(Conf(), "10.0.0.1") == "192.0.2.7"
    assert connector_ip(object(), "10.0.0.1") == "10.0.0.1"
