"""VDI: records with their bytes, VDI_IN_USE rules, snapshot chains with coalesce, copies."""

from __future__ import annotations

import contextlib
import os
import threading
import time
from typing import Any

from ..context import Context, api
from ..db import now
from ..errors import XapiError
from ..schema import NULL
from .generic import coerce
from .iscsi import refuse_vdi_operation


def new_vdi(ctx: Context, sr: str, name: str, size: int, type_: str = "user",
            **fields: Any) -> str:
    """A VDI record plus its sparse file."""
    db = ctx.db
    with db.lock:
        srec = db.get("SR", sr)
        if type_ != "suspend" and srec["content_type"] != "iso":
            # thin provisioning: snapshots and hidden base copies do not count
            used = sum(int(r["virtual_size"]) for r in (db.get("VDI", v) for v in srec["VDIs"])
                       if r["managed"] and not r["is_a_snapshot"])
            if used + size > int(srec["physical_size"]):
                raise XapiError("SR_FULL", used + size, srec["physical_size"])
        vdi = db.create("VDI", {"SR": sr, "name_label": name, "virtual_size": str(size),
                                "type": type_, **fields})
        rec = db.get("VDI", vdi)
        if not rec["location"]:
            db.set("VDI", vdi, "location", rec["uuid"])
        ctx.backend.disks.create(rec["uuid"], size)
        sr_usage(ctx, sr)
        return vdi


def sr_usage(ctx: Context, sr: str) -> None:
    db = ctx.db
    if not db.exists("SR", sr):
        return
    total = sum(int(db.get("VDI", v)["virtual_size"]) for v in db.get("SR", sr)["VDIs"])
    db.update("SR", sr, virtual_allocation=str(total), physical_utilisation=str(total))


def destroy_vdi_record(ctx: Context, vdi: str) -> None:
    """Delete a VDI, its file, and the (detached) VBDs pointing at it become empty."""
    db = ctx.db
    with db.lock:
        rec = db.get("VDI", vdi)
        for vbd in list(rec["VBDs"]):
            db.update("VBD", vbd, VDI=NULL, empty=True)
        for snap in list(rec["snapshots"]):
            if db.exists("VDI", snap):
                db.set("VDI", snap, "snapshot_of", NULL)
        sr = rec["SR"]
        db.destroy("VDI", vdi)
        ctx.backend.disks.delete(rec["uuid"])
        sr_usage(ctx, sr)
    schedule_coalesce(ctx, sr)


def _in_use(ctx: Context, vdi: str) -> bool:
    return any(ctx.db.get("VBD", v)["currently_attached"] for v in ctx.db.get("VDI", vdi)["VBDs"])


@api("VDI.create")
def vdi_create(ctx: Context, record: dict[str, Any]) -> str:
    """A new VDI on ``record['SR']`` of ``virtual_size`` bytes."""
    sr = record.get("SR", NULL)
    if not ctx.db.exists("SR", sr):
        raise XapiError("HANDLE_INVALID", "SR", sr)
    refuse_vdi_operation(ctx, sr)
    size = int(coerce("VDI", "virtual_size", record.get("virtual_size", "0")))
    rest = {k: coerce("VDI", k, v) for k, v in record.items()
            if k not in ("SR", "virtual_size", "uuid", "VBDs") and k in _VDI_FIELDS}
    return new_vdi(ctx, sr, rest.pop("name_label", ""), size, rest.pop("type", "user"), **rest)


_VDI_FIELDS = {"name_label", "name_description", "type", "sharable", "read_only",
               "other_config", "xenstore_data", "sm_config", "tags", "location"}


@api("VDI.destroy", long=True)
def vdi_destroy(ctx: Context, vdi: str) -> None:
    """VDI_IN_USE when a VBD has it attached."""
    with ctx.db.lock:
        refuse_vdi_operation(ctx, ctx.db.get("VDI", vdi)["SR"])
        if _in_use(ctx, vdi):
            raise XapiError("VDI_IN_USE", vdi, "destroy")
    ctx.wait()
    destroy_vdi_record(ctx, vdi)


@api("VDI.forget")
def vdi_forget(ctx: Context, vdi: str) -> None:
    """Drop the record but keep the bytes."""
    with ctx.db.lock:
        if _in_use(ctx, vdi):
            raise XapiError("VDI_IN_USE", vdi, "forget")
        ctx.db.destroy("VDI", vdi)


