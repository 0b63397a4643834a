"""The rarer VMwareVMOps operations, mixed into :class:`~virtdriver.vmware.vmops.VMwareVMOps`.

Snapshot, rescue, resize, live migration, NICs, consoles and the image cache; plus the
operations vSphere cannot do, which raise UnsupportedOperation.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from typing import Any

from pyVmomi import vim

from virtdriver.common import exceptions
from virtdriver.common.locks import instance_lock, named_lock
from virtdriver.common.model import (
    VIF,
    ConsoleInfo,
    field_of,
    image_property,
    validate_vifs,
)
from virtdriver.vmware import ds_util, vm_util
from virtdriver.vmware import vif as vif_util
from virtdriver.vmware.ds_util import Datastore
from virtdriver.vmware.vmops_migrate import MigrateOpsMixin


class UnsupportedOpsMixin:
    """What vSphere cannot do: each raises UnsupportedOperation (capabilities say so)."""

    unsupported: Callable[..., Exception]

    def pause(self, instance: Any) -> None:
        """vSphere has no in-memory pause: use suspend."""
        raise self.unsupported("pause", "vSphere has no in-memory pause; use suspend")

    def unpause(self, instance: Any) -> None:
        """See :meth:`pause`."""
        raise self.unsupported("unpause", "vSphere has no in-memory pause; use resume")

    def soft_delete(self, instance: Any) -> None:
        """Not offered: destroy is immediate on vCenter."""
        raise self.unsupported("soft_delete")

    def restore(self, instance: Any) -> None:
        """See :meth:`soft_delete`."""
        raise self.unsupported("restore")

    def set_bootable(self, instance: Any, is_bootable: bool) -> None:
        """Not offered by this backend."""
        raise self.unsupported("set_bootable")

    def set_admin_password(self, instance: Any, new_pass: str) -> None:
        """No guest agent: vSphere cannot set a guest password."""
        raise self.unsupported("set_admin_password", "no guest agent on vSphere")

    def inject_file(self, instance: Any, path: str, contents: bytes | str) -> None:
        """No guest agent: use the config drive's injected files at spawn."""
        raise self.unsupported("inject_file", "no guest agent; use the config drive")

    def reset_network(self, instance: Any) -> None:
        """No guest agent to ask."""
        raise self.unsupported("reset_network", "no guest agent on vSphere")

    def refresh_instance_security_rules(self, instance: Any) -> None:
        """Security rules are Neutron's job with vSphere."""
        raise self.unsupported("refresh_instance_security_rules")

    def refresh_security_group_rules(self, security_group_id: str) -> None:
        """Security rules are Neutron's job with vSphere."""
        raise self.unsupported("refresh_security_group_rules")

    def unfilter_instance(self, instance: Any, network_info: Any) -> None:
        """Security rules are Neutron's job with vSphere."""
        raise self.unsupported("unfilter_instance")

    def get_console_output(self, instance: Any) -> bytes:
        """No serial log without a virtual serial port concentrator."""
        raise self.unsupported("get_console_output", "no serial log without a vSPC")

    def get_all_bw_counters(self, instances: Iterable[Any]) -> list[dict[str, Any]]:
        """vCenter keeps no per-NIC byte counters that this backend reads."""
        raise self.unsupported("get_all_bw_counters")

    def change_instance_metadata(self, instance: Any, diff: dict[str, list[Any]]) -> None:
        """No guest channel for metadata."""
        raise self.unsupported("change_instance_metadata")


