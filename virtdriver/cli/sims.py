"""`virtdriver sim start|stop|status`: the embedded simulators as background processes.

``start`` runs a vCenter simulator (the project's launcher, built into the user's cache on
first use, or the vcsim binary given by ``--vcsim``) over TLS with a CA made for the
occasion, and the XAPI simulator; it writes a configuration file that points the two
backends at them. ``stop`` ends both by PID and removes what ``start`` wrote.

Secrets stay private: the simulators get their passwords through the environment (never
their command lines, which ``ps`` shows to everyone); the directory ``start`` writes is
0700 and every file in it, like the configuration file, is 0600 from its creation.
"""

from __future__ import annotations

import json
import os
import secrets
import select
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from virtdriver.common.exceptions import InvalidInput, VirtDriverError
from virtdriver.vmware.simulator import (
    Vcsim,
    VcsimError,
    build_launcher,
    make_private_dir,
    write_private_file,
)

START_TIMEOUT = 60
#: The environment variable the XAPI simulator reads its password from.
XAPI_PASSWORD_ENV = "XAPI_SIMULATOR_PASSWORD"


class SimulatorError(VirtDriverError):
    """A simulator could not be started or stopped."""


def sim_dir(config_file: Path) -> Path:
    """Where ``start`` keeps the simulators' certificates, logs and PIDs."""
    return config_file.parent / "virtdriver-sims"


def _stderr(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def start(config_file: Path, vcsim_binary: str | None, hosts: int = 2,
          notify: Callable[[str], None] = _stderr) -> dict[str, Any]:
    """Start both simulators and write ``config_file``; returns what was started.

    ``vcsim_binary`` (or ``$VIRTDRIVER_VCSIM``) names a vcsim to run; without one, the
    project's launcher is built on first use (``notify`` says so).
    """
    directory = sim_dir(config_file)
    if (directory / "sims.json").exists():
        raise SimulatorError(f"simulators already running (see {directory / 'sims.json'}); "
                             "run 'virtdriver sim stop' first")
    binary = _vcsim_binary(vcsim_binary, notify)
    make_private_dir(directory)
    started: dict[str, Any] = {}
    try:
        started["vmware"] = _start_vcsim(binary, directory, hosts, notify)
        started["xen"] = _start_xapi(directory, hosts)
        _write_config(config_file, started)
        write_private_file(directory / "sims.json", json.dumps(started, indent=2))
    except BaseException:
        for sim in started.values():
            _terminate(sim["pid"])
        shutil.rmtree(directory, ignore_errors=True)
        raise
    return started


def stop(config_file: Path) -> list[str]:
    """Stop the simulators ``start`` left running; returns the names stopped."""
    directory = sim_dir(config_file)
    try:
        started = json.loads((directory / "sims.json").read_text())
    except FileNotFoundError:
        return []
    for sim in started.values():
        _terminate(sim["pid"])
    shutil.rmtree(directory, ignore_errors=True)
    return sorted(started)


def status(config_file: Path) -> dict[str, dict[str, Any]]:
    """Each started simulator with its URL and whether its process is alive."""
    try:
        started = json.loads((sim_dir(config_file) / "sims.json").read_text())
    except FileNotFoundError:
        return {}
    return {name: {"url": sim["url"], "pid": sim["pid"], "running": _alive(sim["pid"])}
            for name, sim in started.items()}


def _vcsim_binary(given: str | None, notify: Callable[[str], None]) -> Path:
    """The vcsim to run: the one given, else the project's launcher (built if need be)."""
    given = given or os.environ.get("VIRTDRIVER_VCSIM")
    if given:
        if not (Path(given).is_file() and os.access(given, os.X_OK)):
            raise InvalidInput("--vcsim", given, "must name an executable vcsim binary")
        return Path(given)
    return build_launcher(notify=notify)


def _start_vcsim(binary: Path, directory: Path, hosts: int,
                 notify: Callable[[str], None]) -> dict[str, Any]:
    sim = Vcsim(binary, username="demo", start_timeout=START_TIMEOUT)
    try:
        if not sim.can_inject:
            notify(f"virtdriver: note: {binary} is a stock vcsim: it accepts any user name "
                   "and password, and has none of the project launcher's fault injection, "
                   "session expiry or stand-ins for calls vcsim lacks (operations that need "
                   "them fail on it)")
        sim.start(cluster=1, host=hosts, workdir=directory / "vcsim")
        pid = sim.detach()
    except VcsimError as error:
        sim.stop()
        raise SimulatorError(f"vcsim did not start: {error}") from error
    return {"pid": pid, "url": sim.url, "username": sim.username, "password": sim.password,
            "ca_file": sim.ca_file, "launcher": sim.can_inject}


def _start_xapi(directory: Path, hosts: int) -> dict[str, Any]:
    password = secrets.token_urlsafe(12)
    command = [sys.executable, "-m", "virtdriver.xen.simulator", "--port", "0",
               "--username", "root", "--hosts", str(hosts)]
    env = dict(os.environ, **{XAPI_PASSWORD_ENV: password})
    url, pid = _spawn(command, directory / "xapi.log", env)
    return {"pid": pid, "url": url.strip(), "username": "root", "password": password}


def _spawn(command: list[str], log: Path, env: dict[str, str]) -> tuple[str, int]:
    """Start ``command`` detached; return its first stdout line and its PID."""
    log_fd = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with open(log_fd, "wb") as log_handle:
        process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=log_handle,
                                   stdin=subprocess.DEVNULL, start_new_session=True, env=env,
                                   umask=0o077)  # what the simulator writes is private
    assert process.stdout is not None
    with process.stdout:
        ready, _, _ = select.select([process.stdout], [], [], START_TIMEOUT)
        line = process.stdout.readline().decode() if ready else ""
    if not line or process.poll() is not None:
        _terminate(process.pid)
        last = (log.read_text(errors="replace").strip().splitlines() or ["no output"])[-1]
        raise SimulatorError(f"{Path(command[0]).name} did not start: {last}")
    return line, process.pid


def _write_config(config_file: Path, started: dict[str, Any]) -> None:
    vmware, xen = started["vmware"], started["xen"]
    address = urlsplit(vmware["url"])
    write_private_file(config_file, (
        "# Written by 'virtdriver sim start': the embedded simulators.\n"
        "[vmware]\n"
        f"host_ip = {address.hostname}\nhost_port = {address.port}\n"
        f"host_username = {vmware['username']}\nhost_password = {vmware['password']}\n"
        f"ca_file = {vmware['ca_file']}\ncluster_name = DC0_C0\n\n"
        "[xenserver]\n"
        f"connection_url = {xen['url']}\nconnection_username = {xen['username']}\n"
        f"connection_password = {xen['password']}\n"))


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def _terminate(pid: int, timeout: float = 10.0) -> None:
    """SIGTERM, then SIGKILL after ``timeout``; reap the child if it is ours."""
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if os.waitpid(pid, os.WNOHANG)[0]:
                return
        except ChildProcessError:  # not our child: watch it with signal 0
            if not _alive(pid):
                return
        time.sleep(0.05)
    try:
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
    except (ProcessLookupError, ChildProcessError):
        pass
