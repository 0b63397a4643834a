"""VMwareVMOps: the seed's operations on vCenter, over one :class:`VMwareSession`.

Spawn reads like its list of steps; each step is a method that can be tested alone and that
registers its own undo with a :class:`Rollback` as soon as it succeeds. The rarer operations
(snapshot, rescue, resize, live migration, NICs, consoles, image cache) live in
:mod:`virtdriver.vmware.vmops_more` and are mixed in, so each module stays readable.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from pyVmomi import vim

from virtdriver.common.base import DEFAULT_CAPABILITIES, VMOps
from virtdriver.common.locks import instance_lock
from virtdriver.common.model import (
    Diagnostics,
    InstanceInfo,
    MemoryDiagnostics,
    instance_name_from_metadata,
)
from virtdriver.common.power_state import PowerState
from virtdriver.vmware import power, spawn, vm_util
from virtdriver.vmware import vif as vif_util
from virtdriver.vmware.backend import VMwareBackend
from virtdriver.vmware.ds_util import Datastore
from virtdriver.vmware.images import CONFIG_DRIVE_NAME, ImageCache
from virtdriver.vmware.session import VMwareSession
from virtdriver.vmware.vmops_more import MoreOpsMixin

POWER_STATES = {"poweredOn": PowerState.RUNNING, "poweredOff": PowerState.SHUTDOWN,
                "suspended": PowerState.SUSPENDED}


class VMwareVMOps(MoreOpsMixin, VMOps):
    """Nova-style operations on vCenter VMs (one cluster, chosen by ``[vmware] cluster_name``).

    The session is opened on first use (or pass one in ``session=`` for tests). VMs are
    named after the instance uuid, carry it as ``instanceUuid`` and in extraConfig
    ``nvp.vm-uuid``, and are marked ``managedBy`` ``org.openstack.compute``.
    """

    backend_name = "vmware"
    capabilities = {
        **DEFAULT_CAPABILITIES,
        "has_imagecache": True,
        "supports_migrate_to_same_host": True,
        "supports_attach_interface": True,
        "supports_image_type_vmdk": True,
        "supports_image_type_raw": True,
        "supports_image_type_iso": True,
        "supports_config_drive": True,
        "supports_live_migration": True,
        "supports_rescue": True,
        "supports_suspend": True,
        # vSphere has no in-memory pause, no guest agent for passwords/files/network
        # resets, no per-instance security rules and no serial log without a vSPC.
        "supports_pause": False,
        "supports_soft_delete": False,
        "supports_set_admin_password": False,
        "supports_inject_file": False,
        "supports_reset_network": False,
        "supports_console_output": False,
        "supports_bandwidth_counters": False,
        "supports_security_rules": False,
    }

    def __init__(self, conf: Any, image_store: Any = None,
                 progress_callback: Callable[[Any, int, str], None] | None = None,
                 session: VMwareSession | None = None) -> None:
        super().__init__(conf, image_store, progress_callback)
        if session is not None:  # one set of figures: the session's
            self.stats = session.stats
        self._backend = VMwareBackend(conf, image_store, self.progress, self.stats, session)

    # for callers that read the server beside the operations (Nova adapter, benchmarks)
    @property
    def session(self) -> VMwareSession:
        """The vCenter session, logged in on first use."""
        return self._backend.session

    @property
    def inventory(self) -> vm_util.Inventory:
        """The cluster, datacenter and folder this backend uses (read once)."""
        return self._backend.inventory

    @property
    def vm_refs(self) -> vm_util.VMRefCache:
        """The cache of VM references by instance uuid."""
        return self._backend.vm_refs

    @property
    def image_cache(self) -> ImageCache:
        """The datastore image cache."""
        return self._backend.image_cache

    def close(self) -> None:
        """Log out of vCenter."""
        self._backend.close()

    # interim shims for the mixins still to move
    def _networks_for(self, vifs: Iterable[Any]) -> dict[str, vif_util.NetworkRef]:
        return self._backend.networks_for(vifs)

    def _vm(self, instance: Any) -> Any:
        return self._backend.vm(instance)

    def _read(self, instance: Any, paths: list[str]) -> tuple[Any, dict[str, Any]]:
        return self._backend.read(instance, paths)

    def _datastore(self, ds_ref: Any, props: dict[str, Any] | None = None) -> Datastore:
        return self._backend.datastore(ds_ref, props)

    def _vm_datastore(self, vm_path: str) -> Datastore:
        return self._backend.vm_datastore(vm_path)

    def _datastore_props(self) -> dict[Any, dict[str, Any]]:
        return self._backend.datastore_props()

    def _power_state(self, instance: Any) -> tuple[Any, str]:
        return self._backend.power_state(instance)

    # -- lifecycle -------------------------------------------------------------------------------

    def spawn(self, context: Any, instance: Any, image_meta: Any, injected_files: Any,
              admin_password: str | None, network_info: Any = None,
              block_device_info: Any = None) -> None:
        with instance_lock(instance):
            spawn.spawn(self._backend, context, instance, image_meta, injected_files,
                        admin_password, network_info)

    def destroy(self, instance: Any, network_info: Any = None, block_device_info: Any = None,
                destroy_disks: bool = True) -> None:
        with instance_lock(instance):
            spawn.destroy(self._backend, instance, destroy_disks)

    def reboot(self, instance: Any, network_info: Any = None, reboot_type: str = "SOFT",
               bad_volumes_callback: Callable[..., Any] | None = None) -> None:
        """SOFT: RebootGuest when the tools run, else reset; HARD: reset."""
        with instance_lock(instance):
            power.reboot(self._backend, instance, reboot_type)

    def power_off(self, instance: Any, timeout: int = 0, retry_interval: int = 0) -> None:
        """Guest shutdown first when ``timeout`` > 0 (waited on by push), then hard off."""
        with instance_lock(instance):
            power.power_off(self._backend, instance, timeout, retry_interval)

    def power_on(self, instance: Any) -> None:
        with instance_lock(instance):
            power.power_on(self._backend, instance)

    def suspend(self, instance: Any) -> None:
        with instance_lock(instance):
            power.suspend(self._backend, instance)

    def resume(self, instance: Any) -> None:
        with instance_lock(instance):
            power.resume(self._backend, instance)

    def poll_rebooting_instances(self, timeout: int, instances: Iterable[Any]) -> list[Any]:
        return power.poll_rebooting_instances(self._backend, timeout, instances)

    # -- facts -----------------------------------------------------------------------------------

    def get_info(self, instance: Any) -> InstanceInfo:
        """The power state (one call once the VM's reference is cached)."""
        vm, state = self._power_state(instance)
        return InstanceInfo(state=POWER_STATES.get(state, PowerState.NOSTATE))

    def _managed_vms(self) -> dict[str, tuple[Any, dict[str, Any]]]:
        found = self.session.list_objects(
            vim.VirtualMachine, ["name", "config.instanceUuid", "config.managedBy",
                                 "config.annotation"],
            root=self.inventory.vm_folder)
        return {key: (ref, props) for key, (ref, props) in found.items()
                if getattr(props.get("config.managedBy"), "extensionKey", None)
                == vm_util.MANAGED_BY.extensionKey}

    def list_instances(self) -> list[str]:
        """Names of the instances this backend's VMs belong to (one container-view pass).

        A VM is named after its instance's uuid; the instance's name is in its annotation.
        """
        return sorted(instance_name_from_metadata(props.get("config.annotation"))
                      or props["name"] for _, props in self._managed_vms().values())

    def list_instance_uuids(self) -> list[str]:
        """Instance uuids of this backend's VMs (one container-view pass)."""
        return sorted(props["config.instanceUuid"] for _, props in self._managed_vms().values()
                      if props.get("config.instanceUuid"))

    def get_diagnostics(self, instance: Any) -> dict[str, Any]:
        """summary.config, quickStats and runtime, flattened with a ``vmware:`` prefix."""
        _, props = self._read(instance, ["summary.config", "summary.quickStats",
                                         "summary.runtime"])
        out: dict[str, Any] = {}
        for value in props.values():
            for name in getattr(value, "_propInfo", {}) or {}:
                item = getattr(value, name, None)
                if item is not None and isinstance(item, (str, int, float, bool)):
                    out[f"vmware:{name}"] = item
        return out

    def get_instance_diagnostics(self, instance: Any) -> Diagnostics:
        """Nova's common diagnostics shape."""
        _, props = self._read(instance, ["runtime.powerState", "config.hardware",
                                         "summary.quickStats", "summary.runtime.bootTime"])
        hardware = props.get("config.hardware")
        devices = list(getattr(hardware, "device", None) or [])
        stats = props.get("summary.quickStats")
        state = props.get("runtime.powerState", "poweredOff")
        return Diagnostics(
            state={"poweredOn": "running", "poweredOff": "shutdown",
                   "suspended": "suspended"}.get(state, "pending"),
            driver="vmwareapi", hypervisor="esxi", hypervisor_os="esxi",
            uptime=getattr(stats, "uptimeSeconds", None),
            config_drive=any(isinstance(d, vim.vm.device.VirtualCdrom)
                             and CONFIG_DRIVE_NAME in getattr(d.backing, "fileName", "")
                             for d in devices),
            num_cpus=getattr(hardware, "numCPU", 0) or 0,
            num_nics=len(vif_util.nics_by_mac(devices)),
            num_disks=len(vm_util.disks_of(devices)),
            memory_details=MemoryDiagnostics(
                maximum=getattr(hardware, "memoryMB", None),
                used=getattr(stats, "guestMemoryUsage", None)))


__all__ = ["VMwareVMOps"]
