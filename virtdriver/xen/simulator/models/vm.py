"""VM: the power-state machine of xapi.md 3.3, with xapi's check order and error parameters."""

from __future__ import annotations

from typing import Any

from ..context import Context, api
from ..db import copy_record, now
from ..errors import XapiError
from ..schema import NULL
from .generic import AFTER_CHANGE, generic_create
from .vbd import device_name
from .vdi import destroy_vdi_record, new_vdi

HALTED, PAUSED, SUSPENDED, RUNNING = "Halted", "Paused", "Suspended", "Running"
ANY = (HALTED, PAUSED, SUSPENDED, RUNNING)

#: op -> power states it is allowed from (the order is the order of the error's "expected").
ALLOWED: dict[str, tuple[str, ...]] = {
    "start": (HALTED,), "start_on": (HALTED,), "pause": (RUNNING,), "unpause": (PAUSED,),
    "suspend": (RUNNING,), "resume": (SUSPENDED,), "resume_on": (SUSPENDED,),
    "clean_shutdown": (RUNNING,), "clean_reboot": (RUNNING,),
    "hard_shutdown": (PAUSED, SUSPENDED, RUNNING), "hard_reboot": (PAUSED, RUNNING),
    "shutdown": (PAUSED, SUSPENDED, RUNNING), "destroy": (HALTED, SUSPENDED),
    "clone": (HALTED,), "copy": (HALTED,), "snapshot": ANY, "revert": ANY,
    "checkpoint": (PAUSED, SUSPENDED, RUNNING), "pool_migrate": (RUNNING,),
    "call_plugin": (RUNNING,), "send_sysrq": (RUNNING,),
    "migrate_send": (HALTED, SUSPENDED, RUNNING), "make_into_template": (HALTED,),
    "export": (HALTED, SUSPENDED), "provision": (HALTED,),
}
TEMPLATE_OK = {"clone", "copy", "export", "provision", "destroy", "snapshot", "revert"}
SNAPSHOT_OK = {"clone", "copy", "export", "destroy", "revert"}
CANCELLED_BY_HARD_SHUTDOWN = {"clean_shutdown", "clean_reboot", "hard_reboot", "pool_migrate",
                              "call_plugin", "shutdown", "suspend"}
MIB = 1024**2


def _overlap_ok(op: str, running: set[str]) -> bool:
    if not running:
        return True
    if op == "hard_shutdown":
        return "hard_shutdown" not in running
    if op == "hard_reboot":
        return not running & {"hard_shutdown", "hard_reboot"}
    if op in ("clone", "copy", "export"):
        return running <= {"clone", "copy", "export"}
    if op in ("snapshot", "checkpoint"):
        return running <= {"snapshot", "checkpoint"}
    return False


def check(ctx: Context, vm: str, op: str, strict: bool = True) -> dict[str, Any]:
    """Raise the first failing check for ``op`` on ``vm`` (blocked, power, busy, template)."""
    rec = ctx.db.get("VM", vm)
    if op in rec["blocked_operations"]:
        raise XapiError("OPERATION_BLOCKED", vm, rec["blocked_operations"][op])
    allowed = ALLOWED.get(op, ANY)
    if rec["power_state"] not in allowed:
        raise XapiError("VM_BAD_POWER_STATE", vm, ", ".join(s.lower() for s in allowed),
                        rec["power_state"].lower())
    current = rec["current_operations"]
    if current and not _overlap_ok(op, set(current.values())):
        task, other = next(iter(current.items()))
        raise XapiError("OTHER_OPERATION_IN_PROGRESS", "VM", vm, other, task)
    if rec["is_a_template"] and op not in TEMPLATE_OK:
        raise XapiError("VM_IS_TEMPLATE", vm, op)
    if rec["is_a_snapshot"] and op not in SNAPSHOT_OK:
        raise XapiError("VM_IS_SNAPSHOT", vm, op)
    if rec["is_control_domain"] and op not in ("snapshot", "call_plugin"):
        raise XapiError("OPERATION_NOT_ALLOWED", f"operation {op} on the control domain")
    return rec


def refresh_allowed(ctx: Context, vm: str) -> None:
    """Recompute allowed_operations as the ops that pass the checks now."""
    ops = []
    for op in ALLOWED:
        try:
            check(ctx, vm, op)
        except XapiError:
            continue
        ops.append(op)
    ctx.db.set("VM", vm, "allowed_operations", ops)


