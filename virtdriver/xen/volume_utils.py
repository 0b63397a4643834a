"""Volume helpers: Cinder iSCSI connection data as an SR identity (pure), and thin wrappers
over the XAPI calls that connect a target (SR, PBD), find a LUN's VDI and attach it (VBD).

A Cinder ``iscsi`` volume is a LUN of a target. As Nova's XenAPI driver did, each target is
one SR of type ``iscsi`` (the storage manager's LUN-per-VDI driver), shared by every LUN of
that target, with a uuid derived from ``host/port/IQN`` (Nova's namespace, so SRs Nova made
are found again); each LUN is a VDI of it, found by ``sm_config['LUNid']``. A volume's VBD
carries ``other_config['osvol'] = 'True'``: that is how everything else tells a volume from
the instance's own disks (never deleted, never snapshotted or copied). Nothing here decides
policy: :mod:`virtdriver.xen.volumes` does.
"""

from __future__ import annotations

import dataclasses
import re
import time
import uuid
from collections.abc import Callable
from typing import Any

from oslo_log import log as logging

from virtdriver.common import exceptions as exc
from virtdriver.common.volumes import ConnectionInfo
from virtdriver.xen import vm_utils
from virtdriver.xen.session import XenAPISession, is_handle_invalid

LOG = logging.getLogger(__name__)

#: Nova's XenAPI SR namespace: ``uuid5(SR_NAMESPACE, "host/port/iqn")`` is a target's SR.
SR_NAMESPACE = uuid.UUID("3cca4135-a809-5bb3-af62-275fbfe87178")
SR_TYPE = "iscsi"
DEFAULT_PORT = 3260
#: The VBD other_config key that marks a volume (Nova's).
OSVOL = vm_utils.OSVOL
#: VBD.unplug failures a retry may cure (the guest still holds the device, or is busy).
RETRYABLE_UNPLUG = frozenset({"DEVICE_DETACH_REJECTED", "INTERNAL_ERROR",
                              "VM_MISSING_PV_DRIVERS"})
#: Userdevice numbers a VM has (XAPI allows 0-15 for a PV or HVM guest's disks).
MAX_USERDEVICE = 15


@dataclasses.dataclass(frozen=True)
class IscsiVolume:
    """One Cinder iSCSI volume: its target (the SR) and LUN (the VDI). CHAP secrets are
    kept out of ``repr``."""

    volume_id: str | None
    host: str
    port: int
    iqn: str
    lun: int | None = None
    chap_user: str | None = None
    chap_password: str | None = dataclasses.field(default=None, repr=False)

    @property
    def sr_uuid(self) -> str:
        """The uuid of the target's SR (the same in every pool)."""
        return str(uuid.uuid5(SR_NAMESPACE, f"{self.host}/{self.port}/{self.iqn}"))

    def device_config(self) -> dict[str, str]:
        """The PBD's ``device_config`` (secret: never log it)."""
        config = {"target": self.host, "port": str(self.port), "targetIQN": self.iqn}
        if self.chap_user:
            config.update(chapuser=self.chap_user, chappassword=self.chap_password or "")
        return config


def _portal(value: Any) -> tuple[str, int]:
    text = str(value).strip()
    if text.startswith("["):  # [IPv6]:port
        host, _, rest = text[1:].partition("]")
        port_text = rest.removeprefix(":")
    elif text.count(":") == 1:
        host, _, port_text = text.partition(":")
    else:  # a bare host, or a bare IPv6 address
        host, port_text = text, ""
    try:
        port = int(port_text) if port_text else DEFAULT_PORT
    except ValueError:
        port = -1
    if not host or not 0 < port < 65536:
        raise exc.InvalidInput("connection_info.data.target_portal", value,
                               "must be host[:port]")
    return host, port


