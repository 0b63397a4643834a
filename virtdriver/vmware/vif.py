"""Networks and NIC devices: a VIF becomes one NIC with its MAC on a standard or DVS portgroup.

:func:`find_networks` (talks to vCenter) resolves network names to :class:`NetworkRef` once;
:func:`nic_spec` (pure) builds the device spec.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable
from typing import Any

from pyVmomi import vim

from virtdriver.common import exceptions
from virtdriver.common.model import ResourceAllocation
from virtdriver.vmware.session import VMwareSession

#: hw_vif_model image property -> vSphere NIC device class.
VIF_MODELS: dict[str, type] = {
    "e1000": vim.vm.device.VirtualE1000,
    "e1000e": vim.vm.device.VirtualE1000e,
    "vmxnet": vim.vm.device.VirtualVmxnet,
    "vmxnet3": vim.vm.device.VirtualVmxnet3,
    "pcnet": vim.vm.device.VirtualPCNet32,
}
DEFAULT_VIF_MODEL = "e1000"


@dataclasses.dataclass(frozen=True)
class NetworkRef:
    """A network a NIC can join: a standard portgroup, or a DVS portgroup (key + switch uuid)."""

    name: str
    ref: Any
    portgroup_key: str | None = None
    switch_uuid: str | None = None

    @property
    def distributed(self) -> bool:
        """Whether this is a distributed portgroup."""
        return self.portgroup_key is not None


def find_networks(session: VMwareSession, network_refs: Iterable[Any]) -> dict[str, NetworkRef]:
    """Resolve the given networks (e.g. a cluster's ``network``) by name: at most 3 calls."""
    refs = list(network_refs)
    names = session.retrieve(refs, ["name"])
    portgroups = [r for r in refs if isinstance(r, vim.dvs.DistributedVirtualPortgroup)]
    pg_props = session.retrieve(portgroups, ["key", "config.distributedVirtualSwitch"])
    switches = {p["config.distributedVirtualSwitch"]._moId: p["config.distributedVirtualSwitch"]
                for p in pg_props.values() if "config.distributedVirtualSwitch" in p}
    uuids = session.retrieve(list(switches.values()), ["uuid"])
    found: dict[str, NetworkRef] = {}
    for ref in refs:
        name = names.get(ref._moId, {}).get("name")
        if not name:
            continue
        pg = pg_props.get(ref._moId)
        if pg is not None:
            switch = pg.get("config.distributedVirtualSwitch")
            found[name] = NetworkRef(name, ref, pg.get("key"),
                                     uuids.get(switch._moId, {}).get("uuid") if switch else None)
        else:
            found[name] = NetworkRef(name, ref)
    return found


def vif_model(name: str | None) -> type:
    """The NIC class for an ``hw_vif_model`` value; InvalidInput when unknown."""
    model = (name or DEFAULT_VIF_MODEL).lower()
    if model not in VIF_MODELS:
        raise exceptions.InvalidInput("image.properties['hw_vif_model']", name,
                                      f"must be one of {', '.join(sorted(VIF_MODELS))}")
    return VIF_MODELS[model]


def nic_spec(vif: Any, network: NetworkRef, model: type, key: int,
             allocation: ResourceAllocation | None = None) -> vim.vm.device.VirtualDeviceSpec:
    """The spec that adds one NIC for ``vif`` (its MAC, on ``network``)."""
    if network.distributed:
        backing: Any = vim.vm.device.VirtualEthernetCard.DistributedVirtualPortBackingInfo(
            port=vim.dvs.PortConnection(portgroupKey=network.portgroup_key,
                                        switchUuid=network.switch_uuid))
    else:
        backing = vim.vm.device.VirtualEthernetCard.NetworkBackingInfo(
            deviceName=network.name, network=network.ref)
    nic = model(key=key, addressType="manual", macAddress=vif.address, backing=backing,
                wakeOnLanEnabled=True,
                connectable=vim.vm.device.VirtualDevice.ConnectInfo(
                    startConnected=True, allowGuestControl=True, connected=True))
    if allocation is not None and allocation.is_set():
        nic.resourceAllocation = vim.vm.device.VirtualEthernetCard.ResourceAllocation(
            limit=allocation.limit, reservation=allocation.reservation,
            # share is required in this type: "normal" when the flavor names none
            share=_shares(allocation) or vim.SharesInfo(level="normal", shares=0))
    return vim.vm.device.VirtualDeviceSpec(operation="add", device=nic)


def _shares(allocation: ResourceAllocation) -> Any:
    if not allocation.shares_level:
        return None
    return vim.SharesInfo(level=allocation.shares_level, shares=allocation.shares_share or 0)


def nics_by_mac(devices: Iterable[Any]) -> dict[str, Any]:
    """The VM's NICs keyed by lower-case MAC."""
    return {d.macAddress.lower(): d for d in devices
            if isinstance(d, vim.vm.device.VirtualEthernetCard) and d.macAddress}


def iface_id_key(index: int) -> str:
    """The extraConfig key naming the Neutron port of NIC ``index``."""
    return f"nvp.iface-id.{index}"