AFTER_CHANGE["VM"] = refresh_allowed


def begin(ctx: Context, vm: str, op: str) -> dict[str, Any]:
    """Check under the lock and mark the op as current; then take the method's delay."""
    with ctx.db.lock:
        check(ctx, vm, op)
        ctx.begin_op("VM", vm, op)
    ctx.wait()
    with ctx.db.lock:
        rec = ctx.db.get("VM", vm)
        allowed = ALLOWED.get(op, ANY)
        if rec["power_state"] not in allowed:  # changed by an overlapping op while we waited
            raise XapiError("VM_BAD_POWER_STATE", vm, ", ".join(s.lower() for s in allowed),
                            rec["power_state"].lower())
        return rec


# -- memory ----------------------------------------------------------------------------
def vm_memory(rec: dict[str, Any]) -> int:
    """Bytes a VM needs when running."""
    return int(rec["memory_static_max"])


def free_memory(ctx: Context, host: str) -> int:
    """Host memory minus what resident VMs use."""
    db = ctx.db
    metrics = db.get("host_metrics", db.get("host", host)["metrics"])
    used = sum(vm_memory(db.get("VM", v)) for v in db.get("host", host)["resident_VMs"])
    return int(metrics["memory_total"]) - used


def _update_free(ctx: Context, host: str) -> None:
    if ctx.db.exists("host", host):
        mref = ctx.db.get("host", host)["metrics"]
        ctx.db.update("host_metrics", mref, memory_free=str(free_memory(ctx, host)),
                      last_updated=now())


def _pick_host(ctx: Context, rec: dict[str, Any]) -> str:
    affinity = rec["affinity"]
    if ctx.db.exists("host", affinity):
        return affinity
    return ctx.backend.master()


# -- state transitions -----------------------------------------------------------------
def boot(ctx: Context, vm: str, host: str, paused: bool) -> None:
    """Make a halted/suspended VM live on ``host``."""
    db = ctx.db
    with db.lock:
        rec = db.get("VM", vm)
        db.get("host", host)
        for vbd in rec["VBDs"]:
            vdi = db.get("VBD", vbd)["VDI"]
            if db.exists("VDI", vdi):
                sr = db.get("VDI", vdi)["SR"]
                pbds = [db.get("PBD", p) for p in db.get("SR", sr)["PBDs"]]
                if not any(p["host"] == host and p["currently_attached"] for p in pbds):
                    raise XapiError("VM_REQUIRES_SR", vm, sr)
        needed, available = vm_memory(rec), free_memory(ctx, host)
        if needed > available:
            raise XapiError("HOST_NOT_ENOUGH_FREE_MEMORY", needed, available)
        domid = str(next(ctx.backend.domids))
        db.update("VM", vm, power_state=PAUSED if paused else RUNNING, domid=domid,
                  resident_on=host)
        if db.exists("VM_metrics", rec["metrics"]):
            db.update("VM_metrics", rec["metrics"], memory_actual=rec["memory_static_max"],
                      VCPUs_number=rec["VCPUs_at_startup"], start_time=now(),
                      current_domain_type=rec["domain_type"], last_updated=now())
        for vbd in rec["VBDs"]:
            vrec = db.get("VBD", vbd)
            db.update("VBD", vbd, currently_attached=not vrec["empty"] or vrec["type"] == "CD",
                      device=device_name(vrec["userdevice"]))
        for vif in rec["VIFs"]:
            db.set("VIF", vif, "currently_attached", True)
        address = db.get("host", host)["address"]
        console = db.create("console", {"VM": vm, "protocol": "rfb"})
        db.set("console", console, "location", f"https://{address}/console?ref={console}")
        db.create("console", {"VM": vm, "protocol": "vt100",
                              "location": f"https://{address}/console?ref={vm}&protocol=vt100"})
        _update_free(ctx, host)
        ctx.backend.guests.boot(vm, domid)
        refresh_allowed(ctx, vm)


