"""The single dispatch point: method lookup, parameter counts, sessions, faults, tasks.

Models register handlers with :func:`api`; anything not registered falls back to the generic
per-class calls (get_record, get_<field>, set_<field>, add_to_<map>, ...).  The wire layer calls
:meth:`Dispatcher.call` and nothing else.
"""

from __future__ import annotations

import datetime as _dt
import inspect
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from . import wire
from .db import copy_record
from .errors import XapiError
from .schema import CLASSES, NULL, canonical_class, canonical_enum

if TYPE_CHECKING:
    from .backend import Backend

Handler = Callable[..., Any]
HANDLERS: dict[str, Handler] = {}
LONG: set[str] = set()
#: class -> hook run after a client changes a field of one of its objects.
AFTER_CHANGE: dict[str, Callable[[Context, str], None]] = {}
NO_SESSION = {"session.login_with_password", "session.slave_local_login_with_password",
              "system.listMethods"}


def api(name: str, long: bool = False) -> Callable[[Handler], Handler]:
    """Register ``fn(ctx, *params)`` as the handler of XAPI method ``name``.

    ``long`` marks lifecycle-style calls: they run as a task (synchronously too) and take
    their configured delay.
    """

    def deco(fn: Handler) -> Handler:
        HANDLERS[name] = fn
        if long:
            LONG.add(name)
        return fn

    return deco


def now() -> _dt.datetime:
    """The current UTC time without microseconds."""
    return _dt.datetime.now(_dt.timezone.utc).replace(microsecond=0)


