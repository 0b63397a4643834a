"""HTTP wire: XML-RPC on any path, VDI import/export, and the ``/_sim/`` test controls.

This layer only parses, calls and serializes: XAPI calls go to the dispatcher, questions about
state to ``models/transfer.py``, test controls to the controls object; it only streams VDI
bytes itself (through :mod:`storage_bytes`).
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import io
import ipaddress
import json
import os
import socket
import ssl
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Protocol
from urllib.parse import parse_qs, urlsplit

from . import storage_bytes, wire
from .backend import Backend
from .dispatch import Dispatcher
from .errors import XapiError
from .models import transfer


class App(Protocol):
    """What the server serves: the current backend and dispatcher (``reset`` replaces both)
    and the test controls."""

    backend: Backend
    dispatcher: Dispatcher

    def control(self, name: str, body: dict[str, Any], query: dict[str, list[str]]) -> Any:
        """Run one ``/_sim/<name>`` test control."""


def _file_chunks(path: str) -> Any:
    with open(path, "rb") as fh:
        while chunk := fh.read(1 << 20):
            yield chunk


def _json_default(value: Any) -> Any:
    if isinstance(value, _dt.datetime):
        return wire.fmt_datetime(value)
    if isinstance(value, (set, frozenset, tuple)):
        return list(value)
    raise TypeError(f"cannot encode {type(value).__name__}")


class Server(ThreadingHTTPServer):
    """Threaded HTTP/1.1 server; handler threads are joined at close.

    Load as a pool sees it: a listen backlog that takes a burst of clients, kept-alive
    connections; and limits a slow or hostile client cannot get around: a deadline for a
    request's line and headers (counted from the connection's start for its first request,
    from the first byte for later ones), an idle limit between requests, and a cap on
    connections served at once (more are refused at once with 503, not queued).
    """

    daemon_threads = False
    block_on_close = True
    allow_reuse_address = True
    #: listen backlog: a burst of 50+ clients connecting at once must not be reset (default 5)
    request_queue_size = 128
    #: connections served at once
    max_connections = 512
    #: seconds from a request's start to the end of its headers (slow-loris)
    header_timeout = 10.0
    #: seconds a kept-alive connection may sit idle, or a body read may stall
    idle_timeout = 15.0

    def __init__(self, address: tuple[str, int], app: App, *,
                 max_connections: int | None = None, header_timeout: float | None = None,
                 idle_timeout: float | None = None) -> None:
        """Listen on ``address``; a limit left None keeps the class default above."""
        self.app = app
        if max_connections is not None:
            if max_connections < 1:
                raise ValueError("max_connections must be at least 1")
            self.max_connections = max_connections
        if header_timeout is not None:
            if header_timeout <= 0:
                raise ValueError("header_timeout must be positive")
            self.header_timeout = header_timeout
        if idle_timeout is not None:
            if idle_timeout <= 0:
                raise ValueError("idle_timeout must be positive")
            self.idle_timeout = idle_timeout
        self._slots = threading.BoundedSemaphore(self.max_connections)
        self._open: set[socket.socket] = set()
        self._open_lock = threading.Lock()
        #: TCP connections accepted so far (read by tests: keep-alive means one per client)
        self.accepted = 0
        super().__init__(address, Handler)

    def track(self, sock: socket.socket, is_open: bool) -> None:
        """Note a connection opened or closed (``server_close`` wakes the idle ones)."""
        with self._open_lock:
            if is_open:
                self._open.add(sock)
            else:
                self._open.discard(sock)

    def server_close(self) -> None:
        """Stop reading on every open connection (an idle kept-alive one would otherwise
        hold ``close`` for its idle limit; a reply being written still goes out), then
        close and join the handler threads."""
        with self._open_lock:
            connections = list(self._open)
        for sock in connections:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RD)
        super().server_close()

    def get_request(self) -> tuple[socket.socket, Any]:
        """Accept; a TLS handshake is left to the connection's own thread (with the header
        deadline), so a client that never finishes it cannot stall the accept loop."""
        if isinstance(self.socket, ssl.SSLSocket):
            raw, address = socket.socket.accept(self.socket)
            request: socket.socket = self.socket.context.wrap_socket(
                raw, server_side=True, do_handshake_on_connect=False)
        else:
            request, address = super().get_request()
        self.accepted += 1  # only the serving thread accepts: no lock needed
        return request, address

    def process_request(self, request: Any, client_address: Any) -> None:
        """Serve on a thread if a slot is free; otherwise refuse at once."""
        if not self._slots.acquire(blocking=False):
            if not isinstance(request, ssl.SSLSocket):  # no TLS handshake on this thread
                with contextlib.suppress(OSError):
                    request.settimeout(0.5)
                    request.sendall(b"HTTP/1.1 503 Service Unavailable\r\n"
                                    b"Content-Length: 0\r\nConnection: close\r\n\r\n")
            self.shutdown_request(request)
            return
        try:
            super().process_request(request, client_address)
        except BaseException:
            self._slots.release()
            raise

    def process_request_thread(self, request: Any, client_address: Any) -> None:
        """Serve one connection, then free its slot."""
        try:
            super().process_request_thread(request, client_address)
        finally:
            self._slots.release()


class _Reader(io.RawIOBase):
    """The connection's reads, each bounded by the idle limit and, while a request line and
    its headers are being read, by what is left of the header deadline."""

    def __init__(self, sock: socket.socket, idle: float) -> None:
        self.sock = sock
        self.idle = idle
        self.deadline: float | None = None

    def readable(self) -> bool:
        """A reader."""
        return True

    def readinto(self, buffer: Any) -> int:
        """One recv, refused once the deadline has passed."""
        timeout = self.idle
        if self.deadline is not None:
            timeout = min(timeout, self.deadline - time.monotonic())
            if timeout <= 0:
                raise TimeoutError("request line and headers took too long")
        self.sock.settimeout(timeout)
        return self.sock.recv_into(buffer)


class _Writer(io.RawIOBase):
    """Writes with sendall, as the base handler expects of ``wfile``."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock

    def writable(self) -> bool:
        """A writer."""
        return True

    def write(self, data: Any) -> int:
        """Send everything."""
        self.sock.sendall(data)
        return len(data)


