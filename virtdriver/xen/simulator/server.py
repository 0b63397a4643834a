"""HTTP wire: XML-RPC on any path, VDI import/export, and the ``/_sim/`` test controls.

This layer only parses, calls and serializes: XAPI calls go to the dispatcher, questions about
state to ``models/transfer.py``, test controls to the controls object; it only streams VDI
bytes itself (through :mod:`storage_bytes`).
"""

from __future__ import annotations

import datetime as _dt
import ipaddress
import json
import os
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
    """Threaded HTTP server; handler threads are joined at close."""

    daemon_threads = False
    block_on_close = True
    allow_reuse_address = True

    def __init__(self, address: tuple[str, int], app: App) -> None:
        self.app = app
        super().__init__(address, Handler)


class Handler(BaseHTTPRequestHandler):
    """One HTTP request."""

    server: Server
    protocol_version = "HTTP/1.0"
    timeout = 15
    server_version = "xapi-simulator/1.0"

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
        """Quiet: tests would drown in access logs."""

    # -- helpers -------------------------------------------------------------------------
    def _reply(self, status: int, body: bytes, ctype: str = "text/xml") -> None:
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _xml(self, value: Any, status: int = 200) -> None:
        self._reply(status, wire.response(value))

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
            self._xml(wire.failure(["INTERNAL_ERROR", "Content-Length required"]), 411)
            return
        if length > wire.MAX_REQUEST_BYTES:
            self._xml(wire.failure(["INTERNAL_ERROR", "request too large"]), 413)
            self.close_connection = True
            return
        try:
            body = self.rfile.read(length)
        except OSError:
            return
        if len(body) < length:
            self._xml(wire.failure(["INTERNAL_ERROR", "truncated request"]), 400)
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
        if urlsplit(self.path).path.rstrip("/") != "/import_raw_vdi":
            self._reply(404, b"not found\n", "text/plain")
            return
        found = self._vdi_from_query()
        if found is None:
            return
        vdi, uuid, limit, fmt, query = found
        backend = self.server.app.backend
        length = self._length()
        if length is None:
            self._reply(411, b"Content-Length required\n", "text/plain")
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
            self._reply(400, f"{exc}\n".encode(), "text/plain")
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
        found = self._vdi_from_query()
        if found is None:
            return
        _vdi, uuid, _size, fmt, query = found
        file = self.server.app.backend.disks.path(uuid)
        self.send_response(200)
        self.send_header("Content-Type", "application/octet-stream")
        if fmt == "raw":
            self.send_header("Content-Length", str(os.path.getsize(file)))
            self.end_headers()
            chunks = _file_chunks(file)
        else:
            self.end_headers()
            self.close_connection = True
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
            self._reply(403, b'{"error": "loopback only"}', "application/json")
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
