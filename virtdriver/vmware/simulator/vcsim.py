"""Start, stop and control a vCenter simulator: the project's launcher or a stock vcsim.

``Vcsim`` starts a binary on a free loopback port over TLS (a fresh CA and a server
certificate from ``certs``), reads the line it prints once serving, and stops it by PID
(SIGTERM, then SIGKILL). Its datastore directories, certificates and log live in one
private (0700) directory that ``stop()`` removes, unless the caller gave its own.

The binary is either the project's launcher (``build.build_launcher``: govmomi's simulator
plus fault and delay injection, session expiry and stand-ins for calls vcsim 0.24.2 lacks)
or any stock ``vcsim``. A stock vcsim is told apart by its flags; it accepts any user name
and password (so none is on its command line), and what needs the launcher's extras
(``inject``, ``expire_sessions``, ``idle``) raises ``FaultInjectionUnavailable`` saying so.
The launcher gets its password through the environment, never its command line.

``RemoteVcsim`` offers the same attributes for a server given by the ``VCSIM_URL``
environment variable; it has no fault endpoint.
"""

from __future__ import annotations

import contextlib
import json
import os
import pathlib
import re
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

from .build import VcsimError, build_launcher
from .certs import make_private_dir, write_test_certificates

DEFAULT_USERNAME = "administrator@vsphere.local"
#: The environment variable the launcher reads its login password from (see main.go).
PASSWORD_ENV = "VIRTDRIVER_VCSIM_PASSWORD"
#: What a stock vcsim prints once serving: ``export GOVC_URL=<url> GOVC_SIM_PID=<pid>``.
_STOCK_LINE = re.compile(rb"GOVC_URL=(?P<url>\S+)\s+GOVC_SIM_PID=(?P<pid>\d+)")


class FaultInjectionUnavailable(VcsimError):
    """The server under test has no fault-injection endpoint (not the project's launcher)."""


def is_project_launcher(binary: pathlib.Path, timeout: float = 30.0) -> bool:
    """Whether ``binary`` is the project's launcher (True) or a stock vcsim (False).

    Asks the binary for its flags (``-h``): only the launcher has ``-control``; a stock
    vcsim has ``-tlscert``. Anything else is not a vcsim and raises ``VcsimError``.
    """
    try:
        done = subprocess.run([str(binary), "-h"], stdin=subprocess.DEVNULL,
                              capture_output=True, timeout=timeout)
    except (OSError, subprocess.TimeoutExpired) as error:
        raise VcsimError(f"cannot run {binary} -h: {error}") from error
    usage = done.stdout + done.stderr
    if b"-control" in usage and b"-tls-cert" in usage:
        return True
    if b"-tlscert" in usage and b"-standalone-host" in usage:
        return False
    raise VcsimError(f"{binary} is neither the project's vcsim launcher nor a stock vcsim "
                     "(its -h lists neither -control nor -tlscert)")


def _duration(value: str | float | int | None) -> str | None:
    """Turn seconds (or a Go duration string) into a Go duration string."""
    if value is None:
        return None
    if isinstance(value, str):
        return value
    return f"{float(value)}s"


