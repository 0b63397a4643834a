"""Xen Orchestra's ``xen-api`` npm client against the simulator (node 20 + npm required).

The fixture installs ``xen-api`` into the ignored ``.cache/node`` folder of the repository
(CI starts from a fresh machine; the npm registry must be reachable).
"""

from __future__ import annotations

import json
import pathlib
import shutil
import subprocess
from typing import Any

import pytest

from virtdriver.xen.simulator import Simulator

HERE = pathlib.Path(__file__).resolve().parent
REPO = HERE.parents[2]
CACHE = REPO / ".cache" / "node"
XEN_API_VERSION = "4.7.6"


@pytest.fixture(scope="module")
def sim_options() -> dict[str, Any]:
    """Two halted VMs and a slow VM.start so the task is watched through events."""
    return {"vms": 2, "task_delays": {"VM.start": 0.3}}


@pytest.fixture(scope="module")
def xen_api_module() -> pathlib.Path:
    """Install xen-api with npm (idempotent) and return its entry module."""
    npm = shutil.which("npm")
    assert npm is not None, "npm is required for this test"
    CACHE.mkdir(parents=True, exist_ok=True)
    subprocess.run([npm, "install", "--prefix", str(CACHE), f"xen-api@{XEN_API_VERSION}",
                    "--no-audit", "--no-fund", "--loglevel=error"], check=True, timeout=300,
                   capture_output=True)
    entry = CACHE / "node_modules" / "xen-api" / "index.mjs"
    assert entry.is_file()
    return entry


@pytest.mark.parametrize("transport", ["auto", "xml-rpc", "json-rpc"])
def test_xo_connect_list_start_event(sim: Simulator, xen_api_module: pathlib.Path,
                                     transport: str) -> None:
    """connect, initial sync, list VMs, Async VM.start watched by events, the VM's update
    event, then VM_BAD_POWER_STATE for a second start; over each transport."""
    node = shutil.which("node")
    assert node is not None
    proc = subprocess.run([node, str(HERE / "xo_client.mjs"), str(xen_api_module), sim.url,
                           "root", "secret", transport], capture_output=True, text=True,
                          timeout=90)
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert out["vms"] == ["vm0", "vm1"]
    assert out["started"] == "Running" and int(out["domid"]) > 0
    assert out["error"]["code"] == "VM_BAD_POWER_STATE"
    assert out["error"]["params"][1:] == ["halted", "running"]
    assert out["poolName"] == "pool0"
    assert {"VM", "host", "pool", "SR", "network", "task"} <= set(out["types"])
    assert "_watchEvents" not in proc.stderr
    sim.reset()  # the next transport starts from two halted VMs again
