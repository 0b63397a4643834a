"""Config drives: an ISO 9660 image labelled ``config-2`` in Nova's metadata layout.

One builder for every backend; what a backend does with the bytes (VMware uploads them to a
datastore, Xen writes them into a VDI) stays in the backend. The layout follows Nova's
``nova/virt/configdrive.py`` and ``nova/api/metadata/base.py``::

    openstack/<version>/meta_data.json     instance facts, injected files' index, admin_pass
    openstack/<version>/vendor_data.json   ``{}`` (no vendor data)
    openstack/<version>/network_data.json  links and networks (from Liberty, 2015-10-15, on)
    openstack/<version>/user_data          only when the instance has user data
    openstack/content/<nnnn>               the injected files, indexed by meta_data's "files"
    ec2/latest/meta-data.json              the EC2-style facts

The image is built in memory with pycdlib (no ``genisoimage`` binary): ISO 9660 names are
8.3 upper case, so every directory and file gets a short generated name there and its real,
long, lower-case name in the Rock Ridge and Joliet trees, which guests (cloud-init) read.
"""

from __future__ import annotations

import base64
import io
import json
from collections.abc import Iterable
from typing import Any

import pycdlib

from virtdriver.common.model import field_of

VOLUME_LABEL = "config-2"
#: The metadata versions written, oldest first; "latest" is what cloud-init reads.
VERSIONS = ("2013-10-17", "2015-10-15", "latest")
#: Nova writes network_data.json from Liberty on.
_NETWORK_DATA_SINCE = "2015-10-15"


def config_drive_files(instance: Any, injected_files: Iterable[Any] | None,
                       admin_password: str | None, vifs: Iterable[Any],
                       ec2_extra: dict[str, Any] | None = None) -> dict[str, bytes]:
    """The files of an instance's config drive, path -> bytes, in Nova's layout.

    ``injected_files`` are ``(path, contents)`` pairs (already validated); ``vifs`` are
    :class:`~virtdriver.common.model.VIF`-shaped. ``ec2_extra`` adds keys to
    ``ec2/latest/meta-data.json`` for a backend whose guests read more there.
    """
    vifs = list(vifs)
    files: dict[str, bytes] = {}
    index = []
    for n, (path, contents) in enumerate(injected_files or []):
        content_path = f"/content/{n:04d}"
        files[f"openstack{content_path}"] = contents.encode() if isinstance(contents, str) \
            else bytes(contents)
        index.append({"path": path, "content_path": content_path})
    meta = _meta_data(instance, index, admin_password)
    network = json.dumps(network_data(vifs)).encode()
    user_data = _user_data(instance)
    for version in VERSIONS:
        base = f"openstack/{version}"
        files[f"{base}/meta_data.json"] = json.dumps(meta).encode()
        files[f"{base}/vendor_data.json"] = b"{}"
        if version == "latest" or version >= _NETWORK_DATA_SINCE:
            files[f"{base}/network_data.json"] = network
        if user_data is not None:
            files[f"{base}/user_data"] = user_data
    ec2 = {"instance-id": meta["uuid"], "hostname": meta["hostname"], **(ec2_extra or {})}
    files["ec2/latest/meta-data.json"] = json.dumps(ec2).encode()
    return files


def _meta_data(instance: Any, files_index: list[dict[str, str]],
               admin_password: str | None) -> dict[str, Any]:
    """meta_data.json, as Nova's ``InstanceMetadata._metadata_as_json`` fills it."""
    meta: dict[str, Any] = {
        "uuid": str(field_of(instance, "uuid")),
        "name": field_of(instance, "name"),
        "hostname": field_of(instance, "hostname") or field_of(instance, "name"),
        "launch_index": field_of(instance, "launch_index", 0) or 0,
        # Nova names the instance's zone, else the host's, whose default is "nova"
        "availability_zone": field_of(instance, "availability_zone") or "nova",
        "project_id": field_of(instance, "project_id") or "",
        "meta": dict(field_of(instance, "metadata") or {}),
        "files": files_index,
    }
    key_data = field_of(instance, "key_data")
    if key_data:
        meta["public_keys"] = {"default": key_data}
    if admin_password:
        meta["admin_pass"] = admin_password
    return meta


def network_data(vifs: Iterable[Any]) -> dict[str, Any]:
    """network_data.json: a link per VIF; a static network per fixed IP (``ipv4`` or
    ``ipv6``, as Nova's ``netutils.get_network_metadata``), a DHCP one for a VIF without."""
    links: list[dict[str, Any]] = []
    networks: list[dict[str, Any]] = []
    for vif in vifs:
        link = f"tap{vif.id[:11]}"  # Nova's device name: "tap" + the port id, 14 characters
        links.append({"id": link, "type": "phy", "ethernet_mac_address": vif.address,
                      "vif_id": vif.id, "mtu": vif.mtu})
        network_id = vif.network_id or vif.network
        for ip in vif.fixed_ips:
            networks.append({"id": f"network{len(networks)}", "link": link,
                             "type": "ipv6" if ":" in ip else "ipv4", "ip_address": ip,
                             "network_id": network_id})
        if not vif.fixed_ips:
            networks.append({"id": f"network{len(networks)}", "link": link,
                             "type": "ipv4_dhcp", "network_id": network_id})
    return {"links": links, "networks": networks, "services": []}


def _user_data(instance: Any) -> bytes | None:
    """The instance's user data as bytes; Nova keeps it base64-encoded on the instance."""
    raw = field_of(instance, "user_data")
    if not raw:
        return None
    return base64.b64decode(raw) if isinstance(raw, str) else bytes(raw)


def build_iso(files: dict[str, bytes]) -> bytes:
    """An ISO 9660 image (Rock Ridge 1.09 and Joliet names) labelled ``config-2``."""
    iso = pycdlib.PyCdlib()
    iso.new(interchange_level=3, rock_ridge="1.09", joliet=3, vol_ident=VOLUME_LABEL)
    # path -> its generated ISO 9660 name; the names only have to be valid and unique
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


def build_config_drive(instance: Any, injected_files: Iterable[Any] | None,
                       admin_password: str | None, vifs: Iterable[Any],
                       ec2_extra: dict[str, Any] | None = None) -> bytes:
    """The config-drive ISO of an instance: :func:`config_drive_files` in :func:`build_iso`."""
    return build_iso(config_drive_files(instance, injected_files, admin_password, vifs,
                                        ec2_extra))
