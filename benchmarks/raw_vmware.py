"""What the raw pyvmomi clients (floor and naive) share: a counted connection, the
inventory they work in, the VM create spec, and datastore uploads.

Nothing here goes through virtdriver: these clients are the yardsticks the library is
measured against. Setup done here (login, inventory discovery) is not part of any timed
operation, just as the library's own first-use setup is excluded by a warm-up.
"""

from __future__ import annotations

import contextlib
import http.client
import time
import uuid as uuid_module
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote, urlencode

from pyVmomi import vim, vmodl

from benchmarks.common import CountingSoapStub
from virtdriver.common.stats import CallStats

IMAGE_BYTES = 1024 * 1024
ROOT_GB = 1
GIB_KB = 1024 * 1024


@dataclass
class RawVM:
    """A VM a raw client made: its reference, instance uuid and the host it was last sent to."""

    ref: Any
    uuid: str
    host_index: int = 0
    snapshot: Any = None


@dataclass
class RawInventory:
    """Where raw clients put their VMs (discovered once, untimed)."""

    dc: Any
    dc_name: str
    vm_folder: Any
    pool: Any
    hosts: list[Any]
    host_names: list[str]
    ds_name: str
    network_name: str
    datastores: list[Any] = field(default_factory=list)
    extra: dict[str, Any] = field(default_factory=dict)


class RawConnection:
    """A pyvmomi connection whose every SOAP request is counted in ``counter``."""

    def __init__(self, sim: Any) -> None:
        self.sim = sim
        self.counter = CallStats()
        self.stub = CountingSoapStub(host=sim.host, port=sim.port, path="/sdk",
                                     version="vim.version.v7_0", sslContext=sim.ssl_context(),
                                     poolSize=64, counter=self.counter)
        self.si = vim.ServiceInstance("ServiceInstance", self.stub)
        self.content = self.si.RetrieveContent()
        self.content.sessionManager.Login(sim.username, sim.password)

    def close(self) -> None:
        """Log out (errors ignored: the simulator may already be gone)."""
        with contextlib.suppress(Exception):  # best effort at teardown
            self.content.sessionManager.Logout()

    def discover(self) -> RawInventory:
        """Find the first cluster's datacenter, pool, hosts, datastore and network."""
        view = self.content.viewManager.CreateContainerView(
            self.content.rootFolder, [vim.ClusterComputeResource], True)
        try:
            cluster = view.view[0]
        finally:
            view.DestroyView()
        props = retrieve(self.content, [cluster], ["name", "resourcePool", "host", "datastore",
                                                   "network", "parent"])[cluster]
        dc = props["parent"]
        while not isinstance(dc, vim.Datacenter):
            dc = dc.parent
        hosts = list(props["host"])
        names = retrieve(self.content, hosts, ["name"])
        ds_names = retrieve(self.content, list(props["datastore"]), ["name"])
        net_names = retrieve(self.content, list(props["network"]), ["name"])
        plain = sorted(v["name"] for k, v in net_names.items() if isinstance(k, vim.Network)
                       and not isinstance(k, vim.dvs.DistributedVirtualPortgroup))
        return RawInventory(dc=dc, dc_name=dc.name, vm_folder=dc.vmFolder,
                            pool=props["resourcePool"], hosts=hosts,
                            host_names=[names[h]["name"] for h in hosts],
                            ds_name=sorted(v["name"] for v in ds_names.values())[0],
                            network_name=plain[0] if plain else "VM Network",
                            datastores=list(props["datastore"]))

    def put_file(self, inv: RawInventory, path: str, data: bytes) -> None:
        """One datastore HTTP PUT with the session cookie (counted as ``HTTP PUT``)."""
        started = time.monotonic()
        conn = http.client.HTTPSConnection(self.sim.host, self.sim.port,
                                           context=self.sim.ssl_context(), timeout=120)
        try:
            query = urlencode({"dcPath": inv.dc_name, "dsName": inv.ds_name})
            conn.request("PUT", f"/folder/{quote(path)}?{query}", body=data,
                         headers={"Cookie": self.stub.cookie,
                                  "Content-Type": "application/octet-stream"})
            response = conn.getresponse()
            response.read()
            if response.status not in (200, 201, 204):
                raise RuntimeError(f"PUT {path}: HTTP {response.status}")
        finally:
            conn.close()
            self.counter.record("HTTP PUT", time.monotonic() - started)

    def head_file(self, inv: RawInventory, path: str) -> bool:
        """Whether a datastore file exists: one HTTP HEAD (counted as ``HTTP HEAD``)."""
        started = time.monotonic()
        conn = http.client.HTTPSConnection(self.sim.host, self.sim.port,
                                           context=self.sim.ssl_context(), timeout=120)
        try:
            query = urlencode({"dcPath": inv.dc_name, "dsName": inv.ds_name})
            conn.request("HEAD", f"/folder/{quote(path)}?{query}",
                         headers={"Cookie": self.stub.cookie})
            response = conn.getresponse()
            response.read()
            return response.status == 200
        finally:
            conn.close()
            self.counter.record("HTTP HEAD", time.monotonic() - started)

    def get_file(self, inv: RawInventory, path: str) -> bytes:
        """One datastore HTTP GET with the session cookie (counted as ``HTTP GET``)."""
        started = time.monotonic()
        conn = http.client.HTTPSConnection(self.sim.host, self.sim.port,
                                           context=self.sim.ssl_context(), timeout=120)
        try:
            query = urlencode({"dcPath": inv.dc_name, "dsName": inv.ds_name})
            conn.request("GET", f"/folder/{quote(path)}?{query}",
                         headers={"Cookie": self.stub.cookie})
            response = conn.getresponse()
            body = response.read()
            if response.status != 200:
                raise RuntimeError(f"GET {path}: HTTP {response.status}")
            return body
        finally:
            conn.close()
            self.counter.record("HTTP GET", time.monotonic() - started)

    def get_url(self, url: str) -> bytes:
        """One HTTPS GET of an export URL (counted as ``HTTP GET``)."""
        started = time.monotonic()
        parsed = url.replace("*", f"{self.sim.host}:{self.sim.port}", 1)
        rest = parsed.split("://", 1)[1]
        path = "/" + rest.split("/", 1)[1]
        conn = http.client.HTTPSConnection(self.sim.host, self.sim.port,
                                           context=self.sim.ssl_context(), timeout=120)
        try:
            conn.request("GET", path, headers={"Cookie": self.stub.cookie})
            response = conn.getresponse()
            body = response.read()
            if response.status != 200:
                raise RuntimeError(f"GET {path}: HTTP {response.status}")
            return body
        finally:
            conn.close()
            self.counter.record("HTTP GET", time.monotonic() - started)


