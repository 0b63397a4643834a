"""Cross-pool migration: host.migrate_receive on the destination, VM.migrate_send on the
source, which copies the VM and its disk bytes over XML-RPC/HTTP to the destination URL using
the session the destination handed out, then deletes the VM (and its VDIs) at the source.

A VDI mapped to a destination SR with the uuid of its own SR is on storage both pools see
(an iSCSI SR introduced in each pool for the same target, as Nova's XenAPI driver does):
it is not copied; the destination's VDI of the same uuid is attached instead, and the
source keeps its record (the LUN belongs to the storage, not to either pool)."""

from __future__ import annotations

import http.client
import os
import ssl
import xmlrpc.client
from typing import Any
from urllib.parse import urlsplit

from ..context import Context, api
from ..errors import XapiError
from ..schema import NULL
from .vdi import destroy_vdi_record
from .vm import begin, check, destroy_vm_record, halt

#: VM fields carried to the destination
CARRIED = ("name_label", "name_description", "user_version", "memory_static_max",
           "memory_dynamic_max", "memory_dynamic_min", "memory_static_min", "memory_target",
           "VCPUs_params", "VCPUs_max", "VCPUs_at_startup", "actions_after_shutdown",
           "actions_after_reboot", "actions_after_crash", "PV_bootloader", "PV_kernel",
           "PV_ramdisk", "PV_args", "PV_bootloader_args", "PV_legacy_args", "HVM_boot_policy",
           "HVM_boot_params", "platform", "other_config", "xenstore_data", "blocked_operations",
           "tags", "domain_type", "is_a_template", "recommendations", "affinity")


@api("host.migrate_receive")
def migrate_receive(ctx: Context, host: str, network: str, options: dict[str, str]) -> dict:
    """Prepare to receive a VM: a fresh session and the URLs a sender needs."""
    db = ctx.db
    with db.lock:
        hrec = db.get("host", host)
        db.get("network", network)
        pool = db.get("pool", ctx.backend.pool_ref())
    session = ctx.backend.sessions.login(ctx.backend.config.username, "migrate_receive")
    url = ctx.backend.config.url
    address = hrec["address"]
    return {"session_id": session, "host": host, "SR": pool["default_SR"], "network": network,
            "master": url + "/", "url": url,
            "SM": f"{url}/services/SM?session_id={session}",
            "xenops": f"{url}/services/xenops?session_id={session}",
            "address": address}


def _proxy(dest: dict[str, str]) -> tuple[Any, str]:
    url = dest.get("master") or dest.get("url")
    session = dest.get("session_id")
    if not url or not session:
        raise XapiError("INVALID_VALUE", "dest", str(dest))
    context = ssl._create_unverified_context() if url.startswith("https") else None
    return xmlrpc.client.ServerProxy(url, allow_none=True, context=context), session


def _remote(proxy: Any, method: str, *args: Any) -> Any:
    fn = proxy
    for part in method.split("."):
        fn = getattr(fn, part)
    reply = fn(*args)
    if reply.get("Status") != "Success":
        desc = reply.get("ErrorDescription", ["INTERNAL_ERROR"])
        raise XapiError(str(desc[0]), *desc[1:])
    return reply["Value"]


def _plan(ctx: Context, vm: str, dest: dict[str, str], vdi_map: dict[str, str],
          vif_map: dict[str, str]) -> list[tuple[str, str]]:
    """(VDI, destination SR) for each disk; VDI_NOT_IN_MAP when no SR can be chosen."""
    db = ctx.db
    plan = []
    for vbd in db.get("VM", vm)["VBDs"]:
        vdi = db.get("VBD", vbd)["VDI"]
        if not db.exists("VDI", vdi):
            continue
        sr = vdi_map.get(vdi) or dest.get("SR")
        if not sr:
            raise XapiError("VDI_NOT_IN_MAP", vdi)
        plan.append((vdi, sr))
    return plan


@api("VM.assert_can_migrate")
def assert_can_migrate(ctx: Context, vm: str, dest: dict[str, str], live: bool,
                       vdi_map: dict[str, str], vif_map: dict[str, str],
                       options: dict[str, str], vgpu_map: dict[str, str] | None = None) -> None:
    """Power state, disk mapping, reachability and destination memory."""
    with ctx.db.lock:
        rec = check(ctx, vm, "migrate_send")
        _plan(ctx, vm, dest, vdi_map or {}, vif_map or {})
    proxy, session = _proxy(dest)
    try:
        free = int(_remote(proxy, "host.compute_free_memory", session, dest["host"]))
    except (OSError, xmlrpc.client.Error) as exc:
        raise XapiError("VM_MIGRATE_FAILED", vm, rec["resident_on"], dest.get("host", ""),
                        str(exc)) from None
    if rec["power_state"] == "Running" and int(rec["memory_static_max"]) > free:
        raise XapiError("HOST_NOT_ENOUGH_FREE_MEMORY", rec["memory_static_max"], free)


