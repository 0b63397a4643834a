"""Field schemas of the XAPI classes the simulator models (xapi.md section 3.2).

Every record of a class carries every field listed here, so clients that build a record
shape from the first record they see (Xen Orchestra) work.  Defaults are factories so maps
and sets are never shared.  Int fields hold decimal strings, as on the wire.
"""

from __future__ import annotations

import datetime as _dt
from collections.abc import Callable
from typing import Any

from .errors import XapiError

NULL = "OpaqueRef:NULL"
EPOCH = _dt.datetime(1970, 1, 1, tzinfo=_dt.timezone.utc)


def _m() -> dict[str, str]:
    return {}


def _s() -> list[str]:
    return []


S, M, L, N = "", _m, _s, NULL  # shorthand: string, map, set, null ref

_COMMON: dict[str, Any] = {"uuid": S}
_NAMED: dict[str, Any] = {"name_label": S, "name_description": S}

CLASSES: dict[str, dict[str, Any]] = {
    "pool": {
        **_COMMON, **_NAMED, "master": N, "default_SR": N, "suspend_image_SR": N,
        "crash_dump_SR": N, "other_config": M, "ha_enabled": False, "tags": L,
        "gui_config": M, "restrictions": M, "cpu_info": M, "allowed_operations": L,
        "current_operations": M, "blobs": M,
    },
    "host": {
        **_COMMON, **_NAMED, "hostname": S, "address": S, "API_version_major": "2",
        "API_version_minor": "16", "API_version_vendor": "XenServer", "software_version": M,
        "resident_VMs": L, "PIFs": L, "PBDs": L, "metrics": N, "enabled": True,
        "other_config": M, "cpu_info": M, "capabilities": L, "memory_overhead": "0",
        "allowed_operations": L, "current_operations": M, "tags": L, "control_domain": N,
        "host_CPUs": L, "license_params": M, "edition": "xcp-ng", "suspend_image_sr": N,
        "crash_dump_sr": N, "logging": M, "power_on_mode": S, "power_on_config": M,
        "bios_strings": M, "sched_policy": "credit", "external_auth_type": S,
        "chipset_info": M, "PCIs": L, "PGPUs": L, "display": "enabled", "patches": L,
        "updates": L, "crashdumps": L, "blobs": M, "local_cache_sr": N, "ssl_legacy": False,
        "virtual_hardware_platform_versions": L, "uefi_certificates": S,
    },
    "host_metrics": {
        **_COMMON, "memory_total": "0", "memory_free": "0", "live": True,
        "last_updated": EPOCH, "other_config": M,
    },
    "VM": {
        **_COMMON, **_NAMED, "power_state": "Halted", "allowed_operations": L,
        "current_operations": M, "blocked_operations": M, "user_version": "1",
        "is_a_template": False, "is_default_template": False, "is_a_snapshot": False,
        "snapshot_of": N, "snapshots": L, "snapshot_time": EPOCH, "snapshot_info": M,
        "snapshot_metadata": S, "transportable_snapshot_id": S, "parent": N, "children": L,
        "is_control_domain": False, "resident_on": N, "affinity": N,
        "scheduled_to_be_resident_on": N,
        "domid": "-1", "domarch": S, "memory_overhead": "0", "memory_target": "0",
        "memory_static_max": "268435456", "memory_dynamic_max": "268435456",
        "memory_dynamic_min": "268435456", "memory_static_min": "134217728",
        "VCPUs_params": M, "VCPUs_max": "1", "VCPUs_at_startup": "1",
        "actions_after_shutdown": "destroy", "actions_after_reboot": "restart",
        "actions_after_crash": "restart", "consoles": L, "VIFs": L, "VBDs": L, "VUSBs": L,
        "crash_dumps": L, "VTPMs": L, "VGPUs": L, "PCI_bus": S, "PV_bootloader": S,
        "PV_kernel": S, "PV_ramdisk": S, "PV_args": S, "PV_bootloader_args": S,
        "PV_legacy_args": S, "HVM_boot_policy": S, "HVM_boot_params": M,
        "HVM_shadow_multiplier": 1.0, "platform": M, "other_config": M, "xenstore_data": M,
        "last_boot_CPU_flags": M, "last_booted_record": S, "recommendations": S,
        "ha_always_run": False, "ha_restart_priority": S, "tags": L, "metrics": N,
        "guest_metrics": N, "suspend_VDI": N, "suspend_SR": N, "appliance": N,
        "start_delay": "0", "shutdown_delay": "0", "order": "0", "version": "0",
        "generation_id": S, "hardware_platform_version": "0", "has_vendor_device": False,
        "requires_reboot": False, "reference_label": S, "domain_type": "hvm", "NVRAM": M,
        "bios_strings": M, "protection_policy": N, "is_snapshot_from_vmpp": False,
        "snapshot_schedule": N, "is_vmss_snapshot": False, "groups": L, "attached_PCIs": L,
        "blobs": M,
    },
    "VM_metrics": {
        **_COMMON, "memory_actual": "0", "VCPUs_number": "0", "VCPUs_utilisation": M,
        "VCPUs_CPU": M, "VCPUs_params": M, "VCPUs_flags": M, "state": L,
        "start_time": EPOCH, "install_time": EPOCH, "last_updated": EPOCH, "other_config": M,
        "hvm": True, "nested_virt": False, "nomigrate": False, "current_domain_type": "unspecified",
    },
    "VM_guest_metrics": {
        **_COMMON, "os_version": M, "PV_drivers_version": M, "PV_drivers_up_to_date": False,
        "PV_drivers_detected": False, "memory": M, "disks": M, "networks": M, "other": M,
        "last_updated": EPOCH, "other_config": M, "live": False,
        "can_use_hotplug_vbd": "unspecified",
        "can_use_hotplug_vif": "unspecified", "netbios_name": M,
    },
    "VBD": {
        **_COMMON, "VM": N, "VDI": N, "device": S, "userdevice": "0", "bootable": False,
        "mode": "RW", "type": "Disk", "unpluggable": True, "storage_lock": False,
        "empty": False, "other_config": M, "currently_attached": False, "status_code": "0",
        "status_detail": S, "runtime_properties": M, "qos_algorithm_type": S,
        "qos_algorithm_params": M, "qos_supported_algorithms": L, "metrics": N,
        "allowed_operations": L, "current_operations": M,
    },
    "VDI": {
        **_COMMON, **_NAMED, "SR": N, "VBDs": L, "crash_dumps": L, "virtual_size": "0",
        "physical_utilisation": "0", "type": "user", "sharable": False, "read_only": False,
        "other_config": M, "storage_lock": False, "location": S, "managed": True,
        "missing": False, "parent": N, "xenstore_data": M, "sm_config": M,
        "is_a_snapshot": False, "snapshot_of": N, "snapshots": L, "snapshot_time": EPOCH,
        "tags": L, "allow_caching": False, "on_boot": "persist", "metadata_of_pool": N,
        "metadata_latest": False, "is_tools_iso": False, "cbt_enabled": False,
        "allowed_operations": L, "current_operations": M,
    },
    "SR": {
        **_COMMON, **_NAMED, "type": S, "content_type": S, "shared": False,
        "physical_size": "0", "physical_utilisation": "0", "virtual_allocation": "0",
        "VDIs": L, "PBDs": L, "other_config": M, "sm_config": M, "tags": L, "blobs": M,
        "local_cache_enabled": False, "introduced_by": N, "clustered": False,
        "is_tools_sr": False, "allowed_operations": L, "current_operations": M,
    },
    "PBD": {
        **_COMMON, "host": N, "SR": N, "device_config": M, "currently_attached": False,
        "other_config": M,
    },
    "VIF": {
        **_COMMON, "VM": N, "network": N, "device": "0", "MAC": S, "MTU": "1500",
        "MAC_autogenerated": False, "currently_attached": False, "status_code": "0",
        "status_detail": S, "runtime_properties": M, "other_config": M,
        "qos_algorithm_type": S, "qos_algorithm_params": M, "qos_supported_algorithms": L,
        "metrics": N, "locking_mode": "network_default", "ipv4_allowed": L,
        "ipv6_allowed": L, "ipv4_configuration_mode": "None", "ipv4_addresses": L,
        "ipv4_gateway": S, "ipv6_configuration_mode": "None", "ipv6_addresses": L,
        "ipv6_gateway": S, "allowed_operations": L, "current_operations": M,
    },
    "network": {
        **_COMMON, **_NAMED, "bridge": S, "VIFs": L, "PIFs": L, "MTU": "1500",
        "other_config": M, "managed": True, "tags": L, "blobs": M,
        "default_locking_mode": "unlocked", "assigned_ips": M, "purpose": L,
        "allowed_operations": L, "current_operations": M,
    },
    "PIF": {
        **_COMMON, "host": N, "network": N, "device": S, "MAC": S, "MTU": "1500",
        "VLAN": "-1", "IP": S, "netmask": S, "gateway": S, "DNS": S, "IPv6": L,
        "ipv6_gateway": S, "ip_configuration_mode": "Static", "ipv6_configuration_mode": "None",
        "primary_address_type": "IPv4", "management": False, "physical": True,
        "currently_attached": True, "metrics": N, "other_config": M, "disallow_unplug": False,
        "managed": True, "properties": M, "capabilities": L, "bond_slave_of": N,
        "bond_master_of": L, "VLAN_master_of": N, "VLAN_slave_of": L, "tunnel_access_PIF_of": L,
        "tunnel_transport_PIF_of": L, "igmp_snooping_status": "unknown",
    },
    "console": {
        **_COMMON, "protocol": "rfb", "location": S, "VM": N, "other_config": M,
    },
    "task": {
        **_COMMON, **_NAMED, "allowed_operations": L, "current_operations": M,
        "created": EPOCH, "finished": EPOCH, "status": "pending", "resident_on": N,
        "progress": 0.0, "type": S, "result": S, "error_info": L, "other_config": M,
        "subtask_of": N, "subtasks": L, "backtrace": "()",
    },
    "message": {
        **_COMMON, "name": S, "priority": "1", "cls": "VM", "obj_uuid": S,
        "timestamp": EPOCH, "body": S,
    },
}

