"""Test controls, apart from the XAPI surface (moto's ``moto_api`` namespace): fault and delay
injection, session expiry, reset, and what a simulated guest received.

Served in process by :class:`~virtdriver.xen.simulator.Simulator` and over HTTP under
``/_sim/`` (loopback peers only).  Nothing here is reachable through an XAPI method name.
"""

from __future__ import annotations

import base64
from collections.abc import Callable
from typing import Any

from .backend import Backend
from .context import Context
from .models.generic import map_add, map_remove


class Controls:
    """The test controls of one simulator; ``backend()`` is the current state (a reset
    replaces it) and ``reset()`` rebuilds it."""

    def __init__(self, backend: Callable[[], Backend], reset: Callable[[], None]) -> None:
        self._backend = backend
        self._reset = reset

    def inject_fault(self, method: str, error: list[str], count: int = 1) -> None:
        """The next ``count`` calls of ``method`` (e.g. ``VM.start``) fail with ``error``."""
        self._backend().faults.inject_fault(method, list(error), count)

    def inject_delay(self, method: str, seconds: float, count: int = 1) -> None:
        """The next ``count`` calls of ``method`` take ``seconds`` (their task stays pending)."""
        self._backend().faults.inject_delay(method, seconds, count)

    def clear_faults(self) -> None:
        """Drop pending injected faults and delays."""
        self._backend().faults.clear()

    def expire_sessions(self) -> None:
        """Invalidate every session."""
        self._backend().sessions.expire_all()

    def _vm_ref(self, vm: str) -> str:
        db = self._backend().db
        return vm if db.exists("VM", vm) else db.ref_of_uuid("VM", vm)

    def guest_state(self, vm_uuid: str) -> dict[str, Any]:
        """What the VM's guest received: ``password``, ``files``, ``network_resets``,
        ``xenstore`` (its live xenstore) and ``domid``."""
        return self._backend().guests.snapshot(self._vm_ref(vm_uuid))

    def set_guest_agent(self, vm_uuid: str, enabled: bool) -> None:
        """Switch the simulated guest agent of one VM on or off."""
        ctx = Context(self._backend(), "sim", None)
        ref = self._vm_ref(vm_uuid)
        map_remove(ctx, "VM", ref, "other_config", "sim-agent")
        map_add(ctx, "VM", ref, "other_config", "sim-agent", "true" if enabled else "false")

    def http(self, name: str, body: dict[str, Any], query: dict[str, list[str]]) -> Any:
        """The ``/_sim/<name>`` HTTP controls; KeyError for an unknown name."""
        if name == "inject":
            if "error" in body:
                self.inject_fault(body["method"], body["error"], int(body.get("count", 1)))
            else:
                self.inject_delay(body["method"], float(body["seconds"]),
                                  int(body.get("count", 1)))
            return {"ok": True}
        if name == "clear":
            self.clear_faults()
            return {"ok": True}
        if name == "reset":
            self._reset()
            return {"ok": True}
        if name == "expire_sessions":
            self.expire_sessions()
            return {"ok": True}
        if name == "guest":
            vm = body.get("vm") or query.get("vm", [""])[0]
            state = self.guest_state(vm)
            state["files"] = {k: base64.b64encode(v).decode() for k, v in state["files"].items()}
            return state
        raise KeyError(f"unknown control {name}")
