"""Record shapes of the classes the simulator models, derived from the real surface.

Every record of a modelled class carries every (non-removed) field XAPI declares for it, so
clients that build a record shape from the first record they see (Xen Orchestra) work.
A field's default comes from its type (``""``, ``"0"`` for ints, which travel as decimal
strings, ``False``, ``{}``, ``[]``, ``OpaqueRef:NULL``, the epoch, an enum's first value)
unless :data:`DEFAULTS` says what a fresh object of that class holds.  Classes of the surface
that are not modelled have no objects: their reads answer with nothing, as a real pool without
such objects does.
"""

from __future__ import annotations

import datetime as _dt
from typing import Any

from . import surface
from .errors import XapiError

NULL = "OpaqueRef:NULL"
EPOCH = _dt.datetime(1970, 1, 1, tzinfo=_dt.timezone.utc)

#: The classes whose objects the simulator keeps and whose rules it models.
MODELLED: tuple[str, ...] = (
    "pool", "host", "host_metrics", "VM", "VM_metrics", "VM_guest_metrics", "VBD", "VDI",
    "SR", "PBD", "VIF", "network", "PIF", "console", "task", "message",
)

#: (class, field) -> the value of a fresh object where it differs from the type's default.
DEFAULTS: dict[tuple[str, str], Any] = {
    ("host", "API_version_major"): "2", ("host", "API_version_minor"): "16",
    ("host", "API_version_vendor"): "XenServer", ("host", "enabled"): True,
    ("host", "edition"): "xcp-ng", ("host", "sched_policy"): "credit",
    ("host", "latest_synced_updates_applied"): "unknown",
    ("host", "numa_affinity_policy"): "default_policy",
    ("host_metrics", "live"): True,
    ("VM", "user_version"): "1", ("VM", "domid"): "-1",
    ("VM", "memory_static_max"): "268435456", ("VM", "memory_dynamic_max"): "268435456",
    ("VM", "memory_dynamic_min"): "268435456", ("VM", "memory_static_min"): "134217728",
    ("VM", "VCPUs_max"): "1", ("VM", "VCPUs_at_startup"): "1",
    ("VM", "actions_after_shutdown"): "destroy", ("VM", "actions_after_reboot"): "restart",
    ("VM", "actions_after_crash"): "restart", ("VM", "HVM_shadow_multiplier"): 1.0,
    ("VM", "power_state"): "Halted", ("VM", "domain_type"): "hvm",
    ("VM_metrics", "hvm"): True, ("VM_metrics", "current_domain_type"): "unspecified",
    ("VM_guest_metrics", "can_use_hotplug_vbd"): "unspecified",
    ("VM_guest_metrics", "can_use_hotplug_vif"): "unspecified",
    ("VBD", "userdevice"): "0", ("VBD", "mode"): "RW", ("VBD", "type"): "Disk",
    ("VBD", "unpluggable"): True,
    ("VDI", "type"): "user", ("VDI", "managed"): True, ("VDI", "on_boot"): "persist",
    ("VIF", "device"): "0", ("VIF", "MTU"): "1500",
    ("network", "MTU"): "1500", ("network", "managed"): True,
    ("PIF", "MTU"): "1500", ("PIF", "VLAN"): "-1", ("PIF", "ip_configuration_mode"): "Static",
    ("PIF", "physical"): True, ("PIF", "currently_attached"): True, ("PIF", "managed"): True,
    ("PIF", "igmp_snooping_status"): "unknown",
    ("console", "protocol"): "rfb",
    ("task", "backtrace"): "()", ("task", "status"): "pending",
    ("message", "priority"): "1",
}


def type_default(field: surface.Field) -> Any:
    """The value a field of this type holds when nothing else is known."""
    kind = field.type
    if kind.endswith(" set"):
        return []
    if kind.endswith(" map"):
        return {}
    if kind.endswith(" ref"):
        return NULL
    if kind == "int":
        return "0"
    if kind == "float":
        return 0.0
    if kind == "bool":
        return False
    if kind == "datetime":
        return EPOCH
    values = surface.enum_of(field)
    if values:
        return values[0]
    return ""


#: class -> field -> default, for the modelled classes.
CLASSES: dict[str, dict[str, Any]] = {
    cls: {name: DEFAULTS.get((cls, name), type_default(field))
          for name, field in surface.FIELDS[cls].items()}
    for cls in MODELLED
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


def defaults(cls: str) -> dict[str, Any]:
    """A fresh record of ``cls`` with every field at its default."""
    return {name: (value.copy() if isinstance(value, (dict, list)) else value)
            for name, value in CLASSES[cls].items()}


def canonical_class(name: str) -> str | None:
    """The class name in canonical case, or None (any class of the surface)."""
    return surface.canonical_class(name)


def canonical_enum(cls: str, field: str, value: Any) -> Any:
    """Map ``value`` to the canonical case of an enum field (unchanged when not an enum);
    INVALID_VALUE [field, value] when it is none of the enum's values."""
    spec = surface.FIELDS.get(cls, {}).get(field)
    choices = surface.enum_of(spec) if spec is not None else None
    if choices is None or not isinstance(value, str):
        return value
    for choice in choices:
        if choice.lower() == value.lower():
            return choice
    raise XapiError("INVALID_VALUE", field, value)
