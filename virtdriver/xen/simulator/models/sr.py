"""SR and PBD: scan, create, introduce, forget; PBD create, plug, unplug and destroy.

The PBD and SR state rules are xapi's (``xapi_pbd.ml``, ``xapi_sr.ml``,
``message_forwarding.ml``): one PBD per (SR, host) (``PBD_EXISTS``); an SR with an attached
PBD cannot be forgotten (``SR_HAS_PBD``) and an attached PBD cannot be destroyed
(``OPERATION_NOT_ALLOWED``); unplugging a PBD whose SR has a VDI attached is ``VDI_IN_USE``;
plug and unplug of a PBD already in that state do nothing; a scan needs a plugged PBD
(``SR_HAS_NO_PBDS``). What an iSCSI SR's driver does lives in :mod:`.iscsi`.
"""

from __future__ import annotations

from typing import Any

from ..context import Context, api
from ..errors import XapiError
from . import iscsi
from .generic import generic_create
from .vdi import coalesce, sr_usage

#: SR types whose driver the simulated hosts have (anything else: SR_UNKNOWN_DRIVER on plug).
KNOWN_DRIVERS = frozenset({"ext", "lvm", "nfs", "iso", "udev", "file", "dummy",
                           *iscsi.ISCSI_TYPES})


@api("SR.scan", long=True)
def sr_scan(ctx: Context, sr: str) -> None:
    """An iSCSI SR lists its target's LUNs; other SRs coalesce due chains and refresh
    usage."""
    rec = ctx.db.get("SR", sr)
    ctx.wait()
    if iscsi.is_iscsi(rec):
        iscsi.scan(ctx, sr)
        return
    coalesce(ctx, sr)
    with ctx.db.lock:
        sr_usage(ctx, sr)


@api("SR.forget")
def sr_forget(ctx: Context, sr: str) -> None:
    """Drop an SR record with its VDI records and PBDs (the storage is left alone);
    SR_HAS_PBD while a PBD is attached."""
    with ctx.db.lock:
        rec = ctx.db.get("SR", sr)
        if any(ctx.db.get("PBD", p)["currently_attached"] for p in rec["PBDs"]):
            raise XapiError("SR_HAS_PBD", sr)
        for vdi in list(rec["VDIs"]):
            ctx.db.destroy("VDI", vdi)
        for pbd in list(rec["PBDs"]):
            ctx.db.destroy("PBD", pbd)
        ctx.db.destroy("SR", sr)


@api("SR.introduce")
def sr_introduce(ctx: Context, uuid: str, name_label: str, name_description: str, type_: str,
                 content_type: str, shared: bool, sm_config: dict[str, str] | None = None) -> str:
    """Record an existing SR (no PBD, nothing attached); SR_UUID_EXISTS for a uuid the
    pool knows; an empty uuid gets a fresh one; the type is lower-cased."""
    with ctx.db.lock:
        if uuid and uuid in ctx.db.by_uuid["SR"]:
            raise XapiError("SR_UUID_EXISTS", uuid)
        return ctx.db.create("SR", {"uuid": uuid or "", "name_label": name_label,
                                    "name_description": name_description,
                                    "type": str(type_).lower(),
                                    "content_type": content_type, "shared": bool(shared),
                                    "sm_config": dict(sm_config or {}),
                                    "physical_size": "0"})


@api("SR.create")
def sr_create(ctx: Context, host: str, device_config: dict[str, str], physical_size: str,
              name_label: str, name_description: str, type_: str, content_type: str,
              shared: bool, sm_config: dict[str, str] | None = None) -> str:
    """A new SR with a plugged PBD on ``host``."""
    with ctx.db.lock:
        ctx.db.get("host", host)
        sr = ctx.db.create("SR", {"name_label": name_label, "name_description": name_description,
                                  "type": type_, "content_type": content_type,
                                  "shared": bool(shared), "sm_config": sm_config or {},
                                  "physical_size": str(physical_size)})
        ctx.db.create("PBD", {"host": host, "SR": sr, "device_config": device_config,
                              "currently_attached": True})
        return sr


