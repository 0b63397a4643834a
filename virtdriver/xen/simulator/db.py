"""The object registry: records by class and ref, relations, generations for events.

One re-entrant lock guards everything; ``changed`` (a Condition on it) wakes event.from.
"""

from __future__ import annotations

import bisect
import datetime as _dt
import secrets
import threading
import uuid as _uuid
from typing import Any

from . import surface
from .errors import XapiError
from .schema import NULL, RELATIONS, defaults


def now() -> _dt.datetime:
    """The current UTC time without microseconds (XAPI's DateTime resolution)."""
    return _dt.datetime.now(_dt.timezone.utc).replace(microsecond=0)


def new_uuid() -> str:
    """A random (unguessable) UUID string."""
    return str(_uuid.UUID(bytes=secrets.token_bytes(16), version=4))


def new_ref() -> str:
    """A fresh ``OpaqueRef:<uuid>``."""
    return "OpaqueRef:" + new_uuid()


def copy_record(rec: dict[str, Any]) -> dict[str, Any]:
    """A copy deep enough for flat maps and sets."""
    return {k: (v.copy() if isinstance(v, (dict, list)) else v) for k, v in rec.items()}


class Registry:
    """All XAPI objects of one simulator, with change tracking for events."""

    def __init__(self) -> None:
        self.lock = threading.RLock()
        self.changed = threading.Condition(self.lock)
        # a table for every class of the surface: those not modelled stay empty
        self.tables: dict[str, dict[str, dict[str, Any]]] = {c: {} for c in surface.CLASSES}
        self.by_uuid: dict[str, dict[str, str]] = {c: {} for c in surface.CLASSES}
        self.generation = 0
        self.log: list[tuple[int, str, str]] = []  # (generation, class, ref), ascending
        self.created: dict[tuple[str, str], int] = {}
        self.deleted: dict[tuple[str, str], int] = {}

    # -- change tracking -------------------------------------------------------------
    def touch(self, cls: str, ref: str) -> int:
        """Record a change of (cls, ref); returns the new generation."""
        with self.lock:
            self.generation += 1
            self.log.append((self.generation, cls, ref))
            self.changed.notify_all()
            return self.generation

    def changes_since(self, gen: int) -> list[tuple[str, str]]:
        """Distinct (class, ref) changed after generation ``gen``, oldest first."""
        with self.lock:
            pos = bisect.bisect_right(self.log, (gen, "\uffff", "\uffff"))
            seen: dict[tuple[str, str], None] = {}
            for _, cls, ref in self.log[pos:]:
                seen.pop((cls, ref), None)
                seen[(cls, ref)] = None
            return list(seen)

    # -- access ------------------------------------------------------------------------
    def get(self, cls: str, ref: str) -> dict[str, Any]:
        """The live record; HANDLE_INVALID when missing."""
        rec = self.tables[cls].get(ref) if isinstance(ref, str) else None
        if rec is None:
            raise XapiError("HANDLE_INVALID", cls, ref)
        return rec

    def exists(self, cls: str, ref: str) -> bool:
        """Whether (cls, ref) is a live object."""
        return isinstance(ref, str) and ref in self.tables[cls]

    def ref_of_uuid(self, cls: str, uuid: str) -> str:
        """The ref of an object by uuid; UUID_INVALID when missing."""
        ref = self.by_uuid[cls].get(uuid)
        if ref is None:
            raise XapiError("UUID_INVALID", cls, uuid)
        return ref

    def all(self, cls: str) -> dict[str, dict[str, Any]]:
        """The live table of ``cls`` (do not mutate outside the lock)."""
        return self.tables[cls]

    # -- mutation ----------------------------------------------------------------------
    def create(self, cls: str, fields: dict[str, Any] | None = None, ref: str | None = None) -> str:
        """Insert a record with every field (defaults filled in); returns its ref."""
        with self.lock:
            rec = defaults(cls)
            for key, value in (fields or {}).items():
                if key in rec:
                    rec[key] = value
            if not rec["uuid"]:
                rec["uuid"] = new_uuid()
            ref = ref or new_ref()
            self.tables[cls][ref] = rec
            self.by_uuid[cls][rec["uuid"]] = ref
            gen = self.touch(cls, ref)
            self.created[(cls, ref)] = gen
            for (ccls, cfield), (pcls, pfield) in RELATIONS.items():
                if ccls == cls:
                    self._link(pcls, pfield, rec[cfield], ref)
            return ref

    def destroy(self, cls: str, ref: str) -> None:
        """Delete a record and unlink it from its parents."""
        with self.lock:
            rec = self.get(cls, ref)
            for (ccls, cfield), (pcls, pfield) in RELATIONS.items():
                if ccls == cls:
                    self._unlink(pcls, pfield, rec[cfield], ref)
            del self.tables[cls][ref]
            self.by_uuid[cls].pop(rec["uuid"], None)
            self.deleted[(cls, ref)] = self.touch(cls, ref)

    def set(self, cls: str, ref: str, field: str, value: Any) -> None:
        """Set one field, keeping reverse-reference sets in step."""
        with self.lock:
            rec = self.get(cls, ref)
            rel = RELATIONS.get((cls, field))
            if rel is not None and rec[field] != value:
                self._unlink(rel[0], rel[1], rec[field], ref)
                self._link(rel[0], rel[1], value, ref)
            if field == "uuid":
                self.by_uuid[cls].pop(rec["uuid"], None)
                self.by_uuid[cls][value] = ref
            rec[field] = value
            self.touch(cls, ref)

    def update(self, cls: str, ref: str, **fields: Any) -> None:
        """Set several fields."""
        with self.lock:
            for key, value in fields.items():
                self.set(cls, ref, key, value)

    def _link(self, pcls: str, pfield: str, pref: Any, ref: str) -> None:
        parent = self.tables[pcls].get(pref) if pref and pref != NULL else None
        if parent is not None and ref not in parent[pfield]:
            parent[pfield].append(ref)
            self.touch(pcls, pref)

    def _unlink(self, pcls: str, pfield: str, pref: Any, ref: str) -> None:
        parent = self.tables[pcls].get(pref) if pref and pref != NULL else None
        if parent is not None and ref in parent[pfield]:
            parent[pfield].remove(ref)
            self.touch(pcls, pref)
