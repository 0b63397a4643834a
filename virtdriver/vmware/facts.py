"""What vCenter says about instances: power state, lists, diagnostics, consoles, usage.

Reads only, except that the first VNC console of a VM allocates its port.
"""

from __future__ import annotations

import json
from typing import Any

from oslo_log import log as logging
from pyVmomi import vim

from virtdriver.common import exceptions
from virtdriver.common.locks import named_lock
from virtdriver.common.model import (
    ConsoleInfo,
    CpuDiagnostics,
    Diagnostics,
    DiskDiagnostics,
    InstanceInfo,
    MemoryDiagnostics,
    NicDiagnostics,
    instance_name_from_metadata,
)
from virtdriver.common.power_state import PowerState
from virtdriver.vmware import vif as vif_util
from virtdriver.vmware import vm_util
from virtdriver.vmware.backend import VMwareBackend
from virtdriver.vmware.images import CONFIG_DRIVE_NAME

LOG = logging.getLogger(__name__)

POWER_STATES = {"poweredOn": PowerState.RUNNING, "poweredOff": PowerState.SHUTDOWN,
                "suspended": PowerState.SUSPENDED}


def get_info(backend: VMwareBackend, instance: Any) -> InstanceInfo:
    """The power state (one call once the VM's reference is cached)."""
    _, state = backend.power_state(instance)
    return InstanceInfo(state=POWER_STATES.get(state, PowerState.NOSTATE))


def _managed_vms(backend: VMwareBackend) -> dict[str, tuple[Any, dict[str, Any]]]:
    """The VMs we created that sit in this backend's cluster.

    The VM folder is the datacenter's, shared by every cluster (and every nova-compute) of
    it; a VM belongs to the cluster whose host it is registered on (``runtime.host``, set
    whether the VM runs or not, and moved by a relocation), so one compute never sees
    another cluster's instances.
    """
    found = backend.session.list_objects(
        vim.VirtualMachine, ["name", "config.instanceUuid", "config.managedBy",
                             "config.annotation", "runtime.host"],
        root=backend.inventory.vm_folder)
    hosts = {host._moId for host in backend.inventory.hosts}
    return {key: (ref, props) for key, (ref, props) in found.items()
            if getattr(props.get("config.managedBy"), "extensionKey", None)
            == vm_util.MANAGED_BY.extensionKey
            and getattr(props.get("runtime.host"), "_moId", None) in hosts}


def list_instances(backend: VMwareBackend) -> list[str]:
    """Names of the instances this backend's VMs belong to (one container-view pass).

    A VM is named after its instance's uuid; the instance's name is in its annotation.
    """
    return sorted(instance_name_from_metadata(props.get("config.annotation"))
                  or props["name"] for _, props in _managed_vms(backend).values())


def list_instance_uuids(backend: VMwareBackend) -> list[str]:
    """Instance uuids of this backend's VMs (one container-view pass)."""
    return sorted(props["config.instanceUuid"] for _, props in _managed_vms(backend).values()
                  if props.get("config.instanceUuid"))


def get_diagnostics(backend: VMwareBackend, instance: Any) -> dict[str, Any]:
    """summary.config, quickStats and runtime, flattened with a ``vmware:`` prefix."""
    _, props = backend.read(instance, ["summary.config", "summary.quickStats",
                                       "summary.runtime"])
    out: dict[str, Any] = {}
    for value in props.values():
        for name in getattr(value, "_propInfo", {}) or {}:
            item = getattr(value, name, None)
            if item is not None and isinstance(item, (str, int, float, bool)):
                out[f"vmware:{name}"] = item
    return out


def get_instance_diagnostics(backend: VMwareBackend, instance: Any) -> Diagnostics:
    """Nova's common diagnostics shape: one entry per vCPU, NIC and disk, and memory.

    The VM's overall CPU use (quickStats, MHz) is shared evenly over its vCPUs as a
    percentage of their share of the host's clock; per-NIC and per-disk byte counters live
    in vCenter's performance manager, which is not read here, so those stay unset.
    """
    _, props = backend.read(instance, ["runtime.powerState", "config.hardware",
                                       "summary.quickStats", "summary.runtime.bootTime",
                                       "summary.runtime.maxCpuUsage"])
    hardware = props.get("config.hardware")
    devices = list(getattr(hardware, "device", None) or [])
    stats = props.get("summary.quickStats")
    state = props.get("runtime.powerState", "poweredOff")
    vcpus = getattr(hardware, "numCPU", 0) or 0
    used_mhz = getattr(stats, "overallCpuUsage", None)
    max_mhz = props.get("summary.runtime.maxCpuUsage")
    utilisation = (round(100.0 * used_mhz / max_mhz, 1)
                   if used_mhz is not None and max_mhz else None)
    nics = vif_util.nics_by_mac(devices)
    disks = vm_util.disks_of(devices)
    return Diagnostics(
        state={"poweredOn": "running", "poweredOff": "shutdown",
               "suspended": "suspended"}.get(state, "pending"),
        driver="vmwareapi", hypervisor="esxi", hypervisor_os="esxi",
        uptime=getattr(stats, "uptimeSeconds", None),
        config_drive=any(isinstance(d, vim.vm.device.VirtualCdrom)
                         and CONFIG_DRIVE_NAME in getattr(d.backing, "fileName", "")
                         for d in devices),
        num_cpus=vcpus, num_nics=len(nics), num_disks=len(disks),
        cpu_details=[CpuDiagnostics(id=index, utilisation=utilisation)
                     for index in range(vcpus)],
        nic_details=[NicDiagnostics(mac_address=mac) for mac in sorted(nics)],
        disk_details=[DiskDiagnostics() for _ in disks],
        memory_details=MemoryDiagnostics(
            maximum=getattr(hardware, "memoryMB", None),
            used=getattr(stats, "guestMemoryUsage", None)))


