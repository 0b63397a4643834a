"""Facts about instances: power state, lists, diagnostics, counters, consoles, usage.

Reads are batched where XAPI allows: ``VM.get_data_sources`` gives every RRD value of a VM
in one call, ``VM.get_all_records_where`` every instance VM in one call. Console logs and
bandwidth counters live in dom0 only, so those two go through Nova's dom0 plugins.
"""

from __future__ import annotations

import base64
import binascii
import json
import urllib.parse
import zlib
from collections.abc import Iterable
from typing import Any

from virtdriver.common import exceptions as exc
from virtdriver.common.model import (
    ConsoleInfo,
    CpuDiagnostics,
    Diagnostics,
    DiskDiagnostics,
    InstanceInfo,
    MemoryDiagnostics,
    NicDiagnostics,
    field_of,
)
from virtdriver.xen import vm_utils
from virtdriver.xen.backend import XenBackend
from virtdriver.xen.session import XenAPISession

MAX_CONSOLE_BYTES = 100 * 1024


def _data_sources(session: XenAPISession, vm_ref: str) -> dict[str, float]:
    try:
        sources = session.call("VM.get_data_sources", vm_ref)
    except exc.BackendError as error:
        if error.code == "VM_BAD_POWER_STATE":
            return {}
        raise
    values = {}
    for source in sources:
        try:
            values[source["name_label"]] = float(source.get("value", 0.0))
        except (TypeError, ValueError):
            continue
    return values


def _diagnostics(session: XenAPISession, vm_ref: str) -> dict[str, Any]:
    """Every data source of the VM (empty for a VM that is not running)."""
    return dict(sorted(_data_sources(session, vm_ref).items()))


