"""The two simulators, started for Nova's tests, and the server-side facts tests check.

``VcsimServer`` and ``XapiServer`` start a fresh simulator, prepare what a compute host's
operator would have prepared (a network named like the one Nova's test data plugs into),
give the ``nova.conf`` settings that point a driver at it, and read back what the server
holds with a client of its own (pyvmomi or XenAPI), never through the code under test.
"""

from __future__ import annotations

import contextlib
import os
import pathlib
import shutil
import signal
import ssl
import subprocess
import sys
import tempfile
from typing import Any

import XenAPI
from pyVim.task import WaitForTask
from pyVmomi import SoapStubAdapter, vim, vmodl

from virtdriver.vmware.simulator import Vcsim, build_launcher

#: The network Nova's test network_info plugs into (``nova.tests.unit.utils``).
BRIDGE = "br0"


class VcsimServer:
    """A vcsim launcher with a distributed portgroup renamed to ``br0``."""

    backend = "vmware"

    def __init__(self, clusters: int = 1) -> None:
        self.clusters = clusters
        binary = os.environ.get("VIRTDRIVER_VCSIM")
        self.sim = Vcsim(pathlib.Path(binary) if binary else build_launcher())
        self.content: Any = None

    def start(self, network: str = BRIDGE) -> VcsimServer:
        """Start vcsim (``clusters`` clusters of three hosts) and log a reader in."""
        self.sim.start(vm=0, autostart=False, cluster=self.clusters)
        stub = SoapStubAdapter(host=self.sim.host, port=self.sim.port, path="/sdk",
                               version="vim.version.v7_0",
                               sslContext=ssl.create_default_context(cafile=self.sim.ca_file))
        self.content = vim.ServiceInstance("ServiceInstance", stub).RetrieveContent()
        self.content.sessionManager.Login(self.sim.username, self.sim.password)
        switch = next(iter(self._objects(vim.DistributedVirtualSwitch, ["name"]).values()))[0]
        WaitForTask(switch.AddDVPortgroup_Task([vim.dvs.DistributedVirtualPortgroup.ConfigSpec(
            name=network, type="earlyBinding", numPorts=16)]))
        return self

    def stop(self) -> None:
        """Log the reader out and stop vcsim."""
        if self.content is not None:
            with contextlib.suppress(Exception):
                self.content.sessionManager.Logout()
        self.sim.stop()

    def flags(self) -> dict[str, dict[str, Any]]:
        """nova.conf settings, by group, that point the VMware driver at this vcsim."""
        return {"vmware": {"host_ip": self.sim.host, "host_port": self.sim.port,
                           "host_username": self.sim.username,
                           "host_password": self.sim.password,
                           "ca_file": self.sim.ca_file, "api_retry_count": 2}}

    def _objects(self, kind: type, paths: list[str]) -> dict[str, tuple[Any, dict[str, Any]]]:
        pc = vmodl.query.PropertyCollector
        view = self.content.viewManager.CreateContainerView(self.content.rootFolder, [kind],
                                                            True)
        try:
            spec = pc.FilterSpec(
                objectSet=[pc.ObjectSpec(obj=view, skip=True, selectSet=[
                    pc.TraversalSpec(name="v", type=vim.view.ContainerView, path="view",
                                     skip=False)])],
                propSet=[pc.PropertySpec(type=kind, pathSet=paths)])
            found = {}
            result = self.content.propertyCollector.RetrievePropertiesEx(
                [spec], pc.RetrieveOptions())
            while result is not None:
                for obj in result.objects or []:
                    found[obj.obj._moId] = (obj.obj, {p.name: p.val for p in obj.propSet or []})
                if not result.token:
                    break
                result = self.content.propertyCollector.ContinueRetrievePropertiesEx(
                    result.token)
            return found
        finally:
            view.DestroyView()

    def capacity(self) -> dict[str, int]:
        """The cluster's hardware threads, memory (MiB) and datastore capacity (GiB)."""
        (_, cluster), = self._objects(vim.ClusterComputeResource,
                                      ["host", "datastore"]).values()
        members = {ref._moId for ref in list(cluster["host"]) + list(cluster["datastore"])}
        hosts = [p["summary.hardware"] for key, (_, p) in
                 self._objects(vim.HostSystem, ["summary.hardware"]).items() if key in members]
        stores = [p["summary.capacity"] for key, (_, p) in
                  self._objects(vim.Datastore, ["summary.capacity"]).items() if key in members]
        return {"vcpus": sum(h.numCpuThreads for h in hosts),
                "memory_mb": sum(h.memorySize // 1024 ** 2 for h in hosts),
                "disk_gb": sum(stores) // 1024 ** 3}

    def power_states(self) -> dict[str, str]:
        """Every VM's power state, by instance uuid: ``running``, ``shutdown``, ..."""
        states = {"poweredOn": "running", "poweredOff": "shutdown", "suspended": "suspended"}
        return {props["config.instanceUuid"]: states[str(props["runtime.powerState"])]
                for _, props in self._objects(vim.VirtualMachine,
                                              ["config.instanceUuid",
                                               "runtime.powerState"]).values()
                if props.get("config.instanceUuid")}


class XapiServer:
    """The XAPI simulator (a pool of two hosts), in a process of its own, with ``br0``.

    Its own process, not a thread of the test's: under Nova's eventlet monkey-patching a
    server loop on an unpatched selector would block every green thread of the test.
    """

    backend = "xen"

    def __init__(self) -> None:
        self.proc: subprocess.Popen[str] | None = None
        self.tmpdir = ""
        self.url = ""
        self.client: Any = None

    def start(self, network: str = BRIDGE) -> XapiServer:
        """Start ``python -m virtdriver.xen.simulator`` and log a reader in."""
        # its temp dir goes under ours, which stop() removes even if the process is killed
        self.tmpdir = tempfile.mkdtemp(prefix="nova-xapi-sim-")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "virtdriver.xen.simulator", "--port", "0", "--hosts", "2"],
            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL,
            text=True, start_new_session=True, env={**os.environ, "TMPDIR": self.tmpdir})
        assert self.proc.stdout is not None
        self.url = self.proc.stdout.readline().strip()
        if not self.url.startswith("http"):
            self.stop()
            raise RuntimeError(f"the XAPI simulator did not start (said {self.url!r})")
        self.client = XenAPI.Session(self.url)
        self.client.xenapi.login_with_password("root", "secret", "1.0", "nova-tests")
        self.client.xenapi.network.create({"name_label": network, "bridge": network,
                                           "name_description": "", "other_config": {},
                                           "MTU": "1500"})
        return self

    def stop(self) -> None:
        """Log the reader out and stop the simulator by its pid."""
        if self.client is not None:
            with contextlib.suppress(Exception):
                self.client.xenapi.session.logout()
        proc, self.proc = self.proc, None
        if proc is not None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.kill(proc.pid, signal.SIGKILL)
                proc.wait(timeout=10)
            if proc.stdout is not None:
                proc.stdout.close()
        if self.tmpdir:
            shutil.rmtree(self.tmpdir, ignore_errors=True)
            self.tmpdir = ""

    def flags(self) -> dict[str, dict[str, Any]]:
        """nova.conf settings, by group, that point the Xen driver at this simulator."""
        return {"xenserver": {"connection_url": self.url, "connection_password": "secret",
                              "agent_timeout": 5, "agent_version_timeout": 5,
                              "api_retry_count": 1}}

    def capacity(self) -> dict[str, int]:
        """The pool's CPUs, memory (MiB) and default SR's size (GiB)."""
        api = self.client.xenapi
        hosts = api.host.get_all_records().values()
        metrics = api.host_metrics.get_all_records()
        pool = next(iter(api.pool.get_all_records().values()))
        return {"vcpus": sum(int(h["cpu_info"]["cpu_count"]) for h in hosts),
                "memory_mb": sum(int(metrics[h["metrics"]]["memory_total"])
                                 for h in hosts) // 1024 ** 2,
                "disk_gb": int(api.SR.get_physical_size(pool["default_SR"])) // 1024 ** 3}

    def power_states(self) -> dict[str, str]:
        """Every instance VM's power state, by instance uuid (lower-case XAPI names)."""
        records = self.client.xenapi.VM.get_all_records()
        return {rec["other_config"]["nova_uuid"]: rec["power_state"].lower()
                for rec in records.values()
                if not rec["is_a_template"] and not rec["is_control_domain"]
                and "nova_uuid" in (rec.get("other_config") or {})
                and not rec["name_label"].endswith(("-rescue", "-orig"))}


IMAGE_BYTES = bytes(range(256)) * 4096  # 1 MiB, recognisable

#: What the test image must be for each backend to boot it (Nova's Glance fixture holds
#: AMI images without data; neither hypervisor boots an AMI).
IMAGE_FORMATS = {"vmware": ("vmdk", {"vmware_disktype": "preallocated"}),
                 "xen": ("raw", {})}
