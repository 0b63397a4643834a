"""The host: the image cache (base VDIs on the SR) and the places disks are written to.

On XAPI the image cache is VDIs on the SR and uploads stream straight into VDIs, so the
"cache folder" and "temp folder" of the contract are both the SR.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from typing import Any

from oslo_log import log as logging

from virtdriver.common import exceptions as exc
from virtdriver.common.model import field_of
from virtdriver.xen import disks
from virtdriver.xen.backend import XenBackend
from virtdriver.xen.session import is_handle_invalid

LOG = logging.getLogger(__name__)


def cache_image(backend: XenBackend, context: Any, image_id: str) -> bool:
    """Import the image as the cached base VDI a spawn would clone, on the instance SR;
    False when it was cached there already."""
    if backend.image_store is None:
        raise exc.InvalidInput("image_store", None, "is required to cache images")
    sr_ref = backend.sr_ref()
    if disks.find_cached_image(backend.session, sr_ref,
                               backend.conf.image_cache_subdirectory_name, image_id):
        return False
    backend.cached_image(context, sr_ref, backend.image_store.show(context, image_id))
    LOG.info("image %s cached on the instance SR", image_id)
    return True


def manage_image_cache(backend: XenBackend, instances: Iterable[Any]) -> None:
    """Delete cached base VDIs no given instance uses, once older than
    ``remove_unused_original_minimum_age_seconds`` (if ``remove_unused_base_images``)."""
    if not backend.conf.remove_unused_base_images:
        return
    in_use = {str(field_of(i, "image_ref", "") or "") for i in instances}
    max_age = float(backend.conf.remove_unused_original_minimum_age_seconds)
    records = backend.session.call("VDI.get_all_records_where", 'field "is_a_snapshot" = "false"')
    for ref, record in records.items():
        other = record.get("other_config") or {}
        if other.get("nova_disk_type") != disks.IMAGE_CACHE_TYPE:
            continue
        if other.get("image-id") in in_use:
            backend.session.call("VDI.remove_from_other_config", ref, "last-used")
            backend.session.call("VDI.add_to_other_config", ref, "last-used", str(int(time.time())))
            continue
        if time.time() - float(other.get("last-used", "0") or 0) < max_age:
            continue
        try:
            backend.session.call("VDI.destroy", ref)
            LOG.info("removed unused cached image %s", other.get("image-id"))
        except exc.BackendError as error:
            # a base still parenting clones cannot go yet; the next pass retries
            LOG.info("cached image %s kept: %s", other.get("image-id"), error.code)


def _check_sr(backend: XenBackend, sr_ref: Any) -> None:
    """Check that the SR exists (the configured one when ``sr_ref`` is None)."""
    if sr_ref is None:
        disks.find_sr(backend.session, backend.xen.sr_matching_filter)
        return
    try:
        backend.session.call("SR.get_uuid", sr_ref)
    except exc.BackendError as error:
        if is_handle_invalid(error, "SR"):
            raise exc.InvalidInput("ds_ref", sr_ref, "is not an SR of this pool") from error
        raise


def check_cache_folder(backend: XenBackend, ds_name: str, ds_ref: Any) -> None:
    """The image cache is VDIs on the SR, not a folder: check the SR exists."""
    _check_sr(backend, ds_ref)


def check_temp_folder(backend: XenBackend, ds_name: str, ds_ref: Any) -> None:
    """Uploads stream straight into VDIs, so there is no temp folder: check the SR."""
    _check_sr(backend, ds_ref)
