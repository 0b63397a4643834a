"""The vCenter side of the host: datacenter lookup, cache and temp folders, image-cache aging."""

from __future__ import annotations

import time
from collections.abc import Iterable
from typing import Any

from oslo_log import log as logging

from virtdriver.common import exceptions
from virtdriver.common.locks import named_lock
from virtdriver.common.model import field_of
from virtdriver.vmware import ds_util, vm_util
from virtdriver.vmware.backend import VMwareBackend
from virtdriver.vmware.ds_util import Datastore

LOG = logging.getLogger(__name__)


def get_datacenter_ref_and_name(backend: VMwareBackend, ds_ref: Any) -> tuple[Any, str]:
    """The datacenter holding ``ds_ref`` (a datastore of this backend's cluster)."""
    inv = backend.inventory
    if ds_ref is not None and all(ds_ref._moId != r._moId for r in inv.datastores):
        raise exceptions.InvalidInput("ds_ref", getattr(ds_ref, "_moId", ds_ref),
                                      "is not a datastore of this backend's cluster")
    return inv.dc_ref, inv.dc_name


def _named_datastore(backend: VMwareBackend, ds_name: str, ds_ref: Any) -> Datastore:
    if ds_ref is None:
        for ref, props in backend.datastore_props().items():
            if props.get("summary.name") == ds_name:
                return backend.datastore(ref, props)
        raise exceptions.InvalidInput("ds_name", ds_name, "is not a datastore of the cluster")
    return backend.datastore(ds_ref)


def check_cache_folder(backend: VMwareBackend, ds_name: str, ds_ref: Any) -> None:
    """Create the image-cache folder on the datastore if it is missing."""
    ds = _named_datastore(backend, ds_name, ds_ref)
    ds_util.make_directory(backend.session, ds, ds.path(backend.image_cache.cache_folder))


def check_temp_folder(backend: VMwareBackend, ds_name: str, ds_ref: Any) -> None:
    """Create the temporary upload folder on the datastore if it is missing."""
    ds = _named_datastore(backend, ds_name, ds_ref)
    ds_util.make_directory(backend.session, ds, ds.path(backend.image_cache.temp_folder))


def cache_image(backend: VMwareBackend, context: Any, image_id: str) -> bool:
    """Put the image into the datastore image cache a spawn would use (the cluster's usable
    datastore with the most free space); False when it was cached there already."""
    if backend.image_store is None:
        raise exceptions.InvalidInput("image_store", None, "is required to cache images")
    image = backend.image_store.show(context, image_id)
    candidates = {ref._moId: (ref, props) for ref, props in backend.datastore_props().items()}
    ref, props = ds_util.choose_datastore(candidates, backend.conf.vmware.datastore_regex,
                                          int(field_of(image, "size", 0) or 0))
    ds = backend.datastore(ref, props)
    cache = backend.image_cache
    target = cache.iso_path(ds, image_id) if field_of(image, "disk_format") == "iso" \
        else cache.disk_path(ds, image_id)
    if cache.http.exists(ds.dc_name, ds.name, target.rel_path):
        return False
    cache.ensure(context, image, ds, vm_util.adapter_type(image))
    LOG.info("image %s cached on datastore %s", image_id, ds.name)
    return True


def manage_image_cache(backend: VMwareBackend, instances: Iterable[Any]) -> None:
    """Age out cached images no instance uses: mark them, delete after the minimum age.

    A marker folder ``ts-<epoch>`` in the image's cache folder records when it was first
    seen unused; it goes when the image is used again.
    """
    conf = backend.conf
    if not conf.remove_unused_base_images:
        return
    session, cache = backend.session, backend.image_cache
    used = {str(field_of(i, "image_ref")) for i in instances if field_of(i, "image_ref")}
    max_age = conf.remove_unused_original_minimum_age_seconds
    now = int(time.time())
    for ref, props in backend.datastore_props().items():
        ds = backend.datastore(ref, props)
        for image_id in cache.cached_images(ds):
            folder = cache.folder(ds, image_id)
            markers = [n for n in ds_util.list_folder(session, ds, folder)
                       if n.startswith("ts-")]
            if image_id in used:
                for marker in markers:
                    ds_util.delete_path(session, ds, folder.join(marker))
            elif not markers:
                ds_util.make_directory(session, ds, folder.join(f"ts-{now}"))
            elif now - max(int(m[3:]) for m in markers if m[3:].isdigit()) >= max_age:
                with named_lock(f"vmware-image-{ds.name}-{image_id}"):
                    ds_util.delete_path(session, ds, folder)
                    cache.forget(ds, image_id)
                LOG.info("cached image %s removed from datastore %s (unused for %d s)",
                         image_id, ds.name, max_age)