def _instance_diagnostics(session: XenAPISession, vm_ref: str,
                          instance: Any) -> Diagnostics:
    """Nova's common diagnostics shape from the VM record and its data sources."""
    record = session.call("VM.get_record", vm_ref)
    values = _data_sources(session, vm_ref)
    state = vm_utils.power_state_of(record["power_state"])
    diags = Diagnostics(state=state.name.lower(), driver="xenapi", hypervisor="xen",
                        config_drive=bool(field_of(instance, "config_drive", False)))
    vcpus = int(record.get("VCPUs_max") or 0)
    diags.num_cpus = vcpus
    diags.cpu_details = [CpuDiagnostics(id=i, utilisation=_percent(values.get(f"cpu{i}")))
                         for i in range(vcpus)]
    for vif_ref in record.get("VIFs", []):
        vif = session.call("VIF.get_record", vif_ref)
        device = vif["device"]
        diags.nic_details.append(NicDiagnostics(
            mac_address=vif["MAC"], rx_rate=values.get(f"vif_{device}_rx"),
            tx_rate=values.get(f"vif_{device}_tx")))
    for vbd_ref in record.get("VBDs", []):
        vbd = session.call("VBD.get_record", vbd_ref)
        device = vbd.get("device") or vbd["userdevice"]
        read = values.get(f"vbd_{device}_read")
        write = values.get(f"vbd_{device}_write")
        diags.disk_details.append(DiskDiagnostics(
            read_bytes=None if read is None else int(read),
            write_bytes=None if write is None else int(write)))
    diags.num_nics = len(diags.nic_details)
    diags.num_disks = len(diags.disk_details)
    maximum = int(record.get("memory_static_max") or 0) // vm_utils.MiB
    free_kib = values.get("memory_internal_free")
    used = None if free_kib is None else max(0, maximum - int(free_kib) // 1024)
    diags.memory_details = MemoryDiagnostics(maximum=maximum, used=used)
    return diags


def _percent(value: float | None) -> float | None:
    return None if value is None else round(value * 100, 2)


def _console_output(session: XenAPISession, vm_ref: str) -> bytes:
    """The tail of the domain's console log (console plugin: base64 of zlib)."""
    domid = session.call("VM.get_domid", vm_ref)
    if domid in ("-1", ""):
        other = session.call("VM.get_other_config", vm_ref)
        domid = other.get("last_dom_id", "-1")
    if domid in ("-1", ""):
        return b""
    raw = session.call("host.call_plugin", session.host_ref, "console.py",
                       "get_console_log", {"dom_id": str(domid)})
    try:
        data = zlib.decompress(base64.b64decode(raw, validate=True))
    except (binascii.Error, zlib.error, ValueError):
        data = raw.encode() if isinstance(raw, str) else bytes(raw)
    return data[-MAX_CONSOLE_BYTES:]


def _vnc_console(session: XenAPISession, vm_ref: str, instance_uuid: str) -> ConsoleInfo:
    """Host, port and path of the VM's RFB console."""
    for console in session.call("VM.get_consoles", vm_ref):
        record = session.call("console.get_record", console)
        if record.get("protocol", "").lower() != "rfb":
            continue
        url = urllib.parse.urlsplit(record["location"])
        port = url.port or (443 if url.scheme == "https" else 80)
        # The console handler authenticates by session, as Nova's console proxy did; the
        # path is hidden from ConsoleInfo's repr.
        query = "&".join(q for q in (url.query, f"session_id={session.console_session()}")
                         if q)
        path = f"{url.path}?{query}"
        return ConsoleInfo(host=url.hostname or "", port=port, internal_access_path=path,
                           type="vnc")
    raise exc.InstanceInvalidState(instance_uuid, "get_vnc_console", "without a console")


# -- the operations, in the contract's order ---------------------------------------------

def get_info(backend: XenBackend, instance: Any) -> InstanceInfo:
    """The VM's power state: one call once the VM ref is cached, and a cold lookup's record
    already carries it."""
    if backend.cached_ref(instance) is None:
        found = vm_utils.find_vm(backend.session, field_of(instance, "name"),
                                 str(field_of(instance, "uuid")))
        if found is None:
            raise exc.InstanceNotFound(str(field_of(instance, "uuid")))
        backend.remember_vm(instance, found[0])
        return InstanceInfo(vm_utils.power_state_of(found[1]["power_state"]))
    state = backend.on_vm(instance, backend.vm_power_state)
    return InstanceInfo(vm_utils.power_state_of(state))


def list_instances(backend: XenBackend) -> list[str]:
    """Names of every instance VM in the pool (rescue VMs excluded), in one call; only the
    name and other_config of each record are kept while the reply is parsed."""
    records = vm_utils.managed_vms(backend.session, fields=("name_label",))
    return sorted(rec["name_label"] for rec in records.values()
                  if not (rec.get("other_config") or {}).get("nova_rescue"))


def list_instance_uuids(backend: XenBackend) -> list[str]:
    """Instance uuids of every instance VM in the pool, in one call (only other_config of
    each record is kept while the reply is parsed)."""
    return sorted({rec["other_config"]["nova_uuid"]
                   for rec in vm_utils.managed_vms(backend.session, fields=()).values()})


def get_diagnostics(backend: XenBackend, instance: Any) -> dict[str, Any]:
    """Every data source of the VM (cpuN, vif_N_rx/tx, memory...; empty when not running)."""
    return backend.on_vm(instance, lambda ref: _diagnostics(backend.session, ref))


def get_instance_diagnostics(backend: XenBackend, instance: Any) -> Diagnostics:
    """Diagnostics in Nova's common shape."""
    return backend.on_vm(instance,
                         lambda ref: _instance_diagnostics(backend.session, ref, instance))


def get_all_bw_counters(backend: XenBackend,
                        instances: Iterable[Any]) -> list[dict[str, Any]]:
    """Per-VIF counters of the given instances from the bandwidth plugin (keyed by domid)."""
    session = backend.session
    raw = session.call("host.call_plugin", session.host_ref, "bandwidth.py",
                       "fetch_all_bandwidth", {})
    by_domid = json.loads(raw) if raw else {}
    wanted = {str(field_of(i, "uuid")): i for i in instances}
    counters = []
    for record in vm_utils.managed_vms(session).values():
        uuid = record["other_config"]["nova_uuid"]
        if uuid not in wanted or record.get("other_config", {}).get("nova_rescue"):
            continue
        per_vif = by_domid.get(str(record.get("domid")), {})
        for vif_ref in record.get("VIFs", []):
            vif = session.call("VIF.get_record", vif_ref)
            stats = per_vif.get(str(vif["device"]), {})
            counters.append({"uuid": uuid, "mac_address": vif["MAC"],
                             "bw_in": int(stats.get("bw_in", 0)),
                             "bw_out": int(stats.get("bw_out", 0))})
    return counters


def get_per_instance_usage(backend: XenBackend) -> dict[str, dict[str, Any]]:
    """Memory (MiB) of each running or paused instance VM, by instance uuid, in one call."""
    session = backend.session
    usage = {}
    for record in vm_utils.managed_vms(session).values():
        if record["power_state"].lower() not in ("running", "paused"):
            continue
        uuid = record["other_config"]["nova_uuid"]
        usage[uuid] = {"uuid": uuid,
                       "memory_mb": int(record["memory_static_max"]) // vm_utils.MiB}
    return usage


def get_console_output(backend: XenBackend, instance: Any) -> bytes:
    """The tail of the VM's console log (console plugin)."""
    return backend.on_vm(instance, lambda ref: _console_output(backend.session, ref))


def get_vnc_console(backend: XenBackend, instance: Any) -> ConsoleInfo:
    """The RFB console of the VM (the rescue VM's while rescued)."""
    uuid = str(field_of(instance, "uuid"))
    rescue = vm_utils.find_vm(backend.session,
                              field_of(instance, "name") + vm_utils.RESCUE_SUFFIX, uuid)
    vm_ref = rescue[0] if rescue else backend.vm_ref_of(instance)
    return _vnc_console(backend.session, vm_ref, uuid)
