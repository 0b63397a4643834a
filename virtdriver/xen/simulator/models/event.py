"""Events: ``event.from`` with tokens, class filters and coalescing; legacy register/next."""

from __future__ import annotations

import time
from typing import Any

from ..context import Context, api
from ..db import Change, Registry, copy_record, now
from ..errors import XapiError
from ..schema import CLASSES, canonical_class
from ..wire import fmt_datetime

Filter = tuple[set[str], set[tuple[str, str]], bool]
#: The fields of one event as event.from sends it: the wire record of xapi_event.ml (its
#: ``ev_struct_remap``); ``snapshot`` is absent on ``del``.  The legacy event.next also
#: sends ``obj_uuid``, the remaining field of the datamodel's event class.
EVENT_FIELDS = ("id", "timestamp", "class", "operation", "ref", "snapshot")


def token_of(gen: int) -> str:
    """Token text for a generation (compares correctly as a string)."""
    return f"{gen:020d},{0:020d}"


def parse_token(token: Any) -> int:
    """Generation of a token; "" is the beginning."""
    if token in ("", None):
        return 0
    try:
        return int(str(token).split(",")[0])
    except ValueError:
        raise XapiError("EVENT_FROM_TOKEN_PARSE_FAILURE", token) from None


def parse_classes(classes: Any) -> Filter:
    """(classes, (class, ref) pairs, everything?) from a subscription list."""
    if not isinstance(classes, list):
        raise XapiError("EVENT_SUBSCRIPTION_PARSE_FAILURE", str(classes))
    whole: set[str] = set()
    objects: set[tuple[str, str]] = set()
    everything = False
    for item in classes:
        text = str(item)
        if text == "*":
            everything = True
            continue
        name, _, ref = text.partition("/")
        cls = canonical_class(name)
        if cls is None:
            if name.lower() in ("session", "user", "secret", "blob", "data_source"):
                continue
            raise XapiError("EVENT_SUBSCRIPTION_PARSE_FAILURE", text)
        if ref:
            objects.add((cls, ref))
        else:
            whole.add(cls)
    return whole, objects, everything


def _event(change: Change, operation: str, rec: dict[str, Any] | None,
           stamp: str) -> dict[str, Any]:
    # the id is the generation of what is reported, as xapi's: of the creation for an add,
    # of the last change for a mod, of the deletion for a del
    ident = change.created if operation == "add" else change.gen
    ev: dict[str, Any] = {"id": str(ident), "timestamp": stamp, "class": change.cls.lower(),
                          "operation": operation, "ref": change.ref}
    if rec is not None:
        ev["snapshot"] = copy_record(rec)
    return ev


def collect(db: Registry, flt: Filter, gen: int, upto: int,
            token: int | None = None) -> list[dict[str, Any]]:
    """Coalesced events for the changes after ``gen`` up to ``upto`` that match the filter,
    oldest first, each with the object's record as it is now; an object made after the
    client's ``token`` (default ``gen``) is an ``add``, one made and deleted since is not
    reported.

    As xapi's ``from`` does it (``xapi_event.ml``, ``collect_events``): the current objects
    are looked at, not a history, so token "" (``gen`` 0) answers with an ``add`` for every
    current object, at a cost that follows the objects and not the changes since start."""
    token = gen if token is None else token
    whole, objects, everything = flt
    classes = CLASSES if everything else whole
    changes = [change for cls in classes for change in db.changes_since(gen, upto, cls)]
    picked: dict[str, set[str]] = {}
    for cls, ref in objects:
        if cls not in classes:
            picked.setdefault(cls, set()).add(ref)
    for cls, refs in picked.items():
        changes += db.changes_since(gen, upto, cls, refs)
    changes.sort()
    out: list[dict[str, Any]] = []
    stamp = fmt_datetime(now())
    for change in changes:
        born_after = change.created > token
        if change.deleted:
            if not born_after:
                out.append(_event(change, "del", None, stamp))
            continue
        rec = db.tables[change.cls].get(change.ref)
        if rec is not None:  # else deleted after upto: the next call reports it
            out.append(_event(change, "add" if born_after else "mod", rec, stamp))
    return out


