"""What a XAPI pool offers Nova: CPUs, memory and disk, read from the server in one pass.

``host``, ``host_metrics``, ``SR`` and ``pool`` records are read with ``get_all_records``
(XAPI has no cross-class read), plus ``host.compute_free_memory`` per live host; disk is the SR the
backend puts instance disks on (``sr_matching_filter``). Hosts that are disabled or whose
metrics say they are not live offer nothing.
"""

from __future__ import annotations

import json
import re
from typing import Any

from virtdriver.xen.session import XenAPISession

MiB = 1024 ** 2
GiB = 1024 ** 3


def pool_resources(session: XenAPISession, sr_ref: str) -> dict[str, Any]:
    """Totals and use of the pool, in the keys VirtDriver reports to Nova."""
    hosts = session.call("host.get_all_records")
    metrics = session.call("host_metrics.get_all_records")
    srs = session.call("SR.get_all_records")
    live = [h for h in hosts.values() if h.get("enabled", True)
            and metrics.get(h.get("metrics"), {}).get("live", True)]
    cpus = [int((h.get("cpu_info") or {}).get("cpu_count", 0) or 0) for h in live]
    memory = [int(metrics.get(h.get("metrics"), {}).get("memory_total", 0) or 0) // MiB
              for h in live]
    # host_metrics.memory_free is removed from the API (since "tampa"); xapi's current
    # answer is host.compute_free_memory, one call per live host.
    free = [int(session.call("host.compute_free_memory", ref) or 0) // MiB
            for ref, h in hosts.items() if h in live]
    sr = srs.get(sr_ref, {})
    disk_total = int(sr.get("physical_size", 0) or 0)
    disk_used = int(sr.get("physical_utilisation", 0) or 0)
    first = live[0] if live else {}
    version = (first.get("software_version") or {})
    return {
        "vcpus": sum(cpus), "memory_mb": sum(memory), "disk_gb": disk_total // GiB,
        "vcpus_used": 0, "memory_mb_used": sum(memory) - sum(free),
        "disk_gb_used": disk_used // GiB,
        "max_unit": {"VCPU": max(cpus, default=0), "MEMORY_MB": max(memory, default=0),
                     "DISK_GB": max(0, disk_total - disk_used) // GiB},
        "hypervisor_version": _version_int(version.get("xen")
                                           or version.get("product_version", "")),
        "cpu_info": json.dumps({"vendor": (first.get("cpu_info") or {}).get("vendor"),
                                "topology": {"cores": max(cpus, default=0)}}),
        "hosts": sorted(h.get("hostname", "") for h in live),
    }


def node_name(session: XenAPISession) -> str:
    """The pool's name label, or its master's hostname when the pool has no name."""
    pools = session.call("pool.get_all_records")
    pool = next(iter(pools.values()), {})
    if pool.get("name_label"):
        return str(pool["name_label"])
    return str(session.call("host.get_hostname", pool.get("master") or session.host_ref))


def _version_int(version: str) -> int:
    """``4.13.5`` -> 4013005, the way Nova encodes hypervisor versions."""
    parts = [int(p) for p in re.findall(r"\d+", str(version))[:3]] + [0, 0, 0]
    return parts[0] * 1000000 + parts[1] * 1000 + parts[2]
