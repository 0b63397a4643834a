"""VM helpers: record builders (pure, no I/O) and thin wrappers over XAPI VM verbs.

Builders take plain values and return the dict a ``*.create`` call takes; wrappers take the
:class:`~virtdriver.xen.session.XenAPISession` and make one server verb each (long verbs
through ``Async.*``). Nothing here decides policy: :mod:`virtdriver.xen.vmops` does.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from typing import Any

from virtdriver.common import exceptions as exc
from virtdriver.common.model import VIF, ExtraSpecs, field_of, image_property
from virtdriver.common.power_state import PowerState
from virtdriver.xen.session import XenAPISession, is_handle_invalid

NULL_REF = "OpaqueRef:NULL"
MiB = 1024 * 1024
GiB = 1024 * MiB

#: XAPI power_state -> the compute service's numbering.
POWER_STATES: dict[str, PowerState] = {
    "halted": PowerState.SHUTDOWN,
    "running": PowerState.RUNNING,
    "paused": PowerState.PAUSED,
    "suspended": PowerState.SUSPENDED,
    "crashed": PowerState.CRASHED,
}

#: Userdevice slots, as Nova laid them out: root 0, rescued root 1, swap 2, config drive 3,
#: ephemerals from 4.
DEVICE_ROOT = "0"
DEVICE_RESCUE = "1"
DEVICE_SWAP = "2"
DEVICE_CONFIGDRIVE = "3"
DEVICE_EPHEMERAL = 4

#: What the bootlock blocks. XAPI keys blocked_operations by exact name, and ``start`` is
#: not ``start_on`` (a trap Nova fell into), so both are blocked, plus resume.
BOOTLOCK_OPERATIONS = ("start", "start_on")
BOOTLOCK_REASON = "virtdriver: instance is locked against booting"

#: The VBD other_config key that marks a volume (Nova's): its VDI belongs to the volume
#: service, so nothing here deletes, copies or snapshots it.
OSVOL = "osvol"

RESCUE_SUFFIX = "-rescue"
ORIG_SUFFIX = "-orig"


def power_state_of(xapi_state: str) -> PowerState:
    """The PowerState of an XAPI ``power_state`` string."""
    return POWER_STATES.get(str(xapi_state).lower(), PowerState.NOSTATE)


def where_literal(value: str) -> str:
    """Quote ``value`` for a ``get_all_records_where`` expression."""
    return '"' + str(value).replace("\\", "\\\\").replace('"', '\\"') + '"'


# -- VM record builder (pure) ---------------------------------------------------------------------

def vm_mode(image: Any, instance: Any, default_os_type: str) -> str:
    """``"pv"`` or ``"hvm"``: the image's vm_mode, else by OS type (Windows is HVM)."""
    mode = str(image_property(image, "vm_mode", "") or "").lower()
    if mode in ("xen", "pv"):
        return "pv"
    if mode == "hvm":
        return "hvm"
    if mode:
        raise exc.InvalidInput("image.properties['vm_mode']", mode, "must be xen, pv or hvm")
    return "hvm" if os_type(image, instance, default_os_type) == "windows" else "pv"


def os_type(image: Any, instance: Any, default_os_type: str) -> str:
    """The guest OS type: image property, then the instance's, then the configured default."""
    return str(image_property(image, "os_type", None) or field_of(instance, "os_type", None)
               or default_os_type).lower()


def metadata_xenstore(instance: Any, vifs: list[VIF], hostname: str | None) -> dict[str, str]:
    """The ``vm-data/...`` keys spawn writes into the VM's xenstore_data."""
    data: dict[str, str] = {}
    for key, value in (field_of(instance, "metadata") or {}).items():
        data[user_metadata_path(key)] = json.dumps(value)
    for vif in vifs:
        data[networking_path(vif.address)] = json.dumps(network_blob(vif))
    if hostname:
        data["vm-data/hostname"] = hostname
    return data


def user_metadata_path(key: str) -> str:
    """Where one metadata key lives in xenstore (characters xenstore rejects become _)."""
    return "vm-data/user-metadata/" + re.sub(r"[^0-9a-zA-Z_\-]", "_", str(key))


def networking_path(mac: str) -> str:
    """Where a VIF's network configuration lives in xenstore (MAC without colons)."""
    return "vm-data/networking/" + mac.replace(":", "").lower()


