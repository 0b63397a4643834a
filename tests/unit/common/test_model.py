"""Validation of every model field: a bad value is InvalidInput naming the field and value."""

import uuid

import pytest

from virtdriver.common.exceptions import InvalidInput
from virtdriver.common.model import (
    VIF,
    ConsoleInfo,
    ExtraSpecs,
    Flavor,
    ImageMeta,
    Instance,
    VMConfigInfo,
    image_property,
    validate_instance,
    validate_vifs,
)

UUID = "6f2c1e2a-0a4b-4c55-9d8e-2b1e7a3c9f10"


def flavor(**kwargs):
    return Flavor(**{"vcpus": 1, "memory_mb": 256, "root_gb": 1, **kwargs})


def vif(**kwargs):
    return VIF(**{"id": str(uuid.uuid4()), "address": "fa:16:3e:00:00:01",
                  "network": "VM Network", **kwargs})


@pytest.mark.parametrize(("field", "value"), [
    ("vcpus", 0), ("vcpus", -1), ("vcpus", "2"), ("vcpus", True),
    ("memory_mb", -256), ("memory_mb", 0), ("memory_mb", 1.5),
    ("root_gb", -1), ("ephemeral_gb", -1), ("swap", -1),
])
def test_flavor_rejects_bad_sizes(field, value):
    with pytest.raises(InvalidInput) as caught:
        flavor(**{field: value})
    assert caught.value.field == f"flavor.{field}"
    assert caught.value.value == value
    assert f"flavor.{field}" in str(caught.value) and repr(value) in str(caught.value)


def test_flavor_rejects_non_mapping_extra_specs():
    with pytest.raises(InvalidInput, match="flavor.extra_specs"):
        flavor(extra_specs=["quota:cpu_limit"])


def test_instance_accepts_good_values_and_normalises_uuid():
    instance = Instance(uuid=UUID.upper(), name="instance-0001", flavor=flavor())
    assert instance.uuid == UUID
    assert instance.hostname == "instance-0001"


@pytest.mark.parametrize(("field", "kwargs"), [
    ("instance.uuid", {"uuid": "not-a-uuid"}),
    ("instance.uuid", {"uuid": None}),
    ("instance.name", {"name": ""}),
    ("instance.name", {"name": "x" * 256}),
    ("instance.flavor", {"flavor": None}),
    ("flavor.vcpus", {"flavor": {"vcpus": 0, "memory_mb": 1, "root_gb": 1}}),
    ("instance.metadata", {"metadata": "k=v"}),
])
def test_instance_rejects_bad_fields(field, kwargs):
    args = {"uuid": UUID, "name": "instance-0001", "flavor": flavor(), **kwargs}
    with pytest.raises(InvalidInput) as caught:
        Instance(**args)
    assert caught.value.field == field


@pytest.mark.parametrize("mac", ["fa:16:3e:00:00", "fa-16-3e-00-00-01", "zz:16:3e:00:00:01",
                                 "01:00:5e:00:00:01", "", None])
def test_vif_rejects_malformed_or_multicast_mac(mac):
    with pytest.raises(InvalidInput) as caught:
        vif(address=mac)
    assert caught.value.field == "vif.address"
    assert caught.value.value == mac


def test_vif_normalises_mac_case():
    assert vif(address="FA:16:3E:0A:0B:0C").address == "fa:16:3e:0a:0b:0c"


@pytest.mark.parametrize(("field", "kwargs"), [
    ("vif.id", {"id": "port-1"}), ("vif.network", {"network": ""}), ("vif.mtu", {"mtu": 0}),
])
def test_vif_rejects_bad_fields(field, kwargs):
    with pytest.raises(InvalidInput) as caught:
        vif(**kwargs)
    assert caught.value.field == field


def test_vif_from_nova_network_info_entry():
    port = str(uuid.uuid4())
    nova_vif = {"id": port, "address": "fa:16:3e:11:22:33", "type": "ovs",
                "network": {"id": "net-1", "bridge": "br-int", "label": "private",
                            "meta": {"mtu": 1450},
                            "subnets": [{"ips": [{"address": "10.0.0.5"}]}]}}
    converted = VIF.from_nova(nova_vif)
    assert (converted.id, converted.network, converted.network_id) == (port, "br-int", "net-1")
    assert converted.fixed_ips == ["10.0.0.5"] and converted.mtu == 1450


def test_validate_vifs_refuses_duplicate_macs():
    with pytest.raises(InvalidInput, match="used by two VIFs"):
        validate_vifs([vif(), vif()])


@pytest.mark.parametrize(("field", "kwargs"), [
    ("image.disk_format", {"disk_format": "floppy"}),
    ("image.container_format", {"container_format": "zip"}),
    ("image.id", {"id": "cirros"}),
    ("image.size", {"size": -1}),
    ("image.properties", {"properties": "hw_vif_model=e1000"}),
])
def test_image_rejects_bad_fields(field, kwargs):
    with pytest.raises(InvalidInput) as caught:
        ImageMeta(**{"id": UUID, "disk_format": "vmdk", **kwargs})
    assert caught.value.field == field


