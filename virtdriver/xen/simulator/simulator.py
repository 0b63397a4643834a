"""The public in-process API: :class:`Simulator`."""

from __future__ import annotations

import shutil
import ssl
import tempfile
import threading
from typing import Any

from . import inventory
from .backend import Backend, Config
from .controls import Controls
from .dispatch import Dispatcher
from .iscsi_targets import Targets
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
                 pool_name: str = "pool0", iscsi_targets: list[dict[str, Any]] | None = None,
                 iscsi: Targets | None = None, max_connections: int | None = None,
                 header_timeout: float | None = None,
                 idle_timeout: float | None = None) -> None:
        self.host = host
        #: HTTP limits (None: the server's defaults, ``Server.max_connections`` ...):
        #: connections served at once, seconds to send a request line and headers, seconds a
        #: kept-alive connection may sit idle
        self.http_limits: dict[str, Any] = {"max_connections": max_connections,
                                            "header_timeout": header_timeout,
                                            "idle_timeout": idle_timeout}
        self.port = port
        self.tls_cert = tls_cert
        self.tls_key = tls_key
        self.config = Config(username=username, password=password, hosts=max(1, hosts),
                             vms=vms, session_idle_timeout=session_idle_timeout,
                             auth_failure_delay=auth_failure_delay,
                             task_delays=dict(task_delays or {}), coalesce_delay=coalesce_delay,
                             memory_mb_per_host=memory_mb_per_host,
                             disk_gb_per_sr=disk_gb_per_sr, pool_name=pool_name, address=host,
                             iscsi_targets=list(iscsi_targets or []))
        #: a storage network shared with other simulators (two pools, one array); None:
        #: this simulator's own, in its temp dir, rebuilt from ``iscsi_targets`` on reset
        self.shared_iscsi = iscsi
        self.workdir = ""
        self.backend: Backend | None = None  # type: ignore[assignment]
        self.dispatcher: Dispatcher | None = None  # type: ignore[assignment]
        self._server: Server | None = None
        self._thread: threading.Thread | None = None
        self.controls = Controls(lambda: self.backend, self.reset)

    # -- lifecycle ---------------------------------------------------------------------------
    def start(self) -> Simulator:
        """Build the inventory and serve; returns self."""
        self.workdir = tempfile.mkdtemp(prefix="xapi-sim-")
        self._build()
        self._server = Server((self.host, self.port), self, **self.http_limits)
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
        self.backend = Backend(self.config, self.workdir, iscsi=self.shared_iscsi)
        self.dispatcher = Dispatcher(self.backend)
        inventory.build(self.backend)
        if self.shared_iscsi is None:
            for spec in self.config.iscsi_targets:
                self.backend.iscsi.add_target(
                    spec["iqn"], spec.get("portal", "127.0.0.1:3260"),
                    {int(k): int(v) for k, v in (spec.get("luns") or {}).items()},
                    spec.get("chap_user"), spec.get("chap_password"))

    def stop(self) -> None:
        """Stop serving, end task threads and timers, delete the temp dir."""
        if self.backend is not None:
            self.backend.shut_down()
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        if self._thread is not None:
            self._thread.join(5)
            self._thread = None
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

    @property
    def connections_accepted(self) -> int:
        """TCP connections accepted since start (a kept-alive client makes one for many
        calls); 0 when not serving."""
        return self._server.accepted if self._server is not None else 0

    # -- test controls (see controls.py) ----------------------------------------------------
    def inject_fault(self, method: str, error: list[str], count: int = 1) -> None:
        """The next ``count`` calls of ``method`` (e.g. ``VM.start``) fail with ``error``."""
        self.controls.inject_fault(method, error, count)

    def inject_delay(self, method: str, seconds: float, count: int = 1) -> None:
        """The next ``count`` calls of ``method`` take ``seconds`` (their task stays pending)."""
        self.controls.inject_delay(method, seconds, count)

    def clear_faults(self) -> None:
        """Drop pending injected faults and delays."""
        self.controls.clear_faults()

    def expire_sessions(self) -> None:
        """Invalidate every session."""
        self.controls.expire_sessions()

    def guest_state(self, vm_uuid: str) -> dict[str, Any]:
        """What the VM's guest received: ``password``, ``files``, ``network_resets``,
        ``xenstore`` (its live xenstore) and ``domid``."""
        return self.controls.guest_state(vm_uuid)

    def set_guest_agent(self, vm_uuid: str, enabled: bool) -> None:
        """Switch the simulated guest agent of one VM on or off."""
        self.controls.set_guest_agent(vm_uuid, enabled)

    def add_iscsi_target(self, iqn: str, portal: str = "127.0.0.1:3260",
                         luns: dict[int, int] | None = None, chap_user: str | None = None,
                         chap_password: str | None = None) -> dict[str, Any]:
        """Export an iSCSI target with ``luns`` (number -> size in bytes): see
        :class:`~virtdriver.xen.simulator.controls.Controls` for the other iSCSI controls
        (``self.controls.read_iscsi_lun`` ...)."""
        return self.controls.add_iscsi_target(iqn, portal, luns, chap_user, chap_password)

    def reset(self) -> None:
        """Throw all state away and rebuild the initial inventory."""
        self.backend.shut_down()
        shutil.rmtree(self.workdir, ignore_errors=True)
        self.workdir = tempfile.mkdtemp(prefix="xapi-sim-")
        self._build()

    def control(self, name: str, body: dict[str, Any], query: dict[str, list[str]]) -> Any:
        """The ``/_sim/<name>`` HTTP controls."""
        return self.controls.http(name, body, query)