def network_blob(vif: VIF) -> dict[str, Any]:
    """The JSON a guest agent reads for one VIF (Nova's xenstore networking shape)."""
    return {"label": vif.network, "mac": vif.address, "vif_uuid": vif.id,
            "ips": [{"ip": ip, "enabled": "1"} for ip in vif.fixed_ips if ":" not in ip],
            "ip6s": [{"ip": ip, "enabled": "1"} for ip in vif.fixed_ips if ":" in ip]}


def vm_record(instance: Any, image: Any, extra_specs: ExtraSpecs, mode: str, guest_os: str,
              name_label: str, xenstore_data: dict[str, str]) -> dict[str, Any]:
    """The ``VM.create`` record of an instance (memory and VCPUs from the flavor)."""
    flavor = field_of(instance, "flavor")
    memory = str(field_of(flavor, "memory_mb") * MiB)
    vcpus = str(field_of(flavor, "vcpus"))
    vcpu_params: dict[str, str] = {}
    if extra_specs.vcpu_weight is not None:
        vcpu_params["weight"] = str(extra_specs.vcpu_weight)
    if extra_specs.vcpu_cap is not None:
        vcpu_params["cap"] = str(extra_specs.vcpu_cap)
    platform = {"acpi": "true", "apic": "true", "pae": "true", "nx": "true",
                "timeoffset": "0"}
    if guest_os == "windows":
        platform["viridian"] = "true"
    record: dict[str, Any] = {
        "name_label": name_label,
        "name_description": f"instance {field_of(instance, 'uuid')}",
        "user_version": "1",
        "is_a_template": False,
        "memory_static_min": "0",
        "memory_static_max": memory,
        "memory_dynamic_min": memory,
        "memory_dynamic_max": memory,
        "memory_target": memory,
        "VCPUs_max": vcpus,
        "VCPUs_at_startup": vcpus,
        "VCPUs_params": vcpu_params,
        "actions_after_shutdown": "destroy",
        "actions_after_reboot": "restart",
        "actions_after_crash": "destroy",
        "platform": platform,
        "other_config": {"nova_uuid": str(field_of(instance, "uuid")),
                         "vm_mode": mode, "os_type": guest_os},
        "xenstore_data": xenstore_data,
        "blocked_operations": {},
        "PV_args": "",
        "PV_kernel": "",
        "PV_ramdisk": "",
        "PV_legacy_args": "",
        "PV_bootloader_args": "",
        "PCI_bus": "",
        "recommendations": "",
        "tags": [],
        "affinity": NULL_REF,
    }
    if mode == "pv":
        record.update(PV_bootloader="pygrub", HVM_boot_policy="", HVM_boot_params={},
                      domain_type="pv")
    else:
        record.update(PV_bootloader="", HVM_boot_policy="BIOS order",
                      HVM_boot_params={"order": "dc"}, domain_type="hvm")
    return record


def vbd_record(vm_ref: str, vdi_ref: str | None, userdevice: str, bootable: bool = False,
               read_only: bool = False, vbd_type: str = "Disk") -> dict[str, Any]:
    """The ``VBD.create`` record attaching ``vdi_ref`` (or an empty CD) to ``vm_ref``."""
    return {"VM": vm_ref, "VDI": vdi_ref or NULL_REF, "userdevice": userdevice,
            "bootable": bootable, "mode": "RO" if read_only else "RW", "type": vbd_type,
            "unpluggable": True, "empty": vdi_ref is None, "other_config": {},
            "qos_algorithm_type": "", "qos_algorithm_params": {}}


def vdi_record(sr_ref: str, name_label: str, virtual_size: int, disk_type: str,
               other_config: dict[str, str], read_only: bool = False) -> dict[str, Any]:
    """The ``VDI.create`` record of a new disk on ``sr_ref``."""
    return {"SR": sr_ref, "name_label": name_label, "name_description": disk_type,
            "virtual_size": str(virtual_size), "type": "user", "sharable": False,
            "read_only": read_only, "other_config": {"nova_disk_type": disk_type,
                                                     **other_config},
            "sm_config": {}, "xenstore_data": {}, "tags": []}


# -- lookups -------------------------------------------------------------------------------------

