"""Sessions: login forms, bad credentials (with delay), logout, unknown and expired sessions."""

from __future__ import annotations

import time
import xmlrpc.client
from typing import Any

import pytest
import XenAPI

from virtdriver.xen.simulator import Simulator


@pytest.fixture(scope="module")
def sim_options() -> dict[str, Any]:
    """Short idle expiry and a visible auth-failure delay."""
    return {"session_idle_timeout": 1.0, "auth_failure_delay": 0.3, "username": "admin",
            "password": "pw"}


def raw(sim: Simulator) -> Any:
    """A plain XML-RPC proxy (no silent re-login)."""
    return xmlrpc.client.ServerProxy(sim.url, allow_none=True)


def test_login_with_two_to_four_params(sim: Simulator) -> None:
    """2, 3 and 4 parameters log in; 1 and 5 are count mismatches."""
    proxy = raw(sim)
    for params in (("admin", "pw"), ("admin", "pw", "1.1"), ("admin", "pw", "2.1", "t")):
        reply = proxy.session.login_with_password(*params)
        assert reply["Status"] == "Success" and reply["Value"].startswith("OpaqueRef:")
    for params in (("admin",), ("admin", "pw", "1", "2", "3")):
        reply = proxy.session.login_with_password(*params)
        assert reply["ErrorDescription"][0] == "MESSAGE_PARAMETER_COUNT_MISMATCH"


def test_bad_password_after_delay(sim: Simulator) -> None:
    """SESSION_AUTHENTICATION_FAILED [uname, msg] after auth_failure_delay."""
    ses = XenAPI.Session(sim.url)
    start = time.monotonic()
    with pytest.raises(XenAPI.Failure) as info:
        ses.xenapi.login_with_password("admin", "wrong", "2.1", "t")
    assert time.monotonic() - start >= 0.3
    assert info.value.details[0] == "SESSION_AUTHENTICATION_FAILED"
    assert info.value.details[1] == "admin" and len(info.value.details) == 3


def test_unknown_session_and_logout(sim: Simulator) -> None:
    """SESSION_INVALID [ref] for an unknown ref and after logout."""
    proxy = raw(sim)
    assert proxy.VM.get_all("OpaqueRef:bogus")["ErrorDescription"] == [
        "SESSION_INVALID", "OpaqueRef:bogus"]
    ses = proxy.session.login_with_password("admin", "pw")["Value"]
    assert proxy.VM.get_all(ses)["Status"] == "Success"
    host = proxy.session.get_this_host(ses, ses)["Value"]
    assert proxy.host.get_record(ses, host)["Status"] == "Success"
    assert proxy.pool.get_master(ses, proxy.pool.get_all(ses)["Value"][0])["Value"] == host
    assert proxy.session.logout(ses)["Status"] == "Success"
    assert proxy.VM.get_all(ses)["ErrorDescription"] == ["SESSION_INVALID", ses]


def test_idle_expiry(sim: Simulator) -> None:
    """A session idle longer than session_idle_timeout is invalid; activity keeps it alive."""
    proxy = raw(sim)
    ses = proxy.session.login_with_password("admin", "pw")["Value"]
    for _ in range(3):
        time.sleep(0.4)
        assert proxy.VM.get_all(ses)["Status"] == "Success"
    time.sleep(1.2)
    assert proxy.VM.get_all(ses)["ErrorDescription"] == ["SESSION_INVALID", ses]


def test_refs_are_unique_and_random(sim: Simulator) -> None:
    """Session refs differ and carry 122 random bits (uuid4)."""
    proxy = raw(sim)
    refs = {proxy.session.login_with_password("admin", "pw")["Value"] for _ in range(20)}
    assert len(refs) == 20
    assert all(r[len("OpaqueRef:"):][14] == "4" for r in refs)


def test_python_client_api_version(sim: Simulator) -> None:
    """The PyPI client's lazy API_version calls (pool.get_master, host.get_API_version_*)."""
    ses = XenAPI.Session(sim.url)
    ses.xenapi.login_with_password("admin", "pw", "2.1", "t")
    assert ses._get_api_version() == "2.16"
    ses.xenapi.session.logout()