def get_per_instance_usage(backend: VMwareBackend) -> dict[str, dict[str, Any]]:
    """Memory use of each running instance (one container-view pass)."""
    found = backend.session.list_objects(
        vim.VirtualMachine, ["config.instanceUuid", "config.managedBy", "runtime.powerState",
                             "summary.quickStats.guestMemoryUsage"],
        root=backend.inventory.vm_folder)
    usage = {}
    for _, props in found.values():
        if getattr(props.get("config.managedBy"), "extensionKey", None) != \
                vm_util.MANAGED_BY.extensionKey:
            continue
        if props.get("runtime.powerState") == "poweredOn":
            usage[props["config.instanceUuid"]] = {
                "uuid": props["config.instanceUuid"],
                "memory_mb": props.get("summary.quickStats.guestMemoryUsage") or 0}
    return usage


def get_vnc_console(backend: VMwareBackend, instance: Any) -> ConsoleInfo:
    """The VM's VNC port (allocated on first use) on the host that runs it."""
    vm, props = backend.read(instance, ["config.extraConfig", "runtime.host"])
    extra = {o.key: o.value for o in props.get("config.extraConfig") or []}
    port = extra.get("RemoteDisplay.vnc.port")
    if not port:
        port = _allocate_vnc_port(backend, instance, vm)
    host = props.get("runtime.host")
    name = backend.session.retrieve_one(host, ["name"]).get("name") if host else None
    return ConsoleInfo(host=name or backend.conf.vmware.host_ip, port=int(port), type="vnc")


def get_mks_console(backend: VMwareBackend, instance: Any) -> ConsoleInfo:
    """An MKS ticket for the VM (``AcquireTicket``, type ``mks``), as Nova's VMware driver
    hands it to its MKS proxy: the host and port to reach, and in the access path a JSON
    of the one-time ticket, the VM's config file and the host's SSL thumbprint. The ticket
    is a credential: ConsoleInfo's repr never shows it, and it is never logged."""
    ticket = backend.vm_refs.call(
        backend.session, instance,
        lambda ref: backend.session.invoke(ref, "AcquireTicket", ticketType="mks"))
    access = json.dumps({"ticket": ticket.ticket, "cfgFile": ticket.cfgFile,
                         "thumbprint": (ticket.sslThumbprint or "").replace(":", "").lower()})
    return ConsoleInfo(host=ticket.host or backend.conf.vmware.host_ip,
                       port=int(ticket.port or 902), internal_access_path=access, type="mks")


def _allocate_vnc_port(backend: VMwareBackend, instance: Any, vm: Any) -> int:
    conf = backend.conf.vmware
    first, total = conf.vnc_port, conf.vnc_port_total
    # one allocation at a time in this process: two consoles must not pick the same port
    with named_lock("vmware-vnc-ports"):
        found = backend.session.list_objects(vim.VirtualMachine, ["config.extraConfig"],
                                             root=backend.inventory.vm_folder)
        used = {int(o.value) for _, props in found.values()
                for o in props.get("config.extraConfig") or []
                if o.key == "RemoteDisplay.vnc.port" and str(o.value).isdigit()}
        port = next((p for p in range(first, first + total) if p not in used), None)
        if port is None:
            raise exceptions.BackendError("no free VNC port", code="ConsolePortRangeExhausted")
        backend.session.call_task(vm, "ReconfigVM_Task", vim.vm.ConfigSpec(extraConfig=[
            vim.option.OptionValue(key="RemoteDisplay.vnc.enabled", value="true"),
            vim.option.OptionValue(key="RemoteDisplay.vnc.port", value=str(port)),
            vim.option.OptionValue(key="RemoteDisplay.vnc.keyMap", value=conf.vnc_keymap)]))
    LOG.info("VNC console enabled on port %d", port, instance=instance)
    return port