def find_vm(session: XenAPISession, name_label: str,
            instance_uuid: str | None = None) -> tuple[str, dict[str, Any]] | None:
    """The (ref, record) of the non-template VM called ``name_label``, in one call.

    With ``instance_uuid``, a VM whose other_config names another instance is ignored, so a
    stranger's VM of the same name is never touched.
    """
    expr = (f'field "name__label" = {where_literal(name_label)} '
            f'and field "is_a_template" = "false"')
    records = session.call("VM.get_all_records_where", expr)
    matches = []
    for ref, record in records.items():
        owner = (record.get("other_config") or {}).get("nova_uuid")
        if instance_uuid is None or owner in (None, instance_uuid):
            matches.append((ref, record))
    if len(matches) > 1:
        raise exc.InstanceExists(name_label)
    return matches[0] if matches else None


def find_vms(session: XenAPISession, name_labels: list[str],
             instance_uuid: str) -> dict[str, tuple[str, dict[str, Any]]]:
    """The instance's VMs among ``name_labels`` (e.g. its rescue and pre-resize VMs), by
    name label, in one call; VMs of other instances are ignored."""
    names = " or ".join(f'field "name__label" = {where_literal(name)}' for name in name_labels)
    expr = f'({names}) and field "is_a_template" = "false"'
    found: dict[str, tuple[str, dict[str, Any]]] = {}
    for ref, record in session.call("VM.get_all_records_where", expr).items():
        if (record.get("other_config") or {}).get("nova_uuid") in (None, instance_uuid):
            found[record["name_label"]] = (ref, record)
    return found


MANAGED_EXPR = 'field "is_control_domain" = "false" and field "is_a_template" = "false"'


def managed_vms(session: XenAPISession,
                fields: Iterable[str] | None = None) -> dict[str, dict[str, Any]]:
    """Every instance VM (not dom0, not a template) with its record, in one call.

    With ``fields``, each record holds only those members (and ``other_config``), cut down
    while the reply is parsed (:meth:`XenAPISession.records_where`).
    """
    if fields is None:
        records = session.call("VM.get_all_records_where", MANAGED_EXPR)
    else:
        records = session.records_where("VM", MANAGED_EXPR, {*fields, "other_config"})
    return {ref: rec for ref, rec in records.items()
            if (rec.get("other_config") or {}).get("nova_uuid")}


# -- power verbs ---------------------------------------------------------------------------------

def start(session: XenAPISession, vm_ref: str, paused: bool = False) -> None:
    """Boot a halted VM (``VM.start``: the verb the bootlock blocks)."""
    session.call_lasting("VM.start", vm_ref, paused, False)


def _halted_already(error: exc.BackendError) -> bool:
    return error.code == "VM_BAD_POWER_STATE" and error.params[-1:] == ("halted",)


def hard_shutdown(session: XenAPISession, vm_ref: str) -> bool:
    """Power a VM off now; an already halted VM is left alone (False).

    A plain call: pulling the plug is quick. XAPI cancels a clean shutdown or reboot still
    in flight first.
    """
    try:
        session.call("VM.hard_shutdown", vm_ref)
    except exc.BackendError as error:
        if _halted_already(error):
            return False
        raise
    return True


#: What a clean shutdown or reboot fails with when only a hard one can do it: the guest
#: cannot (no PV drivers), or did not within its time (or a hard one cut it short).
CLEAN_IMPOSSIBLE = ("VM_MISSING_PV_DRIVERS", "VM_LACKS_FEATURE", "TASK_TIMEOUT",
                    "TASK_CANCELLED")


def shut_down(session: XenAPISession, vm_ref: str, timeout: float) -> bool:
    """Halt the VM: cleanly if the guest manages within ``timeout`` seconds (0: do not
    ask it), else hard. False when it was halted already (nothing done), so the caller
    needs no power-state read first."""
    if timeout > 0:
        try:
            session.call_lasting("VM.clean_shutdown", vm_ref, timeout=timeout)
            return True
        except exc.BackendError as error:
            if _halted_already(error):
                return False
            # VM_BAD_POWER_STATE otherwise: suspended or paused, which only a hard one stops
            if error.code not in (*CLEAN_IMPOSSIBLE, "VM_BAD_POWER_STATE"):
                raise
        hard_shutdown(session, vm_ref)  # halted meanwhile or now: it was running
        return True
    return hard_shutdown(session, vm_ref)


