"""The calls every class answers: records, lookups, field getters and setters, maps, sets,
create and destroy; with the field type checks (FIELD_TYPE_ERROR, INVALID_VALUE,
MAP_DUPLICATE_KEY) that every class shares."""

from __future__ import annotations

import datetime as _dt
from collections.abc import Callable
from typing import Any

from .. import surface
from ..context import Context, Handler
from ..db import copy_record
from ..errors import XapiError
from ..schema import CLASSES, NULL, RELATIONS, canonical_enum
from ..where import compile_where

#: Classes whose objects are not in the registry (sessions are in the session store):
#: their own model serves their reads.
KEPT_ELSEWHERE = frozenset({"session"})
#: class -> hook run after a client changes a field of one of its objects.
AFTER_CHANGE: dict[str, Callable[[Context, str], None]] = {}


def generic(message: surface.Message) -> Handler | None:
    """The generic handler of a message of the surface, or None when it is not one.

    Reads (records, lookups, field getters) answer for every class, modelled or not: a class
    the simulator does not model simply has no objects.  Writes (setters, map and set
    edits, implicit create and destroy) exist only for the modelled classes.
    """
    cls, name = message.cls, message.name
    if cls in KEPT_ELSEWHERE:
        return None
    fields = surface.FIELDS.get(cls, {})
    reads: dict[str, Handler] = {
        "get_record": lambda ctx, ref: copy_record(ctx.db.get(cls, ref)),
        "get_all": lambda ctx: list(ctx.db.all(cls)),
        "get_all_records": lambda ctx: _records(ctx, cls, None),
        "get_all_records_where": lambda ctx, expr: _records(ctx, cls, expr),
        "get_by_uuid": lambda ctx, uuid: ctx.db.ref_of_uuid(cls, uuid),
        "get_by_name_label": lambda ctx, label: [r for r, rec in ctx.db.all(cls).items()
                                                 if rec["name_label"] == label],
    }
    if name in reads:
        return reads[name]
    if name.startswith("get_") and name[4:] in fields and message.max_params == 1:
        field = name[4:]
        return lambda ctx, ref: _plain_copy(ctx.db.get(cls, ref)[field])
    if cls not in CLASSES:
        return None
    if message.implicit and name == "create" and message.max_params == 1:
        return lambda ctx, rec: generic_create(ctx, cls, rec)
    if message.implicit and name == "destroy":
        return lambda ctx, ref: ctx.db.destroy(cls, ref)
    for prefix, arity in (("set_", 2), ("add_to_", 3), ("remove_from_", 2), ("add_", 2),
                          ("remove_", 2)):
        field = name[len(prefix):]
        # an explicit message that only looks like a field edit (host.set_power_on_mode
        # takes a config too) is not a plain field edit
        if name.startswith(prefix) and field in CLASSES[cls] and message.max_params == arity:
            return _field_call(cls, prefix, field)
    return None


def _field_call(cls: str, prefix: str, field: str) -> Handler | None:
    kind = surface.FIELDS[cls][field].type
    if prefix == "set_":
        return lambda ctx, ref, v: set_field(ctx, cls, ref, field, v)
    if kind.endswith(" map") and prefix == "add_to_":
        return lambda ctx, ref, k, v: map_add(ctx, cls, ref, field, k, v)
    if kind.endswith(" map") and prefix == "remove_from_":
        return lambda ctx, ref, k: map_remove(ctx, cls, ref, field, k)
    if kind.endswith(" set") and prefix in ("add_", "remove_"):
        add = prefix == "add_"
        return lambda ctx, ref, v: set_member(ctx, cls, ref, field, v, add)
    return None


def _plain_copy(value: Any) -> Any:
    return value.copy() if isinstance(value, (dict, list)) else value


def _records(ctx: Context, cls: str, expr: str | None) -> dict[str, dict[str, Any]]:
    pred = compile_where(expr) if expr is not None else None
    # no lock: the table copy and its records are as of one moment (copy on write)
    return {ref: copy_record(rec) for ref, rec in ctx.db.all(cls).items()
            if pred is None or pred(rec)}


def coerce(cls: str, field: str, value: Any) -> Any:
    """Check and convert a client value to the field's type (ints are decimal strings)."""
    kind = surface.FIELDS[cls][field].type
    if kind == "bool":
        if isinstance(value, str) and value.lower() in ("true", "false"):
            return value.lower() == "true"
        if not isinstance(value, bool):
            raise XapiError("FIELD_TYPE_ERROR", field)
        return value
    if kind == "float":
        try:
            return float(value)
        except (TypeError, ValueError):
            raise XapiError("FIELD_TYPE_ERROR", field) from None
    if kind.endswith(" map"):
        if not isinstance(value, dict):
            raise XapiError("FIELD_TYPE_ERROR", field)
        return {str(k): str(v) if not isinstance(v, str) else v for k, v in value.items()}
    if kind.endswith(" set"):
        if not isinstance(value, list):
            raise XapiError("FIELD_TYPE_ERROR", field)
        return list(value)
    if kind == "datetime":
        return value if isinstance(value, _dt.datetime) else CLASSES[cls][field]
    if isinstance(value, (bool, dict, list)):
        raise XapiError("FIELD_TYPE_ERROR", field)
    text = str(value)
    if kind == "int" and not text.lstrip("-").isdigit():
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
    """``<class>.create(record)``: the constructor's fields (RW and StaticRO) are taken from
    the record; others (server-set DynamicRO, unknown names) are ignored; refs are checked."""
    if not isinstance(rec, dict):
        raise XapiError("FIELD_TYPE_ERROR", "record")
    spec = surface.FIELDS[cls]
    fields: dict[str, Any] = {}
    for key, value in rec.items():
        if key in CLASSES[cls] and spec[key].in_constructor:
            fields[key] = coerce(cls, key, value)
    with ctx.db.lock:
        for (ccls, cfield), (pcls, _) in RELATIONS.items():
            if ccls == cls and cfield in fields and fields[cfield] not in ("", NULL) \
                    and not ctx.db.exists(pcls, fields[cfield]):
                raise XapiError("HANDLE_INVALID", pcls, fields[cfield])
        return ctx.db.create(cls, fields)
