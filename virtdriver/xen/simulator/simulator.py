"""The public in-process API: :class:`Simulator`."""

from __future__ import annotations

import base64
import shutil
import ssl
import tempfile
import threading
from typing import Any

from . import inventory, models  # noqa: F401  (models registers the handlers)
from .backend import Backend, Config
from .dispatch import Dispatcher
from .server import Server


class Simulator:
    """A XAPI (XenServer / XCP-ng) simulator serving XML-RPC over HTTP(S).

    ``Simulator(...).start()`` serves in background threads; ``stop()`` ends them and deletes
    the temp dir holding VDI bytes.  Also a context manager.
    """

    def __init__(self, host: str = "127.0.0.1", port: int = 0, username: str = "root",
                 password: str = "secret", hosts: int = 1, vms: int = 0,
                 tls_cert: str | None = None, tls_key: str | None = None,
                 session_idle_timeout: float | None = None, auth_failure_delay: float = 0.0,
                 task_delays: dict[str, float] | None = None, coalesce_delay: float = 0.0,
                 memory_mb_per_host: int = 65536, disk_gb_per_sr: int = 1024,
                 pool_name: str = "pool0") -> None:
        self.host = host
        self.port = port
        self.tls_cert = tls_cert
        self.tls_key = tls_key
        self.config = Config(username=username, password=password, hosts=max(1, hosts),
                             vms=vms, session_idle_timeout=session_idle_timeout,
                             auth_failure_delay=auth_failure_delay,
                             task_delays=dict(task_delays or {}), coalesce_delay=coalesce_delay,
                             memory_mb_per_host=memory_mb_per_host,
                             disk_gb_per_sr=disk_gb_per_sr, pool_name=pool_name, address=host)
        self.workdir = ""
        self.backend: Backend | None = None  # type: ignore[assignment]
        self.dispatcher: Dispatcher | None = None  # type: ignore[assignment]
        self._server: Server | None = None
        self._thread: threading.Thread | None = None

    # -- lifecycle ---------------------------------------------------------------------------
    def start(self) -> Simulator:
        """Build the inventory and serve; returns self."""
        self.workdir = tempfile.mkdtemp(prefix="xapi-sim-")
        self._build()
        self._server = Server((self.host, self.port), self)
        if self.tls_cert:
            ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            ctx.load_cert_chain(self.tls_cert, self.tls_key)
            self._server.socket = ctx.wrap_socket(self._server.socket, server_side=True)
        self.port = self._server.server_address[1]
        self.config.url = self.url
        self._thread = threading.Thread(target=self._server.serve_forever,
                                        kwargs={"poll_interval": 0.1}, name="xapi-sim", daemon=True)
        self._thread.start()
        return self

    def _build(self) -> None:
        self.backend = Backend(self.config, self.workdir)
        self.dispatcher = Dispatcher(self.backend)
        inventory.build(self.backend)

    def stop(self) -> None:
        """Stop serving, end task threads and timers, delete the temp dir."""
        backend = self.backend
        if backend is not None:
            backend.stopping.set()
            with backend.db.changed:
                backend.db.changed.notify_all()
            for timer in list(backend.timers):
                timer.cancel()
            backend.tasks.join()
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        if self._thread is not None:
            self._thread.join(5)
            self._thread = None
        for timer in list(backend.timers if backend else []):
            timer.join(2)
        if self.workdir:
            shutil.rmtree(self.workdir, ignore_errors=True)
            self.workdir = ""

    def __enter__(self) -> Simulator:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def url(self) -> str:
        """``http://host:port`` (``https`` with TLS)."""
        scheme = "https" if self.tls_cert else "http"
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{scheme}://{host}:{self.port}"

    # -- test controls -------------------------------------------------------------------------
    def inject_fault(self, method: str, error: list[str], count: int = 1) -> None:
        """The next ``count`` calls of ``method`` (e.g. ``VM.start``) fail with ``error``."""
        self.backend.faults.inject_fault(method, list(error), count)

    def inject_delay(self, method: str, seconds: float, count: int = 1) -> None:
        """The next ``count`` calls of ``method`` take ``seconds`` (their task stays pending)."""
        self.backend.faults.inject_delay(method, seconds, count)

    def clear_faults(self) -> None:
        """Drop pending injected faults and delays."""
        self.backend.faults.clear()

    def expire_sessions(self) -> None:
        """Invalidate every session."""
        self.backend.sessions.expire_all()

    def reset(self) -> None:
        """Throw all state away and rebuild the initial inventory."""
        old = self.backend
        old.stopping.set()
        old.tasks.join()
        for timer in old.timers:
            timer.cancel()
        shutil.rmtree(self.workdir, ignore_errors=True)
        self.workdir = tempfile.mkdtemp(prefix="xapi-sim-")
        self._build()

    def _vm_ref(self, vm: str) -> str:
        db = self.backend.db
        return vm if db.exists("VM", vm) else db.ref_of_uuid("VM", vm)

    def guest_state(self, vm_uuid: str) -> dict[str, Any]:
        """What the VM's guest received: ``password``, ``files``, ``network_resets``,
        ``xenstore`` (its live xenstore) and ``domid``."""
        return self.backend.guests.snapshot(self._vm_ref(vm_uuid))

    def set_guest_agent(self, vm_uuid: str, enabled: bool) -> None:
        """Switch the simulated guest agent of one VM on or off."""
        from .dispatch import Context, map_add, map_remove

        ctx = Context(self.backend, "sim", None)
        ref = self._vm_ref(vm_uuid)
        map_remove(ctx, "VM", ref, "other_config", "sim-agent")
        map_add(ctx, "VM", ref, "other_config", "sim-agent", "true" if enabled else "false")

    def control(self, name: str, body: dict[str, Any], query: dict[str, list[str]]) -> Any:
        """The ``/_sim/<name>`` HTTP controls."""
        if name == "inject":
            if "error" in body:
                self.inject_fault(body["method"], body["error"], int(body.get("count", 1)))
            else:
                self.inject_delay(body["method"], float(body["seconds"]),
                                  int(body.get("count", 1)))
            return {"ok": True}
        if name == "clear":
            self.clear_faults()
            return {"ok": True}
        if name == "reset":
            self.reset()
            return {"ok": True}
        if name == "expire_sessions":
            self.expire_sessions()
            return {"ok": True}
        if name == "guest":
            vm = body.get("vm") or query.get("vm", [""])[0]
            state = self.guest_state(vm)
            state["files"] = {k: base64.b64encode(v).decode() for k, v in state["files"].items()}
            return state
        raise KeyError(f"unknown control {name}")
