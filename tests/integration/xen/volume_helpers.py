"""Helpers for the Xen volume tests: Cinder iSCSI volumes exported by the simulator's
targets, and readers of what the simulator holds (its own XenAPI client, never the code
under test)."""

from __future__ import annotations

import itertools
import os
from typing import Any

from virtdriver.xen.simulator import Simulator

MiB = 1024 * 1024
PORTAL = "127.0.0.1:3260"
_numbers = itertools.count(1)


class Volume:
    """One Cinder iSCSI volume: a LUN of a target the simulator exports."""

    def __init__(self, sim: Simulator, iqn: str, lun: int, volume_id: str,
                 chap: tuple[str, str] | None = None) -> None:
        self.sim, self.iqn, self.lun, self.id, self.chap = sim, iqn, lun, volume_id, chap

    @property
    def vdi_uuid(self) -> str:
        target = next(t for t in self.sim.controls.iscsi_targets() if t["iqn"] == self.iqn)
        return next(lun["vdi_uuid"] for lun in target["luns"] if lun["lun"] == self.lun)

    def connection_info(self) -> dict[str, Any]:
        """What Cinder's iSCSI target driver hands Nova."""
        data: dict[str, Any] = {"target_discovered": False, "target_portal": PORTAL,
                                "target_iqn": self.iqn, "target_lun": self.lun,
                                "volume_id": self.id, "encrypted": False}
        if self.chap:
            data.update(auth_method="CHAP", auth_username=self.chap[0],
                        auth_password=self.chap[1])
        return {"driver_volume_type": "iscsi", "data": data, "serial": self.id}

    def read(self, length: int | None = None) -> bytes:
        """The LUN's bytes, read on the storage side."""
        return self.sim.controls.read_iscsi_lun(self.iqn, self.lun, 0, length)

    def write(self, data: bytes, offset: int = 0) -> None:
        self.sim.controls.write_iscsi_lun(self.iqn, self.lun, data, offset)

    def mapping(self, mount_device: str, boot_index: int | None = None) -> dict[str, Any]:
        """Nova's DriverVolumeBlockDevice for this volume."""
        return {"connection_info": self.connection_info(), "mount_device": mount_device,
                "boot_index": boot_index, "delete_on_termination": False,
                "disk_bus": None, "device_type": "disk"}


def new_target(sim: Simulator, luns: int = 1, size: int = 4 * MiB,
               chap: tuple[str, str] | None = None) -> list[Volume]:
    """A fresh target with ``luns`` LUNs (numbered from 1, as Cinder's LIO does) of
    recognisable bytes."""
    number = next(_numbers)
    iqn = f"iqn.2010-10.org.openstack:volume-{os.getpid()}-{number}"
    sim.controls.add_iscsi_target(iqn, PORTAL, {n: size for n in range(1, luns + 1)},
                                  *(chap or (None, None)))
    volumes = []
    for n in range(1, luns + 1):
        volume = Volume(sim, iqn, n, f"vol-{number}-{n}", chap)
        volume.write(f"volume {volume.id} ".encode() * 16 + os.urandom(64))
        volumes.append(volume)
    return volumes


def sr_of(xapi: Any, volume: Volume) -> str | None:
    """The SR that shows the volume's LUN (by its VDI uuid), or None."""
    refs = xapi.VDI.get_all_records_where(f'field "uuid" = "{volume.vdi_uuid}"')
    return next(iter(refs.values()))["SR"] if refs else None


def volume_vbds(xapi: Any, vm_ref: str) -> dict[str, dict[str, Any]]:
    """userdevice -> VBD record (with ``vdi_uuid``, ``sr_type``) of the VM's volumes."""
    out = {}
    for vbd in xapi.VM.get_VBDs(vm_ref):
        rec = xapi.VBD.get_record(vbd)
        if rec["other_config"].get("osvol") != "True":
            continue
        vdi = xapi.VDI.get_record(rec["VDI"])
        out[rec["userdevice"]] = dict(rec, ref=vbd, vdi_uuid=vdi["uuid"], sr=vdi["SR"],
                                      sr_type=xapi.SR.get_type(vdi["SR"]))
    return out


def iscsi_srs(xapi: Any) -> dict[str, dict[str, Any]]:
    """Every iSCSI SR of the pool."""
    return {ref: rec for ref, rec in xapi.SR.get_all_records().items() if rec["type"] == "iscsi"}
