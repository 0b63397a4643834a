"""Load as real clients make it (issue 15 item 3, issue 14 row 17): many XenAPI sessions at
once, the TCP connections a kept-alive client opens (counted on the server), VDI transfers
that close their connection as xapi's do, and the HTTP limits set from the command line."""

from __future__ import annotations

import http.client
import json
import socket
import subprocess
import sys
import threading
import time
import tracemalloc
import xmlrpc.client
from typing import Any
from urllib.parse import urlencode, urlsplit

import XenAPI

from virtdriver.xen.simulator import Simulator

from .conftest import new_vm

SESSIONS = 100


def address(url: str) -> tuple[str, int]:
    """(host, port) of a simulator URL."""
    parts = urlsplit(url)
    return parts.hostname or "", parts.port or 0


def test_hundred_xenapi_sessions_at_once(sim: Simulator) -> None:
    """100 XenAPI clients log in at the same instant, read, wait on events and log out:
    every one is served (no ConnectionResetError from a full listen backlog)."""
    start = threading.Barrier(SESSIONS)
    errors: list[str] = []
    done: list[int] = []
    lock = threading.Lock()

    def client() -> None:
        try:
            start.wait(30)
            ses = XenAPI.Session(sim.url)
            ses.xenapi.login_with_password("root", "secret", "2.1", "load")
            api = ses.xenapi
            assert api.VM.get_all_records()
            assert api.event_from(["host"], "", 0.0)["events"]
            api.session.logout()
            with lock:
                done.append(1)
        except Exception as error:  # noqa: BLE001 - every failure is reported below
            with lock:
                errors.append(f"{type(error).__name__}: {error}")

    threads = [threading.Thread(target=client, name=f"load-{n}") for n in range(SESSIONS)]
    for thread in threads:
        thread.start()
    deadline = time.monotonic() + 90
    for thread in threads:
        thread.join(max(0.0, deadline - time.monotonic()))
    assert not any(thread.is_alive() for thread in threads), "clients still running"
    assert errors == []
    assert len(done) == SESSIONS


def test_a_xenapi_client_keeps_one_connection(sim: Simulator) -> None:
    """A stock XenAPI session makes 30 calls on one TCP connection (HTTP/1.1 keep-alive);
    the server counts the connections it accepts."""
    before = sim.connections_accepted
    ses = XenAPI.Session(sim.url)
    ses.xenapi.login_with_password("root", "secret", "2.1", "keep-alive")
    for _ in range(28):
        ses.xenapi.VM.get_all()
    ses.xenapi.session.logout()
    assert sim.connections_accepted - before == 1


def test_json_rpc_keeps_one_connection(sim: Simulator) -> None:
    """JSON-RPC calls on /jsonrpc share one kept-alive connection too."""
    before = sim.connections_accepted
    conn = http.client.HTTPConnection(*address(sim.url), timeout=10)
    try:
        def call(method: str, *params: Any) -> Any:
            body = json.dumps({"jsonrpc": "2.0", "id": 1, "method": method,
                               "params": list(params)}).encode()
            conn.request("POST", "/jsonrpc", body, {"Content-Type": "application/json"})
            reply = conn.getresponse()
            assert reply.getheader("Connection") is None
            return json.loads(reply.read())["result"]

        session = call("session.login_with_password", "root", "secret", "2.1", "json")
        for _ in range(20):
            assert call("VM.get_all", session)
        call("session.logout", session)
    finally:
        conn.close()
    assert sim.connections_accepted - before == 1


def test_vdi_transfers_close_their_connection(sim: Simulator, xapi: Any) -> None:
    """As xapi's import_raw_vdi and export_raw_vdi handlers do, a VDI transfer closes its
    connection after the reply (the body delimited by Content-Length, or by the end of the
    connection for a VHD stream); a client carries on over a new one, and a failed upload's
    unread body is never taken for a request."""
    vm = new_vm(xapi, "transfer", disk=2 * 1024 * 1024)
    vdi = xapi.VBD.get_VDI(xapi.VM.get_VBDs(vm)[0])
    session = sim_session(sim)
    data = b"\x01" * 4096 + b"\0" * (2 * 1024 * 1024 - 4096)
    query = urlencode({"session_id": session, "vdi": vdi, "format": "raw"})
    conn = http.client.HTTPConnection(*address(sim.url), timeout=10)
    try:
        conn.request("PUT", f"/import_raw_vdi?{query}", data)
        reply = conn.getresponse()
        reply.read()
        assert (reply.status, reply.getheader("Connection")) == (200, "close")
        conn.request("GET", f"/export_raw_vdi?{query}")
        reply = conn.getresponse()
        assert reply.getheader("Connection") == "close"
        assert int(reply.getheader("Content-Length")) == len(data)
        assert reply.read() == data
        vhd = urlencode({"session_id": session, "vdi": vdi, "format": "vhd"})
        conn.request("GET", f"/export_raw_vdi?{vhd}")
        reply = conn.getresponse()
        assert reply.getheader("Content-Length") is None
        assert reply.read()[-512:].startswith(b"conectix")  # the whole VHD, footer last
        # an upload refused before its body is read: the body is not a next request
        smuggled = xmlrpc.client.dumps((), "system.listMethods").encode()
        request = (f"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: {len(smuggled)}\r\n"
                   "Content-Type: text/xml\r\n\r\n").encode() + smuggled
        bad = urlencode({"session_id": "OpaqueRef:nobody", "vdi": vdi, "format": "raw"})
        conn.request("PUT", f"/import_raw_vdi?{bad}", request)
        reply = conn.getresponse()
        assert (reply.status, reply.getheader("Connection")) == (403, "close")
        assert reply.read() == b"session invalid\n"
        assert conn.sock is None  # http.client saw the close
    finally:
        conn.close()


