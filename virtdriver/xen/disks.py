"""Disks: the SR for instance disks, the per-SR image cache, and VDI bytes over HTTP.

An image is imported once per SR into a *base* VDI (``other_config['image-id']``,
``nova_disk_type`` ``image-cache``) and every instance gets a copy-on-write ``VDI.clone``
of it, resized to the flavor's root disk. VDI contents move through XAPI's own HTTP
handlers (``PUT /import_raw_vdi``, ``GET /export_raw_vdi``), never through dom0 plugins.
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from oslo_log import log as logging

from virtdriver.common import exceptions as exc
from virtdriver.common.locks import named_lock
from virtdriver.common.model import field_of
from virtdriver.xen import vm_utils
from virtdriver.xen.session import XenAPISession, is_handle_invalid

LOG = logging.getLogger(__name__)

#: Image disk formats we can import, and the format name XAPI's import handler takes.
IMPORT_FORMATS = {"raw": "raw", "vhd": "vhd", "iso": "raw"}
VHD_FOOTER_SIZE = 512
IMAGE_CACHE_TYPE = "image-cache"


def parse_sr_filter(expression: str) -> tuple[str, str, str]:
    """Parse ``sr_matching_filter``: ``default-sr:true`` or ``other-config:<key>=<value>``."""
    kind, _, rest = (expression or "").partition(":")
    if kind == "default-sr" and rest == "true":
        return ("default", "", "")
    if kind == "other-config" and "=" in rest:
        key, _, value = rest.partition("=")
        return ("other-config", key, value)
    raise exc.InvalidInput("xenserver.sr_matching_filter", expression,
                           "must be 'default-sr:true' or 'other-config:<key>=<value>'")


def find_sr(session: XenAPISession, expression: str) -> str:
    """The SR that holds instance disks, chosen by ``sr_matching_filter``."""
    kind, key, value = parse_sr_filter(expression)
    if kind == "default":
        pools = session.call("pool.get_all")
        sr = session.call("pool.get_default_SR", pools[0]) if pools else vm_utils.NULL_REF
        if sr == vm_utils.NULL_REF:
            raise exc.BackendError("the pool has no default SR", "NO_DEFAULT_SR")
        return sr
    for ref, record in session.call("SR.get_all_records").items():
        if (record.get("other_config") or {}).get(key) == value:
            return ref
    raise exc.BackendError(f"no SR has other-config {key}={value}", "NO_MATCHING_SR")


def sr_for_host(session: XenAPISession, preferred_sr: str, host_ref: str) -> str:
    """``preferred_sr`` if ``host_ref`` can reach it, else a disk SR plugged on that host
    (its local storage): a VM can only start where its disks' SRs are attached."""
    records = session.call("SR.get_all_records")
    pbds = session.call("PBD.get_all_records_where",
                        f'field "host" = {vm_utils.where_literal(host_ref)} and '
                        f'field "currently_attached" = "true"')
    reachable = {pbd["SR"] for pbd in pbds.values()}
    if preferred_sr in reachable:
        return preferred_sr
    for ref, record in sorted(records.items()):
        if ref in reachable and record.get("content_type") != "iso":
            return ref
    raise exc.BackendError("no disk SR is attached to the destination host", "NO_SR_ON_HOST")


# -- VDIs ------------------------------------------------------------------------------------------

def create_vdi(session: XenAPISession, sr_ref: str, name_label: str, size: int,
               disk_type: str, other_config: dict[str, str] | None = None,
               read_only: bool = False) -> str:
    """Create an empty VDI of ``size`` bytes."""
    record = vm_utils.vdi_record(sr_ref, name_label, size, disk_type, other_config or {},
                                 read_only)
    return session.call("VDI.create", record)


def upload(session: XenAPISession, vdi_ref: str, chunks: Iterable[bytes], size: int,
           fmt: str = "raw") -> None:
    """Write ``size`` bytes of ``chunks`` into a VDI."""
    session.put_vdi(vdi_ref, chunks, size, fmt)


def download(session: XenAPISession, vdi_ref: str, fmt: str = "vhd") -> Iterator[bytes]:
    """The contents of a VDI, in chunks: a dynamic VHD (only the allocated blocks) unless
    ``fmt`` is ``raw``."""
    return session.get_vdi(vdi_ref, fmt)