#: Enum fields: field -> canonical values (inputs are matched case-insensitively).
ENUMS: dict[tuple[str, str], tuple[str, ...]] = {
    ("VM", "power_state"): ("Halted", "Paused", "Running", "Suspended"),
    ("VBD", "type"): ("CD", "Disk", "Floppy"),
    ("VBD", "mode"): ("RO", "RW"),
    ("VDI", "type"): ("system", "user", "ephemeral", "suspend", "crashdump", "ha_statefile",
                      "metadata", "redo_log", "rrd", "pvs_cache", "cbt_metadata"),
    ("VDI", "on_boot"): ("reset", "persist"),
    ("VM", "actions_after_shutdown"): ("destroy", "restart"),
    ("VM", "actions_after_reboot"): ("destroy", "restart"),
    ("VM", "actions_after_crash"): ("destroy", "coredump_and_destroy", "restart",
                                    "coredump_and_restart", "preserve", "rename_restart"),
    ("VM", "domain_type"): ("hvm", "pv", "pv_in_pvh", "pvh", "unspecified"),
    ("VIF", "locking_mode"): ("network_default", "locked", "unlocked", "disabled"),
    ("task", "status"): ("pending", "success", "failure", "cancelling", "cancelled"),
    ("console", "protocol"): ("vt100", "rfb", "rdp"),
}

