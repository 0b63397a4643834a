"""VBD: create, hot-plug rules, CD insert and eject."""

from __future__ import annotations

from typing import Any

from ..context import Context, api
from ..errors import XapiError
from ..schema import NULL
from .generic import generic_create
from .iscsi import assert_available

RUNNING = "Running"


def device_name(userdevice: str) -> str:
    """``0`` -> ``xvda``."""
    try:
        return "xvd" + "abcdefghijklmnop"[int(userdevice)]
    except (ValueError, IndexError):
        return "xvd" + str(userdevice)


@api("VM.get_allowed_VBD_devices")
def get_allowed_vbd_devices(ctx: Context, vm: str) -> list[str]:
    """Free VBD userdevice numbers 0-15."""
    with ctx.db.lock:
        used = {ctx.db.get("VBD", v)["userdevice"] for v in ctx.db.get("VM", vm)["VBDs"]}
    return [str(i) for i in range(16) if str(i) not in used]


@api("VBD.create")
def vbd_create(ctx: Context, record: dict[str, Any]) -> str:
    """A VBD linking a VM to a VDI (or an empty CD drive)."""
    db = ctx.db
    with db.lock:
        vm = record.get("VM", NULL)
        db.get("VM", vm)
        vdi = record.get("VDI", NULL)
        if vdi not in ("", NULL):
            db.get("VDI", vdi)
        rec = dict(record)
        if rec.get("userdevice") == "autodetect" or "userdevice" not in rec:
            rec["userdevice"] = (get_allowed_vbd_devices(ctx, vm) or ["0"])[0]
        for other in db.get("VM", vm)["VBDs"]:
            if db.get("VBD", other)["userdevice"] == str(rec["userdevice"]):
                raise XapiError("DEVICE_ALREADY_EXISTS", rec["userdevice"])
        rec.pop("currently_attached", None)
        if vdi in ("", NULL):
            rec["empty"] = True
        vbd = generic_create(ctx, "VBD", rec)
        db.set("VBD", vbd, "device", device_name(db.get("VBD", vbd)["userdevice"]))
        return vbd


def _vbd_vm_running(ctx: Context, vbd: str) -> dict[str, Any]:
    rec = ctx.db.get("VBD", vbd)
    vm = ctx.db.get("VM", rec["VM"])
    if vm["power_state"] != RUNNING:
        raise XapiError("VM_BAD_POWER_STATE", rec["VM"], "running", vm["power_state"].lower())
    return rec


@api("VBD.plug", long=True)
def vbd_plug(ctx: Context, vbd: str) -> None:
    """Hot-plug: the VM must be running; DEVICE_ALREADY_ATTACHED when plugged."""
    with ctx.db.lock:
        rec = _vbd_vm_running(ctx, vbd)
        if rec["currently_attached"]:
            raise XapiError("DEVICE_ALREADY_ATTACHED", vbd)
        assert_available(ctx, rec["VDI"])
    ctx.wait()
    with ctx.db.lock:
        ctx.db.set("VBD", vbd, "currently_attached", True)


def _unplug(ctx: Context, vbd: str, force: bool) -> None:
    with ctx.db.lock:
        rec = _vbd_vm_running(ctx, vbd)
        if not rec["currently_attached"]:
            raise XapiError("DEVICE_ALREADY_DETACHED", vbd)
        if not rec["unpluggable"] and not force:
            raise XapiError("VBD_NOT_UNPLUGGABLE", vbd)
    ctx.wait()
    with ctx.db.lock:
        ctx.db.set("VBD", vbd, "currently_attached", False)


@api("VBD.unplug", long=True)
def vbd_unplug(ctx: Context, vbd: str) -> None:
    """Hot-unplug (VBD_NOT_UNPLUGGABLE, DEVICE_ALREADY_DETACHED)."""
    _unplug(ctx, vbd, False)


@api("VBD.unplug_force", long=True)
def vbd_unplug_force(ctx: Context, vbd: str) -> None:
    """Unplug even when not unpluggable."""
    _unplug(ctx, vbd, True)


@api("VBD.destroy")
def vbd_destroy(ctx: Context, vbd: str) -> None:
    """Delete a detached VBD."""
    with ctx.db.lock:
        if ctx.db.get("VBD", vbd)["currently_attached"]:
            raise XapiError("DEVICE_ALREADY_ATTACHED", vbd)
        ctx.db.destroy("VBD", vbd)


@api("VBD.insert")
def vbd_insert(ctx: Context, vbd: str, vdi: str) -> None:
    """Put a disc in an empty CD drive."""
    with ctx.db.lock:
        rec = ctx.db.get("VBD", vbd)
        ctx.db.get("VDI", vdi)
        if rec["type"] != "CD":
            raise XapiError("VBD_NOT_REMOVABLE_MEDIA", vbd)
        if not rec["empty"]:
            raise XapiError("VBD_NOT_EMPTY", vbd)
        ctx.db.update("VBD", vbd, VDI=vdi, empty=False)


@api("VBD.eject")
def vbd_eject(ctx: Context, vbd: str) -> None:
    """Remove the disc from a CD drive."""
    with ctx.db.lock:
        rec = ctx.db.get("VBD", vbd)
        if rec["type"] != "CD":
            raise XapiError("VBD_NOT_REMOVABLE_MEDIA", vbd)
        if rec["empty"]:
            raise XapiError("VBD_IS_EMPTY", vbd)
        ctx.db.update("VBD", vbd, VDI=NULL, empty=True)
