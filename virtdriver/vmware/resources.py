"""What a vCenter cluster offers Nova: CPUs, memory and disk, read in one server call.

One ``RetrievePropertiesEx`` walks from the cluster to its hosts and datastores (traversal
specs) and reads the hosts' hardware and quick stats and the datastores' summaries
together. Hosts that are disconnected or in maintenance offer nothing; datastores that
are inaccessible, in maintenance or do not match ``datastore_regex`` are left out, as the
backend would never place a disk on them.
"""

from __future__ import annotations

import json
import re
from typing import Any

from pyVmomi import vim, vmodl

from virtdriver.vmware.session import VMwareSession

MiB = 1024 ** 2
GiB = 1024 ** 3

HOST_PATHS = ["name", "summary.hardware", "summary.quickStats", "runtime.connectionState",
              "runtime.inMaintenanceMode"]
DATASTORE_PATHS = ["summary.name", "summary.capacity", "summary.freeSpace",
                   "summary.accessible", "summary.maintenanceMode"]


def _cluster_spec(cluster_ref: Any) -> Any:
    pc = vmodl.query.PropertyCollector
    return pc.FilterSpec(
        objectSet=[pc.ObjectSpec(obj=cluster_ref, skip=True, selectSet=[
            pc.TraversalSpec(name="hosts", type=vim.ClusterComputeResource, path="host",
                             skip=False),
            pc.TraversalSpec(name="datastores", type=vim.ClusterComputeResource,
                             path="datastore", skip=False)])],
        propSet=[pc.PropertySpec(type=vim.HostSystem, pathSet=HOST_PATHS),
                 pc.PropertySpec(type=vim.Datastore, pathSet=DATASTORE_PATHS)])


def read_objects(session: VMwareSession, cluster_ref: Any) -> tuple[list[dict[str, Any]],
                                                                   list[dict[str, Any]]]:
    """The cluster's hosts and datastores with their properties (one call, plus pages)."""
    collector = session.content.propertyCollector
    result = session.invoke(collector, "RetrievePropertiesEx", [_cluster_spec(cluster_ref)],
                            vmodl.query.PropertyCollector.RetrieveOptions())
    hosts: list[dict[str, Any]] = []
    datastores: list[dict[str, Any]] = []
    while result is not None:
        for obj in result.objects or []:
            props = {prop.name: prop.val for prop in obj.propSet or []}
            (hosts if isinstance(obj.obj, vim.HostSystem) else datastores).append(props)
        if not result.token:
            break
        result = session.invoke(collector, "ContinueRetrievePropertiesEx", result.token)
    return hosts, datastores


def _usable_host(props: dict[str, Any]) -> bool:
    return str(props.get("runtime.connectionState", "connected")) == "connected" and \
        not props.get("runtime.inMaintenanceMode", False)


def _usable_datastore(props: dict[str, Any], regex: str | None) -> bool:
    if not props.get("summary.accessible", True):
        return False
    if str(props.get("summary.maintenanceMode") or "normal") != "normal":
        return False
    # the whole name, as spawn's choice of datastore (ds_util.choose_datastore) reads it
    return not regex or re.fullmatch(regex, props.get("summary.name", "")) is not None


def cluster_resources(session: VMwareSession, cluster_ref: Any,
                      datastore_regex: str | None = None) -> dict[str, Any]:
    """Totals and use of the cluster, in the keys VirtDriver reports to Nova.

    ``vcpus`` counts hardware threads, ``memory_mb`` physical memory and ``disk_gb`` the
    capacity of the usable datastores; ``max_unit`` says what one VM can get at most
    (one host's threads and memory, one datastore's free space).
    """
    hosts, datastores = read_objects(session, cluster_ref)
    hosts = [h for h in hosts if _usable_host(h)]
    datastores = [d for d in datastores if _usable_datastore(d, datastore_regex)]
    threads = [int(getattr(h.get("summary.hardware"), "numCpuThreads", 0) or 0) for h in hosts]
    memory = [int(getattr(h.get("summary.hardware"), "memorySize", 0) or 0) // MiB
              for h in hosts]
    memory_used = sum(int(getattr(h.get("summary.quickStats"), "overallMemoryUsage", 0) or 0)
                      for h in hosts)
    capacity = sum(int(d.get("summary.capacity", 0) or 0) for d in datastores)
    free = sum(int(d.get("summary.freeSpace", 0) or 0) for d in datastores)
    largest_free = max((int(d.get("summary.freeSpace", 0) or 0) for d in datastores),
                       default=0)
    hardware = hosts[0].get("summary.hardware") if hosts else None
    about = session.content.about
    return {
        "vcpus": sum(threads), "memory_mb": sum(memory), "disk_gb": capacity // GiB,
        "vcpus_used": 0, "memory_mb_used": memory_used,
        "disk_gb_used": (capacity - free) // GiB,
        "max_unit": {"VCPU": max(threads, default=0), "MEMORY_MB": max(memory, default=0),
                     "DISK_GB": largest_free // GiB},
        "hypervisor_version": _version_int(getattr(about, "version", "") or ""),
        "cpu_info": json.dumps({
            "vendor": getattr(hardware, "vendor", None), "model": getattr(hardware, "cpuModel",
                                                                          None),
            "topology": {"cores": int(getattr(hardware, "numCpuCores", 0) or 0),
                         "threads": int(getattr(hardware, "numCpuThreads", 0) or 0),
                         "sockets": int(getattr(hardware, "numCpuPkgs", 0) or 0)}}),
        "hosts": sorted(h.get("name", "") for h in hosts),
    }


def node_name(session: VMwareSession, cluster_ref: Any) -> str:
    """Nova's VMware node name: ``<cluster moref>.<vCenter instanceUuid>``."""
    return f"{cluster_ref._moId}.{session.content.about.instanceUuid}"


def _version_int(version: str) -> int:
    """``7.0.3`` -> 7000003, the way Nova encodes hypervisor versions."""
    parts = [int(p) for p in re.findall(r"\d+", version)[:3]] + [0, 0, 0]
    return parts[0] * 1000000 + parts[1] * 1000 + parts[2]
