"""Config drives: an ISO 9660 image (volume ``config-2``) in OpenStack's metadata layout.

Built in memory with pycdlib, so no ``genisoimage`` binary and no dom0 help are needed; the
bytes are uploaded into a VDI like any other disk. Rock Ridge and Joliet carry the long,
lower-case names cloud-init looks for (``openstack/latest/meta_data.json``).
"""

from __future__ import annotations

import io
import json
from typing import Any

import pycdlib

from virtdriver.common.model import VIF, field_of
from virtdriver.xen.vm_utils import network_blob

VOLUME_LABEL = "config-2"
VERSIONS = ("2013-10-17", "latest")


def metadata_files(instance: Any, injected_files: list[tuple[str, bytes]] | None,
                   vifs: list[VIF], admin_password: str | None = None,
                   user_data: bytes | None = None) -> dict[str, bytes]:
    """The files of the drive, path -> bytes, in OpenStack's layout."""
    files: dict[str, bytes] = {}
    meta: dict[str, Any] = {
        "uuid": str(field_of(instance, "uuid")),
        "name": field_of(instance, "name"),
        "hostname": field_of(instance, "hostname") or field_of(instance, "name"),
        "launch_index": 0,
        "availability_zone": "nova",
        "project_id": field_of(instance, "project_id", "") or "",
        "meta": dict(field_of(instance, "metadata") or {}),
        "files": [],
    }
    key_data = field_of(instance, "key_data")
    if key_data:
        meta["public_keys"] = {"default": key_data}
    if admin_password:
        meta["admin_pass"] = admin_password
    content: dict[str, bytes] = {}
    for index, (path, data) in enumerate(injected_files or []):
        name = f"{index:04d}"
        meta["files"].append({"path": path, "content_path": f"/content/{name}"})
        content[name] = data if isinstance(data, bytes) else str(data).encode()
    network = {"links": [{"id": f"tap{vif.id[:11]}", "type": "phy",
                          "ethernet_mac_address": vif.address, "mtu": vif.mtu,
                          "vif_id": vif.id} for vif in vifs],
               "networks": [{"id": f"network{i}", "link": f"tap{vif.id[:11]}",
                             "type": "ipv4_dhcp", "network_id": vif.network_id or vif.network}
                            for i, vif in enumerate(vifs)],
               "services": []}
    for version in VERSIONS:
        base = f"openstack/{version}"
        files[f"{base}/meta_data.json"] = json.dumps(meta, sort_keys=True).encode()
        files[f"{base}/network_data.json"] = json.dumps(network, sort_keys=True).encode()
        files[f"{base}/vendor_data.json"] = b"{}"
        if user_data:
            files[f"{base}/user_data"] = user_data
    for name, data in content.items():
        files[f"openstack/content/{name}"] = data
    files["ec2/latest/meta-data.json"] = json.dumps(
        {"instance-id": meta["uuid"], "hostname": meta["hostname"],
         "network": [network_blob(v) for v in vifs]}, sort_keys=True).encode()
    return files


def build_iso(files: dict[str, bytes]) -> bytes:
    """An ISO 9660 image (Rock Ridge + Joliet) holding ``files``."""
    iso = pycdlib.PyCdlib()
    iso.new(interchange_level=3, rock_ridge="1.09", joliet=3, vol_ident=VOLUME_LABEL)
    # ISO 9660 names are 8.3 upper case; each directory and file gets a short generated
    # name there and its real name in the Rock Ridge and Joliet trees, which guests read.
    short: dict[str, str] = {"": ""}
    for count, path in enumerate(sorted(files)):
        parts = path.split("/")
        for depth in range(1, len(parts)):
            directory = "/".join(parts[:depth])
            if directory in short:
                continue
            parent = "/".join(parts[:depth - 1])
            short[directory] = f"{short[parent]}/D{len(short):07d}"
            iso.add_directory(short[directory], rr_name=parts[depth - 1],
                              joliet_path="/" + directory)
        data = files[path]
        iso.add_fp(io.BytesIO(data), len(data),
                   f"{short['/'.join(parts[:-1])]}/F{count:07d}.;1",
                   rr_name=parts[-1], joliet_path="/" + path)
    out = io.BytesIO()
    iso.write_fp(out)
    iso.close()
    return out.getvalue()
