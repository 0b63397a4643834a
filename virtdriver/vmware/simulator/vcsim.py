"""Start and stop the project's vCenter simulator launcher (Go sources in ``launcher/``).

Standard library only, plus ``trustme`` for the throw-away test CA.

``Vcsim`` builds the Go launcher (``build.sh``), generates a fresh CA and a
server certificate for 127.0.0.1/localhost, starts the binary on a free
loopback port, reads the one JSON line it prints, and stops it by PID
(SIGTERM, then SIGKILL).  The simulator's datastore directories and the
certificates live in one temporary directory that ``stop()`` removes.

``RemoteVcsim`` offers the same attributes for a server given by the
``VCSIM_URL`` environment variable; it has no fault endpoint.
"""

from __future__ import annotations

import contextlib
import json
import os
import pathlib
import secrets
import select
import shutil
import signal
import ssl
import subprocess
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Mapping
from typing import Any

HERE = pathlib.Path(__file__).resolve().parent
BUILD_SCRIPT = HERE / "launcher" / "build.sh"

DEFAULT_USERNAME = "administrator@vsphere.local"


class VcsimError(RuntimeError):
    """The launcher could not be built, started or controlled."""


class FaultInjectionUnavailable(VcsimError):
    """The server under test has no fault-injection endpoint."""


def build_vcsim() -> pathlib.Path:
    """Build the launcher binary if its sources changed; return its path."""
    try:
        proc = subprocess.run(
            ["sh", str(BUILD_SCRIPT)],
            check=True,
            capture_output=True,
            text=True,
            timeout=600,
        )
    except subprocess.CalledProcessError as exc:
        raise VcsimError(f"building vcsim failed:\n{exc.stderr}") from exc
    path = pathlib.Path(proc.stdout.strip().splitlines()[-1])
    if not path.is_file():
        raise VcsimError(f"build.sh printed {path}, which does not exist")
    return path


def _duration(value: str | float | int | None) -> str | None:
    """Turn seconds (or a Go duration string) into a Go duration string."""
    if value is None:
        return None
    if isinstance(value, str):
        return value
    return f"{float(value)}s"