class Context:
    """What a handler sees: the backend, the caller's session and the task it runs in."""

    def __init__(self, backend: Backend, method: str, session: str | None,
                 task: str | None = None) -> None:
        self.backend = backend
        self.db = backend.db
        self.method = method
        self.session = session
        self.task = task
        self.ops: list[tuple[str, str, str]] = []

    def wait(self) -> None:
        """Sleep the configured delay of this method; raises TASK_CANCELLED if cancelled."""
        seconds = self.backend.faults.take_delay(self.method)
        if seconds is None:
            seconds = float(self.backend.config.task_delays.get(self.method, 0.0))
        if self.task is None:
            if seconds:
                time.sleep(seconds)
            return
        cancel = self.backend.cancel_events.setdefault(self.task, threading.Event())
        if self.db.exists("task", self.task):
            self.db.set("task", self.task, "progress", 0.5)
        if cancel.wait(seconds) or cancel.is_set():
            raise XapiError("TASK_CANCELLED", self.task)

    def begin_op(self, cls: str, ref: str, op: str) -> None:
        """Mark ``op`` in the object's current_operations for the duration of the call."""
        from .db import new_ref

        key = self.task or new_ref()
        with self.db.lock:
            ops = dict(self.db.get(cls, ref)["current_operations"])
            ops[key] = op
            self.db.set(cls, ref, "current_operations", ops)
            self.ops.append((cls, ref, key))

    def end_ops(self) -> None:
        """Remove this call's entries from current_operations."""
        with self.db.lock:
            for cls, ref, key in self.ops:
                if self.db.exists(cls, ref):
                    ops = dict(self.db.get(cls, ref)["current_operations"])
                    if ops.pop(key, None) is not None:
                        self.db.set(cls, ref, "current_operations", ops)
            self.ops.clear()


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
        fn = HANDLERS.get(method)
        if fn is not None:
            lo, hi = _count(fn)
            return fn, lo, hi
        generic = _generic(method)
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
            return self.backend.tasks.spawn("Async." + method, session,
                                            lambda ctx: self._run(fn, method, ctx, params),
                                            method)
        if method in LONG:
            return self.backend.tasks.run_sync(method, session,
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


# -- generic per-class calls -----------------------------------------------------------
def _generic(method: str) -> tuple[Handler, int, int] | None:
    cls, _, name = method.partition(".")
    if cls not in CLASSES:
        return None
    fields = CLASSES[cls]
    table: dict[str, tuple[Handler, int]] = {
        "get_record": (lambda ctx, ref: copy_record(ctx.db.get(cls, ref)), 1),
        "get_all": (lambda ctx: list(ctx.db.all(cls)), 0),
        "get_all_records": (lambda ctx: _records(ctx, cls, None), 0),
        "get_all_records_where": (lambda ctx, expr: _records(ctx, cls, expr), 1),
        "get_by_uuid": (lambda ctx, uuid: ctx.db.ref_of_uuid(cls, uuid), 1),
        "create": (lambda ctx, rec: generic_create(ctx, cls, rec), 1),
        "destroy": (lambda ctx, ref: ctx.db.destroy(cls, ref), 1),
    }
    if "name_label" in fields:
        table["get_by_name_label"] = (
            lambda ctx, label: [r for r, rec in ctx.db.all(cls).items()
                                if rec["name_label"] == label], 1)
    if name in table:
        fn, n = table[name]
        return fn, n, n
    for prefix in ("get_", "set_", "add_to_", "remove_from_", "add_", "remove_"):
        field = name[len(prefix):]
        if name.startswith(prefix) and field in fields:
            return _field_call(cls, prefix, field)
    return None


def _field_call(cls: str, prefix: str, field: str) -> tuple[Handler, int, int] | None:
    default = CLASSES[cls][field]
    sample = default() if callable(default) else default
    if prefix == "get_":
        return (lambda ctx, ref: _plain_copy(ctx.db.get(cls, ref)[field])), 1, 1
    if prefix == "set_":
        return (lambda ctx, ref, v: set_field(ctx, cls, ref, field, v)), 2, 2
    if isinstance(sample, dict) and prefix == "add_to_":
        return (lambda ctx, ref, k, v: map_add(ctx, cls, ref, field, k, v)), 3, 3
    if isinstance(sample, dict) and prefix == "remove_from_":
        return (lambda ctx, ref, k: map_remove(ctx, cls, ref, field, k)), 2, 2
    if isinstance(sample, list) and prefix in ("add_", "remove_"):
        add = prefix == "add_"
        return (lambda ctx, ref, v: set_member(ctx, cls, ref, field, v, add)), 2, 2
    return None


def _plain_copy(value: Any) -> Any:
    return value.copy() if isinstance(value, (dict, list)) else value


def _records(ctx: Context, cls: str, expr: str | None) -> dict[str, dict[str, Any]]:
    from .db import compile_where

    pred = compile_where(expr) if expr is not None else None
    with ctx.db.lock:
        return {ref: copy_record(rec) for ref, rec in ctx.db.all(cls).items()
                if pred is None or pred(rec)}


def coerce(cls: str, field: str, value: Any) -> Any:
    """Check and convert a client value to the field's stored type."""
    default = CLASSES[cls][field]
    sample = default() if callable(default) else default
    if isinstance(sample, bool):
        if isinstance(value, str) and value.lower() in ("true", "false"):
            return value.lower() == "true"
        if not isinstance(value, bool):
            raise XapiError("FIELD_TYPE_ERROR", field)
        return value
    if isinstance(sample, float):
        try:
            return float(value)
        except (TypeError, ValueError):
            raise XapiError("FIELD_TYPE_ERROR", field) from None
    if isinstance(sample, dict):
        if not isinstance(value, dict):
            raise XapiError("FIELD_TYPE_ERROR", field)
        return {str(k): str(v) if not isinstance(v, str) else v for k, v in value.items()}
    if isinstance(sample, list):
        if not isinstance(value, list):
            raise XapiError("FIELD_TYPE_ERROR", field)
        return list(value)
    if isinstance(sample, _dt.datetime):
        return value if isinstance(value, _dt.datetime) else sample
    if isinstance(value, (bool, dict, list)):
        raise XapiError("FIELD_TYPE_ERROR", field)
    text = str(value)
    if sample.lstrip("-").isdigit() and not text.lstrip("-").isdigit():
        raise XapiError("FIELD_TYPE_ERROR", field)
    return canonical_enum(cls, field, text)


def set_field(ctx: Context, cls: str, ref: str, field: str, value: Any) -> None:
    """``set_<field>``."""
    with ctx.db.lock:
        ctx.db.get(cls, ref)
        ctx.db.set(cls, ref, field, coerce(cls, field, value))
        _after(ctx, cls, ref)


def map_add(ctx: Context, cls: str, ref: str, field: str, key: str, value: str) -> None:
    """``add_to_<map>``: MAP_DUPLICATE_KEY when the key exists."""
    with ctx.db.lock:
        rec = ctx.db.get(cls, ref)
        if key in rec[field]:
            raise XapiError("MAP_DUPLICATE_KEY", cls, field, rec["uuid"], key)
        new = dict(rec[field])
        new[str(key)] = str(value)
        ctx.db.set(cls, ref, field, new)
        _after(ctx, cls, ref)


def map_remove(ctx: Context, cls: str, ref: str, field: str, key: str) -> None:
    """``remove_from_<map>``: a no-op when the key is absent."""
    with ctx.db.lock:
        rec = ctx.db.get(cls, ref)
        if key in rec[field]:
            ctx.db.set(cls, ref, field, {k: v for k, v in rec[field].items() if k != key})
        _after(ctx, cls, ref)


def set_member(ctx: Context, cls: str, ref: str, field: str, value: str, add: bool) -> None:
    """``add_<set>`` / ``remove_<set>``."""
    with ctx.db.lock:
        cur = list(ctx.db.get(cls, ref)[field])
        if add and value not in cur:
            cur.append(value)
        elif not add and value in cur:
            cur.remove(value)
        ctx.db.set(cls, ref, field, cur)
        _after(ctx, cls, ref)


def _after(ctx: Context, cls: str, ref: str) -> None:
    hook = AFTER_CHANGE.get(cls)
    if hook is not None:
        hook(ctx, ref)


def generic_create(ctx: Context, cls: str, rec: dict[str, Any]) -> str:
    """``<class>.create(record)``: unknown fields are ignored, refs are checked."""
    if not isinstance(rec, dict):
        raise XapiError("FIELD_TYPE_ERROR", "record")
    fields: dict[str, Any] = {}
    for key, value in rec.items():
        if key in CLASSES[cls] and key != "uuid":
            fields[key] = coerce(cls, key, value)
    from .schema import RELATIONS

    with ctx.db.lock:
        for (ccls, cfield), (pcls, _) in RELATIONS.items():
            if ccls == cls and cfield in fields and fields[cfield] not in ("", NULL) \
                    and not ctx.db.exists(pcls, fields[cfield]):
                raise XapiError("HANDLE_INVALID", pcls, fields[cfield])
        return ctx.db.create(cls, fields)


def method_names() -> list[str]:
    """Every method the simulator answers, as ``system.listMethods`` lists them."""
    names = set(HANDLERS)
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
