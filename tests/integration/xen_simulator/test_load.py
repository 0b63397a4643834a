"""Serving load as a pool does (issue 15 item 3) and holding against slow clients (issue 14
row 17): listen backlog, HTTP/1.1 keep-alive, a request-header deadline, an idle limit, a cap
on connections, and a TLS handshake that cannot stall the accept loop."""

from __future__ import annotations

import contextlib
import http.client
import socket
import ssl
import threading
import time
import xmlrpc.client
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlsplit

import pytest
import trustme
import XenAPI

from virtdriver.xen.simulator import Simulator
from virtdriver.xen.simulator.server import Server

LOGIN = xmlrpc.client.dumps(("root", "secret"), "session.login_with_password").encode()


def address(sim: Simulator) -> tuple[str, int]:
    """(host, port) of a simulator."""
    parts = urlsplit(sim.url)
    return parts.hostname or "", parts.port or 0


def closed_by_server(sock: socket.socket, within: float) -> bool:
    """Whether the server closes ``sock`` within ``within`` seconds (reading what it sends)."""
    sock.settimeout(within)
    try:
        while sock.recv(4096):
            pass
    except (ConnectionResetError, BrokenPipeError):
        return True
    except TimeoutError:
        return False
    return True


@pytest.fixture
def limited(monkeypatch: pytest.MonkeyPatch) -> Iterator[Simulator]:
    """A simulator with short limits: 1 s header deadline, 1 s idle, 8 connections."""
    monkeypatch.setattr(Server, "header_timeout", 1.0)
    monkeypatch.setattr(Server, "idle_timeout", 1.0)
    monkeypatch.setattr(Server, "max_connections", 8)
    with Simulator() as sim:
        yield sim


def test_keep_alive(sim: Simulator) -> None:
    """HTTP/1.1: several calls on one connection, none of them closing it."""
    conn = http.client.HTTPConnection(*address(sim), timeout=10)
    try:
        conn.request("POST", "/", LOGIN, {"Content-Type": "text/xml"})
        first = conn.getresponse()
        session = xmlrpc.client.loads(first.read())[0][0]["Value"]
        sock = conn.sock
        assert first.version == 11 and first.getheader("Connection") is None
        for _ in range(3):
            conn.request("POST", "/", xmlrpc.client.dumps((session,), "VM.get_all").encode(),
                         {"Content-Type": "text/xml"})
            resp = conn.getresponse()
            assert xmlrpc.client.loads(resp.read())[0][0]["Status"] == "Success"
            assert conn.sock is sock  # the same TCP connection
    finally:
        conn.close()