def test_image_questions_and_properties():
    iso = ImageMeta(id=UUID, disk_format="iso", properties={"hw_vif_model": "e1000"})
    assert iso.is_iso()
    assert image_property(iso, "hw_vif_model") == "e1000"
    assert image_property(iso, "vmware_ostype", "otherGuest") == "otherGuest"

    class NovaProps:  # Nova's ImageMetaProps: attributes, unset ones absent
        hw_vif_model = "vmxnet3"

    class NovaImage:
        properties = NovaProps()

    assert image_property(NovaImage(), "hw_vif_model") == "vmxnet3"
    assert image_property(NovaImage(), "vm_mode", "hvm") == "hvm"


def test_extra_specs_parsed_and_checked():
    specs = ExtraSpecs.from_flavor(flavor(vcpus=4, extra_specs={
        "quota:cpu_limit": "2000", "quota:cpu_shares_level": "custom",
        "quota:cpu_shares_share": "1500", "quota:memory_reservation": "128",
        "hw:cpu_cores": "2", "quota:vcpu_weight": "256"}))
    assert specs.cpu.limit == 2000 and specs.cpu.shares_share == 1500
    assert specs.memory.reservation == 128 and specs.memory.limit is None
    assert specs.cores_per_socket == 2 and specs.vcpu_weight == 256
    assert specs.cpu.is_set() and not specs.disk_io.is_set()


@pytest.mark.parametrize(("specs", "key"), [
    ({"quota:cpu_limit": "lots"}, "quota:cpu_limit"),
    ({"quota:cpu_limit": "-5"}, "quota:cpu_limit"),
    ({"quota:cpu_shares_level": "extreme"}, "quota:cpu_shares_level"),
    ({"quota:memory_shares_level": "custom"}, "quota:memory_shares_share"),
    ({"hw:cpu_cores": "3"}, "hw:cpu_cores"),
])
def test_extra_specs_rejects_bad_values(specs, key):
    with pytest.raises(InvalidInput) as caught:
        ExtraSpecs.from_flavor(flavor(vcpus=4, extra_specs=specs))
    assert key in caught.value.field


def test_vm_config_info_gathers_validated_inputs():
    instance = Instance(uuid=UUID, name="web1", flavor=flavor(ephemeral_gb=2, swap=512))
    image = ImageMeta(id=str(uuid.uuid4()), disk_format="vmdk")
    info = VMConfigInfo.build(instance, image, [vif()], storage="LocalDS_0")
    assert (info.root_gb, info.ephemeral_gb, info.swap_mb) == (1, 2, 512)
    assert info.vifs[0].network == "VM Network"
    assert f"uuid:{UUID}" in info.metadata


def test_vm_config_info_validates_nova_like_objects():
    class NovaInstance:
        uuid = UUID
        name = "web1"
        flavor = {"vcpus": 0, "memory_mb": 256, "root_gb": 1}

    with pytest.raises(InvalidInput, match="flavor.vcpus"):
        VMConfigInfo.build(NovaInstance(), None, [])
    with pytest.raises(InvalidInput, match="flavor.vcpus"):
        validate_instance(NovaInstance())


def test_console_info_repr_hides_access_path():
    console = ConsoleInfo(host="h", port=5900, internal_access_path="/console?session_id=SECRET")
    assert "SECRET" not in repr(console)
    assert console.internal_access_path.endswith("SECRET")


def test_instance_name_round_trips_through_the_metadata_text():
    from virtdriver.common.model import instance_metadata_text, instance_name_from_metadata

    instance = Instance(uuid=UUID, name="web:1", flavor=flavor())
    assert instance_name_from_metadata(instance_metadata_text(instance)) == "web:1"
    assert instance_name_from_metadata("annotation written by someone else") is None
    assert instance_name_from_metadata(None) is None


def test_stuck_rebooting_picks_old_rebooting_instances_only():
    import datetime

    from virtdriver.common.model import stuck_rebooting

    now = datetime.datetime(2026, 1, 1, 12, 0, tzinfo=datetime.timezone.utc)
    old = now - datetime.timedelta(minutes=10)

    def inst(task_state, updated_at):
        return Instance(uuid=str(uuid.uuid4()), name="i", flavor=flavor(),
                        task_state=task_state, updated_at=updated_at)

    stuck = inst("rebooting_hard", old)
    naive_old = inst("reboot_pending", old.replace(tzinfo=None))
    fresh = inst("rebooting", now - datetime.timedelta(seconds=5))
    idle = inst(None, old)
    picked = stuck_rebooting([stuck, naive_old, fresh, idle, ("tuple", "entry")], 60, now)
    assert picked == [stuck, naive_old]


def test_an_instance_names_itself_on_oslo_log_lines_without_its_repr():
    """oslo.log prints ``[instance: <uuid>]`` for ``instance=``; never the model's fields."""
    from oslo_log import log as oslo_logging

    from tests.support.logs import oslo_log_text

    inst = Instance(uuid="0b0e0e0e-0000-4000-8000-000000000001", name="i-1",
                    flavor=Flavor(vcpus=1, memory_mb=256, root_gb=1), key_data="ssh-rsa SECRET")
    with oslo_log_text("virtdriver.test_model") as out:
        oslo_logging.getLogger("virtdriver.test_model").info("spawned", instance=inst)
    line = out.getvalue()
    assert "[instance: 0b0e0e0e-0000-4000-8000-000000000001] spawned" in line
    assert "SECRET" not in line
    with pytest.raises(KeyError):
        inst["not_a_field"]
