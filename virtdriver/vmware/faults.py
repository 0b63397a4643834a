"""vim faults -> :mod:`virtdriver.common.exceptions`.

What the session and the task waiter raise when vCenter answers with a fault: the
exception class that fits it (AuthenticationFailed for ``InvalidLogin``, SessionExpired for
``NotAuthenticated``, the caller's class otherwise) with the fault's WSDL name as ``code``;
the ``NotAuthenticated`` vCenter hides in a ``RetrievePropertiesEx`` ``missingSet``; and
:func:`ignoring`, for callers to whom some fault codes mean "already done".
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

from pyVmomi import vim, vmodl

from virtdriver.common import exceptions


def fault_name(fault: BaseException) -> str:
    """The vim fault's WSDL name (``InvalidPowerState``), or the class name."""
    return getattr(fault, "_wsdlName", None) or type(fault).__name__


def translate_fault(fault: vmodl.MethodFault, what: str,
                    cls: type[exceptions.BackendError] = exceptions.BackendError
                    ) -> exceptions.BackendError:
    """A virtdriver exception for a vim fault (the caller raises it ``from`` the fault)."""
    code = fault_name(fault)
    message = getattr(fault, "msg", None) or ""
    if isinstance(fault, vim.fault.InvalidLogin):
        cls = exceptions.AuthenticationFailed
    elif isinstance(fault, vim.fault.NotAuthenticated):
        cls = exceptions.SessionExpired
    return cls(f"{what}: {code}{': ' + message if message else ''}", code=code)


def missing_fault(result: Any) -> vmodl.MethodFault | None:
    """The NotAuthenticated fault vCenter hides in a RetrievePropertiesEx missingSet."""
    for obj in getattr(result, "objects", None) or []:
        for missing in obj.missingSet or []:
            if isinstance(missing.fault, vim.fault.NotAuthenticated):
                return missing.fault
    return None


@contextlib.contextmanager
def ignoring(*codes: str) -> Iterator[None]:
    """Swallow BackendErrors whose fault code is one of ``codes`` (e.g. already off)."""
    try:
        yield
    except exceptions.BackendError as exc:
        if exc.code not in codes:
            raise