@api("VDI.introduce")
def vdi_introduce(ctx: Context, uuid: str, name_label: str, name_description: str, sr: str,
                  type_: str, sharable: bool, read_only: bool, other_config: dict[str, str],
                  location: str, xenstore_data: dict[str, str] | None = None,
                  sm_config: dict[str, str] | None = None, managed: bool = True,
                  virtual_size: str = "0", physical_utilisation: str = "0",
                  metadata_of_pool: str = NULL, is_a_snapshot: bool = False,
                  snapshot_time: Any = None, snapshot_of: str = NULL) -> str:
    """Re-create a record for bytes the SR already holds (by uuid/location): the SR must
    be attached on the master (SR_HAS_NO_PBDS, ``sm.ml``), and a location is unique in an
    SR (LOCATION_NOT_UNIQUE)."""
    with ctx.db.lock:
        srec = ctx.db.get("SR", sr)
        master = ctx.backend.master()
        if not any(ctx.db.get("PBD", p)["host"] == master
                   and ctx.db.get("PBD", p)["currently_attached"] for p in srec["PBDs"]):
            raise XapiError("SR_HAS_NO_PBDS", sr)
        if location and any(ctx.db.get("VDI", v)["location"] == location
                            for v in srec["VDIs"]):
            raise XapiError("LOCATION_NOT_UNIQUE", sr, location)
        file_uuid = uuid or location
        path = ctx.backend.disks.path(file_uuid)
        size = os.path.getsize(path) if os.path.exists(path) else int(virtual_size or 0)
        return ctx.db.create("VDI", {
            "uuid": file_uuid, "name_label": name_label, "name_description": name_description,
            "SR": sr, "type": coerce("VDI", "type", type_), "sharable": bool(sharable),
            "read_only": bool(read_only), "other_config": other_config,
            "location": location or file_uuid, "xenstore_data": xenstore_data or {},
            "sm_config": sm_config or {}, "virtual_size": str(size), "managed": bool(managed)})


def clone_vdi(ctx: Context, vdi: str, sr: str | None = None, snapshot: bool = False,
              name: str | None = None) -> str:
    """A full (sparse) copy of a VDI, optionally as a snapshot, on ``sr``."""
    db = ctx.db
    with db.lock:
        rec = db.get("VDI", vdi)
        target = sr or rec["SR"]
        fields: dict[str, Any] = {
            "name_description": rec["name_description"], "other_config": dict(rec["other_config"]),
            "sharable": rec["sharable"], "read_only": rec["read_only"],
            "xenstore_data": dict(rec["xenstore_data"]), "tags": list(rec["tags"])}
        if snapshot:
            fields.update(is_a_snapshot=True, snapshot_of=vdi, snapshot_time=now())
        new = new_vdi(ctx, target, rec["name_label"] if name is None else name,
                      int(rec["virtual_size"]), rec["type"], **fields)
        ctx.backend.disks.copy(rec["uuid"], db.get("VDI", new)["uuid"])
        return new


@api("VDI.snapshot", long=True)
def vdi_snapshot(ctx: Context, vdi: str, driver_params: dict[str, str] | None = None) -> str:
    """Snapshot with a VHD chain: a hidden base copy becomes the parent of both VDIs."""
    refuse_vdi_operation(ctx, ctx.db.get("VDI", vdi)["SR"])
    ctx.wait()
    return snapshot_chain(ctx, vdi)


def snapshot_chain(ctx: Context, vdi: str) -> str:
    """Insert a base copy under ``vdi`` and make a snapshot VDI next to it."""
    db = ctx.db
    with db.lock:
        rec = db.get("VDI", vdi)
        base = clone_vdi(ctx, vdi, name="base copy")
        base_sm = dict(rec["sm_config"])
        db.update("VDI", base, managed=False, sm_config=base_sm, read_only=True)
        base_uuid = db.get("VDI", base)["uuid"]
        sm = dict(rec["sm_config"])
        sm["vhd-parent"] = base_uuid
        db.set("VDI", vdi, "sm_config", dict(sm))
        snap = clone_vdi(ctx, vdi, snapshot=True)
        db.set("VDI", snap, "sm_config", dict(sm))
        ctx.backend.coalesce_due[base] = time.monotonic() + ctx.backend.config.coalesce_delay
    schedule_coalesce(ctx, rec["SR"])
    return snap


