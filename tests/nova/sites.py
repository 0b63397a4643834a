"""Two compute sites per backend, and what the simulators hold about an instance.

A *site* is what one nova-compute drives: a cluster of one vCenter (VMware; vcsim started
with two clusters) or a XAPI pool (Xen; two simulators). :class:`VcsimSites` and
:class:`XapiSites` start them, give the nova.conf settings of each site's compute, and read
back, with a client of their own (pyvmomi, XenAPI; never the code under test):

* :meth:`vms`: every VM of an instance, wherever it is: its site, host, power state, CPUs,
  memory and disks;
* :meth:`leftovers`: what a site still holds for an instance besides its VMs' own disks
  (VMware: virtual disks in the instance's datastore folder that no VM uses; Xen: the
  instance's VDIs that no VM uses);
* :meth:`nics`: the MAC addresses of an instance's VM.

:meth:`clean` removes every VM and disk between tests, so each test starts empty.
"""

from __future__ import annotations

import contextlib
import dataclasses
from typing import Any

from pyVim.task import WaitForTask
from pyVmomi import vim

from tests.nova.simulators import VcsimServer, XapiServer


@dataclasses.dataclass(frozen=True)
class Disk:
    """One virtual disk of a VM: a name (path or label), its size and where it lives."""

    name: str
    size_gb: float
    store: str


@dataclasses.dataclass(frozen=True)
class VM:
    """One VM of an instance, as the simulator holds it."""

    name: str
    site: str
    host: str
    power: str  # running, shutdown, suspended, paused
    vcpus: int
    memory_mb: int
    disks: tuple[Disk, ...]

    @property
    def root_gb(self) -> float:
        """The largest disk's size (the root disk of our test flavors)."""
        return max((d.size_gb for d in self.disks), default=0)


