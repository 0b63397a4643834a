"""Power-state changes of the backend's VMs, pushed by vCenter's property collector.

:class:`PowerStateChannel` creates its own property collector (so its long waits never
mix with the session's task waits), a container view of the VMs under the datacenter's
VM folder, and one filter on ``runtime.powerState``, ``config.instanceUuid`` and
``config.managedBy``. :meth:`PowerStateChannel.wait` is one ``WaitForUpdatesEx``: the server
answers as soon as something changes, or empty-handed at the deadline. Only VMs marked
``managedBy`` virtdriver are reported, by instance uuid.

A wait is bounded and never retried inside: when the server goes away :meth:`wait` raises
ConnectionFailed at once (a stalled server: after ``[vmware] call_timeout``), so the thread
that runs the channel can back off, reopen it, or stop; once the session is logged out it
raises SessionExpired (code ``SessionClosed``) without touching the network, and nothing
logs in again behind the caller's back.
"""

from __future__ import annotations

import contextlib
from typing import Any

from pyVmomi import vim, vmodl

from virtdriver.common import exceptions
from virtdriver.common.power_state import PowerState
from virtdriver.vmware import vm_util
from virtdriver.vmware.session import VMwareSession

POWER_STATES = {"poweredOn": PowerState.RUNNING, "poweredOff": PowerState.SHUTDOWN,
                "suspended": PowerState.SUSPENDED}
PATHS = ["runtime.powerState", "config.instanceUuid", "config.managedBy"]


class PowerStateChannel:
    """A property-collector filter on the power state of every VM in a folder."""

    def __init__(self, session: VMwareSession, vm_folder: Any) -> None:
        self.session = session
        self._version = ""
        self._vms: dict[str, dict[str, Any]] = {}  # moref -> the properties seen so far
        content = session.content
        self._collector = session.invoke(content.propertyCollector, "CreatePropertyCollector")
        try:
            self._view = session.invoke(content.viewManager, "CreateContainerView",
                                        vm_folder, [vim.VirtualMachine], True)
            pc = vmodl.query.PropertyCollector
            spec = pc.FilterSpec(
                objectSet=[pc.ObjectSpec(obj=self._view, skip=True, selectSet=[
                    pc.TraversalSpec(name="view", type=vim.view.ContainerView, path="view",
                                     skip=False)])],
                propSet=[pc.PropertySpec(type=vim.VirtualMachine, pathSet=PATHS)])
            session.invoke(self._collector, "CreateFilter", spec, partialUpdates=False)
        except BaseException:
            self.close()
            raise

    def wait(self, timeout: float) -> list[tuple[str, PowerState | None]]:
        """Changes since the last call (every managed VM's state on the first call)."""
        if self._collector is None:
            raise exceptions.SessionExpired("the power-state channel is closed",
                                            code="SessionClosed")
        update = self.session.wait_for_updates(self._collector, self._version, timeout)
        if update is None:
            return []
        self._version = update.version
        changes: list[tuple[str, PowerState | None]] = []
        for filter_update in update.filterSet or []:
            for obj_update in filter_update.objectSet or []:
                change = self._apply(obj_update)
                if change is not None:
                    changes.append(change)
        return changes

    def _apply(self, obj_update: Any) -> tuple[str, PowerState | None] | None:
        key = obj_update.obj._moId
        if str(obj_update.kind) == "leave":
            gone = self._vms.pop(key, None)
            uuid = (gone or {}).get("config.instanceUuid")
            return (uuid, None) if uuid and _managed(gone) else None
        props = self._vms.setdefault(key, {})
        for change in obj_update.changeSet or []:
            if str(change.op) in ("remove", "indirectRemove"):
                props.pop(change.name, None)
            else:
                props[change.name] = change.val
        uuid = props.get("config.instanceUuid")
        if not uuid or not _managed(props) or "runtime.powerState" not in props:
            return None
        return uuid, POWER_STATES.get(str(props["runtime.powerState"]), PowerState.NOSTATE)

    def close(self) -> None:
        """Destroy the view and the collector (its filter goes with it); nothing is sent
        when the session is already closed (they went with it)."""
        view, self._view = getattr(self, "_view", None), None
        collector, self._collector = self._collector, None
        if self.session.closed:
            return
        with contextlib.suppress(exceptions.VirtDriverError):
            if view is not None:
                self.session.invoke(view, "DestroyView")
        with contextlib.suppress(exceptions.VirtDriverError):
            if collector is not None:
                self.session.invoke(collector, "DestroyPropertyCollector")


def _managed(props: dict[str, Any] | None) -> bool:
    managed_by = (props or {}).get("config.managedBy")
    return getattr(managed_by, "extensionKey", None) == vm_util.MANAGED_BY.extensionKey
