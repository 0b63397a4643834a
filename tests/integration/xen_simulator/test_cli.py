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