def halt(ctx: Context, vm: str, state: str = HALTED) -> None:
    """Tear a VM's domain down (to Halted, or Suspended)."""
    db = ctx.db
    with db.lock:
        rec = db.get("VM", vm)
        host = rec["resident_on"]
        ctx.backend.guests.halt(vm)
        for console in list(rec["consoles"]):
            db.destroy("console", console)
        for vbd in rec["VBDs"]:
            db.set("VBD", vbd, "currently_attached", False)
        for vif in rec["VIFs"]:
            db.set("VIF", vif, "currently_attached", False)
        if db.exists("VM_guest_metrics", rec["guest_metrics"]):
            db.destroy("VM_guest_metrics", rec["guest_metrics"])
        if db.exists("VM_metrics", rec["metrics"]):
            db.update("VM_metrics", rec["metrics"], memory_actual="0", VCPUs_number="0")
        db.update("VM", vm, power_state=state, domid="-1", resident_on=NULL,
                  guest_metrics=NULL)
        _update_free(ctx, host)
        refresh_allowed(ctx, vm)


def _needs_pv(ctx: Context, vm: str, rec: dict[str, Any]) -> None:
    if rec["domain_type"] == "hvm" and not ctx.backend.guests.pv_drivers(vm):
        raise XapiError("VM_MISSING_PV_DRIVERS", vm)


def _drop_suspend_vdi(ctx: Context, vm: str) -> None:
    ref = ctx.db.get("VM", vm)["suspend_VDI"]
    if ctx.db.exists("VDI", ref):
        destroy_vdi_record(ctx, ref)
    ctx.db.set("VM", vm, "suspend_VDI", NULL)


# -- lifecycle calls -------------------------------------------------------------------
@api("VM.start", long=True)
def start(ctx: Context, vm: str, start_paused: bool, force: bool) -> None:
    """Halted -> Running (or Paused)."""
    rec = begin(ctx, vm, "start")
    boot(ctx, vm, _pick_host(ctx, rec), bool(start_paused))


@api("VM.start_on", long=True)
def start_on(ctx: Context, vm: str, host: str, start_paused: bool, force: bool) -> None:
    """Halted -> Running on a given host."""
    ctx.db.get("host", host)
    begin(ctx, vm, "start_on")
    boot(ctx, vm, host, bool(start_paused))


@api("VM.pause", long=True)
def pause(ctx: Context, vm: str) -> None:
    """Running -> Paused."""
    begin(ctx, vm, "pause")
    with ctx.db.lock:
        ctx.db.set("VM", vm, "power_state", PAUSED)
        refresh_allowed(ctx, vm)


@api("VM.unpause", long=True)
def unpause(ctx: Context, vm: str) -> None:
    """Paused -> Running."""
    begin(ctx, vm, "unpause")
    with ctx.db.lock:
        ctx.db.set("VM", vm, "power_state", RUNNING)
        refresh_allowed(ctx, vm)


@api("VM.suspend", long=True)
def suspend(ctx: Context, vm: str) -> None:
    """Running -> Suspended, with a suspend VDI."""
    rec = begin(ctx, vm, "suspend")
    with ctx.db.lock:
        pool = ctx.db.get("pool", ctx.backend.pool_ref())
        vdi = new_vdi(ctx, pool["suspend_image_SR"], f"Suspend image for {rec['name_label']}",
                      int(rec["memory_static_max"]), type_="suspend")
        halt(ctx, vm, SUSPENDED)
        ctx.db.set("VM", vm, "suspend_VDI", vdi)


def _resume(ctx: Context, vm: str, host: str | None, paused: bool, op: str) -> None:
    rec = begin(ctx, vm, op)
    with ctx.db.lock:
        boot(ctx, vm, host or _pick_host(ctx, rec), paused)
        _drop_suspend_vdi(ctx, vm)


@api("VM.resume", long=True)
def resume(ctx: Context, vm: str, start_paused: bool, force: bool) -> None:
    """Suspended -> Running (or Paused)."""
    _resume(ctx, vm, None, bool(start_paused), "resume")


@api("VM.resume_on", long=True)
def resume_on(ctx: Context, vm: str, host: str, start_paused: bool, force: bool) -> None:
    """Suspended -> Running on a given host."""
    ctx.db.get("host", host)
    _resume(ctx, vm, host, bool(start_paused), "resume_on")


@api("VM.clean_shutdown", long=True)
def clean_shutdown(ctx: Context, vm: str) -> None:
    """Running -> Halted via the guest (needs PV drivers on HVM)."""
    with ctx.db.lock:
        _needs_pv(ctx, vm, check(ctx, vm, "clean_shutdown"))
    begin(ctx, vm, "clean_shutdown")
    halt(ctx, vm)


