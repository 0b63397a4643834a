"""Fault injection (Python API and /_sim/ HTTP controls), TLS, and clean shutdown."""

from __future__ import annotations

import contextlib
import json
import os
import socket
import ssl
import threading
import time
import urllib.error
import urllib.request
import xmlrpc.client
from typing import Any

import pytest
import trustme
import XenAPI

from virtdriver.xen.simulator import Simulator
from virtdriver.xen.simulator.errors import ERRORS

from .conftest import failure, new_vm


def control(sim: Simulator, name: str, body: dict[str, Any] | None = None) -> Any:
    """POST /_sim/<name> with a JSON body."""
    req = urllib.request.Request(f"{sim.url}/_sim/{name}", data=json.dumps(body or {}).encode(),
                                 method="POST", headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=10) as resp:
        return json.loads(resp.read())


def test_inject_fault_count(sim: Simulator, xapi: Any) -> None:
    """The next N calls fail with the given error; then the call works again."""
    vm = new_vm(xapi, "faulty")
    sim.inject_fault("VM.start", ["SR_BACKEND_FAILURE_46", "", "", ""], count=2)
    for _ in range(2):
        assert failure(xapi.VM.start, vm, False, False) == ["SR_BACKEND_FAILURE_46", "", "", ""]
    assert xapi.VM.get_power_state(vm) == "Halted"
    xapi.VM.start(vm, False, False)
    assert xapi.VM.get_power_state(vm) == "Running"
    sim.inject_fault("VM.hard_shutdown", ["INTERNAL_ERROR", "boom"])
    task = xapi.Async.VM.hard_shutdown(vm)
    for _ in range(100):
        if xapi.task.get_status(task) != "pending":
            break
        time.sleep(0.02)
    assert xapi.task.get_error_info(task) == ["INTERNAL_ERROR", "boom"]
    sim.clear_faults()
    xapi.VM.hard_shutdown(vm)


@pytest.mark.parametrize("code", sorted(ERRORS))
def test_every_declared_error_round_trips(sim: Simulator, xapi: Any, code: str) -> None:
    """Every declared code reaches the client with its declared number of parameters."""
    params = [f"<{name}>" for name in ERRORS[code]]
    sim.inject_fault("VM.get_all", [code, *params])
    if code == "SESSION_INVALID":  # the PyPI client re-logs in silently on this one
        proxy = xmlrpc.client.ServerProxy(sim.url)
        ses = proxy.session.login_with_password("root", "secret")["Value"]
        assert proxy.VM.get_all(ses)["ErrorDescription"] == [code, *params]
    else:
        assert failure(xapi.VM.get_all) == [code, *params]


def test_inject_delay(sim: Simulator, xapi: Any) -> None:
    """inject_delay makes the method's task take that long, once."""
    vm = new_vm(xapi, "slow")
    sim.inject_delay("VM.start", 0.4)
    t0 = time.monotonic()
    xapi.VM.start(vm, False, False)
    assert time.monotonic() - t0 >= 0.4
    t0 = time.monotonic()
    xapi.VM.hard_reboot(vm)
    assert time.monotonic() - t0 < 0.3
    xapi.VM.hard_shutdown(vm)


def test_http_controls(sim: Simulator, xapi: Any) -> None:
    """/_sim/inject, /_sim/clear, /_sim/guest, /_sim/expire_sessions over HTTP."""
    vm = new_vm(xapi, "http-fault")
    assert control(sim, "inject", {"method": "VM.start", "error": ["HOST_OFFLINE", "h"],
                                   "count": 1}) == {"ok": True}
    assert failure(xapi.VM.start, vm, False, False) == ["HOST_OFFLINE", "h"]
    control(sim, "inject", {"method": "VM.start", "error": ["HOST_OFFLINE", "h"]})
    control(sim, "clear")
    xapi.VM.start(vm, False, False)
    state = control(sim, "guest", {"vm": xapi.VM.get_uuid(vm)})
    assert state["domid"] == xapi.VM.get_domid(vm)
    xapi.VM.hard_shutdown(vm)
    with pytest.raises(urllib.error.HTTPError) as info:
        control(sim, "nonsense")
    assert info.value.code == 400


