"""Power-state changes of the backend's VMs, pushed by vCenter's property collector.

:class:`PowerStateChannel` creates its own property collector (so its long waits never
mix with the session's task waits), a container view of the VMs under the datacenter's
VM folder (without a cluster), and one filter on ``runtime.powerState``, ``config.instanceUuid``,
``config.managedBy`` and ``runtime.host``. :meth:`PowerStateChannel.wait` is one
``WaitForUpdatesEx``: the server answers as soon as something changes, or empty-handed at
the deadline. Only VMs marked ``managedBy`` virtdriver are reported, by instance uuid.

Given the backend's cluster, the filter reaches the VMs from the cluster instead (its
``host`` list, each host's ``vm`` list: no view), so the server pushes nothing about the
other clusters' VMs, and the channel reports only the VMs registered on the cluster's
hosts, as ``list_instances`` counts them: a VM that moves onto one of them arrives (its
state is reported), one that moves off leaves (``None``), as a deleted one does. The
channel also checks each VM's ``runtime.host`` against the cluster's ``host`` list (both
pushed by the same filter), so a VM that moved off is reported gone even by a server that
sends no ``leave`` for it (vcsim).

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
PATHS = ["runtime.powerState", "config.instanceUuid", "config.managedBy", "runtime.host"]


class PowerStateChannel:
    """A property-collector filter on the power state of the VMs on the hosts of
    ``cluster`` when it is given (a backend's channel), else of every VM in ``vm_folder``."""

    def __init__(self, session: VMwareSession, vm_folder: Any, cluster: Any = None) -> None:
        self.session = session
        self._version = ""
        self._vms: dict[str, dict[str, Any]] = {}  # moref -> the properties seen so far
        self._cluster = cluster
        self._hosts: set[str] = set()  # the cluster's hosts' morefs, as last pushed
        self._inside: set[str] = set()  # morefs of the VMs reported as in scope
        self._view = None
        content = session.content
        self._collector = session.invoke(content.propertyCollector, "CreatePropertyCollector")
        try:
            pc = vmodl.query.PropertyCollector
            props = [pc.PropertySpec(type=vim.VirtualMachine, pathSet=PATHS)]
            if cluster is not None:  # the cluster's hosts, from each host its VMs
                objects = [pc.ObjectSpec(obj=cluster, skip=False, selectSet=[
                    pc.TraversalSpec(name="hosts", type=vim.ClusterComputeResource,
                                     path="host", skip=True, selectSet=[
                                         pc.TraversalSpec(name="vms", type=vim.HostSystem,
                                                          path="vm", skip=False)])])]
                props.append(pc.PropertySpec(type=vim.ClusterComputeResource,
                                             pathSet=["host"]))
            else:
                self._view = session.invoke(content.viewManager, "CreateContainerView",
                                            vm_folder, [vim.VirtualMachine], True)
                objects = [pc.ObjectSpec(obj=self._view, skip=True, selectSet=[
                    pc.TraversalSpec(name="view", type=vim.view.ContainerView, path="view",
                                     skip=False)])]
            spec = pc.FilterSpec(objectSet=objects, propSet=props)
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
        updates = [obj_update for filter_update in update.filterSet or []
                   for obj_update in filter_update.objectSet or []]
        rescoped = False
        for obj_update in updates:  # the cluster's hosts first: they scope the VMs
            if self._is_cluster(obj_update.obj):
                rescoped = self._apply_hosts(obj_update) or rescoped
        changed: dict[str, None] = {}  # morefs of the VMs updated, in order
        changes: list[tuple[str, PowerState | None]] = []
        for obj_update in updates:
            if not self._is_cluster(obj_update.obj):
                gone = self._apply(obj_update)
                if gone is not None:
                    changes.append(gone)
                else:
                    changed[obj_update.obj._moId] = None
        if rescoped:  # VMs not updated arrive or leave only when their scope flips
            changed.update({key: None for key in self._vms if key not in changed
                            and self._in_scope(self._vms[key]) != (key in self._inside)})
        for key in changed:
            change = self._report(key)
            if change is not None:
                changes.append(change)
        return changes

    def _is_cluster(self, ref: Any) -> bool:
        return self._cluster is not None and ref._moId == self._cluster._moId

    def _apply_hosts(self, obj_update: Any) -> bool:
        """Record the cluster's host list; True when it changed."""
        before = self._hosts
        for change in obj_update.changeSet or []:
            if change.name == "host":
                self._hosts = {host._moId for host in change.val or []}
        return self._hosts != before

    def _apply(self, obj_update: Any) -> tuple[str, PowerState | None] | None:
        """Record a VM's update; a VM that was in scope and is deleted is returned as
        leaving."""
        key = obj_update.obj._moId
        if str(obj_update.kind) == "leave":
            gone = self._vms.pop(key, None)
            uuid = (gone or {}).get("config.instanceUuid")
            if key in self._inside:
                self._inside.discard(key)
                return (uuid, None) if uuid else None
            return None
        props = self._vms.setdefault(key, {})
        for change in obj_update.changeSet or []:
            if str(change.op) in ("remove", "indirectRemove"):
                props.pop(change.name, None)
            else:
                props[change.name] = change.val
        return None

    def _in_scope(self, props: dict[str, Any]) -> bool:
        if not props.get("config.instanceUuid") or not _managed(props):
            return False
        if "runtime.powerState" not in props:
            return False
        if self._cluster is None:
            return True
        return getattr(props.get("runtime.host"), "_moId", None) in self._hosts

    def _report(self, key: str) -> tuple[str, PowerState | None] | None:
        """A VM's state when it is in scope; ``None`` for it when it just left the scope."""
        props = self._vms.get(key)
        if props is None:
            return None
        if self._in_scope(props):
            self._inside.add(key)
            return props["config.instanceUuid"], POWER_STATES.get(
                str(props["runtime.powerState"]), PowerState.NOSTATE)
        if key in self._inside:
            self._inside.discard(key)
            return (props["config.instanceUuid"], None) if props.get(
                "config.instanceUuid") else None
        return None

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
