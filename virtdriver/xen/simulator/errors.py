"""XAPI errors: the codes the simulator raises, each a real code with XAPI's parameters.

Parameter names and counts come from the real surface (``surface.ERRORS``, xapi's runtime
form where it differs from the declaration).  :class:`XapiError` refuses a code xapi does not
have or a wrong number of parameters, so a mistake shows up as INTERNAL_ERROR in a test
rather than as a plausible-looking reply.  The wire layer turns an error into
``{Status: "Failure", ErrorDescription: [code, *params]}``.
"""

from __future__ import annotations

from . import surface

#: The codes the simulator raises itself (injected faults may use any real code).
RAISED: tuple[str, ...] = (
    "DEVICE_ALREADY_ATTACHED", "DEVICE_ALREADY_DETACHED", "DEVICE_ALREADY_EXISTS",
    "EVENT_FROM_TOKEN_PARSE_FAILURE", "EVENT_SUBSCRIPTION_PARSE_FAILURE", "FIELD_TYPE_ERROR",
    "HANDLE_INVALID", "HOST_NOT_ENOUGH_FREE_MEMORY", "INTERNAL_ERROR", "INVALID_VALUE",
    "LOCATION_NOT_UNIQUE",
    "MAP_DUPLICATE_KEY", "MESSAGE_METHOD_UNKNOWN", "MESSAGE_PARAMETER_COUNT_MISMATCH",
    "OPERATION_BLOCKED", "OPERATION_NOT_ALLOWED", "OTHER_OPERATION_IN_PROGRESS",
    "PBD_EXISTS", "SESSION_AUTHENTICATION_FAILED", "SESSION_INVALID", "SESSION_NOT_REGISTERED",
    "SR_FULL", "SR_HAS_NO_PBDS", "SR_HAS_PBD", "SR_NOT_SHARABLE", "SR_OPERATION_NOT_SUPPORTED",
    "SR_UNKNOWN_DRIVER", "SR_UUID_EXISTS", "VALUE_NOT_SUPPORTED",
    "TASK_CANCELLED", "UUID_INVALID", "VBD_IS_EMPTY", "VBD_NOT_EMPTY", "VBD_NOT_REMOVABLE_MEDIA",
    "VBD_NOT_UNPLUGGABLE", "VDI_IN_USE", "VDI_NOT_IN_MAP", "VDI_TOO_SMALL",
    "VM_BAD_POWER_STATE", "VM_IS_SNAPSHOT", "VM_IS_TEMPLATE", "VM_MIGRATE_FAILED",
    "VM_MISSING_PV_DRIVERS", "VM_REQUIRES_SR", "XENAPI_MISSING_PLUGIN", "XENAPI_PLUGIN_FAILURE",
    "UNKNOWN_XENAPI_PLUGIN_FUNCTION",
)

#: Codes xapi has (``api_errors.ml``) but declares without parameters, with the parameters
#: its code sends.
UNDOCUMENTED: dict[str, tuple[str, ...]] = {
    # ocaml/xapi/xapi_vm_lifecycle.ml, check_snapshot: [ref_str; vm_operation_to_string op]
    "VM_IS_SNAPSHOT": ("vm", "operation"),
}

#: Codes a dom0 plugin sends and xapi passes through unchanged (``xapi_plugins.ml``: a
#: plugin's XML-RPC Failure becomes Server_error(code, params)); not in ``api_errors.ml``.
PLUGIN_ERRORS: dict[str, tuple[str, ...]] = {
    # xen-api scripts/examples/python/XenAPIPlugin.py, dispatch(): an unknown function name
    "UNKNOWN_XENAPI_PLUGIN_FUNCTION": ("function",),
}


def params_of(code: str) -> tuple[str, ...] | None:
    """The parameter names sent with ``code``; None when unknown (or not a code at all)."""
    found = surface.error_params(code)
    if found is not None:
        return found
    return UNDOCUMENTED.get(code) or PLUGIN_ERRORS.get(code)


def is_code(code: str) -> bool:
    """Whether a real pool can send ``code`` (xapi's own codes and plugin pass-through)."""
    return surface.is_error_code(code) or code in PLUGIN_ERRORS


#: code -> parameter names, for every code the simulator raises.
ERRORS: dict[str, tuple[str, ...]] = {}
for _code in RAISED:
    _params = params_of(_code)
    if _params is None:  # a code the table cannot describe must not be raised
        raise RuntimeError(f"{_code} is not an XAPI error code with known parameters")
    ERRORS[_code] = _params
del _code, _params


class XapiError(Exception):
    """An XAPI failure: ``code`` plus string parameters, checked against the real surface."""

    def __init__(self, code: str, *params: object) -> None:
        expected = params_of(code)
        if expected is None and not is_code(code):
            raise ValueError(f"{code} is not an XAPI error code")
        if expected is not None and len(params) != len(expected):
            raise ValueError(f"{code} takes {len(expected)} parameters "
                             f"({', '.join(expected)}), not {len(params)}")
        self.code = code
        self.params = [str(p) for p in params]
        super().__init__(code, *self.params)

    @property
    def description(self) -> list[str]:
        """The ``ErrorDescription`` list sent on the wire."""
        return [self.code, *self.params]


def declared(code: str) -> bool:
    """True when the simulator declares ``code`` as one it raises."""
    return code in ERRORS
