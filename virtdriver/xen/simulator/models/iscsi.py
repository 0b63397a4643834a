"""iSCSI SRs (type ``iscsi``): the storage manager's LUN-per-VDI driver, as xapi drives it.

What a pool does with an SR of type ``iscsi`` (``xapi-project/sm`` ``RawISCSISR`` over
``LUNperVDI``; xapi's ``xapi_pbd.ml`` and ``xapi_sr.ml`` for the PBD and SR rules):

* ``PBD.plug`` logs in to the target named by the PBD's ``device_config`` (``target``,
  ``port``, ``targetIQN``, ``chapuser``/``chappassword``). A missing key, an unreachable
  portal, an unknown IQN or a CHAP mismatch is the storage manager's
  ``SR_BACKEND_FAILURE_<n>`` (:data:`FAILURES`), never echoing the configuration.
* ``SR.scan`` (only with a plugged PBD, else ``SR_HAS_NO_PBDS``) makes one managed VDI per
  LUN: uuid derived from the SCSI id, ``sm_config`` ``LUNid``/``SCSIid``/``backend-kind``,
  ``virtual_size`` the LUN's current size (so a grown LUN shows its new size); VDIs of
  LUNs that went away are dropped, unless a VBD has them attached.
* The driver cannot create, delete, clone, snapshot or resize a LUN
  (``SR_OPERATION_NOT_SUPPORTED``): LUNs belong to the volume service.
* Attaching a LUN's VDI whose LUN is gone or whose target is unreachable is
  ``SR_BACKEND_FAILURE_46`` (VDIUnavailable).

The LUNs themselves and their bytes live in the backend's :class:`Targets`, outside the
pool's records: ``SR.forget`` drops the records, never a LUN.
"""

from __future__ import annotations

from typing import Any

from ..context import Context
from ..errors import XapiError
from ..iscsi_targets import Lun, Target

#: SR types served by this module.
ISCSI_TYPES = frozenset({"iscsi"})

#: storage-manager error names -> their ``SR_BACKEND_FAILURE_<n>`` number and text
#: (``xapi-project/sm`` ``drivers/XE_SR_ERRORCODES.xml``).
FAILURES: dict[str, tuple[int, str]] = {
    "SRScan": (40, "The SR scan failed"),
    "VDIUnavailable": (46, "The VDI is not available"),
    "ISCSILogin": (68, "Unable to login to iSCSI session"),
    "ISCSIDiscovery": (83, "Unable to perform iSCSI discovery"),
    "ConfigTargetMissing": (95, "The target parameter is missing"),
    "ConfigTargetIQNMissing": (96, "The targetIQN parameter is missing"),
}


def failure(name: str, detail: str = "") -> XapiError:
    """The ``SR_BACKEND_FAILURE_<n>`` xapi relays for storage-manager error ``name``."""
    number, text = FAILURES[name]
    return XapiError(f"SR_BACKEND_FAILURE_{number}", "", f"{text} [opterr={detail}]"
                     if detail else text, "")


def is_iscsi(sr_record: dict[str, Any]) -> bool:
    """Whether an SR record is an iSCSI (LUN-per-VDI) SR."""
    return str(sr_record.get("type", "")).lower() in ISCSI_TYPES


def refuse_vdi_operation(ctx: Context, sr: str) -> None:
    """``SR_OPERATION_NOT_SUPPORTED`` for creating, deleting, cloning, snapshotting or
    resizing a VDI on an iSCSI SR (the driver has no such capability)."""
    if ctx.db.exists("SR", sr) and is_iscsi(ctx.db.get("SR", sr)):
        raise XapiError("SR_OPERATION_NOT_SUPPORTED", sr)


def login(ctx: Context, device_config: dict[str, str]) -> Target:
    """The target a PBD's ``device_config`` reaches, as the iSCSI initiator logs in."""
    host = device_config.get("target", "")
    iqn = device_config.get("targetIQN", "")
    if not host:
        raise failure("ConfigTargetMissing")
    if not iqn:
        raise failure("ConfigTargetIQNMissing")
    try:
        port = int(device_config.get("port") or 3260)
    except ValueError:
        raise failure("ISCSIDiscovery", "bad port") from None
    targets = ctx.backend.iscsi.at_portal(host, port)
    if not targets:
        raise failure("ISCSIDiscovery", f"no portal at {host}:{port}")
    for target in targets:
        if target.iqn == iqn:
            if not target.accepts(device_config.get("chapuser"),
                                  device_config.get("chappassword")):
                raise failure("ISCSILogin", "CHAP authentication failed")
            return target
    raise failure("ISCSILogin", "target not found at the portal")


