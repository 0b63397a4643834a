"""The CLI: prints its URL, serves, receives a migration from another process, exits on
SIGTERM."""

from __future__ import annotations

import signal
import subprocess
import sys
from typing import Any

import XenAPI

from .conftest import new_vm


def test_cli_serves_and_receives_migration(xapi: Any) -> None:
    """python -m virtdriver.xen.simulator --port 0 --vms 3 in a child process."""
    proc = subprocess.Popen([sys.executable, "-m", "virtdriver.xen.simulator", "--port", "0",
                             "--vms", "3", "--username", "u", "--password", "p"],
                            stdout=subprocess.PIPE, text=True)
    try:
        url = proc.stdout.readline().strip()
        assert url.startswith("http://127.0.0.1:")
        remote = XenAPI.Session(url)
        remote.xenapi.login_with_password("u", "p", "2.1", "t")
        rx = remote.xenapi
        names = {r["name_label"] for r in rx.VM.get_all_records_where(
            'field "is_control_domain" = "false" and field "is_a_template" = "false"'
        ).values()}
        assert names == {"vm0", "vm1", "vm2"}
        host = rx.host.get_all()[0]
        net = next(iter(rx.network.get_all_records_where('field "bridge" = "xenbr0"')))
        receive = rx.host.migrate_receive(host, net, {})
        vm = new_vm(xapi, "to-process", disk=1024 * 1024)
        uuid = xapi.VM.get_uuid(vm)
        xapi.VM.migrate_send(vm, receive, True, {}, {}, {})
        moved = rx.VM.get_by_uuid(uuid)
        assert rx.VM.get_power_state(moved) == "Halted"
        assert len(rx.VM.get_VBDs(moved)) == 1
        rx.session.logout()
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(10) == 0
        proc.stdout.close()


# Run in the child: refuse every installed module outside the standard library, cryptography
# (and what it loads) and the simulator's own package chain, note each refusal, run the CLI.
_GUARD = r"""
import importlib.abc, runpy, sys
ALLOWED_TOP = {"cryptography", "_cffi_backend", "_openssl"}
ALLOWED_OWN = ("virtdriver", "virtdriver.xen", "virtdriver.xen.simulator")
refused = []

class Guard(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        top = name.split(".")[0]
        if top in sys.stdlib_module_names or top in ALLOWED_TOP:
            return None
        if top == "virtdriver" and (name in ALLOWED_OWN
                                    or name.startswith("virtdriver.xen.simulator.")):
            return None
        if not any(f.find_spec(name, path, target) for f in sys.meta_path
                   if f is not self and hasattr(f, "find_spec")):
            return None  # not installed at all (the stdlib probes for Jython's "org")
        refused.append(name)
        raise ImportError(f"blocked: {name}")

sys.meta_path.insert(0, Guard())
sys.argv = ["virtdriver.xen.simulator", *sys.argv[1:]]
try:
    runpy.run_module("virtdriver.xen.simulator", run_name="__main__", alter_sys=True)
finally:
    print("REFUSED " + ",".join(sorted(set(refused))), file=sys.stderr, flush=True)
"""


def test_cli_runs_on_its_own_dependencies_only() -> None:
    """``python -m virtdriver.xen.simulator`` imports only the standard library,
    cryptography and its own package: with every other import refused, it serves a whole
    guest-agent password exchange (which needs cryptography) and exits cleanly."""
    import base64  # noqa: F401  (used by the agent exchange below)
    import binascii
    import json
    import os

    proc = subprocess.Popen([sys.executable, "-c", _GUARD, "--port", "0", "--vms", "1"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        url = proc.stdout.readline().strip()
        assert url.startswith("http://127.0.0.1:"), proc.stderr.read()
        ses = XenAPI.Session(url)
        ses.xenapi.login_with_password("root", "secret", "2.1", "t")
        api = ses.xenapi
        (vm,) = api.VM.get_by_name_label("vm0")
        api.VM.start(vm, False, False)
        host, domid = api.host.get_all()[0], api.VM.get_domid(vm)
        prime, base = 162259276829213363391578010288127, 5
        private = int(binascii.hexlify(os.urandom(10)), 16)
        reply = json.loads(api.host.call_plugin(host, "agent.py", "key_init", {
            "id": "k1", "dom_id": domid, "timeout": "5", "pub": str(pow(base, private, prime))}))
        shared = pow(int(reply["message"]), private, prime)
        enc = subprocess.run(["openssl", "aes-128-cbc", "-A", "-a", "-pass", f"pass:{shared}",
                              "-nosalt"], input=b"pw\n", capture_output=True, check=True)
        reply = json.loads(api.host.call_plugin(host, "agent.py", "password", {
            "id": "p1", "dom_id": domid, "timeout": "5",
            "enc_pass": enc.stdout.decode().strip()}))
        assert reply["returncode"] == "0"  # decrypted with cryptography inside the guard
        api.VM.hard_shutdown(vm)
        api.session.logout()
    finally:
        proc.send_signal(signal.SIGTERM)
        code = proc.wait(10)
        err = proc.stderr.read()
        proc.stdout.close()
        proc.stderr.close()
    assert code == 0, err
    assert err.splitlines()[-1] == "REFUSED ", err