class Vcsim:
    """One running launcher process, usable as a context manager.

    Attributes (after ``start``): ``url`` (``https://127.0.0.1:PORT/sdk``),
    ``host``, ``port``, ``username``, ``password``, ``ca_file`` (the test CA,
    PEM), ``datastores`` (datastore name -> local directory), ``pid``,
    ``control_url`` and ``log_file`` (the simulator's stderr).
    """

    can_inject = True

    def __init__(
        self,
        binary: pathlib.Path | None = None,
        *,
        username: str = DEFAULT_USERNAME,
        password: str | None = None,
        tls: bool = True,
        start_timeout: float = 120.0,
        stop_timeout: float = 10.0,
    ) -> None:
        """Prepare a launcher; nothing runs until ``start``."""
        self._binary = binary
        self.username = username
        self.password = password if password is not None else secrets.token_urlsafe(12)
        self.tls = tls
        self.start_timeout = start_timeout
        self.stop_timeout = stop_timeout
        self._proc: subprocess.Popen[bytes] | None = None
        self._flags: dict[str, Any] = {}
        self._tmpdir: pathlib.Path | None = None
        self.url = ""
        self.host = ""
        self.port = 0
        self.ca_file: str | None = None
        self.datastores: dict[str, str] = {}
        self.pid = 0
        self.control_url = ""
        self.inject_url = ""
        self.log_file: pathlib.Path | None = None
        self.tmpdir: pathlib.Path | None = None

    # -- lifecycle ---------------------------------------------------------

    def _write_certificates(self, tmpdir: pathlib.Path) -> tuple[str, str]:
        import trustme

        ca = trustme.CA()
        cert = ca.issue_cert("127.0.0.1", "localhost", "::1")
        ca_file = tmpdir / "ca.pem"
        ca.cert_pem.write_to_path(str(ca_file))
        cert_file = tmpdir / "server.pem"
        key_file = tmpdir / "server-key.pem"
        cert.private_key_pem.write_to_path(str(key_file))
        # Server chain: leaf first, then intermediates, if any.
        with open(cert_file, "wb") as fh:
            for blob in cert.cert_chain_pems:
                fh.write(blob.bytes())
        self.ca_file = str(ca_file)
        return str(cert_file), str(key_file)

    def start(
        self,
        *,
        dc: int = 1,
        cluster: int = 1,
        host: int = 3,
        standalone_host: int = 1,
        vm: int = 2,
        ds: int = 1,
        pool: int = 0,
        portgroup: int = 1,
        autostart: bool = True,
        idle: str | float | None = None,
        method_delay: Mapping[str, int] | None = None,
        trace: bool = False,
        listen: str = "127.0.0.1:0",
        extra_args: list[str] | None = None,
    ) -> Vcsim:
        """Start the launcher with the given inventory and options.

        Inventory (as vcsim counts it): ``dc`` datacenters, each with
        ``cluster`` clusters of ``host`` hosts, ``standalone_host`` standalone
        hosts, ``vm`` VMs per standalone host and per cluster (and per child
        pool), ``ds`` datastores LocalDS_N mounted on every host, ``pool``
        child resource pools per cluster, ``portgroup`` DVS portgroups;
        ``autostart`` powers the initial VMs on.

        ``idle`` is the session idle timeout (seconds or a Go duration such as
        ``"30s"``); ``method_delay`` maps SOAP method names to milliseconds of
        delay before dispatch.
        """
        if self._proc is not None:
            raise VcsimError("already started")
        self._flags = {
            "dc": dc,
            "cluster": cluster,
            "host": host,
            "standalone_host": standalone_host,
            "vm": vm,
            "ds": ds,
            "pool": pool,
            "portgroup": portgroup,
            "autostart": autostart,
            "idle": idle,
            "method_delay": method_delay,
            "trace": trace,
            "listen": listen,
            "extra_args": extra_args,
        }
        binary = self._binary or build_vcsim()
        tmpdir = pathlib.Path(tempfile.mkdtemp(prefix="vcsim-launcher-"))
        self._tmpdir = self.tmpdir = tmpdir
        try:
            args = [
                str(binary),
                f"-dc={dc}",
                f"-cluster={cluster}",
                f"-host={host}",
                f"-standalone-host={standalone_host}",
                f"-vm={vm}",
                f"-ds={ds}",
                f"-pool={pool}",
                f"-pg={portgroup}",
                f"-autostart={'true' if autostart else 'false'}",
                f"-l={listen}",
                f"-username={self.username}",
                f"-password={self.password}",
            ]
            if self.tls:
                cert_file, key_file = self._write_certificates(tmpdir)
                args += [f"-tls-cert={cert_file}", f"-tls-key={key_file}"]
            idle_s = _duration(idle)
            if idle_s:
                args.append(f"-idle={idle_s}")
            if method_delay:
                spec = ",".join(f"{k}:{int(v)}" for k, v in method_delay.items())
                args.append(f"-method-delay={spec}")
            if trace:
                args.append("-trace")
            args += list(extra_args or [])

            datastore_tmp = tmpdir / "datastores"
            datastore_tmp.mkdir()
            env = dict(os.environ, TMPDIR=str(datastore_tmp))
            self.log_file = tmpdir / "vcsim.log"
            with open(self.log_file, "wb") as log:
                self._proc = subprocess.Popen(
                    args,
                    stdin=subprocess.DEVNULL,
                    stdout=subprocess.PIPE,
                    stderr=log,
                    env=env,
                    start_new_session=True,
                )
            info = self._read_startup_line()
        except BaseException:
            self.stop()
            raise
        self.url = info["url"]
        parsed = urllib.parse.urlsplit(self.url)
        self.host = parsed.hostname or "127.0.0.1"
        self.port = parsed.port or (443 if parsed.scheme == "https" else 80)
        self.datastores = dict(info.get("datastores") or {})
        self.pid = int(info["pid"])
        self.control_url = info["control"]
        self.inject_url = info["inject"]
        return self

    def _read_startup_line(self) -> dict[str, Any]:
        assert self._proc is not None and self._proc.stdout is not None
        deadline = time.monotonic() + self.start_timeout
        buf = b""
        fd = self._proc.stdout.fileno()
        while b"\n" not in buf:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise VcsimError(
                    f"vcsim did not start within {self.start_timeout}s{self._log_tail()}"
                )
            ready, _, _ = select.select([fd], [], [], min(remaining, 0.5))
            if not ready:
                if self._proc.poll() is not None:
                    code = self._proc.returncode
                    raise VcsimError(f"vcsim exited with {code} during startup{self._log_tail()}")
                continue
            chunk = os.read(fd, 65536)
            if not chunk:
                raise VcsimError(f"vcsim closed stdout during startup{self._log_tail()}")
            buf += chunk
        line = buf.split(b"\n", 1)[0]
        try:
            return json.loads(line)
        except ValueError as exc:
            raise VcsimError(f"unexpected vcsim startup line {line!r}") from exc

    def _log_tail(self, limit: int = 4000) -> str:
        if self.log_file is None or not self.log_file.exists():
            return ""
        text = self.log_file.read_text(errors="replace")
        return "\n--- vcsim stderr ---\n" + text[-limit:]

    def stop(self) -> None:
        """Stop the process by PID (SIGTERM, then SIGKILL) and remove the temp dir."""
        proc, self._proc = self._proc, None
        if proc is not None:
            if proc.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(proc.pid, signal.SIGTERM)
                try:
                    proc.wait(timeout=self.stop_timeout)
                except subprocess.TimeoutExpired:
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(proc.pid, signal.SIGKILL)
                    proc.wait(timeout=self.stop_timeout)
            if proc.stdout is not None:
                proc.stdout.close()
        tmpdir, self._tmpdir = self._tmpdir, None
        if tmpdir is not None:
            shutil.rmtree(tmpdir, ignore_errors=True)

    def restart(self) -> Vcsim:
        """Stop and start again with the same flags (new port, fresh inventory)."""
        flags = dict(self._flags)
        self.stop()
        return self.start(**flags)

    @property
    def running(self) -> bool:
        """Whether the launcher process is alive."""
        return self._proc is not None and self._proc.poll() is None

    def __enter__(self) -> Vcsim:
        """Start with default flags unless already started."""
        if self._proc is None:
            self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        """Stop the launcher."""
        self.stop()

    def __repr__(self) -> str:
        """Show the URL, never the password."""
        return f"<Vcsim url={self.url!r} pid={self.pid}>"

    # -- helpers -----------------------------------------------------------

    def ssl_context(self) -> ssl.SSLContext:
        """An SSL context that verifies the server against the test CA."""
        return ssl.create_default_context(cafile=self.ca_file)

    def _control(self, method: str, path: str, payload: Any = None) -> Any:
        if not self.control_url:
            raise VcsimError("vcsim is not running")
        data = None if payload is None else json.dumps(payload).encode()
        req = urllib.request.Request(
            self.control_url + path,
            data=data,
            method=method,
            headers={"Content-Type": "application/json"},
        )
        try:
            with urllib.request.urlopen(req, timeout=10) as resp:
                return json.loads(resp.read() or b"null")
        except urllib.error.HTTPError as exc:
            detail = exc.read().decode(errors="replace").strip()
            raise VcsimError(f"vcsim control {method} {path}: {exc.code} {detail}") from exc

    def inject(
        self,
        method: str,
        mode: str,
        fault: str | None = None,
        message: str | None = None,
        delay_ms: int | None = None,
        count: int = 1,
        moref: str | None = None,
    ) -> dict[str, Any]:
        """Add a fault-injection rule for a SOAP method.

        ``mode`` is ``"fault"`` (immediate SOAP fault), ``"taskfault"`` (a
        Task that ends in error) or ``"delay"`` (a Task that stays running for
        ``delay_ms`` and then runs the real method).  ``fault`` is a vim fault
        type name such as ``"InvalidPowerState"``.  ``count`` is how many calls
        the rule applies to (negative: until ``clear_faults``).  ``moref``
        limits the rule to one object (``"vm-42"``).  ``method`` may also be
        ``"DatastoreHTTP.PUT"`` (or another verb) to fail (HTTP 500) or delay
        datastore ``/folder`` transfers; ``moref`` then matches the dsName.
        """
        rule: dict[str, Any] = {"method": method, "mode": mode, "count": count}
        if fault is not None:
            rule["fault"] = fault
        if message is not None:
            rule["message"] = message
        if delay_ms is not None:
            rule["delayMs"] = int(delay_ms)
        if moref is not None:
            rule["moref"] = moref
        return self._control("POST", "/_vcsim/inject", rule)

    def rules(self) -> list[dict[str, Any]]:
        """The injection rules still active."""
        return self._control("GET", "/_vcsim/inject") or []

    def clear_faults(self) -> None:
        """Remove every injection rule."""
        self._control("DELETE", "/_vcsim/inject")

    def expire_sessions(self) -> int:
        """End every session now, as an idle timeout would; return how many."""
        return int(self._control("POST", "/_vcsim/expire-sessions")["expired"])