class Vcsim:
    """One running simulator process, usable as a context manager.

    Attributes (after ``start``): ``url`` (``https://127.0.0.1:PORT/sdk``), ``host``,
    ``port``, ``username``, ``password``, ``ca_file`` (the test CA, PEM), ``datastores``
    (datastore name -> local directory; the launcher only), ``pid``, ``control_url`` (the
    launcher only), ``log_file`` (the simulator's stderr) and ``tmpdir``. ``can_inject``
    says whether the binary is the project's launcher, with its fault endpoint.
    """

    def __init__(
        self,
        binary: pathlib.Path | str | None = None,
        *,
        username: str = DEFAULT_USERNAME,
        password: str | None = None,
        tls: bool = True,
        start_timeout: float = 120.0,
        stop_timeout: float = 10.0,
    ) -> None:
        """Prepare a simulator; nothing runs until ``start``.

        ``binary`` defaults to the project's launcher, built on first use.
        """
        self._binary = pathlib.Path(binary) if binary is not None else None
        self._is_launcher: bool | None = None
        self.username = username
        self.password = password if password is not None else secrets.token_urlsafe(12)
        self.tls = tls
        self.start_timeout = start_timeout
        self.stop_timeout = stop_timeout
        self._proc: subprocess.Popen[bytes] | None = None
        self._flags: dict[str, Any] = {}
        self._tmpdir: pathlib.Path | None = None
        self._own_tmpdir = True
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

    @property
    def binary(self) -> pathlib.Path:
        """The binary this simulator runs (building the launcher if none was given)."""
        if self._binary is None:
            self._binary = build_launcher()
        return self._binary

    @property
    def can_inject(self) -> bool:
        """Whether the binary is the project's launcher (fault injection, session expiry)."""
        if self._is_launcher is None:
            self._is_launcher = is_project_launcher(self.binary)
        return self._is_launcher

    # -- lifecycle ---------------------------------------------------------

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
        workdir: pathlib.Path | None = None,
    ) -> Vcsim:
        """Start the simulator with the given inventory and options.

        Inventory (as vcsim counts it): ``dc`` datacenters, each with
        ``cluster`` clusters of ``host`` hosts, ``standalone_host`` standalone
        hosts, ``vm`` VMs per standalone host and per cluster (and per child
        pool), ``ds`` datastores LocalDS_N mounted on every host, ``pool``
        child resource pools per cluster, ``portgroup`` DVS portgroups;
        ``autostart`` powers the initial VMs on.

        ``idle`` is the session idle timeout (seconds or a Go duration such as
        ``"30s"``; the launcher only); ``method_delay`` maps SOAP method names to
        milliseconds of delay before dispatch.

        ``workdir`` is where the certificates, datastores and log go (made 0700, and left
        in place by ``stop``); by default a temporary directory that ``stop`` removes.
        """
        if self._proc is not None:
            raise VcsimError("already started")
        self._flags = {
            "dc": dc, "cluster": cluster, "host": host, "standalone_host": standalone_host,
            "vm": vm, "ds": ds, "pool": pool, "portgroup": portgroup, "autostart": autostart,
            "idle": idle, "method_delay": method_delay, "trace": trace, "listen": listen,
            "extra_args": extra_args, "workdir": workdir,
        }
        binary, launcher = self.binary, self.can_inject
        if idle is not None and not launcher:
            raise FaultInjectionUnavailable(
                f"a session idle timeout needs the project's vcsim launcher; {binary} is a "
                "stock vcsim")
        if workdir is None:
            tmpdir = pathlib.Path(tempfile.mkdtemp(prefix="vcsim-launcher-"))
        else:
            tmpdir = make_private_dir(workdir)
        self._tmpdir = self.tmpdir = tmpdir
        self._own_tmpdir = workdir is None
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
            ]
            env = dict(os.environ)
            env.pop(PASSWORD_ENV, None)
            if launcher:
                # The user name is no secret; the password goes by environment (main.go).
                args.append(f"-username={self.username}")
                env[PASSWORD_ENV] = self.password
            if self.tls:
                files = write_test_certificates(tmpdir)
                self.ca_file = str(files.ca_file)
                flag = "-tls-cert" if launcher else "-tlscert"
                args += [f"{flag}={files.cert_file}", f"{flag.replace('cert', 'key')}="
                         f"{files.key_file}"]
            elif not launcher:
                args.append("-tls=false")
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
            datastore_tmp.mkdir(mode=0o700, exist_ok=True)
            env["TMPDIR"] = str(datastore_tmp)
            self.log_file = tmpdir / "vcsim.log"
            log_fd = os.open(self.log_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with open(log_fd, "wb") as log:
                self._proc = subprocess.Popen(
                    args,
                    stdin=subprocess.DEVNULL,
                    stdout=subprocess.PIPE,
                    stderr=log,
                    env=env,
                    start_new_session=True,
                    # What the simulator writes (datastore files) is private to the user.
                    umask=0o077,
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
        self.control_url = info.get("control", "")
        self.inject_url = info.get("inject", "")
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
        stock = _STOCK_LINE.search(line)
        if stock:
            # A stock vcsim puts its default user:pass in the URL; they mean nothing.
            url = urllib.parse.urlsplit(stock["url"].decode())
            netloc = url.netloc.rpartition("@")[2]
            return {"url": urllib.parse.urlunsplit(url._replace(netloc=netloc)),
                    "pid": int(stock["pid"])}
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
        if tmpdir is not None and self._own_tmpdir:
            shutil.rmtree(tmpdir, ignore_errors=True)

    def detach(self) -> int:
        """Leave the process running on its own (``stop`` no longer ends it); return its PID.

        For callers that outlive this object, such as ``virtdriver sim start``: they stop
        the process by PID later, and own the ``workdir`` they gave.
        """
        proc, self._proc = self._proc, None
        if proc is None:
            raise VcsimError("not started")
        if proc.stdout is not None:
            proc.stdout.close()
        self._tmpdir = None
        return proc.pid

    def restart(self) -> Vcsim:
        """Stop and start again with the same flags (new port, fresh inventory)."""
        flags = dict(self._flags)
        self.stop()
        return self.start(**flags)

    @property
    def running(self) -> bool:
        """Whether the simulator process is alive."""
        return self._proc is not None and self._proc.poll() is None

    def __enter__(self) -> Vcsim:
        """Start with default flags unless already started."""
        if self._proc is None:
            self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        """Stop the simulator."""
        self.stop()

    def __repr__(self) -> str:
        """Show the URL, never the password."""
        return f"<Vcsim url={self.url!r} pid={self.pid}>"

    # -- helpers -----------------------------------------------------------

    def ssl_context(self) -> ssl.SSLContext:
        """An SSL context that verifies the server against the test CA."""
        return ssl.create_default_context(cafile=self.ca_file)

    def _control(self, method: str, path: str, payload: Any = None) -> Any:
        if not self.can_inject:
            raise FaultInjectionUnavailable(
                f"fault injection and session expiry need the project's vcsim launcher; "
                f"{self.binary} is a stock vcsim")
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
        """Remove every injection rule (nothing to do on a stock vcsim: it has none)."""
        if self.can_inject:
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
