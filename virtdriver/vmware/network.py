"""NICs on vCenter after spawn, and network info for the guest's tools.

A NIC is found by the VIF's MAC; its Neutron port is named in extraConfig
``nvp.iface-id.N`` (``free`` once detached, so indexes are reused). The face holds the
instance's lock around each call.
"""

from __future__ import annotations

from typing import Any

from oslo_log import log as logging
from pyVmomi import vim

from virtdriver.common import exceptions
from virtdriver.common.model import VIF, image_property, validate_vifs
from virtdriver.vmware import vif as vif_util
from virtdriver.vmware.backend import VMwareBackend

LOG = logging.getLogger(__name__)


def _nic_state(backend: VMwareBackend, instance: Any) -> tuple[Any, list[Any], dict[str, str]]:
    vm, props = backend.read(instance, ["config.hardware.device", "config.extraConfig"])
    devices = list(props.get("config.hardware.device") or [])
    # extraConfig may list a key twice (append-only servers): the last value wins
    extra = {o.key: o.value for o in props.get("config.extraConfig") or []}
    return vm, devices, extra


def attach_interface(backend: VMwareBackend, instance: Any, image_meta: Any, vif: Any) -> None:
    """Add one NIC with the VIF's MAC, and name its port in ``nvp.iface-id.N``."""
    vif = VIF.from_nova(vif)
    model = vif_util.vif_model(image_property(image_meta, "hw_vif_model")
                               if image_meta is not None else None)
    vm, devices, extra = _nic_state(backend, instance)
    if vif.address in vif_util.nics_by_mac(devices):
        raise exceptions.InvalidInput("vif.address", vif.address,
                                      "is already attached to the instance")
    network = backend.networks_for([vif])[vif.network]
    index = 0
    while extra.get(vif_util.iface_id_key(index)) not in (None, "free"):
        index += 1
    spec = vim.vm.ConfigSpec(
        deviceChange=[vif_util.nic_spec(vif, network, model, key=-10)],
        extraConfig=[vim.option.OptionValue(key=vif_util.iface_id_key(index), value=vif.id)])
    backend.session.call_task(vm, "ReconfigVM_Task", spec)
    LOG.info("NIC %s attached to network %s", vif.address, vif.network, instance=instance)


def detach_interface(backend: VMwareBackend, instance: Any, vif: Any) -> None:
    """Remove the VIF's NIC (found by MAC) and free its ``nvp.iface-id.N``."""
    vif = VIF.from_nova(vif)
    vm, devices, extra = _nic_state(backend, instance)
    nic = vif_util.nics_by_mac(devices).get(vif.address)
    if nic is None:
        raise exceptions.InvalidInput("vif.address", vif.address,
                                      "is not attached to the instance")
    spec = vim.vm.ConfigSpec(deviceChange=[vim.vm.device.VirtualDeviceSpec(
        operation="remove", device=nic)])
    keys = [k for k, v in extra.items() if k.startswith("nvp.iface-id.") and v == vif.id]
    spec.extraConfig = [vim.option.OptionValue(key=k, value="free") for k in keys]
    backend.session.call_task(vm, "ReconfigVM_Task", spec)
    LOG.info("NIC %s detached", vif.address, instance=instance)


def plug_vifs(backend: VMwareBackend, instance: Any, network_info: Any) -> None:
    """Attach a NIC for every VIF that has none."""
    _, devices, _ = _nic_state(backend, instance)
    present = vif_util.nics_by_mac(devices)
    for vif in validate_vifs(network_info):
        if vif.address not in present:
            attach_interface(backend, instance, None, vif)


def unplug_vifs(backend: VMwareBackend, instance: Any, network_info: Any) -> None:
    """Detach the NIC of every VIF that has one."""
    _, devices, _ = _nic_state(backend, instance)
    present = vif_util.nics_by_mac(devices)
    for vif in validate_vifs(network_info):
        if vif.address in present:
            detach_interface(backend, instance, vif)


def inject_network_info(backend: VMwareBackend, instance: Any, network_info: Any) -> None:
    """Publish ``machine.id`` (``mac;ip`` per VIF) where VMware Tools scripts read it."""
    vifs = validate_vifs(network_info)
    value = "#".join(f"{vif.address};{','.join(vif.fixed_ips)}" for vif in vifs)
    vm = backend.vm(instance)
    backend.session.call_task(vm, "ReconfigVM_Task", vim.vm.ConfigSpec(
        extraConfig=[vim.option.OptionValue(key="machine.id", value=value)]))