def test_burst_of_connections(sim: Simulator) -> None:
    """100 clients connecting at the same instant all get served (backlog >= 128)."""
    assert Server.request_queue_size >= 128
    start = threading.Barrier(100)
    errors: list[BaseException] = []

    def client() -> None:
        try:
            start.wait(10)
            conn = http.client.HTTPConnection(*address(sim), timeout=30)
            conn.request("POST", "/", LOGIN, {"Content-Type": "text/xml"})
            assert xmlrpc.client.loads(conn.getresponse().read())[0][0]["Status"] == "Success"
            conn.close()
        except BaseException as error:  # reported by the assertion below
            errors.append(error)

    threads = [threading.Thread(target=client) for _ in range(100)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert errors == []


def test_slow_loris_is_cut_at_the_header_deadline(limited: Simulator) -> None:
    """Connections trickling a header line every 0.2 s are closed once the 1 s header
    deadline passes, while a normal client is served meanwhile."""
    host, port = address(limited)
    slow = []
    for _ in range(6):
        sock = socket.create_connection((host, port), timeout=5)
        sock.sendall(b"POST / HTTP/1.1\r\nHost: x\r\n")
        slow.append(sock)
    started = time.monotonic()
    stop = threading.Event()

    def trickle() -> None:
        n = 0
        while not stop.wait(0.2):
            for sock in slow:
                with contextlib.suppress(OSError):  # the server may have closed it
                    sock.sendall(f"X-Slow-{n}: 1\r\n".encode())
            n += 1

    thread = threading.Thread(target=trickle)
    thread.start()
    try:
        t0 = time.monotonic()
        proxy = xmlrpc.client.ServerProxy(limited.url)
        assert proxy.session.login_with_password("root", "secret")["Status"] == "Success"
        assert time.monotonic() - t0 < 0.5
        assert all(closed_by_server(sock, 3.0) for sock in slow)
        assert time.monotonic() - started < 2.5
    finally:
        stop.set()
        thread.join(5)
        for sock in slow:
            sock.close()


def test_connection_cap_and_silent_clients(limited: Simulator) -> None:
    """Above the cap a connection is refused at once with 503; connections that send nothing
    hold their slots no longer than the header deadline; then clients are served again."""
    host, port = address(limited)
    silent = [socket.create_connection((host, port), timeout=5) for _ in range(8)]
    time.sleep(0.2)  # every silent connection holds a slot
    extra = socket.create_connection((host, port), timeout=5)
    extra.settimeout(2)
    assert extra.recv(100).startswith(b"HTTP/1.1 503 ")
    extra.close()
    assert all(closed_by_server(sock, 3.0) for sock in silent)
    for sock in silent:
        sock.close()
    proxy = xmlrpc.client.ServerProxy(limited.url)
    assert proxy.session.login_with_password("root", "secret")["Status"] == "Success"


def test_idle_keep_alive_is_closed_and_clients_carry_on(limited: Simulator) -> None:
    """An idle kept-alive connection is closed after the idle limit; the XenAPI client
    reconnects by itself."""
    conn = http.client.HTTPConnection(*address(limited), timeout=10)
    conn.request("POST", "/", LOGIN, {"Content-Type": "text/xml"})
    conn.getresponse().read()
    assert closed_by_server(conn.sock, 3.0)
    conn.close()
    session = XenAPI.Session(limited.url)
    session.xenapi.login_with_password("root", "secret", "2.1", "t")
    time.sleep(1.3)
    assert session.xenapi.VM.get_all()
    session.xenapi.session.logout()


def test_tls_handshake_cannot_stall_the_server(tmp_path: Any,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    """A TLS client that connects and never starts its handshake neither blocks others nor
    keeps its connection past the header deadline."""
    monkeypatch.setattr(Server, "header_timeout", 1.0)
    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1")
    cert_file, key_file = tmp_path / "cert.pem", tmp_path / "key.pem"
    cert.cert_chain_pems[0].write_to_path(str(cert_file))
    cert.private_key_pem.write_to_path(str(key_file))
    with Simulator(tls_cert=str(cert_file), tls_key=str(key_file)) as sim:
        mute = socket.create_connection(address(sim), timeout=5)
        time.sleep(0.1)
        context = ssl.create_default_context()
        ca.configure_trust(context)
        t0 = time.monotonic()
        proxy = xmlrpc.client.ServerProxy(sim.url, context=context)
        assert proxy.session.login_with_password("root", "secret")["Status"] == "Success"
        assert time.monotonic() - t0 < 0.5
        assert closed_by_server(mute, 3.0)
        mute.close()


def test_reads_do_not_wait_for_a_writer(sim: Simulator, xapi: Any) -> None:
    """While a writer holds the registry (a long operation mid-way), records, lookups,
    where-queries and event.from are still answered at once."""
    vm = xapi.VM.create({"name_label": "read-me"})
    token = xapi.event_from(["vm"], "", 0.0)["token"]
    took: dict[str, float] = {}

    def reads() -> None:
        ses = XenAPI.Session(sim.url)
        ses.xenapi.login_with_password("root", "secret", "2.1", "t")
        api = ses.xenapi
        for name, call in (("get_record", lambda: api.VM.get_record(vm)),
                           ("get_all_records", api.VM.get_all_records),
                           ("where", lambda: api.VM.get_all_records_where(
                               'field "name__label" = "read-me"')),
                           ("field", lambda: api.VM.get_power_state(vm)),
                           ("event.from ''", lambda: api.event_from(["vm"], "", 0.0)),
                           ("event.from token", lambda: api.event_from(["vm"], token, 0.0))):
            t0 = time.monotonic()
            call()
            took[name] = time.monotonic() - t0
        ses.xenapi.session.logout()

    with sim.backend.db.lock:  # a writer, mid-way through an operation
        thread = threading.Thread(target=reads)
        thread.start()
        thread.join(10)
        assert not thread.is_alive(), f"reads waited for the writer: {took}"
    assert max(took.values()) < 1.0, took


def test_event_from_empty_token_is_a_snapshot(xapi: Any) -> None:
    """Token "" answers with one ``add`` per current object, however long the history of
    changes; the token it returns is current."""
    vm = xapi.VM.create({"name_label": "busy"})
    for i in range(300):
        xapi.VM.set_name_description(vm, str(i))
    for _ in range(30):
        xapi.VM.destroy(xapi.VM.create({"name_label": "short-lived"}))
    res = xapi.event_from(["vm"], "", 0.0)
    refs = [ev["ref"] for ev in res["events"]]
    assert sorted(refs) == sorted(xapi.VM.get_all())
    assert {ev["operation"] for ev in res["events"]} == {"add"}
    mine = next(ev for ev in res["events"] if ev["ref"] == vm)
    assert mine["snapshot"]["name_description"] == "299"
    assert xapi.event_from(["vm"], res["token"], 0.0)["events"] == []


def test_event_from_empty_token_does_not_replay_history(sim: Simulator) -> None:
    """The cost of token "" follows the objects, not the changes made since the start: after
    300,000 changes and 5,000 VMs made and deleted (a long-running pool's history) it still
    answers at once."""
    db = sim.backend.db
    pool = next(iter(db.all("pool")))
    with db.lock:
        for _ in range(300_000):
            db.touch("pool", pool)
        for _ in range(5_000):
            db.destroy("VM", db.create("VM", {"name_label": "gone"}))
    session = sim.backend.sessions.login("root", "t")
    t0 = time.monotonic()
    reply = sim.dispatcher.call("event.from", [session, ["vm"], "", 0.0])
    took = time.monotonic() - t0
    assert reply["Status"] == "Success" and reply["Value"]["events"]
    assert took < 0.1, took
