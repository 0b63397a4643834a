"""The object registry: records by class and ref, relations, generations for events.

Writers take one re-entrant lock; readers take none (records are copy on write); ``changed``
wakes event.from.  Changes are tracked as xapi's database tracks them: a creation and a
last-change generation per live object and a short queue of deletions per class, so memory
and the cost of event.from follow the objects, not the history.
"""

from __future__ import annotations

import bisect
import datetime as _dt
import secrets
import threading
import uuid as _uuid
from typing import Any, NamedTuple

from . import surface
from .errors import XapiError
from .schema import NULL, RELATIONS, defaults

#: Deletions remembered per class, as xapi's database keeps them (``db_cache_types.ml``,
#: ``Table.remove``: once the queue reaches 512 it is cut back to the latest 256).  A token
#: older than the deletions kept misses their ``del`` events, as on a real pool.
DELETIONS_MAX, DELETIONS_KEPT = 512, 256


class Change(NamedTuple):
    """One object's change after a generation: its latest change, or its deletion."""

    gen: int  #: generation of the change (of the deletion when ``deleted``)
    cls: str
    ref: str
    created: int  #: generation the object was created at
    deleted: bool


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
    """All XAPI objects of one simulator, with change tracking for events.

    Writers take ``lock`` (re-entrant: a model holds it across the checks and changes of
    one operation) and never change a published record in place: every change publishes a
    new record dict (copy on write).  So readers take no lock: a record they get is whole
    and never changes under them, and a long write does not make reads wait.  ``changed``
    (a condition with its own lock) wakes event waiters after each change.
    """

    def __init__(self) -> None:
        self.lock = threading.RLock()
        self.changed = threading.Condition(threading.Lock())
        # a table for every class of the surface: those not modelled stay empty
        self.tables: dict[str, dict[str, dict[str, Any]]] = {c: {} for c in surface.CLASSES}
        self.by_uuid: dict[str, dict[str, str]] = {c: {} for c in surface.CLASSES}
        self.generation = 0
        # per class: ref -> generation of creation / of the last change, for live objects
        self.created: dict[str, dict[str, int]] = {c: {} for c in surface.CLASSES}
        self.modified: dict[str, dict[str, int]] = {c: {} for c in surface.CLASSES}
        # per class: (deleted, created, ref) of the latest deletions, ascending
        self.deletions: dict[str, list[tuple[int, int, str]]] = {c: [] for c in surface.CLASSES}
        # per class: generation of its latest change (a waiter skips unchanged classes)
        self.class_changed: dict[str, int] = {c: 0 for c in surface.CLASSES}

    # -- change tracking -------------------------------------------------------------
    def touch(self, cls: str, ref: str) -> int:
        """Record a change of (cls, ref); returns the new generation."""
        with self.lock:
            gen = self.generation + 1
            # the change is on record before the generation moves: a reader that has seen a
            # generation finds every change up to it
            if ref in self.tables[cls]:
                self.modified[cls][ref] = gen
            self.class_changed[cls] = gen
            self.generation = gen
        with self.changed:
            self.changed.notify_all()
        return gen

    def changes_since(self, gen: int, upto: int, cls: str,
                      refs: set[str] | None = None) -> list[Change]:
        """The changes of ``cls`` (only of ``refs`` when given) after generation ``gen`` up to
        ``upto``, oldest first: each live object's latest change and each deletion.

        An object changed again after ``upto`` is left out: a later call (from ``upto``)
        reports it, so nothing is skipped and nothing is reported twice.  No lock: the
        tables read are copied first (a copy of a dict is atomic under the interpreter lock)
        and a deletion queue is only appended to or replaced.
        """
        if self.class_changed[cls] <= gen:
            return []
        created = self.created[cls]
        modified = dict(self.modified[cls]) if refs is None else \
            {ref: self.modified[cls].get(ref, 0) for ref in refs}
        out = [Change(mod, cls, ref, created.get(ref, 0), False)
               for ref, mod in modified.items() if gen < mod <= upto]
        queue = self.deletions[cls]
        for deleted, made, ref in queue[bisect.bisect_right(queue, gen, key=lambda d: d[0]):]:
            if deleted > upto:
                break
            if refs is None or ref in refs:
                out.append(Change(deleted, cls, ref, made, True))
        out.sort()
        return out

    # -- access (no lock: records are never changed in place) -----------------------------
    def get(self, cls: str, ref: str) -> dict[str, Any]:
        """The current record (do not change it: publish changes with set/update);
        HANDLE_INVALID when missing."""
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
        """ref -> record of every object of ``cls``, as of now (a copy of the table, which
        a writer may change while the caller iterates)."""
        return dict(self.tables[cls])

    def count(self, cls: str) -> int:
        """How many objects of ``cls`` exist."""
        return len(self.tables[cls])

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
            self.created[cls][ref] = self.generation + 1  # the generation touch makes
            self.tables[cls][ref] = rec
            self.by_uuid[cls][rec["uuid"]] = ref
            self.touch(cls, ref)
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
            self.modified[cls].pop(ref, None)
            deletion = (self.generation + 1, self.created[cls].pop(ref, 0), ref)  # touch's
            queue = self.deletions[cls]
            if len(queue) + 1 < DELETIONS_MAX:
                queue.append(deletion)
            else:  # a new list: a reader may be walking the old one
                self.deletions[cls] = [*queue[len(queue) - DELETIONS_KEPT:], deletion]
            self.touch(cls, ref)

    def set(self, cls: str, ref: str, field: str, value: Any) -> None:
        """Set one field, keeping reverse-reference sets in step."""
        self.update(cls, ref, **{field: value})

    def update(self, cls: str, ref: str, **fields: Any) -> None:
        """Set several fields at once: readers see the record before or after, never
        half-way."""
        with self.lock:
            rec = self.get(cls, ref)
            new = dict(rec)
            for field, value in fields.items():
                rel = RELATIONS.get((cls, field))
                if rel is not None and rec[field] != value:
                    self._unlink(rel[0], rel[1], rec[field], ref)
                    self._link(rel[0], rel[1], value, ref)
                if field == "uuid":
                    self.by_uuid[cls].pop(rec["uuid"], None)
                    self.by_uuid[cls][value] = ref
                new[field] = value
            self.tables[cls][ref] = new
            self.touch(cls, ref)

    def _link(self, pcls: str, pfield: str, pref: Any, ref: str) -> None:
        parent = self.tables[pcls].get(pref) if pref and pref != NULL else None
        if parent is not None and ref not in parent[pfield]:
            self.tables[pcls][pref] = {**parent, pfield: [*parent[pfield], ref]}
            self.touch(pcls, pref)

    def _unlink(self, pcls: str, pfield: str, pref: Any, ref: str) -> None:
        parent = self.tables[pcls].get(pref) if pref and pref != NULL else None
        if parent is not None and ref in parent[pfield]:
            self.tables[pcls][pref] = {**parent, pfield: [r for r in parent[pfield] if r != ref]}
            self.touch(pcls, pref)