@api("PBD.create")
def pbd_create(ctx: Context, record: dict[str, Any]) -> str:
    """A PBD (not attached) for ``record['SR']`` on ``record['host']``: PBD_EXISTS when the
    host has one for that SR; a ``SRmaster`` key is xapi's to set (VALUE_NOT_SUPPORTED)."""
    if not isinstance(record, dict):
        raise XapiError("FIELD_TYPE_ERROR", "record")
    device_config = record.get("device_config") or {}
    if isinstance(device_config, dict) and "SRmaster" in device_config:
        raise XapiError("VALUE_NOT_SUPPORTED", "device_config", "SRmaster",
                        "This key is for internal use only")
    with ctx.db.lock:
        sr, host = record.get("SR"), record.get("host")
        if ctx.db.exists("SR", sr):
            for pbd in ctx.db.get("SR", sr)["PBDs"]:
                if ctx.db.get("PBD", pbd)["host"] == host:
                    raise XapiError("PBD_EXISTS", sr, host, pbd)
        fields = {k: v for k, v in record.items() if k != "currently_attached"}
        return generic_create(ctx, "PBD", fields)


@api("PBD.plug", long=True)
def pbd_plug(ctx: Context, pbd: str) -> None:
    """Attach the SR on the PBD's host (nothing to do when attached): the driver must be
    known (SR_UNKNOWN_DRIVER), a non-shared SR attached elsewhere is SR_NOT_SHARABLE, and
    an iSCSI SR logs in to its target (SR_BACKEND_FAILURE_<n> when it cannot)."""
    with ctx.db.lock:
        rec = ctx.db.get("PBD", pbd)
        if rec["currently_attached"]:
            return
        sr_rec = ctx.db.get("SR", rec["SR"])
        if str(sr_rec["type"]).lower() not in KNOWN_DRIVERS:
            raise XapiError("SR_UNKNOWN_DRIVER", sr_rec["type"])
        if not sr_rec["shared"]:
            for other in sr_rec["PBDs"]:
                orec = ctx.db.get("PBD", other)
                if other != pbd and orec["currently_attached"] and orec["host"] != rec["host"]:
                    raise XapiError("SR_NOT_SHARABLE", rec["SR"], rec["host"])
        device_config = dict(rec["device_config"])
    ctx.wait()
    if iscsi.is_iscsi(sr_rec):
        iscsi.login(ctx, device_config)
    with ctx.db.lock:
        ctx.db.set("PBD", pbd, "currently_attached", True)


@api("PBD.unplug", long=True)
def pbd_unplug(ctx: Context, pbd: str) -> None:
    """Detach the SR on the PBD's host (nothing to do when detached); VDI_IN_USE while a
    VBD has one of the SR's VDIs attached."""
    with ctx.db.lock:
        rec = ctx.db.get("PBD", pbd)
        if not rec["currently_attached"]:
            return
        in_use = iscsi.vdis_in_use(ctx, rec["SR"], rec["host"])
        if in_use:
            # xapi lists every VDI in use; the declared form carries one and the operation
            raise XapiError("VDI_IN_USE", in_use[0], "PBD.unplug")
    ctx.wait()
    with ctx.db.lock:
        ctx.db.set("PBD", pbd, "currently_attached", False)


@api("PBD.destroy")
def pbd_destroy(ctx: Context, pbd: str) -> None:
    """Delete a detached PBD (OPERATION_NOT_ALLOWED while attached)."""
    with ctx.db.lock:
        if ctx.db.get("PBD", pbd)["currently_attached"]:
            raise XapiError("OPERATION_NOT_ALLOWED", "PBD is currently attached")
        ctx.db.destroy("PBD", pbd)