def coalesce(ctx: Context, sr: str) -> None:
    """Merge base copies that are due: into their parent when it has one child, or drop."""
    db = ctx.db
    with db.lock:
        changed = True
        while changed:
            changed = False
            vdis = {r: db.get("VDI", r) for r in db.get("SR", sr)["VDIs"]} \
                if db.exists("SR", sr) else {}
            by_uuid = {rec["uuid"]: ref for ref, rec in vdis.items()}
            children: dict[str, list[str]] = {}
            for ref, rec in vdis.items():
                parent = rec["sm_config"].get("vhd-parent")
                if parent in by_uuid:
                    children.setdefault(by_uuid[parent], []).append(ref)
            for ref, rec in vdis.items():
                if rec["managed"] or time.monotonic() < ctx.backend.coalesce_due.get(ref, 0):
                    continue
                kids = children.get(ref, [])
                parent = rec["sm_config"].get("vhd-parent")
                parent_ref = by_uuid.get(parent) if parent else None
                if len(kids) > 1 or (parent_ref and len(children.get(parent_ref, [])) > 1):
                    continue
                for kid in kids:
                    sm = dict(db.get("VDI", kid)["sm_config"])
                    if parent_ref:
                        sm["vhd-parent"] = parent
                    else:
                        sm.pop("vhd-parent", None)
                    db.set("VDI", kid, "sm_config", sm)
                ctx.backend.coalesce_due.pop(ref, None)
                destroy_vdi_record(ctx, ref)
                changed = True
                break


def schedule_coalesce(ctx: Context, sr: str) -> None:
    """Run coalesce on a timer after the configured delay."""
    backend = ctx.backend
    if backend.stopping.is_set() or not backend.coalesce_due:
        return
    delay = backend.config.coalesce_delay

    def run() -> None:
        if not backend.stopping.is_set():
            with contextlib.suppress(Exception):
                coalesce(Context(backend, "SR.scan", None), sr)

    timer = threading.Timer(delay + 0.01, run)
    timer.daemon = True
    backend.timers.append(timer)
    backend.timers[:] = [t for t in backend.timers if t.is_alive() or t is timer]
    timer.start()


@api("VDI.clone", long=True)
def vdi_clone(ctx: Context, vdi: str, driver_params: dict[str, str] | None = None) -> str:
    """A writable copy of the VDI on the same SR."""
    refuse_vdi_operation(ctx, ctx.db.get("VDI", vdi)["SR"])
    ctx.wait()
    return clone_vdi(ctx, vdi)


@api("VDI.copy", long=True)
def vdi_copy(ctx: Context, vdi: str, sr: str = NULL, base_vdi: str = NULL,
             into_vdi: str = NULL) -> str:
    """Copy a VDI to ``sr`` (NULL: its own SR), or into an existing VDI."""
    source = ctx.db.get("VDI", vdi)
    if sr in ("", NULL):
        sr = source["SR"]
    ctx.db.get("SR", sr)
    if into_vdi in ("", NULL):
        refuse_vdi_operation(ctx, sr)  # a copy would be a new VDI on that SR
    ctx.wait()
    with ctx.db.lock:
        if into_vdi not in ("", NULL):
            src = ctx.db.get("VDI", vdi)["uuid"]
            ctx.backend.disks.copy(src, ctx.db.get("VDI", into_vdi)["uuid"])
            return into_vdi
        return clone_vdi(ctx, vdi, sr)


def _resize(ctx: Context, vdi: str, size: str, online: bool) -> None:
    with ctx.db.lock:
        rec = ctx.db.get("VDI", vdi)
        refuse_vdi_operation(ctx, rec["SR"])
        if not online and _in_use(ctx, vdi):
            raise XapiError("VDI_IN_USE", vdi, "resize")
        new = int(size)
        if new < int(rec["virtual_size"]):
            raise XapiError("VDI_TOO_SMALL", vdi, rec["virtual_size"])
    ctx.wait()
    with ctx.db.lock:
        ctx.backend.disks.resize(rec["uuid"], new)
        ctx.db.set("VDI", vdi, "virtual_size", str(new))
        sr_usage(ctx, rec["SR"])


@api("VDI.resize", long=True)
def vdi_resize(ctx: Context, vdi: str, size: str) -> None:
    """Grow an unattached VDI."""
    _resize(ctx, vdi, size, False)


@api("VDI.resize_online", long=True)
def vdi_resize_online(ctx: Context, vdi: str, size: str) -> None:
    """Grow a VDI, attached or not."""
    _resize(ctx, vdi, size, True)