def vhd_virtual_size(header: bytes) -> int:
    """The disk size a VHD describes, read from its footer copy (the first 512 bytes of a
    dynamic VHD, the last 512 of a fixed one)."""
    if len(header) < VHD_FOOTER_SIZE or not header.startswith(b"conectix"):
        raise exc.ImageError("image data is not a VHD (no 'conectix' footer)")
    return int.from_bytes(header[48:56], "big")


def spooled(chunks: Iterable[bytes]) -> tuple[Any, int]:
    """Buffer chunks of unknown total size (to disk past 64 MiB); returns (file, size)."""
    spool = tempfile.SpooledTemporaryFile(max_size=64 * vm_utils.MiB)  # noqa: SIM115
    size = 0
    for chunk in chunks:
        spool.write(chunk)
        size += len(chunk)
    spool.seek(0)
    return spool, size


def file_chunks(handle: Any) -> Iterator[bytes]:
    """A file's contents in chunks of 1 MiB."""
    while chunk := handle.read(vm_utils.MiB):
        yield chunk


# -- the image cache -------------------------------------------------------------------------------

def cache_label(cache_dir: str, image_id: str) -> str:
    """The name_label of an image's cached base VDI."""
    return f"{cache_dir}/{image_id}"


def find_cached_image(session: XenAPISession, sr_ref: str, cache_dir: str,
                      image_id: str) -> tuple[str, int] | None:
    """The cached base VDI of ``image_id`` on ``sr_ref`` and its virtual size, if any (one
    call)."""
    expr = (f'field "SR" = {vm_utils.where_literal(sr_ref)} and field "name__label" = '
            f'{vm_utils.where_literal(cache_label(cache_dir, image_id))}')
    for ref, record in session.call("VDI.get_all_records_where", expr).items():
        if (record.get("other_config") or {}).get("image-id") == image_id:
            return ref, int(record["virtual_size"])
    return None


def cached_image(session: XenAPISession, image_store: Any, context: Any, sr_ref: str,
                 image: Any, cache_dir: str) -> tuple[str, int]:
    """The base VDI of ``image`` on ``sr_ref`` and its virtual size: found, or imported once
    (under a lock)."""
    image_id = str(field_of(image, "id"))
    with named_lock(f"xen-image-{sr_ref}-{image_id}"):
        found = find_cached_image(session, sr_ref, cache_dir, image_id)
        if found:
            LOG.debug("image %s is cached on SR %s", image_id, sr_ref[-8:])
            return found
        return import_image(session, image_store, context, sr_ref, image, cache_dir)


def import_image(session: XenAPISession, image_store: Any, context: Any, sr_ref: str,
                 image: Any, cache_dir: str) -> tuple[str, int]:
    """Create the cached base VDI of ``image`` and upload the image's bytes into it.

    Returns the VDI and its virtual size. A VHD image is sized by its footer (its file is
    smaller than the disk it describes), so it is spooled to read that first.
    """
    image_id = str(field_of(image, "id"))
    fmt = IMPORT_FORMATS[field_of(image, "disk_format")]
    size = int(field_of(image, "size", 0) or 0)
    data: Any = image_store.download(context, image_id)
    spool = None
    if not size or fmt == "vhd":
        spool, size = spooled(data)
        data = file_chunks(spool)
    try:
        virtual_size = size
        if fmt == "vhd":
            virtual_size = vhd_virtual_size(spool.read(VHD_FOOTER_SIZE))
            spool.seek(0)
        vdi = create_vdi(session, sr_ref, cache_label(cache_dir, image_id), virtual_size,
                         IMAGE_CACHE_TYPE, {"image-id": image_id,
                                            "last-used": str(int(time.time()))},
                         read_only=False)
        try:
            upload(session, vdi, data, size, fmt)
        except BaseException:
            session.call("VDI.destroy", vdi)
            raise
    finally:
        if spool is not None:
            spool.close()
    return vdi, virtual_size


