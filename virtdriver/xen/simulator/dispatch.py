"""The single dispatch point: method lookup, parameter counts, sessions, faults, tasks.

Model modules declare handlers with :func:`~virtdriver.xen.simulator.context.api`; anything
not declared falls back to the generic per-class calls (``models/generic.py``).  The wire
layer calls :meth:`Dispatcher.call` and nothing else.
"""

from __future__ import annotations

import inspect
from typing import Any

from . import models, wire  # noqa: F401  (importing models declares every handler)
from .backend import Backend
from .context import HANDLERS, LONG, Context, Handler
from .errors import XapiError
from .models.generic import generic as generic_call
from .schema import CLASSES, canonical_class
from .tasks import TaskRunner

NO_SESSION = {"session.login_with_password", "session.slave_local_login_with_password",
              "system.listMethods"}


def _count(fn: Handler) -> tuple[int, int]:
    params = list(inspect.signature(fn).parameters.values())[1:]
    if any(p.kind == p.VAR_POSITIONAL for p in params):
        return 0, 99
    required = sum(1 for p in params if p.default is p.empty)
    return required, len(params)



class Dispatcher:
    """Resolves a wire method name and runs it with XAPI's checks, in XAPI's order."""

    def __init__(self, backend: Backend) -> None:
        self.backend = backend
        self.tasks = TaskRunner(backend)

    # -- name resolution ---------------------------------------------------------------
    @staticmethod
    def normalise(method: str) -> tuple[str, bool]:
        """``Async.VM.start`` / ``VM_start`` -> (``VM.start``, is_async)."""
        is_async = False
        if method.startswith("Async."):
            is_async, method = True, method[6:]
        if "." not in method:
            for cls in sorted([*CLASSES, "session", "event", "system"], key=len, reverse=True):
                if method.lower().startswith(cls.lower() + "_"):
                    method = cls + "." + method[len(cls) + 1:]
                    break
        cls, _, name = method.partition(".")
        canon = canonical_class(cls) or cls
        if cls.lower() in ("session", "event", "system"):
            canon = cls.lower()
        return f"{canon}.{name}", is_async

    def resolve(self, method: str) -> tuple[Handler, int, int]:
        """The handler of a canonical method name and its parameter counts (after session)."""
        if method == "system.listMethods":
            return (lambda ctx: method_names()), 0, 0
        fn = HANDLERS.get(method)
        if fn is not None:
            lo, hi = _count(fn)
            return fn, lo, hi
        generic = generic_call(method)
        if generic is None:
            raise XapiError("MESSAGE_METHOD_UNKNOWN", method)
        return generic

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
        method, is_async = self.normalise(wire_method)
        fn, lo, hi = self.resolve(method)
        needs_session = method not in NO_SESSION
        given = len(params) - (1 if needs_session else 0)
        if needs_session and not params:
            raise XapiError("MESSAGE_PARAMETER_COUNT_MISMATCH", wire_method, lo + 1, 0)
        if not lo <= given <= hi:
            extra = 1 if needs_session else 0
            raise XapiError("MESSAGE_PARAMETER_COUNT_MISMATCH", wire_method, hi + extra,
                            len(params))
        session = None
        if needs_session:
            session = params[0]
            self.backend.sessions.check(session)
            params = params[1:]
        if is_async:
            if not _asyncable(method):
                raise XapiError("MESSAGE_METHOD_UNKNOWN", wire_method)
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


def _asyncable(method: str) -> bool:
    cls, _, name = method.partition(".")
    if cls in ("session", "task", "event", "system"):
        return False
    return not name.startswith(("get_", "set_", "add_", "remove_"))



def method_names() -> list[str]:
    """Every method the simulator answers, as ``system.listMethods`` lists them."""
    names = set(HANDLERS) | {"system.listMethods"}
    for cls, fields in CLASSES.items():
        names.update(f"{cls}.{m}" for m in ("get_record", "get_all", "get_all_records",
                                             "get_all_records_where", "get_by_uuid", "create",
                                             "destroy"))
        if "name_label" in fields:
            names.add(f"{cls}.get_by_name_label")
        for field, default in fields.items():
            names.add(f"{cls}.get_{field}")
            sample = default() if callable(default) else default
            if field not in ("uuid",):
                names.add(f"{cls}.set_{field}")
            if isinstance(sample, dict):
                names.update({f"{cls}.add_to_{field}", f"{cls}.remove_from_{field}"})
    return sorted(names)