@api("VM.hard_shutdown", long=True)
def hard_shutdown(ctx: Context, vm: str) -> None:
    """Paused/Suspended/Running -> Halted, cancelling in-flight clean operations."""
    with ctx.db.lock:
        rec = check(ctx, vm, "hard_shutdown")
        for task, op in rec["current_operations"].items():
            if op in CANCELLED_BY_HARD_SHUTDOWN and task in ctx.backend.cancel_events:
                ctx.backend.cancel_events[task].set()
    rec = begin(ctx, vm, "hard_shutdown")
    with ctx.db.lock:
        if rec["power_state"] == SUSPENDED:
            _drop_suspend_vdi(ctx, vm)
            ctx.db.set("VM", vm, "power_state", HALTED)
            refresh_allowed(ctx, vm)
        else:
            halt(ctx, vm)


@api("VM.shutdown", long=True)
def shutdown(ctx: Context, vm: str) -> None:
    """Clean shutdown, falling back to hard."""
    rec = begin(ctx, vm, "shutdown")
    with ctx.db.lock:
        if rec["power_state"] == SUSPENDED:
            _drop_suspend_vdi(ctx, vm)
            ctx.db.set("VM", vm, "power_state", HALTED)
            refresh_allowed(ctx, vm)
        else:
            halt(ctx, vm)


def _reboot(ctx: Context, vm: str) -> None:
    with ctx.db.lock:
        host = ctx.db.get("VM", vm)["resident_on"]
        halt(ctx, vm)
        boot(ctx, vm, host, False)


@api("VM.clean_reboot", long=True)
def clean_reboot(ctx: Context, vm: str) -> None:
    """Running -> Running with a new domid."""
    with ctx.db.lock:
        _needs_pv(ctx, vm, check(ctx, vm, "clean_reboot"))
    begin(ctx, vm, "clean_reboot")
    _reboot(ctx, vm)


@api("VM.hard_reboot", long=True)
def hard_reboot(ctx: Context, vm: str) -> None:
    """Paused/Running -> Running with a new domid."""
    begin(ctx, vm, "hard_reboot")
    _reboot(ctx, vm)


@api("VM.pool_migrate", long=True)
def pool_migrate(ctx: Context, vm: str, host: str, options: dict[str, str]) -> None:
    """Move a running VM to another host of the pool."""
    ctx.db.get("host", host)
    rec = begin(ctx, vm, "pool_migrate")
    with ctx.db.lock:
        if rec["resident_on"] != host:
            needed, available = vm_memory(rec), free_memory(ctx, host)
            if needed > available:
                raise XapiError("HOST_NOT_ENOUGH_FREE_MEMORY", needed, available)
            old = rec["resident_on"]
            ctx.db.set("VM", vm, "resident_on", host)
            _update_free(ctx, old)
            _update_free(ctx, host)
            address = ctx.db.get("host", host)["address"]
            for console in rec["consoles"]:
                loc = ctx.db.get("console", console)["location"]
                ctx.db.set("console", console, "location",
                           "https://" + address + "/" + loc.split("/", 3)[-1])


# -- records ---------------------------------------------------------------------------
@api("VM.create")
def create(ctx: Context, record: dict[str, Any]) -> str:
    """A new halted VM with its metrics object."""
    rec = {k: v for k, v in record.items()
           if k not in ("power_state", "domid", "resident_on", "is_control_domain")}
    with ctx.db.lock:
        vm = generic_create(ctx, "VM", rec)
        wanted = record.get("uuid")
        if isinstance(wanted, str) and wanted and wanted not in ctx.db.by_uuid["VM"]:
            ctx.db.set("VM", vm, "uuid", wanted)  # migration keeps the VM's identity
        ctx.db.set("VM", vm, "metrics", ctx.db.create("VM_metrics", {}))
        refresh_allowed(ctx, vm)
        return vm