class NetworkOpsMixin:
    """NICs after spawn, network info for the guest's tools, consoles, usage."""

    session: Any
    conf: Any

    def _nic_state(self, instance: Any) -> tuple[Any, list[Any], dict[str, str]]:
        vm, props = self._read(instance, ["config.hardware.device", "config.extraConfig"])
        devices = list(props.get("config.hardware.device") or [])
        # extraConfig may list a key twice (append-only servers): the last value wins
        extra = {o.key: o.value for o in props.get("config.extraConfig") or []}
        return vm, devices, extra

    def attach_interface(self, instance: Any, image_meta: Any, vif: Any) -> None:
        """Add one NIC with the VIF's MAC, and name its port in ``nvp.iface-id.N``."""
        vif = VIF.from_nova(vif)
        model = vif_util.vif_model(image_property(image_meta, "hw_vif_model")
                                   if image_meta is not None else None)
        with instance_lock(instance):
            vm, devices, extra = self._nic_state(instance)
            if vif.address in vif_util.nics_by_mac(devices):
                raise exceptions.InvalidInput("vif.address", vif.address,
                                              "is already attached to the instance")
            network = self._networks_for([vif])[vif.network]
            index = 0
            while extra.get(vif_util.iface_id_key(index)) not in (None, "free"):
                index += 1
            spec = vim.vm.ConfigSpec(
                deviceChange=[vif_util.nic_spec(vif, network, model, key=-10)],
                extraConfig=[vim.option.OptionValue(key=vif_util.iface_id_key(index),
                                                    value=vif.id)])
            self.session.call_task(vm, "ReconfigVM_Task", spec)

    def detach_interface(self, instance: Any, vif: Any) -> None:
        """Remove the VIF's NIC (found by MAC) and free its ``nvp.iface-id.N``."""
        vif = VIF.from_nova(vif)
        with instance_lock(instance):
            vm, devices, extra = self._nic_state(instance)
            nic = vif_util.nics_by_mac(devices).get(vif.address)
            if nic is None:
                raise exceptions.InvalidInput("vif.address", vif.address,
                                              "is not attached to the instance")
            spec = vim.vm.ConfigSpec(deviceChange=[vim.vm.device.VirtualDeviceSpec(
                operation="remove", device=nic)])
            keys = [k for k, v in extra.items() if k.startswith("nvp.iface-id.") and v == vif.id]
            spec.extraConfig = [vim.option.OptionValue(key=k, value="free") for k in keys]
            self.session.call_task(vm, "ReconfigVM_Task", spec)

    def plug_vifs(self, instance: Any, network_info: Any) -> None:
        """Attach a NIC for every VIF that has none."""
        _, devices, _ = self._nic_state(instance)
        present = vif_util.nics_by_mac(devices)
        for vif in validate_vifs(network_info):
            if vif.address not in present:
                self.attach_interface(instance, None, vif)

    def unplug_vifs(self, instance: Any, network_info: Any) -> None:
        """Detach the NIC of every VIF that has one."""
        _, devices, _ = self._nic_state(instance)
        present = vif_util.nics_by_mac(devices)
        for vif in validate_vifs(network_info):
            if vif.address in present:
                self.detach_interface(instance, vif)

    def inject_network_info(self, instance: Any, network_info: Any) -> None:
        """Publish ``machine.id`` (``mac;ip`` per VIF) where VMware Tools scripts read it."""
        vifs = validate_vifs(network_info)
        value = "#".join(f"{vif.address};{','.join(vif.fixed_ips)}" for vif in vifs)
        with instance_lock(instance):
            vm = self._vm(instance)
            self.session.call_task(vm, "ReconfigVM_Task", vim.vm.ConfigSpec(
                extraConfig=[vim.option.OptionValue(key="machine.id", value=value)]))

    def get_vnc_console(self, instance: Any) -> ConsoleInfo:
        """The VM's VNC port (allocated on first use) on the host that runs it."""
        vm, props = self._read(instance, ["config.extraConfig", "runtime.host"])
        extra = {o.key: o.value for o in props.get("config.extraConfig") or []}
        port = extra.get("RemoteDisplay.vnc.port")
        if not port:
            port = self._allocate_vnc_port(vm)
        host = props.get("runtime.host")
        name = self.session.retrieve_one(host, ["name"]).get("name") if host else None
        return ConsoleInfo(host=name or self.conf.vmware.host_ip, port=int(port), type="vnc")

    def _allocate_vnc_port(self, vm: Any) -> int:
        first, total = self.conf.vmware.vnc_port, self.conf.vmware.vnc_port_total
        with named_lock("vmware-vnc-ports"):
            found = self.session.list_objects(vim.VirtualMachine, ["config.extraConfig"],
                                              root=self.inventory.vm_folder)
            used = {int(o.value) for _, props in found.values()
                    for o in props.get("config.extraConfig") or []
                    if o.key == "RemoteDisplay.vnc.port" and str(o.value).isdigit()}
            port = next((p for p in range(first, first + total) if p not in used), None)
            if port is None:
                raise exceptions.BackendError("no free VNC port", code="ConsolePortRangeExhausted")
            self.session.call_task(vm, "ReconfigVM_Task", vim.vm.ConfigSpec(extraConfig=[
                vim.option.OptionValue(key="RemoteDisplay.vnc.enabled", value="true"),
                vim.option.OptionValue(key="RemoteDisplay.vnc.port", value=str(port)),
                vim.option.OptionValue(key="RemoteDisplay.vnc.keyMap",
                                       value=self.conf.vmware.vnc_keymap)]))
        return port

    def get_per_instance_usage(self) -> dict[str, dict[str, Any]]:
        """Memory use of each running instance (one container-view pass)."""
        found = self.session.list_objects(
            vim.VirtualMachine, ["config.instanceUuid", "config.managedBy", "runtime.powerState",
                                 "summary.quickStats.guestMemoryUsage"],
            root=self.inventory.vm_folder)
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