def retrieve(content: Any, objs: list[Any], paths: list[str]) -> dict[Any, dict[str, Any]]:
    """Read ``paths`` of ``objs`` in one RetrievePropertiesEx."""
    if not objs:
        return {}
    pc = vmodl.query.PropertyCollector
    kinds = {type(o) for o in objs}
    spec = pc.FilterSpec(objectSet=[pc.ObjectSpec(obj=o) for o in objs],
                         propSet=[pc.PropertySpec(type=k, pathSet=paths) for k in kinds])
    result = content.propertyCollector.RetrievePropertiesEx([spec], pc.RetrieveOptions())
    found: dict[Any, dict[str, Any]] = {}
    while result is not None:
        for obj in result.objects or []:
            found[obj.obj] = {p.name: p.val for p in obj.propSet or []}
        if not result.token:
            break
        result = content.propertyCollector.ContinueRetrievePropertiesEx(result.token)
    return found


def descriptor(flat_name: str, size: int) -> bytes:
    """A minimal monolithicFlat VMDK descriptor for a flat extent of ``size`` bytes."""
    sectors = max(1, size // 512)
    return (f"# Disk DescriptorFile\nversion=1\nCID=fffffffe\nparentCID=ffffffff\n"
            f"createType=\"vmfs\"\n\nRW {sectors} VMFS \"{flat_name}\"\n\n"
            f"ddb.adapterType = \"lsilogic\"\n").encode()


def cache_paths(cache: str, image_id: str) -> tuple[str, str, str]:
    """(descriptor, flat, sized copy) paths of a cached image, relative to the datastore."""
    folder = f"{cache}/{image_id}"
    return (f"{folder}/{image_id}.vmdk", f"{folder}/{image_id}-flat.vmdk",
            f"{folder}/{image_id}.{ROOT_GB}.vmdk")


def create_spec(inv: RawInventory, uuid: str, parent: str, memory_mb: int = 256) -> Any:
    """A VM with an LSI controller, a linked-clone root disk off ``parent`` and one NIC."""
    controller = vim.vm.device.VirtualDeviceSpec(
        operation="add", device=vim.vm.device.VirtualLsiLogicController(
            key=-100, busNumber=0, sharedBus="noSharing"))
    backing = vim.vm.device.VirtualDisk.FlatVer2BackingInfo(
        fileName=f"[{inv.ds_name}] {uuid}/{uuid}.vmdk", diskMode="persistent",
        thinProvisioned=True,
        parent=vim.vm.device.VirtualDisk.FlatVer2BackingInfo(fileName=f"[{inv.ds_name}] {parent}"))
    disk = vim.vm.device.VirtualDeviceSpec(
        operation="add", fileOperation="create",
        device=vim.vm.device.VirtualDisk(key=-101, controllerKey=-100, unitNumber=0,
                                         capacityInKB=ROOT_GB * GIB_KB, backing=backing))
    nic = vim.vm.device.VirtualDeviceSpec(
        operation="add", device=vim.vm.device.VirtualVmxnet3(
            key=-102, addressType="manual", macAddress=random_mac(),
            backing=vim.vm.device.VirtualEthernetCard.NetworkBackingInfo(
                deviceName=inv.network_name)))
    return vim.vm.ConfigSpec(name=uuid, instanceUuid=uuid, guestId="otherGuest64", numCPUs=1,
                             memoryMB=memory_mb,
                             files=vim.vm.FileInfo(vmPathName=f"[{inv.ds_name}]"),
                             deviceChange=[controller, disk, nic])


def random_mac() -> str:
    """A locally administered unicast MAC in OpenStack's fa:16:3e prefix."""
    tail = uuid_module.uuid4().bytes[:3]
    return "fa:16:3e:" + ":".join(f"{b:02x}" for b in tail)


def image_bytes() -> bytes:
    """The benchmark image's content (1 MiB, not all zeros so nothing can skip it)."""
    return (b"virtdriver-bench" * (IMAGE_BYTES // 16))[:IMAGE_BYTES]
