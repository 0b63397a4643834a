"""VM.clone, VM.copy, VM.snapshot, VM.checkpoint, VM.revert: whole-VM copies with disks."""

from __future__ import annotations

from ..context import Context, api
from ..db import now
from ..schema import NULL
from .vdi import clone_vdi, snapshot_chain
from .vm import begin, halt, refresh_allowed

#: fields that describe identity, state or links and are never copied
SKIP = {"uuid", "power_state", "allowed_operations", "current_operations", "resident_on",
        "domid", "consoles", "VIFs", "VBDs", "VUSBs", "VTPMs", "VGPUs", "crash_dumps",
        "metrics", "guest_metrics", "suspend_VDI", "snapshots", "snapshot_of", "is_a_snapshot",
        "snapshot_time", "parent", "children", "attached_PCIs", "is_control_domain",
        "is_default_template", "scheduled_to_be_resident_on"}


def copy_vm(ctx: Context, vm: str, name: str, mode: str, sr: str | None = None,
            ignore_vdis: list[str] | None = None) -> str:
    """mode: ``clone`` (CoW disks), ``copy`` (full disks to ``sr``), ``snapshot``."""
    db = ctx.db
    with db.lock:
        rec = db.get("VM", vm)
        fields = {k: (v.copy() if isinstance(v, (dict, list)) else v)
                  for k, v in rec.items() if k not in SKIP}
        fields["name_label"] = name
        fields["power_state"] = "Halted"
        if mode == "snapshot":
            fields.update(is_a_snapshot=True, is_a_template=True, snapshot_of=vm,
                          snapshot_time=now())
        fields["metrics"] = db.create("VM_metrics", {})
        new = db.create("VM", fields)
        if mode == "snapshot":
            db.set("VM", new, "snapshot_of", vm)
        for vbd in rec["VBDs"]:
            vbd_rec = db.get("VBD", vbd)
            vdi = vbd_rec["VDI"]
            new_vdi = NULL
            if db.exists("VDI", vdi) and vdi not in (ignore_vdis or []):
                if mode == "snapshot":
                    new_vdi = snapshot_chain(ctx, vdi)
                else:
                    new_vdi = clone_vdi(ctx, vdi, sr if mode == "copy" else None)
            elif vbd_rec["type"] != "CD" and vdi not in ("", NULL):
                continue
            copy = {k: (v.copy() if isinstance(v, (dict, list)) else v)
                    for k, v in vbd_rec.items()
                    if k not in ("uuid", "VM", "VDI", "currently_attached", "metrics",
                                 "current_operations", "allowed_operations")}
            copy.update(VM=new, VDI=new_vdi, empty=new_vdi == NULL)
            db.create("VBD", copy)
        for vif in rec["VIFs"]:
            vif_rec = db.get("VIF", vif)
            copy = {k: (v.copy() if isinstance(v, (dict, list)) else v)
                    for k, v in vif_rec.items()
                    if k not in ("uuid", "VM", "currently_attached", "metrics",
                                 "current_operations", "allowed_operations")}
            copy["VM"] = new
            db.create("VIF", copy)
        refresh_allowed(ctx, new)
        return new


@api("VM.clone", long=True)
def clone(ctx: Context, vm: str, new_name: str) -> str:
    """A halted copy sharing the disks copy-on-write (full sparse copies here)."""
    begin(ctx, vm, "clone")
    return copy_vm(ctx, vm, new_name, "clone")


@api("VM.copy", long=True)
def copy(ctx: Context, vm: str, new_name: str, sr: str) -> str:
    """A halted full copy with disks on ``sr`` (NULL: the same SRs)."""
    if sr not in ("", NULL):
        ctx.db.get("SR", sr)
    begin(ctx, vm, "copy")
    return copy_vm(ctx, vm, new_name, "copy", sr if sr not in ("", NULL) else None)


@api("VM.snapshot", long=True)
def snapshot(ctx: Context, vm: str, new_name: str, ignore_vdis: list[str] | None = None) -> str:
    """A snapshot VM (a template) with snapshot VDIs, from any power state."""
    begin(ctx, vm, "snapshot")
    return copy_vm(ctx, vm, new_name, "snapshot", ignore_vdis=ignore_vdis)


@api("VM.checkpoint", long=True)
def checkpoint(ctx: Context, vm: str, new_name: str) -> str:
    """A snapshot of a live VM (memory image not modelled)."""
    begin(ctx, vm, "checkpoint")
    return copy_vm(ctx, vm, new_name, "snapshot")


@api("VM.revert", long=True)
def revert(ctx: Context, snapshot_vm: str) -> None:
    """Revert the snapshotted VM's disks to the snapshot's contents (VM ends Halted)."""
    db = ctx.db
    begin(ctx, snapshot_vm, "revert")
    with db.lock:
        target = db.get("VM", snapshot_vm)["snapshot_of"]
        trec = db.get("VM", target)
        if trec["power_state"] in ("Running", "Paused"):
            halt(ctx, target)
        snap_disks = {db.get("VBD", v)["userdevice"]: db.get("VBD", v)["VDI"]
                      for v in db.get("VM", snapshot_vm)["VBDs"]}
        for vbd in trec["VBDs"]:
            vbd_rec = db.get("VBD", vbd)
            src = snap_disks.get(vbd_rec["userdevice"])
            if db.exists("VDI", src) and db.exists("VDI", vbd_rec["VDI"]):
                ctx.backend.disks.copy(db.get("VDI", src)["uuid"],
                                       db.get("VDI", vbd_rec["VDI"])["uuid"])

