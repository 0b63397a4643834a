"""session.*: login (with the configured delay on bad credentials), logout, lookups."""

from __future__ import annotations

import time
from typing import Any

from ..context import Context, api
from ..errors import XapiError


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
