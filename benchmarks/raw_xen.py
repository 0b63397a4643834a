"""What the raw XenAPI clients (floor and naive) share: a counted session and the pool facts.

Nothing here goes through virtdriver. Every XML-RPC request is counted by method name on the
transport (login included); VDI data goes over HTTP and is counted as ``HTTP PUT`` /
``HTTP GET``. Setup here (login, finding the SR, network and hosts) is untimed.
"""

from __future__ import annotations

import contextlib
import http.client
import time
import urllib.parse
import uuid as uuid_module
from dataclasses import dataclass
from typing import Any

import XenAPI

from benchmarks.common import CountingTransport
from benchmarks.raw_vmware import image_bytes
from virtdriver.common.stats import CallStats

MIB = 1024 * 1024
ROOT_BYTES = 1024 * MIB


@dataclass
class XenVM:
    """A VM a raw client made: refs it keeps, its name and the host index it was sent to."""

    ref: str
    name: str
    vdi: str
    host_index: int = 0
    large: bool = False


class RawXen:
    """A stock ``XenAPI.Session`` whose every request is counted."""

    def __init__(self, sim: Any) -> None:
        self.sim = sim
        self.counter = CallStats()
        self.session = XenAPI.Session(sim.url, transport=CountingTransport(self.counter))
        self.session.xenapi.login_with_password(sim.username, sim.password, "2.1",
                                                "virtdriver-bench")
        self.api = self.session.xenapi
        pool = self.api.pool.get_all()[0]
        self.sr = self.api.pool.get_default_SR(pool)
        self.network = next(iter(self.api.network.get_all()))
        hosts = self.api.host.get_all_records()
        ordered = sorted(hosts.items(), key=lambda kv: kv[1]["name_label"])
        self.hosts = [ref for ref, _ in ordered]
        self.host_names = [rec["name_label"] for _, rec in ordered]

    def close(self) -> None:
        """Log out (errors ignored: the simulator may be gone)."""
        with contextlib.suppress(Exception):  # best effort at teardown
            self.api.session.logout()

    def _http(self, method: str, path: str, body: bytes | None = None) -> bytes:
        started = time.monotonic()
        parsed = urllib.parse.urlsplit(self.sim.url)
        conn = http.client.HTTPConnection(parsed.hostname, parsed.port, timeout=120)
        try:
            headers = {"Content-Type": "application/octet-stream"} if body is not None else {}
            conn.request(method, path, body=body, headers=headers)
            response = conn.getresponse()
            data = response.read()
            if response.status >= 300:
                raise RuntimeError(f"{method} {path.split('?')[0]}: HTTP {response.status}")
            return data
        finally:
            conn.close()
            self.counter.record(f"HTTP {method}", time.monotonic() - started)

    def put_vdi(self, vdi: str, data: bytes) -> None:
        """Upload raw bytes into a VDI (``PUT /import_raw_vdi``)."""
        query = urllib.parse.urlencode({"session_id": self.session._session, "vdi": vdi,
                                        "format": "raw"})
        self._http("PUT", f"/import_raw_vdi?{query}", data)

    def get_vdi(self, vdi: str, fmt: str = "vhd") -> bytes:
        """Download a VDI (``GET /export_raw_vdi``): as a dynamic VHD, which carries only
        the allocated blocks, as Nova uploaded snapshots (``fmt="raw"``: every byte)."""
        query = urllib.parse.urlencode({"session_id": self.session._session, "vdi": vdi,
                                        "format": fmt})
        return self._http("GET", f"/export_raw_vdi?{query}")


def vdi_record(sr: str, name: str, size: int, other_config: dict[str, str]) -> dict[str, Any]:
    """A user VDI of ``size`` bytes."""
    return {"name_label": name, "name_description": "", "SR": sr, "virtual_size": str(size),
            "type": "user", "sharable": False, "read_only": False,
            "other_config": other_config, "xenstore_data": {}, "sm_config": {}, "tags": []}


def vm_record(name: str, memory_mb: int = 256, vcpus: int = 1) -> dict[str, Any]:
    """A PV VM booted by pygrub, sized by the flavor."""
    memory = str(memory_mb * MIB)
    return {"name_label": name, "name_description": "", "user_version": "0",
            "is_a_template": False, "memory_static_max": memory, "memory_static_min": "0",
            "memory_dynamic_max": memory, "memory_dynamic_min": memory,
            "VCPUs_max": str(vcpus), "VCPUs_at_startup": str(vcpus), "VCPUs_params": {},
            "actions_after_shutdown": "destroy", "actions_after_reboot": "restart",
            "actions_after_crash": "destroy", "PV_bootloader": "pygrub", "PV_kernel": "",
            "PV_ramdisk": "", "PV_args": "", "PV_bootloader_args": "", "PV_legacy_args": "",
            "HVM_boot_policy": "", "HVM_boot_params": {}, "platform": {}, "PCI_bus": "",
            "other_config": {"nova_uuid": str(uuid_module.uuid4())}, "recommendations": "",
            "xenstore_data": {}, "affinity": "OpaqueRef:NULL", "user_version_": "0",
            "blocked_operations": {}, "tags": []}


def vbd_record(vm: str, vdi: str) -> dict[str, Any]:
    """The root disk's VBD (device 0, bootable)."""
    return {"VM": vm, "VDI": vdi, "userdevice": "0", "bootable": True, "mode": "RW",
            "type": "Disk", "empty": False, "unpluggable": True, "other_config": {},
            "qos_algorithm_type": "", "qos_algorithm_params": {}}


def vif_record(vm: str, network: str) -> dict[str, Any]:
    """One VIF on ``network``."""
    mac = "fa:16:3e:" + ":".join(f"{b:02x}" for b in uuid_module.uuid4().bytes[:3])
    return {"VM": vm, "network": network, "device": "0", "MAC": mac, "MTU": "1500",
            "other_config": {}, "qos_algorithm_type": "", "qos_algorithm_params": {},
            "locking_mode": "network_default", "ipv4_allowed": [], "ipv6_allowed": []}


__all__ = ["RawXen", "XenVM", "image_bytes", "vbd_record", "vdi_record", "vif_record",
           "vm_record"]