def parse_iscsi(info: ConnectionInfo) -> IscsiVolume:
    """The target and LUN of Cinder's iSCSI ``connection_info`` (no server call).

    ``target_portal`` and ``target_iqn`` are checked by the contract already; this checks
    their form, ``target_lun`` (an integer when given) and CHAP (``auth_method`` CHAP needs
    ``auth_username`` and ``auth_password``); each problem is InvalidInput naming the key.
    """
    host, port = _portal(info.get("target_portal"))
    lun = info.get("target_lun")
    if lun in (None, ""):
        number = None
    else:
        try:
            number = int(lun)
        except (TypeError, ValueError):
            number = -1
        if isinstance(lun, bool) or number < 0:
            raise exc.InvalidInput("connection_info.data.target_lun", lun,
                                   "must be a LUN number (0 or more)")
    method = info.get("auth_method")
    user = password = None
    if method:
        if str(method).upper() != "CHAP":
            raise exc.InvalidInput("connection_info.data.auth_method", method,
                                   "only CHAP is supported")
        user, password = info.get("auth_username"), info.get("auth_password")
        if not user:
            raise exc.InvalidInput("connection_info.data.auth_username", user,
                                   "is required with auth_method CHAP")
        if not password:
            raise exc.InvalidInput("connection_info.data.auth_password", "<hidden>",
                                   "is required with auth_method CHAP")
    return IscsiVolume(volume_id=info.volume_id, host=host, port=port,
                       iqn=str(info.get("target_iqn")), lun=number, chap_user=user,
                       chap_password=password)


def device_number(mountpoint: str | None) -> str:
    """XAPI's userdevice for a mount point: ``/dev/xvdb`` (``sdb``, ``vdb``, ``hdb``) -> "1",
    a bare number as is; InvalidInput otherwise."""
    text = str(mountpoint or "").removeprefix("/dev/")
    match = re.fullmatch(r"(?:[hs]d|x?vd)([a-p])", text)
    if match:
        return str(ord(match.group(1)) - ord("a"))
    if text.isdigit() and int(text) <= MAX_USERDEVICE:
        return str(int(text))
    raise exc.InvalidInput("mountpoint", mountpoint,
                           "must be /dev/xvd[a-p] (or sd/vd/hd) or a device number 0-15")


# -- SRs -------------------------------------------------------------------------------------

def find_sr(session: XenAPISession, sr_uuid: str) -> str | None:
    """The SR with ``sr_uuid``, or None."""
    try:
        return session.call("SR.get_by_uuid", sr_uuid)
    except exc.BackendError as error:
        if error.code == "UUID_INVALID":
            return None
        raise


def introduce_sr(session: XenAPISession, volume: IscsiVolume, host_ref: str,
                 label: str) -> str:
    """Introduce the target's SR, give ``host_ref`` a plugged PBD for it, scan it.

    The SR is marked shared (an iSCSI target is reachable from every host), so a PBD per
    host can be plugged when the VM moves within the pool. The CHAP secret goes only into
    the PBD's device_config, never into the SR's sm_config. A failure forgets the SR again.
    """
    sr_ref = session.call("SR.introduce", volume.sr_uuid, label,
                          f"iSCSI target {volume.iqn}", SR_TYPE, "", True, {})
    try:
        plug_pbd(session, sr_ref, host_ref, volume)
        session.call_lasting("SR.scan", sr_ref)
    except BaseException:
        forget_sr(session, sr_ref)
        raise
    return sr_ref


def plug_pbd(session: XenAPISession, sr_ref: str, host_ref: str, volume: IscsiVolume) -> bool:
    """Make sure ``host_ref`` has the SR attached; True when this call plugged a PBD (the
    caller may undo that with :func:`unplug_pbd`)."""
    pbds = session.call("PBD.get_all_records_where",
                        f'field "SR" = {vm_utils.where_literal(sr_ref)} and '
                        f'field "host" = {vm_utils.where_literal(host_ref)}')
    for pbd, record in pbds.items():
        if record.get("currently_attached"):
            return False
        session.call_lasting("PBD.plug", pbd)
        return True
    pbd = session.call("PBD.create", {"host": host_ref, "SR": sr_ref,
                                      "device_config": volume.device_config(),
                                      "other_config": {}})
    try:
        session.call_lasting("PBD.plug", pbd)
    except BaseException:
        session.call("PBD.destroy", pbd)
        raise
    return True


def unplug_pbd(session: XenAPISession, sr_ref: str, host_ref: str) -> None:
    """Detach the SR from ``host_ref`` and drop that PBD (the SR stays for other hosts)."""
    pbds = session.call("PBD.get_all_records_where",
                        f'field "SR" = {vm_utils.where_literal(sr_ref)} and '
                        f'field "host" = {vm_utils.where_literal(host_ref)}')
    for pbd in pbds:
        session.call_lasting("PBD.unplug", pbd)
        session.call("PBD.destroy", pbd)


def forget_sr(session: XenAPISession, sr_ref: str) -> None:
    """Unplug every PBD of the SR and forget it (records only: the LUNs stay on the
    target). An SR already gone is fine."""
    try:
        pbds = session.call("SR.get_PBDs", sr_ref)
    except exc.BackendError as error:
        if is_handle_invalid(error, "SR"):
            return
        raise
    for pbd in pbds:
        session.call_lasting("PBD.unplug", pbd)
    session.call_lasting("SR.forget", sr_ref)