class HostOpsMixin:
    """Datacenter lookup, cache and temp folders, image-cache aging."""

    session: Any
    conf: Any

    def get_datacenter_ref_and_name(self, ds_ref: Any) -> tuple[Any, str]:
        """The datacenter holding ``ds_ref`` (a datastore of this backend's cluster)."""
        inv = self.inventory
        if ds_ref is not None and all(ds_ref._moId != r._moId for r in inv.datastores):
            raise exceptions.InvalidInput("ds_ref", getattr(ds_ref, "_moId", ds_ref),
                                          "is not a datastore of this backend's cluster")
        return inv.dc_ref, inv.dc_name

    def _named_datastore(self, ds_name: str, ds_ref: Any) -> Datastore:
        if ds_ref is None:
            for ref, props in self._datastore_props().items():
                if props.get("summary.name") == ds_name:
                    return self._datastore(ref, props)
            raise exceptions.InvalidInput("ds_name", ds_name, "is not a datastore of the cluster")
        return self._datastore(ds_ref)

    def check_cache_folder(self, ds_name: str, ds_ref: Any) -> None:
        """Create the image-cache folder on the datastore if it is missing."""
        ds = self._named_datastore(ds_name, ds_ref)
        ds_util.make_directory(self.session, ds, ds.path(self.image_cache.cache_folder))

    def check_temp_folder(self, ds_name: str, ds_ref: Any) -> None:
        """Create the temporary upload folder on the datastore if it is missing."""
        ds = self._named_datastore(ds_name, ds_ref)
        ds_util.make_directory(self.session, ds, ds.path(self.image_cache.temp_folder))

    def manage_image_cache(self, context: Any, instances: Iterable[Any]) -> None:
        """Age out cached images no instance uses: mark them, delete after the minimum age.

        A marker folder ``ts-<epoch>`` in the image's cache folder records when it was first
        seen unused; it goes when the image is used again.
        """
        if not self.conf.remove_unused_base_images:
            return
        used = {str(field_of(i, "image_ref")) for i in instances if field_of(i, "image_ref")}
        max_age = self.conf.remove_unused_original_minimum_age_seconds
        now = int(time.time())
        for ref, props in self._datastore_props().items():
            ds = self._datastore(ref, props)
            for image_id in self.image_cache.cached_images(ds):
                folder = self.image_cache.folder(ds, image_id)
                markers = [n for n in ds_util.list_folder(self.session, ds, folder)
                           if n.startswith("ts-")]
                if image_id in used:
                    for marker in markers:
                        ds_util.delete_path(self.session, ds, folder.join(marker))
                elif not markers:
                    ds_util.make_directory(self.session, ds, folder.join(f"ts-{now}"))
                elif now - max(int(m[3:]) for m in markers if m[3:].isdigit()) >= max_age:
                    with named_lock(f"vmware-image-{ds.name}-{image_id}"):
                        ds_util.delete_path(self.session, ds, folder)
                        self.image_cache.forget(ds, image_id)


class MoreOpsMixin(UnsupportedOpsMixin, NetworkOpsMixin, HostOpsMixin, MigrateOpsMixin):
    """Every operation of VMwareVMOps beyond spawn, destroy, power and facts."""
