"""session.*: login (with the configured delay on bad credentials), logout, lookups."""

from __future__ import annotations

import time
from typing import Any

from .. import surface
from ..context import Context, Handler, api
from ..errors import XapiError
from ..schema import NULL
from ..sessions import Session


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


def session_record(ctx: Context, ses: Session) -> dict[str, Any]:
    """The session's record, with every field of XAPI's session class."""
    return {
        "uuid": ses.uuid, "this_host": ctx.backend.master(), "this_user": NULL,
        "last_active": ses.last_seen, "pool": False, "other_config": {},
        "is_local_superuser": True, "subject": NULL, "validation_time": ses.logged_in,
        "auth_user_sid": "", "auth_user_name": ses.username, "rbac_permissions": [],
        "tasks": [], "parent": NULL, "originator": ses.originator,
        "client_certificate": False,
    }


@api("session.get_record")
def get_record(ctx: Context, ref: str) -> dict[str, Any]:
    """The record of a live session (SESSION_INVALID for one that is not)."""
    return session_record(ctx, ctx.backend.sessions.check(ref))


@api("session.get_by_uuid")
def get_by_uuid(ctx: Context, uuid: str) -> str:
    """The ref of a live session by uuid."""
    ses = ctx.backend.sessions.by_uuid(uuid)
    if ses is None:
        raise XapiError("UUID_INVALID", "session", uuid)
    return ses.ref


def _getter(name: str) -> Handler:
    def get(ctx: Context, ref: str) -> Any:
        return session_record(ctx, ctx.backend.sessions.check(ref))[name]

    get.__doc__ = f"The session's ``{name}``."
    return get


# Sessions live in the session store, not in the registry: every field getter of the
# class reads the record above.
for _name in surface.FIELDS["session"]:
    api(f"session.get_{_name}")(_getter(_name))
