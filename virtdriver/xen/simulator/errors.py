"""XAPI error codes, declared once with the names of their parameters.

Every failure the simulator reports is an :class:`XapiError`; the wire layer turns
it into ``{Status: "Failure", ErrorDescription: [code, *params]}``.
"""

from __future__ import annotations

#: code -> parameter names, as xapi sends them at runtime (xapi.md section 3.4).
ERRORS: dict[str, tuple[str, ...]] = {
    "HANDLE_INVALID": ("class", "handle"),
    "UUID_INVALID": ("class", "uuid"),
    "SESSION_INVALID": ("handle",),
    "SESSION_AUTHENTICATION_FAILED": ("uname", "msg"),
    "HOST_IS_SLAVE": ("master",),
    "MESSAGE_METHOD_UNKNOWN": ("method",),
    "MESSAGE_PARAMETER_COUNT_MISMATCH": ("method", "expected", "received"),
    "FIELD_TYPE_ERROR": ("field",),
    "INVALID_VALUE": ("field", "value"),
    "MAP_DUPLICATE_KEY": ("class", "field", "uuid", "key"),
    "VM_BAD_POWER_STATE": ("vm", "expected", "actual"),
    "OPERATION_BLOCKED": ("ref", "code"),
    "OTHER_OPERATION_IN_PROGRESS": ("class", "ref", "op", "task"),
    "OPERATION_NOT_ALLOWED": ("reason",),
    "VM_IS_TEMPLATE": ("vm", "op"),
    "VM_IS_SNAPSHOT": ("vm", "op"),
    "VM_MISSING_PV_DRIVERS": ("vm",),
    "VM_LACKS_FEATURE": ("vm",),
    "VM_HVM_REQUIRED": ("vm",),
    "HOST_NOT_ENOUGH_FREE_MEMORY": ("needed", "available"),
    "VM_REQUIRES_SR": ("vm", "sr"),
    "VM_NOT_RESIDENT_HERE": ("vm", "host"),
    "VDI_IN_USE": ("vdi", "operation"),
    "VDI_NOT_IN_MAP": ("vdi",),
    "VIF_NOT_IN_MAP": ("vif",),
    "DEVICE_ALREADY_ATTACHED": ("device",),
    "DEVICE_ALREADY_DETACHED": ("device",),
    "DEVICE_ALREADY_EXISTS": ("device",),
    "DEVICE_DETACH_REJECTED": ("type", "ref", "msg"),
    "VBD_NOT_UNPLUGGABLE": ("vbd",),
    "VBD_NOT_REMOVABLE_MEDIA": ("vbd",),
    "VBD_IS_EMPTY": ("vbd",),
    "VBD_NOT_EMPTY": ("vbd",),
    "TASK_CANCELLED": ("task",),
    "EVENTS_LOST": (),
    "SESSION_NOT_REGISTERED": ("handle",),
    "EVENT_FROM_TOKEN_PARSE_FAILURE": ("token",),
    "EVENT_SUBSCRIPTION_PARSE_FAILURE": ("subscription",),
    "XENAPI_MISSING_PLUGIN": ("name",),
    "XENAPI_PLUGIN_FAILURE": ("status", "stdout", "stderr"),
    "UNKNOWN_XENAPI_PLUGIN_FUNCTION": ("name",),
    "INTERNAL_ERROR": ("message",),
    "NOT_IMPLEMENTED": ("function",),
    "SR_HAS_NO_PBDS": ("sr",),
    "SR_FULL": ("requested", "maximum"),
    "VDI_TOO_SMALL": ("vdi", "minimum_size"),
    "NO_HOSTS_AVAILABLE": (),
    "HOST_OFFLINE": ("host",),
    "VM_MIGRATE_FAILED": ("vm", "source", "destination", "msg"),
}


class XapiError(Exception):
    """An XAPI failure: ``code`` plus string parameters."""

    def __init__(self, code: str, *params: object) -> None:
        self.code = code
        self.params = [str(p) for p in params]
        super().__init__(code, *self.params)

    @property
    def description(self) -> list[str]:
        """The ``ErrorDescription`` list sent on the wire."""
        return [self.code, *self.params]


def declared(code: str) -> bool:
    """True when ``code`` is in the declared table (``SR_BACKEND_FAILURE_<n>`` also counts)."""
    return code in ERRORS or code.startswith("SR_BACKEND_FAILURE_")