def sr_in_use(session: XenAPISession, sr_ref: str) -> bool:
    """Whether any VBD (of any VM) still points at a VDI of the SR."""
    vdis = session.call("VDI.get_all_records_where",
                        f'field "SR" = {vm_utils.where_literal(sr_ref)}')
    return any(record.get("VBDs") for record in vdis.values())


def forget_sr_if_unused(session: XenAPISession, sr_ref: str) -> bool:
    """Forget the SR when no VBD uses it any more; True when it was forgotten."""
    try:
        if sr_in_use(session, sr_ref):
            return False
    except exc.BackendError as error:
        if is_handle_invalid(error, "SR"):
            return False
        raise
    forget_sr(session, sr_ref)
    return True


# -- the LUN's VDI -----------------------------------------------------------------------------

def _lun_vdi(session: XenAPISession, sr_ref: str, lun: int | None) -> str | None:
    records = session.call("VDI.get_all_records_where",
                           f'field "SR" = {vm_utils.where_literal(sr_ref)}')
    if lun is None:  # Cinder left the LUN out: the target's only (first) LUN
        ordered = sorted(records.items(),
                         key=lambda item: int((item[1].get("sm_config") or {})
                                              .get("LUNid", "0") or 0))
        return ordered[0][0] if ordered else None
    for ref, record in records.items():
        if (record.get("sm_config") or {}).get("LUNid") == str(lun):
            return ref
    return None


def find_lun_vdi(session: XenAPISession, sr_ref: str, volume: IscsiVolume,
                 rescan: bool = True) -> str:
    """The VDI of the volume's LUN: looked up, else found by one more ``SR.scan`` (a LUN
    exported after the SR was scanned); VolumeNotFound when the target has no such LUN."""
    vdi = _lun_vdi(session, sr_ref, volume.lun)
    if vdi is None and rescan:
        session.call_lasting("SR.scan", sr_ref)
        vdi = _lun_vdi(session, sr_ref, volume.lun)
    if vdi is None:
        raise exc.VolumeNotFound(volume.volume_id,
                                 f"LUN {volume.lun if volume.lun is not None else '(any)'} "
                                 f"of target {volume.iqn} not found")
    return vdi


# -- VBDs ------------------------------------------------------------------------------------

def create_vbd(session: XenAPISession, vm_ref: str, vdi_ref: str, userdevice: str,
               bootable: bool = False) -> str:
    """A VBD for a volume, marked ``osvol`` in the same ``VBD.create`` call."""
    record = vm_utils.vbd_record(vm_ref, vdi_ref, userdevice, bootable=bootable)
    record["other_config"] = {OSVOL: "True"}
    return session.call("VBD.create", record)


def is_volume(vbd_record: dict[str, Any]) -> bool:
    """Whether a VBD record is a volume's."""
    return OSVOL in (vbd_record.get("other_config") or {})


def volume_vbds(session: XenAPISession, vm_ref: str,
                records: dict[str, dict[str, Any]] | None = None) -> dict[str, dict[str, Any]]:
    """The VM's volume VBDs (one call, none when its VBD ``records`` are given): VBD ref
    -> record."""
    if records is None:
        records = vm_utils.vbd_records(session, vm_ref)
    return {ref: rec for ref, rec in records.items() if is_volume(rec)}


def unplug_vbd(session: XenAPISession, vbd_ref: str, retries: int,
               volume_id: str | None = None,
               sleep: Callable[[float], None] = time.sleep) -> None:
    """Hot-unplug a VBD: DEVICE_ALREADY_DETACHED is done; the guest's refusals
    (:data:`RETRYABLE_UNPLUG`) are retried ``retries`` times, 0.5 s apart growing to 2 s;
    anything else, or the last refusal, is VolumeError."""
    delay = 0.5
    for attempt in range(retries + 1):
        try:
            session.call_lasting("VBD.unplug", vbd_ref)
            return
        except exc.BackendError as error:
            if error.code == "DEVICE_ALREADY_DETACHED":
                return
            if error.code not in RETRYABLE_UNPLUG or attempt == retries:
                raise exc.VolumeError(volume_id, f"the VBD could not be unplugged: "
                                                 f"{error.code}") from error
            LOG.info("VBD.unplug refused (%s); retry %d of %d", error.code, attempt + 1,
                     retries)
        sleep(delay)
        delay = min(2.0, delay * 2)
