"""The initial objects of a simulated pool (canned content, apart from behaviour)."""

from __future__ import annotations

from .backend import Backend
from .context import Context
from .db import now
from .models.vm import ALLOWED, refresh_allowed
from .templates import TEMPLATES, template_record

GIB = 1024**3
#: what a plain halted VM may do (what refresh_allowed computes for it)
HALTED_OPS = tuple(op for op, states in ALLOWED.items() if "Halted" in states)
MIB = 1024**2


def mac(n: int) -> str:
    """A locally administered MAC from a number."""
    return "02:" + ":".join(f"{(n >> s) & 0xFF:02x}" for s in (32, 24, 16, 8, 0))


def build(backend: Backend) -> None:
    """Create the pool, hosts, dom0s, networks, SRs, the built-in templates and the
    requested halted VMs."""
    db, cfg = backend.db, backend.config
    pool = db.create("pool", {"name_label": cfg.pool_name, "other_config": {}})
    net = db.create("network", {"name_label": "Pool-wide network associated with eth0",
                                "bridge": "xenbr0", "other_config": {}})
    iso = db.create("SR", {"name_label": "XenServer Tools", "type": "iso",
                           "content_type": "iso", "shared": True, "is_tools_sr": True,
                           "physical_size": "0"})
    first_sr = None
    for i in range(cfg.hosts):
        address = cfg.address if i == 0 else f"127.0.1.{i}"
        total = cfg.memory_mb_per_host * MIB
        metrics = db.create("host_metrics", {"memory_total": str(total),
                                             "memory_free": str(total), "last_updated": now()})
        host = db.create("host", {
            "name_label": f"host{i}", "hostname": f"host{i}", "address": address,
            "metrics": metrics, "software_version": {
                "product_version": "8.2.1", "product_brand": "XCP-ng",
                "platform_name": "XCP", "platform_version": "3.2.1", "xapi": "1.20",
                "xen": "4.13.5", "hostname": f"host{i}"},
            "cpu_info": {"cpu_count": "8", "vendor": "GenuineIntel"},
            "other_config": {"iscsi_iqn": f"iqn.2026-01.sim:host{i}"},
        })
        dom0 = db.create("VM", {
            "name_label": f"Control domain on host: host{i}", "is_control_domain": True,
            "power_state": "Running", "domid": "0", "memory_static_max": str(GIB),
            "memory_dynamic_max": str(GIB), "memory_dynamic_min": str(GIB),
            "memory_target": str(GIB), "VCPUs_max": "4", "VCPUs_at_startup": "4",
            "domain_type": "pv"})
        db.set("VM", dom0, "resident_on", host)
        vm_metrics = db.create("VM_metrics", {"memory_actual": str(GIB), "VCPUs_number": "4",
                                              "start_time": now()})
        db.set("VM", dom0, "metrics", vm_metrics)
        db.set("host", host, "control_domain", dom0)
        db.create("PIF", {"host": host, "network": net, "device": "eth0", "MAC": mac(i + 1),
                          "IP": address, "netmask": "255.0.0.0", "management": True,
                          "ip_configuration_mode": "Static"})
        sr = db.create("SR", {"name_label": f"Local storage on host{i}", "type": "ext",
                              "content_type": "user",
                              "physical_size": str(cfg.disk_gb_per_sr * GIB),
                              "other_config": {"i18n-key": "local-storage"}})
        db.create("PBD", {"host": host, "SR": sr, "currently_attached": True,
                          "device_config": {"device": "/dev/sda3"}})
        db.create("PBD", {"host": host, "SR": iso, "currently_attached": True,
                          "device_config": {"location": "/opt/xensource/packages/iso"}})
        if i == 0:
            db.update("pool", pool, master=host, default_SR=sr, suspend_image_SR=sr,
                      crash_dump_SR=sr)
            first_sr = sr
    del first_sr
    ctx = Context(backend, "inventory", None)
    for name in TEMPLATES:
        metrics = db.create("VM_metrics", {})
        refresh_allowed(ctx, db.create("VM", {**template_record(name), "metrics": metrics}))
    for n in range(cfg.vms):
        make_vm(backend, f"vm{n}")


def make_vm(backend: Backend, name: str, memory_mb: int = 256) -> str:
    """A halted VM with a metrics object (used by --vms N; fast, no disks)."""
    db = backend.db
    size = str(memory_mb * MIB)
    metrics = db.create("VM_metrics", {})
    return db.create("VM", {"name_label": name, "memory_static_max": size,
                            "memory_dynamic_max": size, "memory_dynamic_min": size,
                            "memory_target": size, "metrics": metrics,
                            "allowed_operations": list(HALTED_OPS)})