def clone_for_instance(session: XenAPISession, base_vdi: str, instance: Any,
                       disk_type: str, size: int | None, base_size: int) -> str:
    """A copy-on-write clone of ``base_vdi`` (``base_size`` bytes) for ``instance``, grown
    to ``size`` bytes."""
    if size and size < base_size:
        raise exc.InvalidInput("flavor.root_gb", size // vm_utils.GiB,
                               f"is smaller than the image's disk ({base_size} bytes)")
    # Clone and resize are metadata operations on a copy-on-write SR: a plain call (one
    # round trip) costs less than Async + event.from + task.destroy.
    vdi = session.call("VDI.clone", base_vdi, {})
    try:
        session.call("VDI.set_name_label", vdi, f"{field_of(instance, 'name')} {disk_type}")
        other = {"nova_disk_type": disk_type,
                 "nova_instance_uuid": str(field_of(instance, "uuid"))}
        session.call("VDI.set_other_config", vdi, other)
        if size and size > base_size:
            session.call("VDI.resize", vdi, str(size))
    except BaseException:
        session.call("VDI.destroy", vdi)
        raise
    return vdi


def instance_vdis(session: XenAPISession, vm_ref: str,
                  records: dict[str, dict[str, Any]] | None = None
                  ) -> dict[str, tuple[str, str]]:
    """The VM's own disks: userdevice -> (VBD ref, VDI ref), from its VBD ``records`` (read
    in one call when not given). Volumes (``osvol`` VBDs) are left out: they belong to the
    volume service."""
    if records is None:
        records = vm_utils.vbd_records(session, vm_ref)
    disks = {}
    for vbd, record in records.items():
        if vm_utils.OSVOL in (record.get("other_config") or {}):
            continue
        if record.get("VDI") and record["VDI"] != vm_utils.NULL_REF:
            disks[record["userdevice"]] = (vbd, record["VDI"])
    return disks


# -- snapshots and VHD chains ---------------------------------------------------------------------

def pending_coalesce(records: dict[str, dict[str, Any]], vdi_ref: str) -> list[str]:
    """Hidden base copies in ``vdi_ref``'s VHD chain that the garbage collector can still
    merge (exactly one child); empty once the chain is stable."""
    by_uuid = {rec.get("uuid"): ref for ref, rec in records.items()}
    children: dict[str, int] = {}
    for rec in records.values():
        parent = (rec.get("sm_config") or {}).get("vhd-parent")
        if parent:
            children[parent] = children.get(parent, 0) + 1
    pending = []
    seen: set[str] = set()
    record = records.get(vdi_ref) or {}
    while True:
        parent_uuid = (record.get("sm_config") or {}).get("vhd-parent")
        if not parent_uuid or parent_uuid in seen or parent_uuid not in by_uuid:
            return pending
        seen.add(parent_uuid)
        record = records[by_uuid[parent_uuid]]
        if not record.get("managed", True) and children.get(parent_uuid, 0) == 1:
            pending.append(by_uuid[parent_uuid])


def wait_for_coalesce(session: XenAPISession, sr_ref: str, vdi_ref: str, timeout: float,
                      sleep: Callable[[float], None] = time.sleep) -> None:
    """Wait until no base copy in the VDI's VHD chain is left to coalesce.

    One bulk read first: a chain with nothing to coalesce (the usual case) needs no scan.
    Otherwise an SR scan runs the storage manager's garbage collector; XAPI sends no event
    when it finishes, so this is the one wait that polls (scan, one bulk read), with
    backoff and bounded by ``timeout``.
    """
    deadline = time.monotonic() + timeout
    delay = 0.05
    expr = f'field "SR" = {vm_utils.where_literal(sr_ref)}'
    scanned = False
    while True:
        if not pending_coalesce(session.call("VDI.get_all_records_where", expr), vdi_ref):
            return
        if time.monotonic() >= deadline:
            raise exc.BackendError(f"VHD coalesce did not finish in {timeout:g}s",
                                   "COALESCE_TIMEOUT")
        if scanned:
            sleep(delay)
            delay = min(1.0, delay * 2)
        session.call_lasting("SR.scan", sr_ref)
        scanned = True


def destroy_snapshots_of_chain(session: XenAPISession, vdi_ref: str) -> list[str]:
    """Delete snapshot VDIs of ``vdi_ref`` left by an interrupted snapshot; returns them."""
    removed = []
    try:
        snapshots = session.call("VDI.get_snapshots", vdi_ref)
    except exc.BackendError as error:
        if is_handle_invalid(error):
            return removed
        raise
    for snap in snapshots:
        other = session.call("VDI.get_other_config", snap)
        if other.get("image-id"):
            continue  # an uploaded image kept on purpose
        session.call("VDI.destroy", snap)
        removed.append(snap)
    return removed
