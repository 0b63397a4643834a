"""VIFs: networks by name, VIF records, hot plug, and XAPI-native port locking.

A VIF's ``network`` names an existing XAPI network (its name_label or bridge). Security
rules are what XAPI enforces natively on a VIF: ``locking_mode`` ``locked`` with the
port's fixed IPs as ``ipv4_allowed``/``ipv6_allowed`` (anti-spoofing). There are no
per-port firewall rules (security-group ingress/egress) in XAPI.
"""

from __future__ import annotations

from typing import Any

from virtdriver.common import exceptions as exc
from virtdriver.common.model import VIF
from virtdriver.xen import vm_utils
from virtdriver.xen.session import XenAPISession, is_handle_invalid


def find_networks(session: XenAPISession, vifs: list[VIF]) -> dict[str, str]:
    """Network refs for every VIF's network name, in one call; a missing one is InvalidInput."""
    names = sorted({vif.network for vif in vifs})
    if not names:
        return {}
    clauses = " or ".join(f'field "name__label" = {vm_utils.where_literal(name)} or '
                          f'field "bridge" = {vm_utils.where_literal(name)}' for name in names)
    records = session.call("network.get_all_records_where", clauses)
    found: dict[str, str] = {}
    for ref, record in sorted(records.items()):
        for name in names:
            if name in (record.get("name_label"), record.get("bridge")):
                found.setdefault(name, ref)
    for name in names:
        if name not in found:
            raise exc.InvalidInput("vif.network", name, "is not a network of this pool")
    return found


def locking(vif: VIF) -> dict[str, Any]:
    """The locking fields of a VIF: locked to its fixed IPs when it has any."""
    ipv4 = [ip for ip in vif.fixed_ips if ":" not in ip]
    ipv6 = [ip for ip in vif.fixed_ips if ":" in ip]
    if not (ipv4 or ipv6) or vif.details.get("port_filter") is False:
        return {"locking_mode": "network_default", "ipv4_allowed": [], "ipv6_allowed": []}
    return {"locking_mode": "locked", "ipv4_allowed": ipv4, "ipv6_allowed": ipv6}


def vif_record(vm_ref: str, network_ref: str, vif: VIF, device: int) -> dict[str, Any]:
    """The ``VIF.create`` record of ``vif`` at slot ``device``."""
    return {"VM": vm_ref, "network": network_ref, "device": str(device), "MAC": vif.address,
            "MTU": str(vif.mtu or 1500), "other_config": {"neutron-port-id": vif.id},
            "qos_algorithm_type": "", "qos_algorithm_params": {}, **locking(vif)}


def vm_vifs(session: XenAPISession, vm_ref: str) -> dict[str, tuple[str, dict[str, Any]]]:
    """The VM's VIFs by MAC: mac -> (ref, record)."""
    out = {}
    for ref in session.call("VM.get_VIFs", vm_ref):
        record = session.call("VIF.get_record", ref)
        out[record["MAC"].lower()] = (ref, record)
    return out


def create_vif(session: XenAPISession, vm_ref: str, network_ref: str, vif: VIF,
               device: int, running: bool) -> str:
    """Create a VIF (and hot-plug it when the VM runs)."""
    ref = session.call("VIF.create", vif_record(vm_ref, network_ref, vif, device))
    if running:
        try:
            session.call("VIF.plug", ref)
        except BaseException:
            session.call("VIF.destroy", ref)
            raise
    return ref


def destroy_vif(session: XenAPISession, vif_ref: str) -> None:
    """Unplug (if attached) and delete a VIF; one already gone is fine."""
    try:
        if session.call("VIF.get_currently_attached", vif_ref):
            try:
                session.call("VIF.unplug", vif_ref)
            except exc.BackendError as error:
                if error.code != "DEVICE_ALREADY_DETACHED":
                    raise
        session.call("VIF.destroy", vif_ref)
    except exc.BackendError as error:
        if not is_handle_invalid(error):
            raise


def free_device(session: XenAPISession, vm_ref: str, used: set[str]) -> int:
    """The lowest VIF slot the VM allows that is not used."""
    allowed = sorted(int(d) for d in session.call("VM.get_allowed_VIF_devices", vm_ref)
                     if str(d) not in used)
    if not allowed:
        raise exc.BackendError("the VM has no free VIF slot", "NO_FREE_VIF_DEVICE")
    return allowed[0]


def apply_locking(session: XenAPISession, vif_ref: str, vif: VIF) -> None:
    """Set a VIF's locking mode and allowed addresses from ``vif``."""
    fields = locking(vif)
    session.call("VIF.set_ipv4_allowed", vif_ref, fields["ipv4_allowed"])
    session.call("VIF.set_ipv6_allowed", vif_ref, fields["ipv6_allowed"])
    session.call("VIF.set_locking_mode", vif_ref, fields["locking_mode"])