def _upload(ctx: Context, dest: dict[str, str], session: str, vdi_uuid: str,
            remote_vdi: str) -> None:
    url = urlsplit(dest.get("master") or dest["url"])
    path = ctx.backend.disks.path(vdi_uuid)
    size = os.path.getsize(path)
    if url.scheme == "https":
        conn: http.client.HTTPConnection = http.client.HTTPSConnection(
            url.hostname, url.port, timeout=60, context=ssl._create_unverified_context())
    else:
        conn = http.client.HTTPConnection(url.hostname, url.port, timeout=60)
    try:
        conn.putrequest("PUT", f"/import_raw_vdi?session_id={session}&vdi={remote_vdi}"
                               "&format=raw")
        conn.putheader("Content-Length", str(size))
        conn.endheaders()
        with open(path, "rb") as fh:
            while chunk := fh.read(1 << 20):
                conn.send(chunk)
        resp = conn.getresponse()
        resp.read()
        if resp.status != 200:
            raise XapiError("VM_MIGRATE_FAILED", "", "", "", f"disk upload: HTTP {resp.status}")
    finally:
        conn.close()


def _vif_network(vif: dict[str, Any], vif_map: dict[str, str], default: str) -> str:
    """vif_map is keyed by source VIF ref; its value is a destination network."""
    return vif_map.get(vif["_ref"], default)


@api("VM.migrate_send", long=True)
def migrate_send(ctx: Context, vm: str, dest: dict[str, str], live: bool,
                 vdi_map: dict[str, str], vif_map: dict[str, str], options: dict[str, str],
                 vgpu_map: dict[str, str] | None = None,
                 vdi_format_map: dict[str, str] | None = None) -> str:
    """Copy the VM with its disks to the destination pool, then delete it here."""
    db = ctx.db
    rec = begin(ctx, vm, "migrate_send")
    with db.lock:
        plan = _plan(ctx, vm, dest, vdi_map or {}, vif_map or {})
        record = {k: (v.copy() if isinstance(v, (dict, list)) else v) for k, v in rec.items()
                  if k in CARRIED}
        record["uuid"] = rec["uuid"]
        record["affinity"] = NULL
        vbds = [db.get("VBD", v).copy() for v in rec["VBDs"]]
        vifs = [{**db.get("VIF", v), "_ref": v} for v in rec["VIFs"]]
        vdis = {vdi: db.get("VDI", vdi).copy() for vdi, _ in plan}
        sr_uuids = {vdi: db.get("SR", rec["SR"])["uuid"] for vdi, rec in vdis.items()}
        source_host, was_live = rec["resident_on"], rec["power_state"] in ("Running", "Paused")
    proxy, session = _proxy(dest)
    try:
        remote_vm = _remote(proxy, "VM.create", session, record)
        remote_vdis: dict[str, str] = {}
        shared: set[str] = set()
        for vdi, sr in plan:
            vrec = vdis[vdi]
            if _remote(proxy, "SR.get_uuid", session, sr) == sr_uuids[vdi]:
                # the same storage on both sides: the destination scanned the LUN already
                remote_vdis[vdi] = _remote(proxy, "VDI.get_by_uuid", session, vrec["uuid"])
                shared.add(vdi)
                continue
            remote = _remote(proxy, "VDI.create", session, {
                "SR": sr, "virtual_size": vrec["virtual_size"], "type": vrec["type"],
                "name_label": vrec["name_label"], "name_description": vrec["name_description"],
                "sharable": vrec["sharable"], "read_only": vrec["read_only"],
                "other_config": vrec["other_config"], "xenstore_data": vrec["xenstore_data"],
                "sm_config": {k: v for k, v in vrec["sm_config"].items() if k != "vhd-parent"}})
            _upload(ctx, dest, session, vrec["uuid"], remote)
            remote_vdis[vdi] = remote
        for vbd in vbds:
            _remote(proxy, "VBD.create", session, {
                "VM": remote_vm, "VDI": remote_vdis.get(vbd["VDI"], NULL),
                "userdevice": vbd["userdevice"], "bootable": vbd["bootable"],
                "mode": vbd["mode"], "type": vbd["type"], "unpluggable": vbd["unpluggable"],
                "empty": vbd["VDI"] not in remote_vdis, "other_config": vbd["other_config"],
                "qos_algorithm_type": vbd["qos_algorithm_type"],
                "qos_algorithm_params": vbd["qos_algorithm_params"]})
        networks = _remote(proxy, "network.get_all_records_where", session,
                           'field "bridge" = "xenbr0"')
        default_net = next(iter(networks), NULL)
        for vif in vifs:
            _remote(proxy, "VIF.create", session, {
                "VM": remote_vm, "network": _vif_network(vif, vif_map or {}, default_net),
                "device": vif["device"], "MAC": vif["MAC"], "MTU": vif["MTU"],
                "other_config": vif["other_config"],
                "qos_algorithm_type": vif["qos_algorithm_type"],
                "qos_algorithm_params": vif["qos_algorithm_params"]})
        if was_live:
            _remote(proxy, "VM.start_on", session, remote_vm, dest["host"], False, False)
    except (OSError, xmlrpc.client.Error) as exc:
        raise XapiError("VM_MIGRATE_FAILED", vm, source_host, dest.get("host", ""),
                        str(exc)) from None
    with db.lock:
        if db.get("VM", vm)["power_state"] in ("Running", "Paused"):
            halt(ctx, vm)
        ctx.end_ops()
        destroy_vm_record(ctx, vm)
        for vdi, _ in plan:
            if db.exists("VDI", vdi) and vdi not in shared:
                destroy_vdi_record(ctx, vdi)
    return remote_vm