def test_expire_sessions_then_relogin(sim: Simulator) -> None:
    """After expiry the raw session is invalid; the PyPI client re-logs in by itself."""
    ses = XenAPI.Session(sim.url)
    ses.xenapi.login_with_password("root", "secret", "2.1", "t")
    old = ses._session
    control(sim, "expire_sessions")
    assert ses.xenapi.VM.get_all()
    assert ses._session != old
    ses.xenapi.session.logout()


def test_controls_refused_from_non_loopback() -> None:
    """/_sim/ answers 403 to a peer that is not loopback (over a real non-loopback address
    when the machine has one, and always through the peer check itself)."""
    from virtdriver.xen.simulator.server import Handler

    def peer(address: str) -> bool:
        stub = Handler.__new__(Handler)
        stub.client_address = (address, 1234)
        return stub._loopback()

    assert peer("127.0.0.1") and peer("::1")
    assert not peer("192.0.2.10") and not peer("fd00::2") and not peer("garbage")
    for addr in (a for a in _addresses() if not a.startswith("127.")):
        with Simulator(host="0.0.0.0") as sim:
            url = f"http://{addr}:{sim.port}/_sim/clear"
            req = urllib.request.Request(url, data=b"{}", method="POST")
            with pytest.raises(urllib.error.HTTPError) as info:
                urllib.request.urlopen(req, timeout=10)
            assert info.value.code == 403
            assert control(sim, "clear") == {"ok": True}


def _addresses() -> list[str]:
    out = []
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.connect(("192.0.2.1", 9))
            out.append(s.getsockname()[0])
    except OSError:
        pass
    return out


def test_tls(tmp_path: Any) -> None:
    """https with a certificate; the client verifies it against the CA."""
    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1")
    cert_file, key_file = tmp_path / "cert.pem", tmp_path / "key.pem"
    cert.cert_chain_pems[0].write_to_path(str(cert_file))
    cert.private_key_pem.write_to_path(str(key_file))
    with Simulator(tls_cert=str(cert_file), tls_key=str(key_file)) as sim:
        assert sim.url.startswith("https://127.0.0.1:")
        ctx = ssl.create_default_context()
        ca.configure_trust(ctx)
        proxy = xmlrpc.client.ServerProxy(sim.url, context=ctx)
        assert proxy.session.login_with_password("root", "secret")["Status"] == "Success"
        ses = XenAPI.Session(sim.url, ignore_ssl=True)
        ses.xenapi.login_with_password("root", "secret", "2.1", "t")
        assert ses.xenapi.VM.get_all()
        ses.xenapi.session.logout()


def test_stop_cleans_up_threads_and_tempdir() -> None:
    """stop() ends long polls, task threads and timers, and deletes the temp dir."""
    before = set(threading.enumerate())
    sim = Simulator(task_delays={"VM.start": 5.0}, coalesce_delay=5.0).start()
    workdir = sim.workdir
    ses = XenAPI.Session(sim.url)
    ses.xenapi.login_with_password("root", "secret", "2.1", "t")
    vm = new_vm(ses.xenapi, "cleanup", disk=4096)
    ses.xenapi.VDI.snapshot(ses.xenapi.VBD.get_VDI(ses.xenapi.VM.get_VBDs(vm)[0]), {})
    ses.xenapi.Async.VM.start(vm, False, False)
    poll = threading.Thread(target=lambda: _quiet(ses.xenapi.event_from, ["pool"],
                                                  ses.xenapi.event_from(["pool"], "", 0)["token"],
                                                  30.0))
    poll.start()
    time.sleep(0.2)
    t0 = time.monotonic()
    sim.stop()
    poll.join(5)
    assert time.monotonic() - t0 < 5
    assert not os.path.exists(workdir)
    time.sleep(0.2)
    leaked = [t for t in set(threading.enumerate()) - before if t.is_alive()]
    assert leaked == []


def _quiet(fn: Any, *args: Any) -> None:
    with contextlib.suppress(Exception):
        fn(*args)
