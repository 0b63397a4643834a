"""SR and PBD: scan, create, introduce, forget, plug and unplug."""

from __future__ import annotations

from ..context import Context, api
from .vdi import coalesce, sr_usage


@api("SR.scan", long=True)
def sr_scan(ctx: Context, sr: str) -> None:
    """Coalesce due chains and refresh usage."""
    ctx.db.get("SR", sr)
    ctx.wait()
    coalesce(ctx, sr)
    with ctx.db.lock:
        sr_usage(ctx, sr)


@api("SR.forget")
def sr_forget(ctx: Context, sr: str) -> None:
    """Drop an SR record with its VDI records and PBDs."""
    with ctx.db.lock:
        rec = ctx.db.get("SR", sr)
        for vdi in list(rec["VDIs"]):
            ctx.db.destroy("VDI", vdi)
        for pbd in list(rec["PBDs"]):
            ctx.db.destroy("PBD", pbd)
        ctx.db.destroy("SR", sr)


@api("SR.introduce")
def sr_introduce(ctx: Context, uuid: str, name_label: str, name_description: str, type_: str,
                 content_type: str, shared: bool, sm_config: dict[str, str] | None = None) -> str:
    """Record an existing SR."""
    with ctx.db.lock:
        return ctx.db.create("SR", {"uuid": uuid, "name_label": name_label,
                                    "name_description": name_description, "type": type_,
                                    "content_type": content_type, "shared": bool(shared),
                                    "sm_config": sm_config or {}})


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


@api("PBD.plug")
def pbd_plug(ctx: Context, pbd: str) -> None:
    """Attach the SR on its host."""
    with ctx.db.lock:
        ctx.db.get("PBD", pbd)
        ctx.db.set("PBD", pbd, "currently_attached", True)


@api("PBD.unplug")
def pbd_unplug(ctx: Context, pbd: str) -> None:
    """Detach the SR on its host."""
    with ctx.db.lock:
        ctx.db.get("PBD", pbd)
        ctx.db.set("PBD", pbd, "currently_attached", False)
