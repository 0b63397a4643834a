"""XAPI failures -> :mod:`virtdriver.common.exceptions`.

An ``XenAPI.Failure`` carries an error code and its parameters (``["HANDLE_INVALID",
"VM", "OpaqueRef:..."]``); the session and the task watch raise the virtdriver class that
fits the code (AuthenticationFailed, SessionExpired, TaskFailed for a failed task,
BackendError otherwise) with the code and parameters as data, and callers ask
:func:`is_handle_invalid` whether an object they named is gone.
"""

from __future__ import annotations

import XenAPI

from virtdriver.common import exceptions as exc


def failure_details(failure: XenAPI.Failure) -> tuple[str, tuple[str, ...]]:
    """The XAPI error code and its parameters from a Failure."""
    details = list(getattr(failure, "details", None) or ["UNKNOWN_ERROR"])
    return str(details[0]), tuple(str(p) for p in details[1:])


def translate_failure(method: str, code: str, params: tuple[str, ...],
                      in_task: bool = False) -> exc.BackendError:
    """The virtdriver exception for an XAPI error ``code`` with ``params``."""
    message = f"XAPI {method} failed: {code} {list(params)}"
    if code == "SESSION_AUTHENTICATION_FAILED":
        # params are [username, reason]: no password ever reaches them.
        return exc.AuthenticationFailed(message, code, params)
    if code == "SESSION_INVALID":
        return exc.SessionExpired(message, code, params)
    if in_task:
        return exc.TaskFailed(message, code, params)
    return exc.BackendError(message, code, params)


def is_handle_invalid(error: BaseException, xapi_class: str | None = None) -> bool:
    """True when ``error`` is HANDLE_INVALID (for ``xapi_class`` objects, if given)."""
    if not isinstance(error, exc.BackendError) or error.code != "HANDLE_INVALID":
        return False
    return xapi_class is None or (bool(error.params) and error.params[0].lower()
                                  == xapi_class.lower())
