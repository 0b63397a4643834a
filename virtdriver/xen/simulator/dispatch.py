"""The single dispatch point: method lookup, parameter counts, sessions, faults, tasks.

What is served is the real surface (``surface.MESSAGES``) intersected with what the models
implement: a message declared with ``context.api``, or a generic call (``models/generic.py``).
Anything else is ``MESSAGE_METHOD_UNKNOWN``; parameter counts and the Async set are XAPI's.
The wire layer calls :meth:`Dispatcher.call` and nothing else.
"""

from __future__ import annotations

import functools
from typing import Any

from . import models, surface, wire  # noqa: F401  (importing models declares every handler)
from .backend import Backend
from .context import HANDLERS, LONG, Context, Handler
from .errors import XapiError
from .models.generic import generic
from .tasks import TaskRunner

#: Not an XAPI message: XML-RPC introspection, which XO calls first (no session).
LIST_METHODS = "system.listMethods"


@functools.cache
def served() -> dict[str, Handler]:
    """``Class.name`` -> handler, for every message of the surface the simulator serves."""
    out: dict[str, Handler] = {}
    for name, message in surface.MESSAGES.items():
        handler = HANDLERS.get(name) or generic(message)
        if handler is not None:
            out[name] = handler
    return out


def method_names() -> list[str]:
    """Every method the simulator answers, as ``system.listMethods`` lists them."""
    return sorted([*served(), LIST_METHODS])


class Dispatcher:
    """Resolves a wire method name and runs it with XAPI's checks, in XAPI's order."""

    def __init__(self, backend: Backend) -> None:
        self.backend = backend
        self.tasks = TaskRunner(backend)

    # -- name resolution ---------------------------------------------------------------
    @staticmethod
    def normalise(method: str) -> tuple[str, bool]:
        """``Async.VM.start`` / ``VM_start`` / ``vm.start`` -> (``VM.start``, is_async)."""
        is_async = False
        if method.startswith("Async."):
            is_async, method = True, method[6:]
        if "." not in method:
            for cls in sorted(surface.CLASSES, key=len, reverse=True):
                if method.lower().startswith(cls.lower() + "_"):
                    method = cls + "." + method[len(cls) + 1:]
                    break
        cls, _, name = method.partition(".")
        return f"{surface.canonical_class(cls) or cls}.{name}", is_async

    # -- entry point -------------------------------------------------------------------
    def call(self, wire_method: str, params: list[Any]) -> dict[str, Any]:
        """Run one call and return the ``{Status, ...}`` struct; never raises."""
        try:
            return wire.success(self._call(wire_method, params))
        except XapiError as err:
            return wire.failure(err.description)
        except Exception as exc:  # any bug becomes INTERNAL_ERROR, never a fault
            return wire.failure(["INTERNAL_ERROR", f"{type(exc).__name__}: {exc}"])

    def _call(self, wire_method: str, params: list[Any]) -> Any:
        if wire_method == LIST_METHODS:
            return method_names()
        method, is_async = self.normalise(wire_method)
        message = surface.MESSAGES.get(method)
        fn = served().get(method)
        if message is None or fn is None or (is_async and not message.is_async):
            raise XapiError("MESSAGE_METHOD_UNKNOWN", wire_method)
        extra = 1 if message.session else 0
        if not message.min_params + extra <= len(params) <= message.max_params + extra:
            raise XapiError("MESSAGE_PARAMETER_COUNT_MISMATCH", wire_method,
                            message.max_params + extra, len(params))
        session = None
        if message.session:
            session = params[0]
            self.backend.sessions.check(session)
            params = params[1:]
        if is_async:
            return self.tasks.spawn("Async." + method, session,
                                    lambda ctx: self._run(fn, method, ctx, params), method)
        if method in LONG:
            return self.tasks.run_sync(method, session,
                                       lambda ctx: self._run(fn, method, ctx, params))
        return self._run(fn, method, Context(self.backend, method, session), params)

    def _run(self, fn: Handler, method: str, ctx: Context, params: list[Any]) -> Any:
        ctx.method = method
        self.backend.faults.check(method)
        try:
            return fn(ctx, *params)
        finally:
            ctx.end_ops()