class Handler(BaseHTTPRequestHandler):
    """The requests of one connection (HTTP/1.1: several, kept alive)."""

    server: Server
    protocol_version = "HTTP/1.1"
    server_version = "xapi-simulator/1.0"

    def setup(self) -> None:
        """Finish a TLS handshake within the header deadline; set up bounded reads."""
        self.connection = self.request
        self._broken = False
        self.server.track(self.connection, True)
        if self.connection.family in (socket.AF_INET, socket.AF_INET6):
            # a kept-alive client waits for our reply's last segment: with Nagle on, a reply
            # written as headers then body waits for the client's delayed ACK (~40 ms)
            with contextlib.suppress(OSError):
                self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self._reader = _Reader(self.connection, self.server.idle_timeout)
        # the first request's deadline runs from the connection's start: a client that
        # connects and sends nothing holds its slot no longer than one that trickles
        self._reader.deadline = time.monotonic() + self.server.header_timeout
        self.rfile = io.BufferedReader(self._reader)
        self.wfile = _Writer(self.connection)
        if isinstance(self.connection, ssl.SSLSocket):
            try:
                self.connection.settimeout(self.server.header_timeout)
                self.connection.do_handshake()
            except OSError:
                self._broken = True

    def finish(self) -> None:
        """Forget the connection (the server closes it)."""
        self.server.track(self.connection, False)

    def handle(self) -> None:
        """Requests until the client or a limit closes the connection."""
        if self._broken:
            return
        self.close_connection = True
        self.handle_one_request()
        while not self.close_connection:
            self._reader.deadline = None
            try:
                first = self.rfile.peek(1)  # idle between requests: the idle limit
            except OSError:
                return
            if not first:
                return
            self._reader.deadline = time.monotonic() + self.server.header_timeout
            self.handle_one_request()

    def parse_request(self) -> bool:
        """Parse the request line and headers; from here on the body reads at its pace."""
        parsed = super().parse_request()
        self._reader.deadline = None
        return parsed

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
        """Quiet: tests would drown in access logs."""

    # -- helpers -------------------------------------------------------------------------
    def _reply(self, status: int, body: bytes, ctype: str = "text/xml",
               close: bool = False) -> None:
        """A whole reply; ``close`` ends the connection after it (a request body that was
        not read must not be taken for the next request)."""
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        if close or self.close_connection:
            self.send_header("Connection", "close")
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _xml(self, value: Any, status: int = 200, close: bool = False) -> None:
        self._reply(status, wire.response(value), close=close)

    def _length(self) -> int | None:
        try:
            length = int(self.headers.get("Content-Length", ""))
        except ValueError:
            return None
        return length if length >= 0 else None

    def _drain(self) -> None:
        """Read and drop a request body (bounded) so the client sees our error reply."""
        length = self._length() or 0
        if length > wire.MAX_REQUEST_BYTES * 16:
            self.close_connection = True
            return
        while length > 0:
            chunk = self.rfile.read(min(length, 1 << 20))
            if not chunk:
                break
            length -= len(chunk)

    def _loopback(self) -> bool:
        try:
            return ipaddress.ip_address(self.client_address[0]).is_loopback
        except ValueError:
            return False

    # -- XML-RPC ---------------------------------------------------------------------------
    def do_POST(self) -> None:  # noqa: N802
        """XML-RPC on any path; ``/_sim/*`` controls; ``/jsonrpc`` declines in XML."""
        path = urlsplit(self.path).path
        if path.startswith("/_sim/"):
            self._sim_control(path)
            return
        length = self._length()
        if length is None:
            self._xml(wire.failure(["INTERNAL_ERROR", "Content-Length required"]), 411,
                      close=True)
            return
        if length > wire.MAX_REQUEST_BYTES:
            self._xml(wire.failure(["INTERNAL_ERROR", "request too large"]), 413, close=True)
            return
        try:
            body = self.rfile.read(length)
        except OSError:
            return
        if len(body) < length:
            self._xml(wire.failure(["INTERNAL_ERROR", "truncated request"]), 400, close=True)
            return
        if path.rstrip("/").endswith("/jsonrpc"):
            self._json_rpc(body)
            return
        try:
            method, params = wire.parse_request(body)
        except ValueError as exc:
            self._xml(wire.failure(["INTERNAL_ERROR", str(exc)]))
            return
        if method == "system.listMethods":
            result = self.server.app.dispatcher.call(method, params)
            self._xml(result.get("Value", []) if result["Status"] == "Success" else result)
            return
        self._xml(self.server.app.dispatcher.call(method, params))

    def _json_rpc(self, body: bytes) -> None:
        """JSON-RPC 2.0 (or 1.0): results are raw values, errors {code, message, data}."""
        try:
            request = json.loads(body)
            method, params = request["method"], request.get("params", [])
            req_id = request.get("id")
            if not isinstance(method, str) or not isinstance(params, list):
                raise TypeError("method must be a string and params a list")
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            reply: dict[str, Any] = {"jsonrpc": "2.0", "id": None, "error": {
                "code": -32700, "message": "INTERNAL_ERROR", "data": [str(exc)]}}
        else:
            result = self.server.app.dispatcher.call(method, params)
            if result["Status"] == "Success":
                reply = {"jsonrpc": "2.0", "id": req_id, "result": result["Value"]}
            else:
                desc = result["ErrorDescription"]
                reply = {"jsonrpc": "2.0", "id": req_id,
                         "error": {"code": 1, "message": desc[0], "data": desc[1:]}}
        text = json.dumps(reply, default=_json_default, separators=(",", ":"))
        self._reply(200, text.encode(), "application/json")

    # -- VDI import / export -----------------------------------------------------------------
    def _vdi_from_query(self) -> tuple[str, str, int, str, dict[str, list[str]]] | None:
        """(ref, uuid, size, format, query) of the request's VDI, or None after an error reply."""
        query = parse_qs(urlsplit(self.path).query)
        backend = self.server.app.backend
        if not transfer.session_valid(backend, query.get("session_id", [""])[0]):
            if self.command == "PUT":
                self._drain()
            self._reply(403, b"session invalid\n", "text/plain")
            return None
        found = transfer.find_vdi(backend, query.get("vdi", [""])[0])
        if found is None:
            if self.command == "PUT":
                self._drain()
            self._reply(404, b"VDI not found\n", "text/plain")
            return None
        fmt = query.get("format", ["raw"])[0]
        if fmt not in ("raw", "vhd"):
            if self.command == "PUT":
                self._drain()
            self._reply(400, b"format must be raw or vhd\n", "text/plain")
            return None
        vdi, uuid, size = found
        return vdi, uuid, size, fmt, query

    def _finish_task(self, query: dict[str, list[str]], ok: bool, msg: str = "") -> None:
        transfer.finish_task(self.server.app.backend, query.get("task_id", [""])[0], ok, msg)

    def do_PUT(self) -> None:  # noqa: N802
        """``PUT /import_raw_vdi?session_id&vdi&format=raw|vhd``."""
        # xapi closes the connection after an import (import_raw_vdi.ml sets the request's
        # close); so does every reply here, some of which leave the body unread
        self.close_connection = True
        if urlsplit(self.path).path.rstrip("/") != "/import_raw_vdi":
            self._reply(404, b"not found\n", "text/plain", close=True)
            return
        found = self._vdi_from_query()
        if found is None:
            return
        vdi, uuid, limit, fmt, query = found
        backend = self.server.app.backend
        length = self._length()
        if length is None:
            self._reply(411, b"Content-Length required\n", "text/plain", close=True)
            return
        path = backend.disks.path(uuid)
        try:
            if fmt == "raw":
                if length > limit:
                    self._drain()
                    raise ValueError("image larger than the VDI")
                with open(path, "wb") as out:  # the image replaces the contents
                    remaining = length
                    while remaining:
                        chunk = self.rfile.read(min(remaining, 1 << 20))
                        if not chunk:
                            raise ValueError("truncated upload")
                        if chunk.strip(b"\0"):
                            out.write(chunk)
                        else:
                            out.seek(len(chunk), os.SEEK_CUR)
                        remaining -= len(chunk)
                    out.truncate(limit)
            else:
                if length > limit * 2 + (1 << 20) or length > wire.MAX_REQUEST_BYTES * 16:
                    self._drain()
                    raise ValueError("VHD too large")
                data = self.rfile.read(length)
                with open(path, "wb") as out:  # the image replaces the contents
                    storage_bytes.vhd_import(data, out, limit)
                    out.truncate(limit)
        except (ValueError, OSError) as exc:
            self._finish_task(query, False, str(exc))
            self._reply(400, f"{exc}\n".encode(), "text/plain", close=True)
            return
        transfer.uploaded(backend, vdi, uuid)
        self._finish_task(query, True)
        self._reply(200, b"", "text/plain")

    def do_GET(self) -> None:  # noqa: N802
        """``GET /export_raw_vdi?...``, ``GET /_sim/...``."""
        path = urlsplit(self.path).path.rstrip("/")
        if path.startswith("/_sim/"):
            self._sim_control(path)
            return
        if path == "/vm_rrd":
            self._vm_rrd()
            return
        if path != "/export_raw_vdi":
            self._reply(404, b"not found\n", "text/plain")
            return
        # xapi closes the connection after an export (export_raw_vdi.ml sets the request's
        # close); a VHD stream has no length, its end is the connection's
        self.close_connection = True
        found = self._vdi_from_query()
        if found is None:
            return
        _vdi, uuid, _size, fmt, query = found
        file = self.server.app.backend.disks.path(uuid)
        self.send_response(200)
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("Connection", "close")
        if fmt == "raw":
            self.send_header("Content-Length", str(os.path.getsize(file)))
            self.end_headers()
            chunks = _file_chunks(file)
        else:
            self.end_headers()
            chunks = storage_bytes.vhd_stream(file)
        # the task is finished before the last chunk goes out, so a client that has read the
        # whole body always sees it finished
        previous = None
        for chunk in chunks:
            if previous is not None:
                self.wfile.write(previous)
            previous = chunk
        self._finish_task(query, True)
        if previous is not None:
            self.wfile.write(previous)

    def _vm_rrd(self) -> None:
        """A small synthetic RRD (XML) of a running VM's data sources."""
        query = parse_qs(urlsplit(self.path).query)
        backend = self.server.app.backend
        if not transfer.session_valid(backend, query.get("session_id", [""])[0]):
            self._reply(403, b"session invalid\n", "text/plain")
            return
        try:
            sources = transfer.rrd_sources(backend, query.get("uuid", [""])[0])
        except XapiError:
            self._reply(404, b"VM not found\n", "text/plain")
            return
        out = ["<rrd><version>0003</version><step>5</step>",
               f"<lastupdate>{int(time.time())}</lastupdate>"]
        for ds in sources:
            out.append(f"<ds><name>{ds['name_label']}</name><type>GAUGE</type>"
                       "<minimal_heartbeat>300.0000</minimal_heartbeat><min>0.0</min>"
                       f"<max>Infinity</max><last_ds>{ds['value']}</last_ds>"
                       f"<value>{ds['value']}</value><unknown_sec>0</unknown_sec></ds>")
        row = "".join(f"<v>{ds['value']}</v>" for ds in sources)
        out.append("<rra><cf>AVERAGE</cf><pdp_per_row>1</pdp_per_row><params><xff>0.5</xff>"
                   f"</params><database><row>{row}</row></database></rra></rrd>")
        self._reply(200, "".join(out).encode(), "text/xml")

    # -- test controls -------------------------------------------------------------------------
    def _sim_control(self, path: str) -> None:
        if not self._loopback():
            self._reply(403, b'{"error": "loopback only"}', "application/json", close=True)
            return
        length = self._length() or 0
        try:
            body = json.loads(self.rfile.read(length) or b"{}") if length else {}
            result = self.server.app.control(path[len("/_sim/"):].strip("/"), body,
                                             parse_qs(urlsplit(self.path).query))
        except (ValueError, KeyError, TypeError) as exc:
            self._reply(400, json.dumps({"error": str(exc)}).encode(), "application/json")
            return
        self._reply(200, json.dumps(result).encode(), "application/json")
