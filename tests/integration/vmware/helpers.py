"""Independent reads of what the simulator holds, for assertions (plain pyvmomi, no virtdriver)."""

from __future__ import annotations

import os
import ssl
from typing import Any

from pyVmomi import SoapStubAdapter, vim, vmodl


class Inspector:
    """A separate pyvmomi connection that reads server state through the property collector."""

    def __init__(self, vcsim: Any) -> None:
        self.vcsim = vcsim
        stub = SoapStubAdapter(host=vcsim.host, port=vcsim.port, path="/sdk",
                               version="vim.version.v7_0",
                               sslContext=ssl.create_default_context(cafile=vcsim.ca_file))
        self.content = vim.ServiceInstance("ServiceInstance", stub).RetrieveContent()
        self.content.sessionManager.Login(vcsim.username, vcsim.password)

    def _collect(self, specs: list[Any]) -> dict[str, tuple[Any, dict[str, Any]]]:
        result = self.content.propertyCollector.RetrievePropertiesEx(
            specs, vmodl.query.PropertyCollector.RetrieveOptions())
        found: dict[str, tuple[Any, dict[str, Any]]] = {}
        while result is not None:
            for obj in result.objects or []:
                found[obj.obj._moId] = (obj.obj, {p.name: p.val for p in obj.propSet or []})
            if not result.token:
                break
            result = self.content.propertyCollector.ContinueRetrievePropertiesEx(result.token)
        return found

    def objects(self, kind: type, paths: list[str]) -> dict[str, tuple[Any, dict[str, Any]]]:
        """Every object of ``kind`` in the inventory with ``paths``."""
        view = self.content.viewManager.CreateContainerView(self.content.rootFolder, [kind], True)
        try:
            pc = vmodl.query.PropertyCollector
            spec = pc.FilterSpec(
                objectSet=[pc.ObjectSpec(obj=view, skip=True, selectSet=[pc.TraversalSpec(
                    name="v", type=vim.view.ContainerView, path="view", skip=False)])],
                propSet=[pc.PropertySpec(type=kind, pathSet=paths)])
            return self._collect([spec])
        finally:
            view.DestroyView()

    def vms(self) -> dict[str, dict[str, Any]]:
        """Every VM, by instanceUuid, with the properties tests look at."""
        paths = ["name", "runtime.powerState", "config.instanceUuid", "config.hardware",
                 "config.extraConfig", "config.guestId", "config.cpuAllocation",
                 "config.memoryAllocation", "config.files.vmPathName", "network",
                 "runtime.host", "parent", "resourcePool", "datastore"]
        out = {}
        for ref, props in self.objects(vim.VirtualMachine, paths).values():
            props["ref"] = ref
            props["snapshot"] = self._collect([vmodl.query.PropertyCollector.FilterSpec(
                objectSet=[vmodl.query.PropertyCollector.ObjectSpec(obj=ref)],
                propSet=[vmodl.query.PropertyCollector.PropertySpec(
                    type=vim.VirtualMachine, pathSet=["snapshot"])])]).get(
                ref._moId, (None, {}))[1].get("snapshot")
            out[props.get("config.instanceUuid") or ref._moId] = props
        return out

    def vm(self, uuid: str) -> dict[str, Any]:
        """One VM by instanceUuid (KeyError when it is gone)."""
        return self.vms()[uuid]

    def names(self, refs: list[Any]) -> list[str]:
        """Names of managed objects."""
        pc = vmodl.query.PropertyCollector
        found = self._collect([pc.FilterSpec(
            objectSet=[pc.ObjectSpec(obj=r) for r in refs],
            propSet=[pc.PropertySpec(type=type(r), pathSet=["name"]) for r in refs])])
        return [found[r._moId][1]["name"] for r in refs]

    def files(self) -> set[str]:
        """Every file and directory on every datastore, as '<ds>/<relative path>'."""
        out = set()
        for name, root in self.vcsim.datastores.items():
            for dirpath, dirnames, filenames in os.walk(root):
                rel = os.path.relpath(dirpath, root)
                for entry in dirnames + filenames:
                    out.add(f"{name}/{os.path.normpath(os.path.join(rel, entry))}")
        return out

    def close(self) -> None:
        """Log out."""
        self.content.sessionManager.Logout()


def devices(vm: dict[str, Any], kind: type) -> list[Any]:
    """The VM's devices of one type."""
    return [d for d in vm["config.hardware"].device if isinstance(d, kind)]


def extra_config(vm: dict[str, Any]) -> dict[str, str]:
    """extraConfig as a dict (the last value of a key wins, as vcsim appends)."""
    return {o.key: o.value for o in vm.get("config.extraConfig") or []}
