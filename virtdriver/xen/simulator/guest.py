"""Simulated guests: live xenstore per domain, guest metrics, and the Nova guest agent."""

from __future__ import annotations

import threading
from typing import Any

from .db import Registry, now


class GuestState:
    """What one VM's guest has received and its live xenstore."""

    def __init__(self) -> None:
        self.xenstore: dict[str, str] = {}
        self.password: str | None = None
        self.files: dict[str, bytes] = {}
        self.network_resets = 0
        self.boot_log: list[str] = []
        self.dh: Any = None
        self.networking: dict[str, str] = {}
        self.domid = "-1"


class Guests:
    """All guests of a simulator, keyed by VM ref."""

    def __init__(self, db: Registry) -> None:
        self.db = db
        self.lock = threading.RLock()
        self.by_vm: dict[str, GuestState] = {}

    def state(self, vm: str) -> GuestState:
        """The guest state of ``vm`` (created on demand)."""
        with self.lock:
            return self.by_vm.setdefault(vm, GuestState())

    def agent_enabled(self, vm: str) -> bool:
        """Whether the simulated agent answers for this VM."""
        db = self.db
        if not db.exists("VM", vm):
            return False
        return db.get("VM", vm)["other_config"].get("sim-agent", "true").lower() != "false"

    def pv_drivers(self, vm: str) -> bool:
        """Whether the guest has PV drivers (other_config:sim-pv-drivers, default true)."""
        db = self.db
        return db.get("VM", vm)["other_config"].get("sim-pv-drivers", "true").lower() != "false"

    def boot(self, vm: str, domid: str) -> None:
        """Populate the live xenstore and guest metrics of a domain that just started."""
        db = self.db
        rec = db.get("VM", vm)
        st = self.state(vm)
        with self.lock:
            st.domid = domid
            base = f"/local/domain/{domid}"
            st.xenstore = {f"{base}/name": rec["name_label"], f"{base}/domid": domid,
                           f"{base}/vm": f"/vm/{rec['uuid']}"}
            for key, value in rec["xenstore_data"].items():
                st.xenstore[f"{base}/{key}"] = value
            st.boot_log.append(f"[    0.000000] Booting simulated guest {rec['name_label']} "
                               f"as domain {domid}")
            st.boot_log.append("[    1.000000] simulated guest agent started")
        if not self.pv_drivers(vm):
            return
        networks = {}
        for vif in rec["VIFs"]:
            dev = db.get("VIF", vif)["device"]
            networks[f"{dev}/ip"] = f"10.0.{int(domid) % 250}.{int(dev) + 10}"
        gm = db.create("VM_guest_metrics", {
            "os_version": {"name": "Simulated Linux", "distro": "simlinux", "major": "1"},
            "PV_drivers_version": {"major": "8", "minor": "2", "micro": "1", "build": "1"},
            "PV_drivers_detected": True, "PV_drivers_up_to_date": True, "networks": networks,
            "other": {"feature-shutdown": "1", "feature-suspend": "1", "has-vendor-device": "0"},
            "memory": {}, "disks": {}, "live": True, "last_updated": now(),
            "can_use_hotplug_vbd": "yes", "can_use_hotplug_vif": "yes"})
        db.set("VM", vm, "guest_metrics", gm)
        with self.lock:
            base = f"/local/domain/{domid}"
            st.xenstore[f"{base}/attr/PVAddons/MajorVersion"] = "8"
            st.xenstore[f"{base}/attr/PVAddons/MinorVersion"] = "2"
            st.xenstore[f"{base}/attr/PVAddons/MicroVersion"] = "1"
            for vif in rec["VIFs"]:
                dev = db.get("VIF", vif)["device"]
                st.xenstore[f"{base}/device/vif/{dev}/state"] = "4"

    def halt(self, vm: str) -> None:
        """Drop the live xenstore of a domain that stopped."""
        with self.lock:
            st = self.by_vm.get(vm)
            if st is not None:
                st.xenstore = {}
                st.domid = "-1"
                st.dh = None

    def forget(self, vm: str) -> None:
        """Drop everything about a destroyed VM."""
        with self.lock:
            self.by_vm.pop(vm, None)

    def by_domid(self, domid: str) -> tuple[str, GuestState] | None:
        """The (vm, state) of a live domain."""
        with self.lock:
            for vm, st in self.by_vm.items():
                if st.domid == str(domid) and st.domid != "-1":
                    return vm, st
        return None

    def snapshot(self, vm: str) -> dict[str, Any]:
        """What the guest received: password, files, network resets, live xenstore."""
        with self.lock:
            st = self.state(vm)
            return {"password": st.password, "files": dict(st.files),
                    "network_resets": st.network_resets, "xenstore": dict(st.xenstore),
                    "networking": dict(st.networking),
                    "domid": st.domid}