def _plugged_pbd(ctx: Context, sr: str) -> dict[str, Any] | None:
    for pbd in ctx.db.get("SR", sr)["PBDs"]:
        rec = ctx.db.get("PBD", pbd)
        if rec["currently_attached"]:
            return rec
    return None


def scan(ctx: Context, sr: str) -> None:
    """One VDI per LUN of the SR's target; gone LUNs' VDIs dropped; sizes refreshed."""
    db = ctx.db
    with db.lock:
        pbd = _plugged_pbd(ctx, sr)
        if pbd is None:
            raise XapiError("SR_HAS_NO_PBDS", sr)
        device_config = dict(pbd["device_config"])
    try:
        target = login(ctx, device_config)
    except XapiError:
        raise failure("SRScan", "the target is unreachable") from None
    with ctx.backend.iscsi.lock:
        luns = {lun.vdi_uuid: lun for lun in target.luns.values()}
    with db.lock:
        present: set[str] = set()
        for vdi in list(db.get("SR", sr)["VDIs"]):
            rec = db.get("VDI", vdi)
            lun = luns.get(rec["uuid"])
            if lun is None:
                if not any(db.get("VBD", v)["currently_attached"] for v in rec["VBDs"]):
                    db.destroy("VDI", vdi)
                continue
            present.add(rec["uuid"])
            if rec["virtual_size"] != str(lun.size):
                db.update("VDI", vdi, virtual_size=str(lun.size),
                          physical_utilisation=str(lun.size))
        for vdi_uuid, lun in luns.items():
            if vdi_uuid not in present:
                _introduce_lun(ctx, sr, target, lun)
        total = str(sum(lun.size for lun in luns.values()))
        db.update("SR", sr, physical_size=total, physical_utilisation=total,
                  virtual_allocation=total)


def _introduce_lun(ctx: Context, sr: str, target: Target, lun: Lun) -> str:
    if ctx.db.by_uuid["VDI"].get(lun.vdi_uuid):
        # the LUN's VDI is on another SR record of this pool (another SR for the same
        # target): a VDI uuid is unique in a pool, so this SR does not list it again
        return ctx.db.by_uuid["VDI"][lun.vdi_uuid]
    return ctx.db.create("VDI", {
        "uuid": lun.vdi_uuid, "SR": sr, "name_label": "", "name_description": "",
        "type": "user", "managed": True, "location": lun.vdi_uuid,
        "virtual_size": str(lun.size), "physical_utilisation": str(lun.size),
        "sm_config": {"LUNid": str(lun.number), "SCSIid": lun.scsi_id,
                      "backend-kind": "vbd", "targetIQN": target.iqn}})


def assert_available(ctx: Context, vdi: str) -> None:
    """``SR_BACKEND_FAILURE_46`` when a LUN VDI's LUN is gone or its target unreachable
    (what attaching it to a running VM, or starting the VM, meets)."""
    db = ctx.db
    if not db.exists("VDI", vdi):
        return
    rec = db.get("VDI", vdi)
    if not db.exists("SR", rec["SR"]) or not is_iscsi(db.get("SR", rec["SR"])):
        return
    found = ctx.backend.iscsi.lun_of_vdi(rec["uuid"])
    if found is None or not found[0].online:
        raise failure("VDIUnavailable", "the LUN is not reachable")


def vdis_in_use(ctx: Context, sr: str, host: str) -> list[str]:
    """The SR's VDIs that a VBD of a VM on ``host`` has attached now (what ``PBD.unplug``
    of that host's PBD refuses on)."""
    db = ctx.db

    def attached_here(vbd: str) -> bool:
        rec = db.get("VBD", vbd)
        return bool(rec["currently_attached"]) and db.exists("VM", rec["VM"]) and \
            db.get("VM", rec["VM"])["resident_on"] == host

    return [vdi for vdi in db.get("SR", sr)["VDIs"]
            if any(attached_here(v) for v in db.get("VDI", vdi)["VBDs"])]