#: child (class, field) -> parent (class, set field): maintained automatically by the db.
RELATIONS: dict[tuple[str, str], tuple[str, str]] = {
    ("VBD", "VM"): ("VM", "VBDs"),
    ("VBD", "VDI"): ("VDI", "VBDs"),
    ("VIF", "VM"): ("VM", "VIFs"),
    ("VIF", "network"): ("network", "VIFs"),
    ("VDI", "SR"): ("SR", "VDIs"),
    ("PBD", "SR"): ("SR", "PBDs"),
    ("PBD", "host"): ("host", "PBDs"),
    ("PIF", "host"): ("host", "PIFs"),
    ("PIF", "network"): ("network", "PIFs"),
    ("console", "VM"): ("VM", "consoles"),
    ("VM", "resident_on"): ("host", "resident_VMs"),
    ("VM", "snapshot_of"): ("VM", "snapshots"),
    ("VDI", "snapshot_of"): ("VDI", "snapshots"),
    ("task", "subtask_of"): ("task", "subtasks"),
}

#: Fields a client may set (``set_<field>``); everything else is read-only.
READ_ONLY: set[str] = {
    "uuid", "VBDs", "VIFs", "consoles", "VDIs", "PBDs", "PIFs", "resident_VMs", "snapshots",
    "subtasks", "power_state", "domid", "resident_on", "current_operations",
    "allowed_operations", "metrics", "guest_metrics", "currently_attached", "is_a_snapshot",
    "snapshot_of", "is_control_domain", "status", "progress", "result", "error_info",
    "created", "finished", "physical_utilisation", "virtual_size", "SR", "VM", "VDI",
}


def defaults(cls: str) -> dict[str, Any]:
    """A fresh record of ``cls`` with every field at its default."""
    out: dict[str, Any] = {}
    for name, default in CLASSES[cls].items():
        out[name] = default() if isinstance(default, Callable) else default  # type: ignore[arg-type]
    return out


def canonical_class(name: str) -> str | None:
    """The class name in canonical case, or None."""
    lowered = name.lower()
    for cls in CLASSES:
        if cls.lower() == lowered:
            return cls
    return None


def canonical_enum(cls: str, field: str, value: Any) -> Any:
    """Map ``value`` to the canonical case of an enum field (unchanged when not an enum)."""
    choices = ENUMS.get((cls, field))
    if choices is None or not isinstance(value, str):
        return value
    for choice in choices:
        if choice.lower() == value.lower():
            return choice
    raise XapiError("INVALID_VALUE", field, value)