def set_bootlock(session: XenAPISession, vm_ref: str, locked: bool) -> None:
    """Forbid (or allow again) starting the VM through ``blocked_operations``."""
    if locked:
        blocked = dict(session.call("VM.get_blocked_operations", vm_ref))
        blocked.update({op: BOOTLOCK_REASON for op in BOOTLOCK_OPERATIONS})
        session.call("VM.set_blocked_operations", vm_ref, blocked)
    else:
        for op in BOOTLOCK_OPERATIONS:
            session.call("VM.remove_from_blocked_operations", vm_ref, op)


def vbd_records(session: XenAPISession, vm_ref: str) -> dict[str, dict[str, Any]]:
    """Every VBD of the VM with its record, in one call (``VM.get_VBDs`` and a
    ``VBD.get_record`` each would cost one more per disk)."""
    return dict(session.call("VBD.get_all_records_where",
                             f'field "VM" = {where_literal(vm_ref)}'))


def destroy_vm(session: XenAPISession, vm_ref: str,
               keep_vdis: set[str] | frozenset[str] = frozenset(),
               destroy_disks: bool = True, record: dict[str, Any] | None = None,
               vbds: dict[str, dict[str, Any]] | None = None) -> None:
    """Power off, delete the VM and then its disks (except ``keep_vdis``).

    A VM that is already gone is not an error. Cached images are never attached to an
    instance VM (instances get clones), so every attached VDI is the instance's own, except
    volumes (``osvol`` VBDs), which are never deleted. ``record`` and ``vbds`` (its VBD
    records): what the caller has just read, not read again.
    """
    if record is None:
        try:
            record = session.call("VM.get_record", vm_ref)
        except exc.BackendError as error:
            if is_handle_invalid(error, "VM"):
                return
            raise
    vdis = []
    try:
        if record["power_state"].lower() != "halted":
            hard_shutdown(session, vm_ref)
        if destroy_disks:
            if vbds is None:
                vbds = vbd_records(session, vm_ref)
            vdis = [vbd["VDI"] for vbd in vbds.values()
                    if vbd["VDI"] != NULL_REF and vbd["VDI"] not in keep_vdis
                    and OSVOL not in (vbd.get("other_config") or {})]
            suspend_vdi = record.get("suspend_VDI")
            if suspend_vdi and suspend_vdi != NULL_REF:
                vdis.append(suspend_vdi)
        session.call("VM.destroy", vm_ref)
    except exc.BackendError as error:
        if is_handle_invalid(error, "VM"):
            return  # gone meanwhile (the caller's record was older)
        raise
    for vdi in vdis:
        try:
            session.call("VDI.destroy", vdi)
        except exc.BackendError as error:
            if not is_handle_invalid(error):
                raise


def destroy_vdi(session: XenAPISession, vdi_ref: str) -> None:
    """Delete a VDI unless it is a cached image; a VDI already gone is fine."""
    try:
        other = session.call("VDI.get_other_config", vdi_ref)
        if other.get("nova_disk_type") == "image-cache":
            return
        session.call("VDI.destroy", vdi_ref)
    except exc.BackendError as error:
        if not is_handle_invalid(error):
            raise


def destroy_vbd(session: XenAPISession, vbd_ref: str) -> None:
    """Unplug (if attached) and delete a VBD; one already gone is fine."""
    try:
        if session.call("VBD.get_currently_attached", vbd_ref):
            try:
                session.call("VBD.unplug", vbd_ref)
            except exc.BackendError as error:
                if error.code != "DEVICE_ALREADY_DETACHED":
                    raise
        session.call("VBD.destroy", vbd_ref)
    except exc.BackendError as error:
        if not is_handle_invalid(error):
            raise


# -- xenstore -------------------------------------------------------------------------------------

def write_xenstore(session: XenAPISession, vm_ref: str, path: str, value: str | None,
                   running: bool) -> None:
    """Set (or with ``value`` None, delete) a key in the VM's xenstore_data and, when it
    runs, in the live xenstore of its domain."""
    session.call("VM.remove_from_xenstore_data", vm_ref, path)
    if value is not None:
        session.call("VM.add_to_xenstore_data", vm_ref, path, value)
    if not running:
        return
    domid = session.call("VM.get_domid", vm_ref)
    if domid in ("-1", ""):
        return
    args = {"dom_id": str(domid), "path": path}
    if value is None:
        session.call("host.call_plugin", session.host_ref, "xenstore.py", "delete_record",
                     args)
    else:
        session.call("host.call_plugin", session.host_ref, "xenstore.py", "write_record",
                     {**args, "value": value})
