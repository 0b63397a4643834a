"""VM.provision: make the disks a template's ``other_config:disks`` asks for.

As xapi does (``xapi_vm.ml`` provision, ``xapi_templates.ml``): the VM stops being a template
first; the ``<provision><disk device size sr bootable type/></provision>`` spec is parsed;
each disk becomes a VDI on the SR named by uuid (UUID_INVALID ["sr", uuid] when there is
none: clients such as ``xe vm-install`` write the target SR into the spec before calling)
with a VBD at the given device; then the ``disks`` and ``postinstall`` keys are removed so
the VM is not installed twice.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from dataclasses import dataclass

from ..context import Context, api
from ..errors import XapiError
from .vbd import vbd_create
from .vdi import new_vdi
from .vm import begin, refresh_allowed

DISKS_KEY = "disks"
POST_INSTALL_KEY = "postinstall"
#: VDI types a provision spec may name (others fail as in xapi's string2vdi_type)
VDI_TYPES = ("system", "user", "ephemeral", "suspend", "crashdump")


@dataclass(frozen=True)
class DiskSpec:
    """One ``<disk>`` of a provision spec."""

    device: str
    size: int
    sr: str
    bootable: bool
    type: str


def parse_spec(text: str) -> list[DiskSpec]:
    """The disks of a ``<provision>`` document; INTERNAL_ERROR when it is malformed."""
    try:
        root = ET.fromstring(text)
        if root.tag != "provision" or root.attrib:
            raise ValueError("not a <provision> element")
        disks = []
        for disk in root:
            if disk.tag != "disk" or len(disk):
                raise ValueError("not a <disk> element")
            kind = disk.attrib.get("type", "system")
            disks.append(DiskSpec(device=disk.attrib["device"], size=int(disk.attrib["size"]),
                                  sr=disk.attrib["sr"],
                                  bootable=disk.attrib["bootable"] == "true",
                                  type=kind if kind in VDI_TYPES else "system"))
        return disks
    except (ET.ParseError, KeyError, ValueError) as exc:
        raise XapiError("INTERNAL_ERROR", f"cannot parse the provision spec: {exc}") from None


@api("VM.provision", long=True)
def provision(ctx: Context, vm: str) -> None:
    """Clear ``is_a_template`` and create the disks the template's spec lists."""
    rec = begin(ctx, vm, "provision")
    db = ctx.db
    with db.lock:
        db.set("VM", vm, "is_a_template", False)
        spec = rec["other_config"].get(DISKS_KEY)
        for disk in parse_spec(spec) if spec else []:
            sr = db.by_uuid["SR"].get(disk.sr)
            if sr is None:
                raise XapiError("UUID_INVALID", "sr", disk.sr)
            vdi = new_vdi(ctx, sr, "", disk.size, disk.type,
                          name_description="Created by template provisioner",
                          sm_config={"vmhint": rec["uuid"]})
            vbd = vbd_create(ctx, {"VM": vm, "VDI": vdi, "userdevice": disk.device,
                                   "bootable": disk.bootable, "mode": "RW", "type": "Disk",
                                   "unpluggable": disk.type != "system", "empty": False,
                                   "other_config": {"owner": ""}})
            db.set("VDI", vdi, "name_label", db.get("VBD", vbd)["userdevice"])
        other = {k: v for k, v in db.get("VM", vm)["other_config"].items()
                 if k not in (DISKS_KEY, POST_INSTALL_KEY)}
        db.set("VM", vm, "other_config", other)
        refresh_allowed(ctx, vm)
