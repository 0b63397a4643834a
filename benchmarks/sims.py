"""Start and stop the two simulators with the inventory each benchmark needs.

* VMware: the project's vcsim launcher (``virtdriver/vmware/simulator``), over TLS with a fresh
  test CA, on a loopback port.
* Xen: the project's XAPI simulator in a child process (``benchmarks/xapi_server.py``), so
  its work and memory never mix with the measured client's.

Both are context managers; leaving the block stops the process by PID and removes its
temporary files. :func:`vmware_conf` / :func:`xen_conf` build the oslo.config options that
point a backend at a running simulator.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import select
import subprocess
import sys
from pathlib import Path
from typing import Any

from oslo_config import cfg

from benchmarks.common import Unavailable

ROOT = Path(__file__).resolve().parent.parent
START_TIMEOUT = 300.0
TASK_TIMEOUT = 30

_VCSIM_BINARY: Path | None = None


def vcsim_binary() -> Path:
    """The built launcher (built once per run by ``virtdriver.vmware.simulator``)."""
    global _VCSIM_BINARY
    if _VCSIM_BINARY is None:
        from virtdriver.vmware.simulator import build_launcher
        _VCSIM_BINARY = build_launcher()
    return _VCSIM_BINARY


class VmwareSim:
    """A vcsim launcher with ``flags`` (see ``Vcsim.start``); ``.sim`` is the launcher."""

    def __init__(self, **flags: Any) -> None:
        self.flags = {"cluster": 1, "host": 3, "standalone_host": 0, "vm": 0, "ds": 1,
                      "autostart": False, **flags}
        self.sim: Any = None

    def __enter__(self) -> VmwareSim:
        from virtdriver.vmware.simulator import Vcsim
        self.sim = Vcsim(binary=vcsim_binary(), start_timeout=START_TIMEOUT)
        self.sim.start(**self.flags)
        return self

    def __exit__(self, *exc_info: Any) -> None:
        if self.sim is not None:
            self.sim.stop()
            self.sim = None


class XenSim:
    """The XAPI simulator in a child process; ``url``, ``username``, ``password``.

    ``inject_delay(method, seconds, count)`` forwards to ``Simulator.inject_delay``.
    """

    def __init__(self, hosts: int = 2, vms: int = 0) -> None:
        self.hosts = hosts
        self.vms = vms
        self.username = "root"
        self.password = secrets.token_urlsafe(12)
        self.url = ""
        self._proc: subprocess.Popen[str] | None = None

    def __enter__(self) -> XenSim:
        env = dict(os.environ, PYTHONPATH=f"{ROOT}{os.pathsep}{os.environ.get('PYTHONPATH', '')}")
        self._proc = subprocess.Popen(
            # "--name=value": a random password may start with "-"
            [sys.executable, "-m", "benchmarks.xapi_server", f"--username={self.username}",
             f"--password={self.password}", f"--hosts={self.hosts}", f"--vms={self.vms}"],
            cwd=ROOT, env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
            stderr=subprocess.PIPE, text=True, start_new_session=True)
        try:
            reply = self._read_line(START_TIMEOUT)
            self.url = reply["url"]
        except BaseException:
            self.__exit__()
            raise
        return self

    def _read_line(self, timeout: float) -> dict[str, Any]:
        assert self._proc is not None and self._proc.stdout is not None
        ready, _, _ = select.select([self._proc.stdout], [], [], timeout)
        line = self._proc.stdout.readline() if ready else ""
        if not line:
            error = ""
            if self._proc.poll() is not None and self._proc.stderr is not None:
                error = self._proc.stderr.read()[-2000:]
            raise Unavailable(f"XAPI simulator did not answer: {error.strip() or 'timeout'}")
        return json.loads(line)

    def command(self, payload: dict[str, Any]) -> None:
        """Send one control command and check its answer."""
        assert self._proc is not None and self._proc.stdin is not None
        self._proc.stdin.write(json.dumps(payload) + "\n")
        self._proc.stdin.flush()
        reply = self._read_line(30.0)
        if not reply.get("ok"):
            raise Unavailable(f"XAPI simulator refused {payload}: {reply.get('error')}")

    def inject_delay(self, method: str, seconds: float, count: int = 1) -> None:
        """Make the next ``count`` calls of ``method`` (``VM.start``) last ``seconds``."""
        self.command({"delay": [method, seconds, count]})

    def clear_faults(self) -> None:
        """Drop every pending injected delay."""
        self.command({"clear": True})

    def __exit__(self, *exc_info: Any) -> None:
        proc, self._proc = self._proc, None
        if proc is None:
            return
        # Closing stdin asks the child to stop its server and exit; then by PID if it hangs.
        if proc.stdin is not None:
            with contextlib.suppress(OSError):
                proc.stdin.close()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.terminate()
            try:
                proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=5)
        for stream in (proc.stdout, proc.stderr):
            if stream is not None:
                stream.close()


def _base_conf() -> cfg.ConfigOpts:
    import virtdriver
    conf = cfg.ConfigOpts()
    virtdriver.register_opts(conf)
    conf([], project="virtdriver-bench", default_config_files=[])
    # A task whose end is never reported must fail the measurement, not hang the run.
    conf.set_override("task_timeout", TASK_TIMEOUT)
    return conf


def vmware_conf(sim: Any, **overrides: Any) -> cfg.ConfigOpts:
    """Options of the ``[vmware]`` group pointing at a running vcsim launcher."""
    conf = _base_conf()
    values = {"host_ip": sim.host, "host_port": sim.port, "host_username": sim.username,
              "host_password": sim.password, "ca_file": sim.ca_file, "cluster_name": "DC0_C0",
              **overrides}
    for name, value in values.items():
        conf.set_override(name, value, group="vmware")
    return conf


def xen_conf(sim: XenSim, **overrides: Any) -> cfg.ConfigOpts:
    """Options of the ``[xenserver]`` group pointing at a running XAPI simulator."""
    conf = _base_conf()
    values = {"connection_url": sim.url, "connection_username": sim.username,
              "connection_password": sim.password, **overrides}
    for name, value in values.items():
        conf.set_override(name, value, group="xenserver")
    return conf