def destroy_vm_record(ctx: Context, vm: str) -> None:
    """Delete a VM with its VBDs, VIFs, consoles and metrics (never its VDIs)."""
    db = ctx.db
    with db.lock:
        rec = db.get("VM", vm)
        for vbd in list(rec["VBDs"]):
            db.destroy("VBD", vbd)
        for vif in list(rec["VIFs"]):
            db.destroy("VIF", vif)
        for console in list(rec["consoles"]):
            db.destroy("console", console)
        for cls in ("VM_metrics", "VM_guest_metrics"):
            ref = rec["metrics" if cls == "VM_metrics" else "guest_metrics"]
            if db.exists(cls, ref):
                db.destroy(cls, ref)
        if db.exists("VDI", rec["suspend_VDI"]):
                    destroy_vdi_record(ctx, rec["suspend_VDI"])
        for snap in list(rec["snapshots"]):
            if db.exists("VM", snap):
                db.set("VM", snap, "snapshot_of", NULL)
        ctx.backend.guests.forget(vm)
        db.destroy("VM", vm)


@api("VM.destroy")
def destroy(ctx: Context, vm: str) -> None:
    """Halted/Suspended only; VDIs are kept."""
    with ctx.db.lock:
        rec = check(ctx, vm, "destroy")
        if rec["is_default_template"]:
            raise XapiError("OPERATION_NOT_ALLOWED", "default templates cannot be destroyed")
        destroy_vm_record(ctx, vm)


@api("VM.assert_operation_valid")
def assert_operation_valid(ctx: Context, vm: str, op: str) -> None:
    """Raise what ``op`` would raise now."""
    with ctx.db.lock:
        check(ctx, vm, op)


@api("VM.assert_can_boot_here")
def assert_can_boot_here(ctx: Context, vm: str, host: str) -> None:
    """Memory check against ``host``."""
    with ctx.db.lock:
        rec = ctx.db.get("VM", vm)
        needed, available = vm_memory(rec), free_memory(ctx, host)
        if needed > available:
            raise XapiError("HOST_NOT_ENOUGH_FREE_MEMORY", needed, available)


@api("VM.get_boot_record")
def get_boot_record(ctx: Context, vm: str) -> dict[str, Any]:
    """The record the VM booted with (the current record here)."""
    return copy_record(ctx.db.get("VM", vm))


@api("VM.get_allowed_VIF_devices")
def get_allowed_vif_devices(ctx: Context, vm: str) -> list[str]:
    """Free VIF device numbers 0-6."""
    with ctx.db.lock:
        used = {ctx.db.get("VIF", v)["device"] for v in ctx.db.get("VM", vm)["VIFs"]}
    return [str(i) for i in range(7) if str(i) not in used]


@api("VM.set_memory_limits")
def set_memory_limits(ctx: Context, vm: str, smin: str, smax: str, dmin: str,
                      dmax: str) -> None:
    """Set the four memory limits (Halted only for the static ones)."""
    with ctx.db.lock:
        ctx.db.get("VM", vm)
        ctx.db.update("VM", vm, memory_static_min=str(smin), memory_static_max=str(smax),
                      memory_dynamic_min=str(dmin), memory_dynamic_max=str(dmax))


@api("VM.query_data_source")
def query_data_source(ctx: Context, vm: str, name: str) -> float:
    """Synthetic RRD values for diagnostics."""
    rec = ctx.db.get("VM", vm)
    if rec["power_state"] != RUNNING:
        raise XapiError("VM_BAD_POWER_STATE", vm, "running", rec["power_state"].lower())
    if name == "memory":
        return float(rec["memory_static_max"])
    if name == "memory_internal_free":
        return float(int(rec["memory_static_max"]) // 2048)
    if name.startswith("cpu"):
        return 0.05
    if name.startswith(("vif_", "vbd_")):
        return 1024.0
    raise XapiError("INTERNAL_ERROR", f"data source {name} not found")


@api("VM.get_data_sources")
def get_data_sources(ctx: Context, vm: str) -> list[dict[str, Any]]:
    """The data sources a running VM offers."""
    rec = ctx.db.get("VM", vm)
    names = ["memory", "memory_internal_free"]
    names += [f"cpu{i}" for i in range(int(rec["VCPUs_max"]))]
    names += [f"vif_{ctx.db.get('VIF', v)['device']}_{d}" for v in rec["VIFs"]
              for d in ("rx", "tx")]
    names += [f"vbd_{ctx.db.get('VBD', v)['device']}_{d}" for v in rec["VBDs"]
              for d in ("read", "write")]
    live = rec["power_state"] == RUNNING
    return [{"name_label": n, "name_description": n, "enabled": True, "standard": True,
             "min": 0.0, "max": 1.0e12, "units": "",
             "value": query_data_source(ctx, vm, n) if live else 0.0} for n in names]
