"""Power-state changes of the backend's VMs, pushed by XAPI's ``event.from``.

:class:`PowerStateChannel` subscribes to class ``vm``: the first ``event.from`` (empty
token) returns every VM, later ones only what changed, and each call blocks on the server
until something happens or the timeout passes. Only instance VMs are reported (those whose
``other_config`` carries ``nova_uuid``), by instance uuid; rescue and resize-source VMs
(``-rescue``, ``-orig``) are the backend's helpers, not the instance.
"""

from __future__ import annotations

from typing import Any

from virtdriver.common.power_state import PowerState
from virtdriver.xen import vm_utils
from virtdriver.xen.session import XenAPISession


class PowerStateChannel:
    """An event.from subscription on XAPI's VM class."""

    def __init__(self, session: XenAPISession) -> None:
        self.session = session
        self._token = ""
        self._owners: dict[str, str] = {}  # VM ref -> instance uuid

    def wait(self, timeout: float) -> list[tuple[str, PowerState | None]]:
        """Changes since the last call (every instance VM's state on the first call)."""
        # A long poll: on a connection of its own, never one of the pool's short-call ones.
        reply = self.session.event_from(["vm"], self._token, float(timeout))
        self._token = reply.get("token", self._token)
        changes: list[tuple[str, PowerState | None]] = []
        for event in reply.get("events", []):
            change = self._apply(event)
            if change is not None:
                changes.append(change)
        return changes

    def _apply(self, event: dict[str, Any]) -> tuple[str, PowerState | None] | None:
        ref = event.get("ref", "")
        if event.get("operation") == "del":
            uuid = self._owners.pop(ref, None)
            return (uuid, None) if uuid else None
        record = event.get("snapshot") or {}
        uuid = _instance_uuid(record)
        if uuid is None:
            return None
        self._owners[ref] = uuid
        return uuid, vm_utils.power_state_of(record.get("power_state", ""))

    def close(self) -> None:
        """Nothing to release: event.from holds no server-side subscription."""


def _instance_uuid(record: dict[str, Any]) -> str | None:
    if record.get("is_a_template") or record.get("is_control_domain") or \
            record.get("is_a_snapshot"):
        return None
    name = str(record.get("name_label", ""))
    if name.endswith((vm_utils.RESCUE_SUFFIX, vm_utils.ORIG_SUFFIX)):
        return None
    return (record.get("other_config") or {}).get("nova_uuid")
