"""Sessions: login, logout, idle expiry."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ..db import new_ref, new_uuid
from ..dispatch import Context, api
from ..errors import XapiError

if TYPE_CHECKING:
    from ..backend import Backend


@dataclass
class Session:
    """One logged-in session."""

    ref: str
    uuid: str
    username: str
    originator: str
    last_active: float
    subscription: dict[str, Any] = field(default_factory=dict)


class Sessions:
    """Session store with idle expiry; above MAX_SESSIONS the oldest is dropped (as xapi)."""

    MAX_SESSIONS = 400

    def __init__(self, backend: Backend) -> None:
        self.backend = backend
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
        timeout = self.backend.config.session_idle_timeout
        with self.lock:
            ses = self.by_ref.get(ref) if isinstance(ref, str) else None
            if ses is not None and timeout is not None and \
                    time.monotonic() - ses.last_active > timeout:
                del self.by_ref[ref]
                ses = None
            if ses is None:
                raise XapiError("SESSION_INVALID", ref)
            ses.last_active = time.monotonic()
            return ses

    def logout(self, ref: str) -> None:
        """Forget a session."""
        with self.lock:
            self.by_ref.pop(ref, None)

    def expire_all(self) -> None:
        """Invalidate every session (test control)."""
        with self.lock:
            self.by_ref.clear()


@api("session.login_with_password")
def login_with_password(ctx: Context, uname: str, pwd: str, version: str = "1.1",
                        originator: str = "") -> str:
    """Check credentials (after the configured delay on failure) and open a session."""
    cfg = ctx.backend.config
    if uname != cfg.username or pwd != cfg.password:
        if cfg.auth_failure_delay:
            time.sleep(cfg.auth_failure_delay)
        raise XapiError("SESSION_AUTHENTICATION_FAILED", uname,
                        "Authentication failure")
    return ctx.backend.sessions.login(uname, originator)


@api("session.slave_local_login_with_password")
def slave_local_login(ctx: Context, uname: str, pwd: str) -> str:
    """Same as login_with_password in a one-pool simulator."""
    return login_with_password(ctx, uname, pwd)


@api("session.logout")
def logout(ctx: Context) -> None:
    """Close the caller's session."""
    ctx.backend.sessions.logout(ctx.session or "")


@api("session.local_logout")
def local_logout(ctx: Context) -> None:
    """Close the caller's session."""
    logout(ctx)


@api("session.get_this_host")
def get_this_host(ctx: Context, ref: str) -> str:
    """The host the session is logged in to (the pool master)."""
    ctx.backend.sessions.check(ref)
    return ctx.backend.master()


@api("session.get_uuid")
def get_uuid(ctx: Context, ref: str) -> str:
    """The session's uuid."""
    return ctx.backend.sessions.check(ref).uuid


@api("session.get_this_user")
def get_this_user(ctx: Context, ref: str) -> str:
    """Simulated subject ref (NULL for the local superuser)."""
    ctx.backend.sessions.check(ref)
    return "OpaqueRef:NULL"


@api("session.get_record")
def get_record(ctx: Context, ref: str) -> dict[str, Any]:
    """A minimal session record."""
    ses = ctx.backend.sessions.check(ref)
    return {"uuid": ses.uuid, "this_host": ctx.backend.master(), "this_user": "OpaqueRef:NULL",
            "is_local_superuser": True, "originator": ses.originator,
            "auth_user_name": ses.username}


@api("system.listMethods")
def list_methods(ctx: Context) -> list[str]:
    """Every method name (no ``Async.`` names)."""
    from ..dispatch import method_names

    return method_names()