class VcsimSites:
    """One vcsim, two clusters (``DC0_C0``, ``DC0_C1``) of three hosts each."""

    backend = "vmware"

    def __init__(self) -> None:
        self.server = VcsimServer(clusters=2)
        self.names: list[str] = []

    def start(self, network: str) -> VcsimSites:
        """Start vcsim with two clusters and the ``network`` portgroup."""
        self.server.start(network=network)
        self.names = sorted(p["name"] for _, p in
                            self._objects(vim.ClusterComputeResource, ["name"]).values())
        assert len(self.names) == 2, self.names
        return self

    def stop(self) -> None:
        """Stop vcsim."""
        self.server.stop()

    def flags(self, site: int) -> dict[str, dict[str, Any]]:
        """nova.conf settings of the compute that drives cluster ``site``."""
        flags = self.server.flags()
        flags["vmware"]["cluster_name"] = self.names[site]
        return flags

    def _objects(self, kind: type, paths: list[str]) -> dict[str, tuple[Any, dict[str, Any]]]:
        return self.server._objects(kind, paths)

    def _placement(self) -> tuple[dict[str, str], dict[str, str], dict[str, str]]:
        """host moref -> host name, host moref -> cluster name, pool moref -> cluster name."""
        clusters = self._objects(vim.ClusterComputeResource, ["name", "host", "resourcePool"])
        hosts = {key: p["name"] for key, (_, p) in
                 self._objects(vim.HostSystem, ["name"]).items()}
        host_site, pool_site = {}, {}
        for _, props in clusters.values():
            for host in props.get("host") or []:
                host_site[host._moId] = props["name"]
        pools = self._objects(vim.ResourcePool, ["owner"])
        for key, (_, props) in pools.items():
            owner = props.get("owner")
            names = [p["name"] for k, (_, p) in clusters.items()
                     if owner is not None and k == owner._moId]
            if names:
                pool_site[key] = names[0]
        return hosts, host_site, pool_site

    def _vm_records(self) -> dict[str, tuple[Any, dict[str, Any]]]:
        return self._objects(vim.VirtualMachine, [
            "name", "config.instanceUuid", "runtime.powerState", "runtime.host",
            "resourcePool", "config.hardware.numCPU", "config.hardware.memoryMB",
            "config.hardware.device"])

    def vms(self, uuid: str) -> list[VM]:
        """Every VM whose instanceUuid is ``uuid``; its site is its resource pool's cluster."""
        hosts, host_site, pool_site = self._placement()
        states = {"poweredOn": "running", "poweredOff": "shutdown", "suspended": "suspended"}
        found = []
        for _, props in self._vm_records().values():
            if props.get("config.instanceUuid") != uuid:
                continue
            host = props.get("runtime.host")
            pool = props.get("resourcePool")
            site = pool_site.get(pool._moId) if pool is not None else None
            disks = tuple(
                Disk(name=dev.backing.fileName, size_gb=dev.capacityInKB / 1024 ** 2,
                     store=dev.backing.fileName.split("]")[0].lstrip("["))
                for dev in props.get("config.hardware.device") or []
                if isinstance(dev, vim.vm.device.VirtualDisk))
            found.append(VM(
                name=props["name"], site=site or host_site.get(host._moId if host else "", "?"),
                host=hosts.get(host._moId, "?") if host is not None else "?",
                power=states[str(props["runtime.powerState"])],
                vcpus=props["config.hardware.numCPU"],
                memory_mb=props["config.hardware.memoryMB"], disks=disks))
        return found

    def nics(self, uuid: str) -> list[str]:
        """MAC addresses of the instance's VM(s)."""
        return sorted(dev.macAddress for _, props in self._vm_records().values()
                      if props.get("config.instanceUuid") == uuid
                      for dev in props.get("config.hardware.device") or []
                      if isinstance(dev, vim.vm.device.VirtualEthernetCard))

    def _files(self) -> list[str]:
        """Every file on every datastore, as ``[ds]folder/file``."""
        out = []
        for _, (_, props) in self._objects(vim.Datastore, ["name", "browser"]).items():
            # a match pattern is needed: without one, no file is listed
            task = props["browser"].SearchDatastoreSubFolders_Task(
                f"[{props['name']}]", vim.host.DatastoreBrowser.SearchSpec(matchPattern=["*"]))
            WaitForTask(task)
            out.extend(_ds_path(f"{result.folderPath}/{f.path}")
                       for result in task.info.result or [] for f in result.file or [])
        return out

    def leftovers(self, site: str, uuid: str) -> list[str]:
        """Any VM of the instance in cluster ``site``, and virtual disks in a folder named
        after the instance that no VM uses (vcsim's one datastore is mounted in both
        clusters, so those are looked for everywhere)."""
        used = {_ds_path(dev.backing.fileName) for _, props in self._vm_records().values()
                for dev in props.get("config.hardware.device") or []
                if isinstance(dev, vim.vm.device.VirtualDisk)}
        left = [f"VM {vm.name} in {vm.site}" for vm in self.vms(uuid) if vm.site == site]
        left.extend(path for path in self._files()
                    if uuid in path and path.endswith(".vmdk")
                    and not path.endswith("-flat.vmdk") and path not in used)
        return left

    def cached_images(self, site: str, image_id: str) -> list[str]:
        """The image's files in the datastore image cache (``_base/<image id>/``); vcsim's
        one datastore serves both clusters, so ``site`` does not narrow it."""
        return [path for path in self._files() if f"_base/{image_id}/" in path]

    def clean(self) -> None:
        """Power off and destroy every VM, so the next test starts with none."""
        for vm, props in self._vm_records().values():
            with contextlib.suppress(Exception):
                if str(props["runtime.powerState"]) != "poweredOff":
                    WaitForTask(vm.PowerOffVM_Task())
                WaitForTask(vm.Destroy_Task())