def wait_events(ctx: Context, flt: Filter, gen: int,
                timeout: float) -> tuple[list[dict[str, Any]], int]:
    """Block until events after ``gen`` exist or ``timeout`` passes. Returns the events and
    the generation they cover; no lock is held while reading (records are copy on write),
    and a change after that generation is left for the next call, never skipped."""
    db = ctx.db
    deadline = time.monotonic() + max(0.0, timeout)
    token = gen
    while True:
        upto = db.generation
        events = collect(db, flt, gen, upto, token) if upto > gen else []
        remaining = deadline - time.monotonic()
        if events or remaining <= 0 or ctx.backend.stopping.is_set():
            return events, upto
        gen = upto  # what changed up to here is not for this filter: don't read it again
        with db.changed:
            if db.generation == upto and not ctx.backend.stopping.is_set():
                db.changed.wait(min(remaining, 1.0))


@api("event.from")
def event_from(ctx: Context, classes: list[str], token: str, timeout: Any) -> dict[str, Any]:
    """Changes since ``token`` of the subscribed classes, waiting up to ``timeout`` seconds."""
    flt = parse_classes(classes)
    gen = parse_token(token)
    try:
        seconds = float(timeout)
    except (TypeError, ValueError):
        raise XapiError("FIELD_TYPE_ERROR", "timeout") from None
    events, covered = wait_events(ctx, flt, gen, seconds)
    counts = {cls.lower(): ctx.db.count(cls) for cls in CLASSES
              if flt[2] or cls in flt[0] or any(c == cls for c, _ in flt[1])}
    counts["task"] = ctx.db.count("task")
    return {"events": events, "valid_ref_counts": counts, "token": token_of(covered)}


@api("event.inject")
def inject(ctx: Context, cls: str, ref: str) -> str:
    """Touch an object; the returned token makes the next event.from return at once."""
    name = canonical_class(cls)
    if name is None:
        raise XapiError("EVENT_SUBSCRIPTION_PARSE_FAILURE", cls)
    with ctx.db.lock:
        ctx.db.get(name, ref)
        gen = ctx.db.touch(name, ref)
    return token_of(gen - 1)


@api("event.get_current_id")
def get_current_id(ctx: Context) -> str:
    """The current generation, as a string."""
    return str(ctx.db.generation)


@api("event.register")
def register(ctx: Context, classes: list[str]) -> None:
    """Legacy: subscribe the session to classes."""
    flt = parse_classes(classes)
    ses = ctx.backend.sessions.check(ctx.session)
    old = ses.subscription.get("filter")
    if old is not None:
        flt = (flt[0] | old[0], flt[1] | old[1], flt[2] or old[2])
    ses.subscription.update(filter=flt, gen=ses.subscription.get("gen", ctx.db.generation))


@api("event.unregister")
def unregister(ctx: Context, classes: list[str]) -> None:
    """Legacy: drop the subscription."""
    ses = ctx.backend.sessions.check(ctx.session)
    ses.subscription.clear()


@api("event.next")
def next_events(ctx: Context) -> list[dict[str, Any]]:
    """Legacy: block until events for the registered classes arrive."""
    ses = ctx.backend.sessions.check(ctx.session)
    if "filter" not in ses.subscription:
        raise XapiError("SESSION_NOT_REGISTERED", ctx.session)
    events: list[dict[str, Any]] = []
    while not events and not ctx.backend.stopping.is_set():
        events, ses.subscription["gen"] = wait_events(ctx, ses.subscription["filter"],
                                                      ses.subscription["gen"], 30.0)
    for ev in events:
        ev["obj_uuid"] = ev.get("snapshot", {}).get("uuid", "")
    return events
