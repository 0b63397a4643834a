"""Facts about instances and the host: diagnostics, counters, consoles, usage, image cache.

Reads are batched where XAPI allows: ``VM.get_data_sources`` gives every RRD value of a VM
in one call, ``VM.get_all_records_where`` every instance VM in one call. Console logs and
bandwidth counters live in dom0 only, so those two go through Nova's dom0 plugins.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import json
import logging
import time
import urllib.parse
import zlib
from typing import TYPE_CHECKING, Any

from virtdriver.common import exceptions as exc
from virtdriver.common.model import (
    ConsoleInfo,
    CpuDiagnostics,
    Diagnostics,
    DiskDiagnostics,
    MemoryDiagnostics,
    NicDiagnostics,
    field_of,
    stuck_rebooting,
)
from virtdriver.xen import disks, vm_utils
from virtdriver.xen.session import XenAPISession, is_handle_invalid

if TYPE_CHECKING:
    from virtdriver.xen.vmops import XenVMOps

LOG = logging.getLogger(__name__)
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


def get_diagnostics(session: XenAPISession, vm_ref: str) -> dict[str, Any]:
    """Every data source of the VM (empty for a VM that is not running)."""
    return dict(sorted(_data_sources(session, vm_ref).items()))


def get_instance_diagnostics(session: XenAPISession, vm_ref: str,
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


def get_per_instance_usage(session: XenAPISession) -> dict[str, dict[str, Any]]:
    """Memory (MiB) of each running or paused instance VM, by instance uuid, in one call."""
    usage = {}
    for record in vm_utils.managed_vms(session).values():
        if record["power_state"].lower() not in ("running", "paused"):
            continue
        uuid = record["other_config"]["nova_uuid"]
        usage[uuid] = {"uuid": uuid,
                       "memory_mb": int(record["memory_static_max"]) // vm_utils.MiB}
    return usage


def get_all_bw_counters(ops: XenVMOps, instances: list[Any]) -> list[dict[str, Any]]:
    """Per-VIF counters of the given instances from the bandwidth plugin (keyed by domid)."""
    session = ops.session
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


def get_console_output(session: XenAPISession, vm_ref: str) -> bytes:
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


def get_vnc_console(session: XenAPISession, vm_ref: str, instance_uuid: str) -> ConsoleInfo:
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


def poll_rebooting_instances(ops: XenVMOps, timeout: int, instances: list[Any]) -> list[Any]:
    """Cancel ``VM.clean_reboot`` tasks older than ``timeout`` s, hard-reboot those VMs."""
    session = ops.session
    if timeout <= 0 or not instances:
        return []
    now = dt.datetime.now(dt.timezone.utc)
    for label in ("VM.clean_reboot", "Async.VM.clean_reboot"):
        for task in session.call("task.get_by_name_label", label):
            try:
                record = session.call("task.get_record", task)
            except exc.BackendError as error:
                if is_handle_invalid(error):
                    continue
                raise
            created = _xapi_time(record.get("created"))
            if created is not None and (now - created).total_seconds() >= timeout and \
                    record.get("status") == "pending":
                session.call("task.cancel", task)
    rebooted = []
    for instance in stuck_rebooting(instances, timeout, now):
        try:
            ops.reboot(instance, reboot_type="HARD")
            rebooted.append(instance)
        except exc.InstanceNotFound:
            continue
    return rebooted


def _xapi_time(value: Any) -> dt.datetime | None:
    text = str(value or "")
    for fmt in ("%Y%m%dT%H:%M:%SZ", "%Y%m%dT%H:%M:%S"):
        try:
            return dt.datetime.strptime(text, fmt).replace(tzinfo=dt.timezone.utc)
        except ValueError:
            continue
    return None


def manage_image_cache(ops: XenVMOps, instances: list[Any]) -> None:
    """Delete cached base VDIs no given instance uses, once older than the minimum age."""
    if not ops.conf.remove_unused_base_images:
        return
    in_use = {str(field_of(i, "image_ref", "") or "") for i in instances}
    max_age = float(ops.conf.remove_unused_original_minimum_age_seconds)
    records = ops.session.call("VDI.get_all_records_where", 'field "is_a_snapshot" = "false"')
    for ref, record in records.items():
        other = record.get("other_config") or {}
        if other.get("nova_disk_type") != disks.IMAGE_CACHE_TYPE:
            continue
        if other.get("image-id") in in_use:
            ops.session.call("VDI.remove_from_other_config", ref, "last-used")
            ops.session.call("VDI.add_to_other_config", ref, "last-used", str(int(time.time())))
            continue
        if time.time() - float(other.get("last-used", "0") or 0) < max_age:
            continue
        try:
            ops.session.call("VDI.destroy", ref)
            LOG.info("removed unused cached image %s", other.get("image-id"))
        except exc.BackendError as error:
            # a base still parenting clones cannot go yet; the next pass retries
            LOG.info("cached image %s kept: %s", other.get("image-id"), error.code)


def check_sr(ops: XenVMOps, sr_ref: Any) -> None:
    """Check that the SR exists (the configured one when ``sr_ref`` is None)."""
    if sr_ref is None:
        disks.find_sr(ops.session, ops.xen.sr_matching_filter)
        return
    try:
        ops.session.call("SR.get_uuid", sr_ref)
    except exc.BackendError as error:
        if is_handle_invalid(error, "SR"):
            raise exc.InvalidInput("ds_ref", sr_ref, "is not an SR of this pool") from error
        raise
