"""The README's Reliability figures: what a caller waits with default options.

    .venv/bin/python -m tests.support.reliability_figures vmware   # about 5 minutes
    .venv/bin/python -m tests.support.reliability_figures xen      # about 3 minutes

Starts the backend's simulator, puts a :class:`FaultProxy` in front of it and, with every
option at its default, times: a call on a stalled server, the next call on the same
session once the server answers, a call on a refused (dead) server, the next call after
it, a task wait on a stalled server and (Xen) a lasting plain call on a stalled server.
Prints one JSON line of ``[seconds, outcome]``.
The fault tests (tests/integration/faults) check the same paths with short options.
"""

from __future__ import annotations

import json
import sys
import threading
import time
from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit

from tests.support.faultproxy import FaultProxy


def timed(function: Callable[[], Any]) -> tuple[float, str]:
    """Seconds ``function`` took and ``ok`` or the error's type and code."""
    start = time.monotonic()
    try:
        function()
        outcome = "ok"
    except Exception as error:  # noqa: BLE001 - the outcome is the figure
        outcome = f"{type(error).__name__}({getattr(error, 'code', '')})"
    return round(time.monotonic() - start, 1), outcome


def vmware() -> dict[str, Any]:
    from pyVmomi import vim

    from virtdriver.vmware.session import VMwareSession
    from virtdriver.vmware.simulator import Vcsim

    out: dict[str, Any] = {}
    sim = Vcsim()
    sim.start()
    try:
        with FaultProxy(sim.host, sim.port) as proxy:
            session = VMwareSession(proxy.host, proxy.port, sim.username, sim.password,
                                    ca_file=sim.ca_file)
            vm = next(ref for ref, _ in
                      session.list_objects(vim.VirtualMachine, ["name"]).values())

            def read() -> Any:
                return session.retrieve_one(vm, ["name"])
            proxy.stall()
            out["stalled call"] = timed(read)
            proxy.forward()
            proxy.reset()
            out["next call after stall"] = timed(read)
            proxy.refuse()
            out["refused call"] = timed(read)
            proxy.forward()
            out["next call after refusal"] = timed(read)
            sim.inject("PowerOnVM_Task", "delay", delay_ms=600_000)
            task = session.invoke(vm, "PowerOnVM_Task")
            proxy.stall()
            out["stalled task wait"] = timed(lambda: session.wait_for_task(task))
            proxy.forward()
            proxy.reset()
            sim.clear_faults()
            session.logout()
    finally:
        sim.stop()
    return out


def xen() -> dict[str, Any]:
    from virtdriver.xen.session import XenAPISession
    from virtdriver.xen.simulator import Simulator

    out: dict[str, Any] = {}
    sim = Simulator(host="127.0.0.1", port=0, username="root", password="secret").start()
    try:
        parsed = urlsplit(sim.url)
        with FaultProxy(parsed.hostname or "127.0.0.1", parsed.port or 80) as proxy:
            session = XenAPISession(f"http://{proxy.host}:{proxy.port}", "root", "secret")

            def read() -> Any:
                return session.call("VM.get_all")
            read()
            proxy.stall()
            out["stalled call"] = timed(read)
            proxy.forward()
            proxy.reset()
            out["next call after stall"] = timed(read)
            proxy.refuse()
            out["refused call"] = timed(read)
            proxy.forward()
            out["next call after refusal"] = timed(read)
            vm = session.call("VM.create", {
                "name_label": "figures", "memory_static_max": str(2 ** 28),
                "memory_dynamic_max": str(2 ** 28), "memory_dynamic_min": str(2 ** 28),
                "memory_static_min": "0", "VCPUs_max": "1", "VCPUs_at_startup": "1"})
            sim.inject_delay("VM.clone", 600)
            threading.Timer(1.0, proxy.stall).start()
            out["stalled task wait"] = timed(lambda: session.call_async("VM.clone", vm, "x"))
            proxy.forward()
            proxy.reset()
            out["tasks left for cleanup"] = len(session.pending_cleanup)
            sim.clear_faults()
            sim.inject_delay("VM.clone", 600)
            threading.Timer(1.0, proxy.stall).start()
            out["stalled lasting call"] = timed(
                lambda: session.call_lasting("VM.clone", vm, "y"))
            proxy.forward()
            proxy.reset()
            session.close()
            out["tasks left after close"] = len(session.pending_cleanup)
    finally:
        sim.stop()
    return out


if __name__ == "__main__":
    which = sys.argv[1] if len(sys.argv) > 1 else "vmware"
    print(which, json.dumps(vmware() if which == "vmware" else xen()))
