"""The config drive both backends build: Nova's layout in an ISO 9660 image, read back."""

from __future__ import annotations

import base64
import io
import json
import uuid
from collections.abc import Callable

import pycdlib

from virtdriver.common.config_drive import build_config_drive, build_iso, config_drive_files
from virtdriver.common.model import VIF, Flavor, Instance

UUID = "11111111-2222-4333-8444-555555555555"


def _open(data: bytes) -> pycdlib.PyCdlib:
    iso = pycdlib.PyCdlib()
    iso.open_fp(io.BytesIO(data))
    return iso


def _reader(iso: pycdlib.PyCdlib, tree: str) -> Callable[[str], bytes]:
    def read(path: str) -> bytes:
        out = io.BytesIO()
        iso.get_file_from_iso_fp(out, **{tree: path})
        return out.getvalue()
    return read


def test_layout_read_through_rock_ridge() -> None:
    inst = Instance(uuid=UUID, name="inst", key_data="ssh-rsa AAA",
                    flavor=Flavor(vcpus=1, memory_mb=64, root_gb=0))
    vif = VIF(id=UUID, address="fa:16:3e:00:00:01", network="net")
    iso = _open(build_config_drive(inst, [("/etc/motd", b"hi")], None, [vif]))
    read = _reader(iso, "rr_path")
    meta = json.loads(read("/openstack/latest/meta_data.json"))
    assert meta["uuid"] == UUID and meta["public_keys"] == {"default": "ssh-rsa AAA"}
    assert meta["files"] == [{"path": "/etc/motd", "content_path": "/content/0000"}]
    assert read("/openstack/content/0000") == b"hi"
    network = json.loads(read("/openstack/latest/network_data.json"))
    assert network["links"][0]["ethernet_mac_address"] == "fa:16:3e:00:00:01"
    assert network["networks"] == [{"id": "network0", "link": f"tap{UUID[:11]}",
                                     "type": "ipv4_dhcp", "network_id": "net"}]
    iso.close()


def test_layout_read_through_joliet() -> None:
    inst = Instance(uuid=str(uuid.uuid4()), name="web-1",
                    flavor=Flavor(vcpus=4, memory_mb=1024, root_gb=10))
    inst.metadata = {"role": "web"}
    vif = VIF(id=str(uuid.uuid4()), address="fa:16:3e:00:00:05", network="n",
              fixed_ips=["192.0.2.5"])
    iso = _open(build_config_drive(inst, [("/etc/hosts", b"127.0.0.1 x")], "pw", [vif]))
    assert iso.pvd.volume_identifier.rstrip() == b"config-2"
    read = _reader(iso, "joliet_path")
    meta = json.loads(read("/openstack/latest/meta_data.json"))
    assert meta["uuid"] == inst.uuid and meta["name"] == "web-1" and meta["hostname"] == "web-1"
    assert meta["admin_pass"] == "pw" and meta["meta"] == {"role": "web"}
    assert read("/openstack/content/0000") == b"127.0.0.1 x"
    net = json.loads(read("/openstack/latest/network_data.json"))
    assert net["networks"][0]["ip_address"] == "192.0.2.5"
    iso.close()


def test_versions_and_optional_files_follow_nova() -> None:
    inst = {"uuid": UUID, "name": "inst", "user_data": base64.b64encode(b"#cloud-config").decode()}
    vif = VIF(id=UUID, address="fa:16:3e:00:00:01", network="net",
              fixed_ips=["192.0.2.9", "2001:db8::9"])
    files = config_drive_files(inst, [], None, [vif], ec2_extra={"network": []})
    # network_data.json from Liberty (2015-10-15) on; vendor data and user data in each version
    assert "openstack/2013-10-17/network_data.json" not in files
    for version in ("2013-10-17", "2015-10-15", "latest"):
        assert files[f"openstack/{version}/vendor_data.json"] == b"{}"
        assert files[f"openstack/{version}/user_data"] == b"#cloud-config"
    networks = json.loads(files["openstack/latest/network_data.json"])["networks"]
    assert [n["type"] for n in networks] == ["ipv4", "ipv6"]
    meta = json.loads(files["openstack/latest/meta_data.json"])
    assert meta["availability_zone"] == "nova" and "admin_pass" not in meta
    assert json.loads(files["ec2/latest/meta-data.json"]) == {
        "instance-id": UUID, "hostname": "inst", "network": []}
    # no user data: no user_data file at all, as Nova
    assert not any(p.endswith("user_data") for p in
                   config_drive_files({"uuid": UUID, "name": "i"}, None, None, []))


def test_long_and_deep_names_survive() -> None:
    files = {"openstack/content/0000": b"a", "a/very-long-directory-name/x.y.z": b"b"}
    iso = _open(build_iso(files))
    assert _reader(iso, "rr_path")("/a/very-long-directory-name/x.y.z") == b"b"
    assert _reader(iso, "joliet_path")("/openstack/content/0000") == b"a"
    iso.close()
