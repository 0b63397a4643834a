"""Network: the instance's VIFs (plug, unplug, attach, detach), its networking data in
xenstore, the guest agent's network reset, and XAPI's per-VIF address locking (the only
"security rules" XAPI has).
"""

from __future__ import annotations

import json
from typing import Any

from oslo_log import log as logging

from virtdriver.common import exceptions as exc
from virtdriver.common.model import VIF, validate_vifs
from virtdriver.xen import guest, vm_utils
from virtdriver.xen import vif as vif_utils
from virtdriver.xen.backend import XenBackend

LOG = logging.getLogger(__name__)


def attach_interface(backend: XenBackend, instance: Any, vif: Any) -> None:
    """Add one VIF (hot-plugged when the VM runs)."""
    _plug(backend, instance, validate_vifs([vif]))


def detach_interface(backend: XenBackend, instance: Any, vif: Any) -> None:
    """Remove one VIF; InvalidInput when the VM has no VIF with that MAC."""
    _unplug(backend, instance, validate_vifs([vif]), strict=True)


def plug_vifs(backend: XenBackend, instance: Any, network_info: Any) -> None:
    """Create (and hot-plug when running) each VIF the VM does not have yet (by MAC)."""
    _plug(backend, instance, validate_vifs(network_info))


def unplug_vifs(backend: XenBackend, instance: Any, network_info: Any) -> None:
    """Unplug and delete the VM's VIFs of ``network_info`` (by MAC)."""
    _unplug(backend, instance, validate_vifs(network_info))


def _plug(backend: XenBackend, instance: Any, vifs: list[VIF]) -> None:
    vm_ref = backend.vm_ref_of(instance)
    session = backend.session
    existing = vif_utils.vm_vifs(session, vm_ref)
    missing = [vif for vif in vifs if vif.address not in existing]
    if not missing:
        return
    networks = vif_utils.find_networks(session, missing)
    running = backend.vm_power_state(vm_ref) == "running"
    used = {record["device"] for _, record in existing.values()}
    for vif in missing:
        device = vif_utils.free_device(session, vm_ref, used)
        vif_utils.create_vif(session, vm_ref, networks[vif.network], vif, device, running)
        used.add(str(device))
        LOG.info("VIF %s plugged on %s as device %s", vif.address, vif.network, device,
                 instance=instance)


def _unplug(backend: XenBackend, instance: Any, vifs: list[VIF], strict: bool = False) -> None:
    vm_ref = backend.vm_ref_of(instance)
    existing = vif_utils.vm_vifs(backend.session, vm_ref)
    for vif in vifs:
        found = existing.get(vif.address)
        if found is None:
            if strict:
                raise exc.InvalidInput("vif.address", vif.address,
                                       "is not a VIF of this instance")
            continue
        vif_utils.destroy_vif(backend.session, found[0])
        LOG.info("VIF %s unplugged", vif.address, instance=instance)


def inject_network_info(backend: XenBackend, instance: Any, network_info: Any) -> None:
    """``vm-data/networking/<mac>`` for each VIF, in xenstore_data and (when the VM runs)
    the live xenstore."""
    vifs = validate_vifs(network_info)
    vm_ref = backend.vm_ref_of(instance)
    running = backend.vm_power_state(vm_ref) in ("running", "paused")
    for vif in vifs:
        vm_utils.write_xenstore(backend.session, vm_ref, vm_utils.networking_path(vif.address),
                                json.dumps(vm_utils.network_blob(vif)), running)


def reset_network(backend: XenBackend, instance: Any) -> None:
    """Ask the guest agent to re-read its network configuration."""
    guest.agent(backend, instance, "reset_network").reset_network()


def refresh_instance_security_rules(backend: XenBackend, instance: Any) -> None:
    """Re-apply locking to each VIF from the fixed IPs recorded at ``vm-data/networking``
    (the VIF's port id from its other_config)."""
    vm_ref = backend.vm_ref_of(instance)
    xenstore = backend.session.call("VM.get_xenstore_data", vm_ref)
    for mac, (ref, record) in vif_utils.vm_vifs(backend.session, vm_ref).items():
        blob = xenstore.get(vm_utils.networking_path(mac))
        ips: list[str] = []
        if blob:
            data = json.loads(blob)
            ips = [ip["ip"] for ip in data.get("ips", []) + data.get("ip6s", [])]
        port = (record.get("other_config") or {}).get("neutron-port-id")
        vif = VIF(id=port or "00000000-0000-0000-0000-000000000000", address=mac,
                  network="unused", fixed_ips=ips)
        vif_utils.apply_locking(backend.session, ref, vif)


def unfilter_instance(backend: XenBackend, instance: Any, network_info: Any) -> None:
    """Put the VIFs of ``network_info`` back to the network's default locking, no allowed
    addresses."""
    vifs = validate_vifs(network_info)
    vm_ref = backend.vm_ref_of(instance)
    existing = vif_utils.vm_vifs(backend.session, vm_ref)
    for vif in vifs:
        found = existing.get(vif.address)
        if found is not None:
            vif_utils.apply_locking(backend.session, found[0], VIF(
                id=vif.id, address=vif.address, network=vif.network, fixed_ips=[]))