class XapiSites:
    """Two XAPI simulators, pools ``pool-a`` and ``pool-b`` of two hosts each."""

    backend = "xen"

    def __init__(self) -> None:
        self.servers = [XapiServer(), XapiServer()]
        self.names = ["pool-a", "pool-b"]

    def start(self, network: str) -> XapiSites:
        """Start both simulators; name each pool (a compute's node is its pool's name)."""
        try:
            for server, name in zip(self.servers, self.names, strict=True):
                server.start(network=network)
                api = server.client.xenapi
                api.pool.set_name_label(next(iter(api.pool.get_all())), name)
        except Exception:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        """Stop both simulators."""
        for server in self.servers:
            server.stop()

    def flags(self, site: int) -> dict[str, dict[str, Any]]:
        """nova.conf settings of the compute that drives pool ``site``."""
        return self.servers[site].flags()

    def _instance_vms(self, index: int, uuid: str) -> list[tuple[str, dict[str, Any]]]:
        api = self.servers[index].client.xenapi
        return [(ref, rec) for ref, rec in api.VM.get_all_records().items()
                if not rec["is_a_template"] and not rec["is_control_domain"]
                and (rec.get("other_config") or {}).get("nova_uuid") == uuid]

    def vms(self, uuid: str) -> list[VM]:
        """Every VM whose ``other_config:nova_uuid`` is ``uuid``, in either pool."""
        found = []
        for index, site in enumerate(self.names):
            api = self.servers[index].client.xenapi
            for _, rec in self._instance_vms(index, uuid):
                host = rec["resident_on"]
                if host == "OpaqueRef:NULL":
                    host = rec.get("affinity") or host
                disks = []
                for vbd in rec["VBDs"]:
                    vbd_rec = api.VBD.get_record(vbd)
                    if vbd_rec["type"] != "Disk" or vbd_rec["VDI"] == "OpaqueRef:NULL":
                        continue
                    vdi = api.VDI.get_record(vbd_rec["VDI"])
                    disks.append(Disk(name=vdi["name_label"],
                                      size_gb=int(vdi["virtual_size"]) / 1024 ** 3,
                                      store=api.SR.get_name_label(vdi["SR"])))
                found.append(VM(
                    name=rec["name_label"], site=site,
                    host=api.host.get_name_label(host) if host != "OpaqueRef:NULL" else "?",
                    power=rec["power_state"].lower().replace("halted", "shutdown"),
                    vcpus=int(rec["VCPUs_max"]),
                    memory_mb=int(rec["memory_static_max"]) // 1024 ** 2,
                    disks=tuple(disks)))
        return found

    def nics(self, uuid: str) -> list[str]:
        """MAC addresses of the instance's VM(s)."""
        macs = []
        for index in range(len(self.servers)):
            api = self.servers[index].client.xenapi
            for _, rec in self._instance_vms(index, uuid):
                macs.extend(api.VIF.get_MAC(vif) for vif in rec["VIFs"])
        return sorted(macs)

    def leftovers(self, site: str, uuid: str) -> list[str]:
        """VMs of the instance in pool ``site``, and its VDIs there that no VM uses."""
        index = self.names.index(site)
        api = self.servers[index].client.xenapi
        left = [f"VM {rec['name_label']} in {site}" for _, rec in self._instance_vms(index, uuid)]
        for rec in api.VDI.get_all_records().values():
            if (rec.get("other_config") or {}).get("nova_instance_uuid") == uuid \
                    and not rec["VBDs"]:
                left.append(f"VDI {rec['name_label']} ({rec['uuid']}) in {site}")
        return left

    def cached_images(self, site: str, image_id: str) -> list[str]:
        """The image's cached base VDIs in pool ``site``."""
        api = self.servers[self.names.index(site)].client.xenapi
        return [rec["uuid"] for rec in api.VDI.get_all_records().values()
                if (rec.get("other_config") or {}).get("image-id") == image_id]

    def clean(self) -> None:
        """Destroy every guest VM and every instance disk in both pools."""
        for server in self.servers:
            api = server.client.xenapi
            for ref, rec in api.VM.get_all_records().items():
                if rec["is_a_template"] or rec["is_control_domain"]:
                    continue
                with contextlib.suppress(Exception):
                    if rec["power_state"] != "Halted":
                        api.VM.hard_shutdown(ref)
                with contextlib.suppress(Exception):
                    api.VM.destroy(ref)
            for ref, rec in api.VDI.get_all_records().items():
                if "nova_instance_uuid" in (rec.get("other_config") or {}):
                    with contextlib.suppress(Exception):
                        api.VDI.destroy(ref)


def _ds_path(path: str) -> str:
    """``[ds] a//b/`` and ``[ds]a/b`` alike, for comparing datastore paths."""
    store, _, rest = path.partition("]")
    parts = [p for p in rest.strip().split("/") if p]
    return f"{store}]{'/'.join(parts)}"
