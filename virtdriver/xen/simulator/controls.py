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

    # -- iSCSI storage (what the volume service exports; see iscsi_targets.py) -------------
    def add_iscsi_target(self, iqn: str, portal: str = "127.0.0.1:3260",
                         luns: dict[int, int] | None = None, chap_user: str | None = None,
                         chap_password: str | None = None) -> dict[str, Any]:
        """Export a target with ``luns`` (number -> size in bytes); returns its description
        (LUN SCSI ids and VDI uuids; never the CHAP password)."""
        return self._backend().iscsi.add_target(iqn, portal, luns, chap_user,
                                                chap_password).describe()

    def add_iscsi_lun(self, iqn: str, lun: int, size: int) -> dict[str, Any]:
        """A new zero-filled LUN on a target."""
        return self._backend().iscsi.add_lun(iqn, int(lun), int(size)).describe()

    def iscsi_targets(self) -> list[dict[str, Any]]:
        """Every target with its LUNs."""
        return self._backend().iscsi.describe()

    def resize_iscsi_lun(self, iqn: str, lun: int, size: int) -> None:
        """Grow a LUN (the volume service extended the volume)."""
        self._backend().iscsi.resize_lun(iqn, int(lun), int(size))

    def remove_iscsi_lun(self, iqn: str, lun: int) -> None:
        """Delete a LUN and its bytes (the volume service deleted the volume)."""
        self._backend().iscsi.remove_lun(iqn, int(lun))

    def set_iscsi_target_online(self, iqn: str, online: bool) -> None:
        """Make a target unreachable (False) or reachable again."""
        self._backend().iscsi.set_online(iqn, online)

    def read_iscsi_lun(self, iqn: str, lun: int, offset: int = 0,
                       length: int | None = None) -> bytes:
        """A LUN's bytes, read on the storage side."""
        return self._backend().iscsi.read(iqn, int(lun), int(offset), length)

    def write_iscsi_lun(self, iqn: str, lun: int, data: bytes, offset: int = 0) -> None:
        """Write bytes into a LUN on the storage side."""
        self._backend().iscsi.write(iqn, int(lun), data, int(offset))

    def _iscsi_http(self, body: dict[str, Any], query: dict[str, list[str]]) -> Any:
        action = body.get("action") or query.get("action", ["list"])[0]
        iqn = body.get("iqn") or query.get("iqn", [""])[0]
        if action == "list":
            return self.iscsi_targets()
        if action == "add_target":
            luns = {int(k): int(v) for k, v in (body.get("luns") or {}).items()}
            return self.add_iscsi_target(iqn, body.get("portal", "127.0.0.1:3260"), luns,
                                         body.get("chap_user"), body.get("chap_password"))
        lun = int(body.get("lun", query.get("lun", ["0"])[0]))
        if action == "add_lun":
            return self.add_iscsi_lun(iqn, lun, int(body["size"]))
        if action == "resize_lun":
            self.resize_iscsi_lun(iqn, lun, int(body["size"]))
        elif action == "remove_lun":
            self.remove_iscsi_lun(iqn, lun)
        elif action == "set_online":
            self.set_iscsi_target_online(iqn, bool(body["online"]))
        elif action == "read":
            data = self.read_iscsi_lun(iqn, lun, int(body.get("offset", 0)), body.get("length"))
            return {"data": base64.b64encode(data).decode()}
        elif action == "write":
            self.write_iscsi_lun(iqn, lun, base64.b64decode(body["data"]),
                                 int(body.get("offset", 0)))
        else:
            raise KeyError(f"unknown iscsi action {action}")
        return {"ok": True}

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
        if name == "iscsi":
            return self._iscsi_http(body, query)
        if name == "guest":
            vm = body.get("vm") or query.get("vm", [""])[0]
            state = self.guest_state(vm)
            state["files"] = {k: base64.b64encode(v).decode() for k, v in state["files"].items()}
            return state
        raise KeyError(f"unknown control {name}")
