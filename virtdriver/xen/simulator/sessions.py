"""The session store: login, logout, idle expiry (state; the session.* messages are in
models/session.py)."""

from __future__ import annotations

import datetime as _dt
import threading
import time
from dataclasses import dataclass, field
from typing import Any

from .db import new_ref, new_uuid, now
from .errors import XapiError


@dataclass
class Session:
    """One logged-in session."""

    ref: str
    uuid: str
    username: str
    originator: str
    last_active: float
    subscription: dict[str, Any] = field(default_factory=dict)
    #: wall-clock login and last use, for the session record (``validation_time``,
    #: ``last_active``)
    logged_in: _dt.datetime = field(default_factory=now)
    last_seen: _dt.datetime = field(default_factory=now)


class Sessions:
    """Session store with idle expiry; above MAX_SESSIONS the oldest is dropped (as xapi)."""

    MAX_SESSIONS = 400

    def __init__(self, idle_timeout: float | None = None) -> None:
        self.idle_timeout = idle_timeout
        self.lock = threading.Lock()
        self.by_ref: dict[str, Session] = {}

    def login(self, username: str, originator: str) -> str:
        """Create a session and return its ref."""
        ses = Session(new_ref(), new_uuid(), username, originator, time.monotonic())
        with self.lock:
            self.by_ref[ses.ref] = ses
            while len(self.by_ref) > self.MAX_SESSIONS:
                del self.by_ref[next(iter(self.by_ref))]
        return ses.ref

    def check(self, ref: Any) -> Session:
        """The live session ``ref`` (refreshing its idle clock); SESSION_INVALID otherwise."""
        timeout = self.idle_timeout
        with self.lock:
            ses = self.by_ref.get(ref) if isinstance(ref, str) else None
            if ses is not None and timeout is not None and \
                    time.monotonic() - ses.last_active > timeout:
                del self.by_ref[ref]
                ses = None
            if ses is None:
                raise XapiError("SESSION_INVALID", ref)
            ses.last_active = time.monotonic()
            ses.last_seen = now()
            return ses

    def by_uuid(self, uuid: str) -> Session | None:
        """The live session with this uuid, if any."""
        with self.lock:
            return next((s for s in self.by_ref.values() if s.uuid == uuid), None)

    def logout(self, ref: str) -> None:
        """Forget a session."""
        with self.lock:
            self.by_ref.pop(ref, None)

    def expire_all(self) -> None:
        """Invalidate every session (test control)."""
        with self.lock:
            self.by_ref.clear()
