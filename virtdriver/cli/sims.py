"""`virtdriver sim start|stop|status`: the embedded simulators as background processes.

``start`` runs the vcsim launcher (over TLS, with a CA made for the occasion) and the XAPI
simulator, and writes a configuration file that points the two backends at them; ``stop``
ends both by PID and removes what ``start`` wrote.
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
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from virtdriver.common.exceptions import InvalidInput, VirtDriverError

START_TIMEOUT = 60


class SimulatorError(VirtDriverError):
    """A simulator could not be started or stopped."""


def sim_dir(config_file: Path) -> Path:
    """Where ``start`` keeps the simulators' certificates and PIDs."""
    return config_file.parent / "virtdriver-sims"


def start(config_file: Path, vcsim_binary: str | None, hosts: int = 2) -> dict[str, Any]:
    """Start both simulators and write ``config_file``; returns what was started."""
    directory = sim_dir(config_file)
    if (directory / "sims.json").exists():
        raise SimulatorError(f"simulators already running (see {directory / 'sims.json'}); "
                             "run 'virtdriver sim stop' first")
    binary = vcsim_binary or os.environ.get("VIRTDRIVER_VCSIM")
    if not binary or not Path(binary).is_file():
        raise InvalidInput("--vcsim", binary, "must name the built vcsim launcher "
                           "(bash virtdriver/vmware/simulator/launcher/build.sh prints its path)")
    directory.mkdir(parents=True, exist_ok=True)
    started: dict[str, Any] = {}
    try:
        started["vmware"] = _start_vcsim(Path(binary), directory, hosts)
        started["xen"] = _start_xapi(directory, hosts)
        _write_config(config_file, started)
        (directory / "sims.json").write_text(json.dumps(started, indent=2))
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


def _start_vcsim(binary: Path, directory: Path, hosts: int) -> dict[str, Any]:
    try:
        import trustme
    except ImportError:
        raise SimulatorError("the vcsim launcher needs trustme for its test CA: "
                             "pip install 'virtdriver[test]'") from None
    authority = trustme.CA()
    certificate = authority.issue_cert("127.0.0.1", "localhost")
    ca_file, cert_file, key_file = (directory / name for name in ("ca.pem", "cert.pem",
                                                                  "key.pem"))
    authority.cert_pem.write_to_path(str(ca_file))
    certificate.cert_chain_pems[0].write_to_path(str(cert_file))
    certificate.private_key_pem.write_to_path(str(key_file))
    password = secrets.token_urlsafe(12)
    command = [str(binary), "-l", "127.0.0.1:0", "-tls-cert", str(cert_file),
               "-tls-key", str(key_file), "-username", "demo", "-password", password,
               "-cluster", "1", "-host", str(hosts)]
    first_line, pid = _spawn(command, directory / "vcsim.log")
    info = json.loads(first_line)
    return {"pid": pid, "url": info["url"], "username": "demo", "password": password,
            "ca_file": str(ca_file)}


def _start_xapi(directory: Path, hosts: int) -> dict[str, Any]:
    password = secrets.token_urlsafe(12)
    command = [sys.executable, "-m", "virtdriver.xen.simulator", "--port", "0",
               "--username", "root", "--password", password, "--hosts", str(hosts)]
    url, pid = _spawn(command, directory / "xapi.log")
    return {"pid": pid, "url": url.strip(), "username": "root", "password": password}


def _spawn(command: list[str], log: Path) -> tuple[str, int]:
    """Start ``command`` detached; return its first stdout line and its PID."""
    with open(log, "wb") as log_handle:
        process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=log_handle,
                                   stdin=subprocess.DEVNULL, start_new_session=True)
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
    config_file.write_text(
        "# Written by 'virtdriver sim start': the embedded simulators.\n"
        "[vmware]\n"
        f"host_ip = {address.hostname}\nhost_port = {address.port}\n"
        f"host_username = {vmware['username']}\nhost_password = {vmware['password']}\n"
        f"ca_file = {vmware['ca_file']}\ncluster_name = DC0_C0\n\n"
        "[xenserver]\n"
        f"connection_url = {xen['url']}\nconnection_username = {xen['username']}\n"
        f"connection_password = {xen['password']}\n")
    config_file.chmod(0o600)


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