class RemoteVcsim:
    """A server given by ``VCSIM_URL`` (another vcsim or a real vCenter).

    Same attributes as ``Vcsim``; fault injection and session expiry raise
    ``FaultInjectionUnavailable``.
    """

    can_inject = False

    def __init__(self, url: str, username: str, password: str, ca_file: str | None = None) -> None:
        """Describe the remote server."""
        self.url = url
        parsed = urllib.parse.urlsplit(url)
        self.host = parsed.hostname or ""
        self.port = parsed.port or (443 if parsed.scheme == "https" else 80)
        self.username = username
        self.password = password
        self.ca_file = ca_file
        self.datastores: dict[str, str] = {}
        self.pid = 0
        self.log_file = None
        self.tmpdir = None

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> RemoteVcsim:
        """Build from VCSIM_URL, VCSIM_USERNAME, VCSIM_PASSWORD, VCSIM_CA_FILE."""
        env = os.environ if environ is None else environ
        url = env["VCSIM_URL"]
        if "VCSIM_USERNAME" not in env or "VCSIM_PASSWORD" not in env:
            raise VcsimError("VCSIM_URL needs VCSIM_USERNAME and VCSIM_PASSWORD")
        return cls(url, env["VCSIM_USERNAME"], env["VCSIM_PASSWORD"], env.get("VCSIM_CA_FILE"))

    def __repr__(self) -> str:
        """Show the URL, never the password."""
        return f"<RemoteVcsim url={self.url!r}>"

    def ssl_context(self) -> ssl.SSLContext:
        """An SSL context verifying against VCSIM_CA_FILE or the system store."""
        return ssl.create_default_context(cafile=self.ca_file)

    def _unavailable(self, what: str) -> FaultInjectionUnavailable:
        return FaultInjectionUnavailable(
            f"{what} needs the project's vcsim launcher; the server at {self.url} "
            "(VCSIM_URL) is not the project's launcher and has no fault endpoint"
        )

    def inject(self, *args: Any, **kwargs: Any) -> dict[str, Any]:
        """Not available on a remote server."""
        raise self._unavailable("fault injection")

    def rules(self) -> list[dict[str, Any]]:
        """Not available on a remote server."""
        raise self._unavailable("fault injection")

    def clear_faults(self) -> None:
        """Nothing to clear on a remote server (no rules can exist)."""

    def expire_sessions(self) -> int:
        """Not available on a remote server."""
        raise self._unavailable("session expiry")

    def stop(self) -> None:
        """Nothing to stop."""
