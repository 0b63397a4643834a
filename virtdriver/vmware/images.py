"""Images on datastores: the per-datastore image cache, and the config drive's file name.

Cache layout: ``[ds] <cache folder>/<image id>/<image id>.vmdk`` (descriptor) and
``<image id>-flat.vmdk`` (the image's bytes). An image is uploaded once per datastore: by
datastore HTTP PUT into ``[ds] <temp_folder>/<random>/`` and then moved into place, so a
half-uploaded image is never seen in the cache; concurrent spawns of one image wait on a
named lock and upload it once. Linked clones hang off a sized copy of the cached disk,
``<image id>.<root_gb>.vmdk``, made once per size.
"""

from __future__ import annotations

import tempfile
import threading
import uuid as uuid_module
from typing import Any

from virtdriver.common import exceptions
from virtdriver.common.locks import named_lock
from virtdriver.common.model import field_of, image_property
from virtdriver.vmware import ds_util
from virtdriver.vmware.ds_util import Datastore, DatastoreHTTP, DatastorePath
from virtdriver.vmware.session import VMwareSession

SECTOR = 512
#: file name of the config-drive ISO in the VM's folder
CONFIG_DRIVE_NAME = "configdrive.iso"


def flat_descriptor(flat_name: str, size_bytes: int, adapter: str) -> bytes:
    """A monolithicFlat VMDK descriptor for a flat extent of ``size_bytes``."""
    sectors = max(1, (size_bytes + SECTOR - 1) // SECTOR)
    adapter = "ide" if adapter == "ide" else ("buslogic" if adapter == "busLogic" else "lsilogic")
    cylinders = max(1, sectors // (255 * 63))
    return (f"# Disk DescriptorFile\nversion=1\nCID=fffffffe\nparentCID=ffffffff\n"
            f"createType=\"vmfs\"\n\n# Extent description\nRW {sectors} VMFS \"{flat_name}\"\n\n"
            f"# The Disk Data Base\n#DDB\n\nddb.adapterType = \"{adapter}\"\n"
            f"ddb.geometry.cylinders = \"{cylinders}\"\nddb.geometry.heads = \"255\"\n"
            f"ddb.geometry.sectors = \"63\"\nddb.virtualHWVersion = \"13\"\n").encode()


class ImageCache:
    """The datastore image cache of one backend (one session, one image store)."""

    def __init__(self, session: VMwareSession, image_store: Any, cache_folder: str,
                 temp_folder: str) -> None:
        self.session = session
        self.http = DatastoreHTTP(session)
        self.image_store = image_store
        self.cache_folder = cache_folder
        self.temp_folder = temp_folder
        # cache paths this process made or saw, so later spawns (and those that waited on
        # the lock) need not look
        self._made: set[str] = set()
        self._lock = threading.Lock()

    def folder(self, ds: Datastore, image_id: str) -> DatastorePath:
        """``[ds] <cache>/<image id>``."""
        return ds.path(self.cache_folder, image_id)

    def disk_path(self, ds: Datastore, image_id: str, size_gb: int | None = None) -> DatastorePath:
        """The cached disk, or its sized copy for linked clones."""
        name = f"{image_id}.vmdk" if size_gb is None else f"{image_id}.{size_gb}.vmdk"
        return self.folder(ds, image_id).join(name)

    def iso_path(self, ds: Datastore, image_id: str) -> DatastorePath:
        """The cached ISO of an ISO image."""
        return self.folder(ds, image_id).join(f"{image_id}.iso")

    # -- fetching ------------------------------------------------------------------------------

    def ensure(self, context: Any, image: Any, ds: Datastore, adapter: str) -> DatastorePath:
        """Make sure the image is cached on ``ds``; return the cached disk (or ISO) path."""
        image_id = field_of(image, "id")
        is_iso = field_of(image, "disk_format") == "iso"
        target = self.iso_path(ds, image_id) if is_iso else self.disk_path(ds, image_id)
        if self.http.exists(ds.dc_name, ds.name, target.rel_path):
            return target
        with named_lock(f"vmware-image-{ds.name}-{image_id}"):
            if self._made_here(target):
                return target  # another spawn of this process uploaded it while we waited
            self._upload(context, image, ds, adapter, is_iso)
            self._remember(target)
        return target

    def known(self, path: DatastorePath) -> bool:
        """Whether this process made, or has seen, ``path`` in the cache (no server call)."""
        return self._made_here(path)

    def seen(self, path: DatastorePath) -> None:
        """Note that ``path`` is in the cache, so later spawns need not look."""
        self._remember(path)

    def _made_here(self, path: DatastorePath) -> bool:
        with self._lock:
            return str(path) in self._made

    def _remember(self, path: DatastorePath) -> None:
        with self._lock:
            self._made.add(str(path))

    def forget(self, ds: Datastore, image_id: str) -> None:
        """Drop what this process knows about an image's cache folder (it was deleted)."""
        prefix = str(self.folder(ds, image_id))
        with self._lock:
            self._made = {p for p in self._made if not p.startswith(prefix)}

    def _upload(self, context: Any, image: Any, ds: Datastore, adapter: str,
                is_iso: bool) -> None:
        # The files go into a fresh temp folder that is then moved into place whole, so
        # the cache never shows a half-uploaded image and nothing is left to delete.
        image_id = field_of(image, "id")
        temp = ds.path(self.temp_folder, f"{uuid_module.uuid4()}")
        try:
            size = self._put_data(context, image, ds, temp, is_iso)
            if not is_iso:
                descriptor = flat_descriptor(f"{image_id}-flat.vmdk", size, adapter)
                self.http.put(ds.dc_name, ds.name, temp.join(f"{image_id}.vmdk").rel_path,
                              [descriptor], len(descriptor))
            ds_util.make_directory(self.session, ds, ds.path(self.cache_folder))
            try:
                ds_util.move_path(self.session, ds, temp, self.folder(ds, image_id))
            except exceptions.BackendError as exc:
                if exc.code != "FileAlreadyExists":
                    raise
                # another compute sharing the datastore cached it first
                ds_util.delete_path(self.session, ds, temp)
        except BaseException:
            ds_util.delete_path(self.session, ds, temp)
            raise

    def _put_data(self, context: Any, image: Any, ds: Datastore, temp: DatastorePath,
                  is_iso: bool) -> int:
        image_id = field_of(image, "id")
        name = f"{image_id}.iso" if is_iso else f"{image_id}-flat.vmdk"
        chunks = self.image_store.download(context, image_id)
        size = field_of(image, "size", 0) or 0
        if size:
            self.http.put(ds.dc_name, ds.name, temp.join(name).rel_path, chunks, size)
            return size
        # Content-Length must be known up front: spool an image of unknown size.
        with tempfile.TemporaryFile() as spooled:
            for chunk in chunks:
                spooled.write(chunk)
            size = spooled.tell()
            spooled.seek(0)
            self.http.put(ds.dc_name, ds.name, temp.join(name).rel_path,
                          iter(lambda: spooled.read(1024 * 1024), b""), size)
        return size

    def sized_copy(self, ds: Datastore, image_id: str, root_gb: int, image_size: int,
                   known_absent: bool = False) -> DatastorePath:
        """The cached disk copied and grown to ``root_gb`` (linked clones' parent), made once.

        ``known_absent``: the caller just looked and found none, so do not look again.
        """
        sized = self.disk_path(ds, image_id, root_gb)
        if not known_absent and self.http.exists(ds.dc_name, ds.name, sized.rel_path):
            return sized
        with named_lock(f"vmware-image-{ds.name}-{image_id}-{root_gb}"):
            if self._made_here(sized):
                return sized
            ds_util.copy_disk(self.session, ds, self.disk_path(ds, image_id), sized)
            try:
                if root_gb * ds_util.GiB > image_size:
                    ds_util.extend_disk(self.session, ds, sized, root_gb * ds_util.GiB // 1024)
            except Exception:
                ds_util.delete_disk(self.session, ds, sized)
                raise
            self._remember(sized)
        return sized

    def cached_images(self, ds: Datastore) -> list[str]:
        """Image ids cached on ``ds``."""
        return ds_util.list_folder(self.session, ds, ds.path(self.cache_folder))


def check_image(image: Any) -> None:
    """Refuse images the VMware backend cannot boot, before any server call."""
    if image is None:
        raise exceptions.InvalidInput("image", None, "is required (boot from volume is "
                                      "not supported by this backend)")
    if field_of(image, "disk_format") not in ("vmdk", "iso", "raw"):
        raise exceptions.InvalidInput("image.disk_format", field_of(image, "disk_format"),
                                      "must be vmdk, raw or iso for VMware")
    # The cache stores an image's bytes as a flat extent under a descriptor of our own:
    # right for raw and flat (preallocated/thin) vmdk data, wrong for sparse formats.
    disk_type = image_property(image, "vmware_disktype", "preallocated")
    if disk_type not in ("preallocated", "thin"):
        raise exceptions.InvalidInput("image.properties['vmware_disktype']", disk_type,
                                      "must be preallocated or thin (flat data); sparse and "
                                      "streamOptimized images are not supported")
