"""Guest side: live xenstore, dom0 plugins, the simulated agent, consoles, data sources."""

from __future__ import annotations

import base64
import binascii
import json
import os
import subprocess
import uuid
import zlib
from typing import Any

from virtdriver.xen.simulator import Simulator

from .conftest import failure, new_vm

PRIME, BASE = 162259276829213363391578010288127, 5


def running_vm(xapi: Any, name: str) -> tuple[str, str, str]:
    """(vm, host, domid) of a started VM with xenstore_data and a VIF."""
    vm = new_vm(xapi, name, vif=True)
    xapi.VM.add_to_xenstore_data(vm, "vm-data/hostname", name)
    xapi.VM.start(vm, False, False)
    return vm, xapi.host.get_all()[0], xapi.VM.get_domid(vm)


def agent(xapi: Any, host: str, domid: str, fn: str, timeout: str = "5",
          **extra: str) -> dict[str, str]:
    """Call agent.<fn> as Nova did and decode its JSON reply."""
    args = {"id": str(uuid.uuid4()), "dom_id": domid, "timeout": timeout, **extra}
    return json.loads(xapi.host.call_plugin(host, "agent.py", fn, args))


def test_live_xenstore_plugin(xapi: Any) -> None:
    """xenstore_data is copied to /local/domain/<domid>/vm-data at boot; read/write/delete."""
    vm, host, domid = running_vm(xapi, "xs")
    call = xapi.host.call_plugin
    assert call(host, "xenstore.py", "read_record",
                {"dom_id": domid, "path": "vm-data/hostname"}) == "xs"
    call(host, "xenstore.py", "write_record",
         {"dom_id": domid, "path": "vm-data/networking/aabb", "value": '{"ip": "x"}'})
    listed = json.loads(call(host, "xenstore.py", "list_records",
                             {"dom_id": domid, "path": "vm-data/networking"}))
    assert listed == {"aabb": '{"ip": "x"}'}
    call(host, "xenstore.py", "delete_record", {"dom_id": domid, "path": "vm-data/networking"})
    assert call(host, "xenstore.py", "read_record",
                {"dom_id": domid, "path": "vm-data/networking/aabb",
                 "ignore_missing_path": "True"}) == '"None"'
    assert failure(call, host, "xenstore.py", "read_record",
                   {"dom_id": domid, "path": "nope"})[0] == "XENAPI_PLUGIN_FAILURE"
    assert failure(call, host, "xenstore.py", "read_record",
                   {"dom_id": "-1", "path": "x"})[0] == "XENAPI_PLUGIN_FAILURE"
    assert call(host, "xenstore.py", "read_record",
                {"dom_id": domid, "path": "attr/PVAddons/MajorVersion"}) == "8"
    assert failure(call, host, "nosuch.py", "f", {}) == ["XENAPI_MISSING_PLUGIN", "nosuch.py"]
    assert failure(call, host, "xenstore.py", "f", {}) == ["UNKNOWN_XENAPI_PLUGIN_FUNCTION", "f"]
    assert call(host, "dom0_plugin_version.py", "get_version", {})
    xapi.VM.hard_shutdown(vm)


def openssl_encrypt(text: str, shared: int) -> str:
    """What Nova's SimpleDH.encrypt ran."""
    out = subprocess.run(["openssl", "aes-128-cbc", "-A", "-a", "-pass", f"pass:{shared}",
                          "-nosalt"], input=text.encode(), capture_output=True, check=True)
    return out.stdout.decode().strip("\n")


def test_agent_password_file_network(sim: Simulator, xapi: Any) -> None:
    """version, key_init (D0) + password, inject_file, resetnetwork reach the guest."""
    vm, host, domid = running_vm(xapi, "agent")
    assert agent(xapi, host, domid, "version") == {"returncode": "0", "message": "1.0.0-sim"}
    private = int(binascii.hexlify(os.urandom(10)), 16)
    reply = agent(xapi, host, domid, "key_init", pub=str(pow(BASE, private, PRIME)))
    assert reply["returncode"] == "D0"
    shared = pow(int(reply["message"]), private, PRIME)
    enc = openssl_encrypt("s3cret-pw\n", shared)
    assert agent(xapi, host, domid, "password", enc_pass=enc)["returncode"] == "0"
    b64 = base64.b64encode
    assert agent(xapi, host, domid, "inject_file", b64_path=b64(b"/etc/motd").decode(),
                 b64_contents=b64(b"hello\n").decode())["returncode"] == "0"
    xapi.host.call_plugin(host, "xenstore.py", "write_record",
                          {"dom_id": domid, "path": "vm-data/networking/0201",
                           "value": '{"label": "public"}'})
    assert agent(xapi, host, domid, "resetnetwork")["returncode"] == "0"
    state = sim.guest_state(xapi.VM.get_uuid(vm))
    assert state["password"] == "s3cret-pw"
    assert state["files"] == {"/etc/motd": b"hello\n"}
    assert state["network_resets"] == 1
    assert state["networking"] == {"0201": '{"label": "public"}'}
    assert state["xenstore"][f"/local/domain/{domid}/vm-data/hostname"] == "agent"
    xapi.VM.hard_shutdown(vm)


def test_agent_disabled_times_out(sim: Simulator, xapi: Any) -> None:
    """other_config:sim-agent=false: the plugin fails with TIMEOUT: after ``timeout``."""
    vm, host, domid = running_vm(xapi, "noagent")
    sim.set_guest_agent(xapi.VM.get_uuid(vm), False)
    details = failure(xapi.host.call_plugin, host, "agent.py", "version",
                      {"id": "r1", "dom_id": domid, "timeout": "0.3"})
    assert details[0] == "XENAPI_PLUGIN_FAILURE"
    assert "TIMEOUT:" in details[-1].splitlines()[-1]
    xapi.VM.remove_from_other_config(vm, "sim-agent")
    assert agent(xapi, host, domid, "version")["returncode"] == "0"
    xapi.VM.hard_shutdown(vm)


def test_console_log_bandwidth_and_data_sources(xapi: Any) -> None:
    """console.get_console_log, bandwidth.fetch_all_bandwidth, query_data_source."""
    vm, host, domid = running_vm(xapi, "diag")
    log = xapi.host.call_plugin(host, "console.py", "get_console_log", {"dom_id": domid})
    assert "Booting simulated guest diag" in zlib.decompress(base64.b64decode(log)).decode()
    bw = json.loads(xapi.host.call_plugin(host, "bandwidth.py", "fetch_all_bandwidth", {}))
    assert bw[domid]["0"] == {"bw_in": 1000, "bw_out": 2000}
    assert xapi.VM.query_data_source(vm, "memory") == float(256 * 1024 * 1024)
    assert 0 <= xapi.VM.query_data_source(vm, "cpu0") <= 1
    names = {d["name_label"] for d in xapi.VM.get_data_sources(vm)}
    assert {"memory", "cpu0", "vif_0_rx", "vif_0_tx"} <= names
    xapi.VM.hard_shutdown(vm)
    assert failure(xapi.VM.query_data_source, vm, "memory")[0] == "VM_BAD_POWER_STATE"