def sim_session(sim: Simulator) -> str:
    """A fresh session ref for the HTTP handlers."""
    proxy = xmlrpc.client.ServerProxy(sim.url)
    return proxy.session.login_with_password("root", "secret")["Value"]


def test_http_limits_from_the_command_line() -> None:
    """--max-connections, --header-timeout and --idle-timeout set the limits (and --help
    documents them): above the cap a client gets 503 at once; a client that sends nothing is
    cut at the header deadline; an idle kept-alive one at the idle limit."""
    help_text = subprocess.run([sys.executable, "-m", "virtdriver.xen.simulator", "--help"],
                               capture_output=True, text=True, timeout=30, check=True).stdout
    for flag in ("--max-connections", "--header-timeout", "--idle-timeout"):
        assert flag in help_text
    refused = subprocess.run([sys.executable, "-m", "virtdriver.xen.simulator",
                              "--header-timeout", "0"], capture_output=True, text=True,
                             timeout=30)
    assert refused.returncode == 2 and "above zero" in refused.stderr
    proc = subprocess.Popen([sys.executable, "-m", "virtdriver.xen.simulator", "--port", "0",
                             "--max-connections", "2", "--header-timeout", "1",
                             "--idle-timeout", "1.5"], stdout=subprocess.PIPE, text=True)
    opened: list[socket.socket] = []
    try:
        url = proc.stdout.readline().strip()
        host, port = address(url)
        opened += [socket.create_connection((host, port), timeout=5) for _ in range(2)]
        t0 = time.monotonic()
        time.sleep(0.2)  # both hold a slot
        third = socket.create_connection((host, port), timeout=5)
        opened.append(third)
        assert third.recv(100).startswith(b"HTTP/1.1 503 ")
        for sock in opened[:2]:  # silent: cut at the 1 s header deadline
            sock.settimeout(5)
            assert sock.recv(100) == b""
        assert 0.8 < time.monotonic() - t0 < 4
        conn = http.client.HTTPConnection(host, port, timeout=5)
        conn.request("POST", "/", xmlrpc.client.dumps(("root", "secret"),
                                                       "session.login_with_password").encode())
        assert b"Success" in conn.getresponse().read()
        t1 = time.monotonic()
        conn.sock.settimeout(5)
        assert conn.sock.recv(100) == b""  # idle: closed after 1.5 s (not at 1 s)
        assert 1.2 < time.monotonic() - t1 < 4.5
        conn.close()
    finally:
        for sock in opened:
            sock.close()
        proc.terminate()
        assert proc.wait(10) == 0
        proc.stdout.close()


def test_history_costs_no_memory(sim: Simulator, xapi: Any) -> None:
    """Changes are tracked per object, as xapi's database does, not as a history: 30,000
    field changes leave memory where it was, and event.from from an old token still
    reports each changed object once, with its latest record (a history would hold ~3 MB)."""
    vm = xapi.VM.create({"name_label": "churn"})
    token = xapi.event_from(["vm"], "", 0.0)["token"]
    db = sim.backend.db
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        for n in range(30_000):
            db.set("VM", vm, "name_description", str(n % 7))
        grown = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    assert grown < 1_000_000, grown
    events = xapi.event_from(["vm"], token, 0.0)["events"]
    assert [(ev["ref"], ev["operation"]) for ev in events] == [(vm, "mod")]
    assert events[0]["snapshot"]["name_description"] == str(29_999 % 7)


def test_deletions_since_a_token(sim: Simulator, xapi: Any) -> None:
    """From a token: an object deleted since is a ``del``; one made and deleted since is not
    reported; one made since is an ``add`` whose id is its creation's generation."""
    old = xapi.VM.create({"name_label": "old"})
    token = xapi.event_from(["vm"], "", 0.0)["token"]
    xapi.VM.destroy(old)
    xapi.VM.destroy(xapi.VM.create({"name_label": "brief"}))
    new = xapi.VM.create({"name_label": "new"})
    xapi.VM.set_name_description(new, "changed after its creation")
    events = xapi.event_from(["vm"], token, 0.0)["events"]
    assert [(ev["ref"], ev["operation"]) for ev in events] == [(old, "del"), (new, "add")]
    assert "snapshot" not in events[0]
    assert events[1]["snapshot"]["name_description"] == "changed after its creation"
    assert int(events[0]["id"]) < int(events[1]["id"]) < int(xapi.event.get_current_id())
