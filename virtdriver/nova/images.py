"""Nova's image API (``nova.image.glance.API``) as the backends' :class:`ImageStore`.

Backends read images and write snapshots through the ImageStore interface; in Nova that
must be Glance, reached the way Nova's own drivers reach it, with the request context
(and so the user's token) of the operation.
"""

from __future__ import annotations

import tempfile
from collections.abc import Iterable, Iterator
from typing import Any

from nova import exception as nova_exc
from nova.image import glance

from virtdriver.common import exceptions as vd_exc
from virtdriver.common.images import CHUNK_SIZE, ImageStore
from virtdriver.common.model import ImageMeta
from virtdriver.nova.convert import image_meta_from_glance

_META_KEYS = ("name", "disk_format", "container_format", "properties", "min_disk", "min_ram")


class ChunkReader:
    """A file-like view of an iterable of byte chunks.

    Glance's client streams an iterable; some callers (and Nova's Glance test fixture)
    call ``read()``; this object offers both without holding the whole image.
    """

    def __init__(self, chunks: Iterable[bytes]) -> None:
        self._chunks = iter(chunks)
        self._buffer = b""

    def __iter__(self) -> Iterator[bytes]:
        if self._buffer:
            yield self._buffer
            self._buffer = b""
        yield from self._chunks

    def read(self, size: int = -1) -> bytes:
        """Up to ``size`` bytes (all the rest when ``size`` < 0)."""
        while size < 0 or len(self._buffer) < size:
            chunk = next(self._chunks, None)
            if chunk is None:
                break
            self._buffer += chunk
        if size < 0:
            data, self._buffer = self._buffer, b""
        else:
            data, self._buffer = self._buffer[:size], self._buffer[size:]
        return data


class GlanceImageStore(ImageStore):
    """ImageStore over ``nova.image.glance.API()``; Nova's errors become ours."""

    def __init__(self, api: Any = None) -> None:
        self.api = api or glance.API()

    def show(self, context: Any, image_id: str) -> ImageMeta:
        """The image's metadata; ImageNotFound if Glance has none."""
        try:
            return image_meta_from_glance(self.api.get(context, image_id))
        except nova_exc.ImageNotFound as error:
            raise vd_exc.ImageNotFound(image_id) from error

    def download(self, context: Any, image_id: str) -> Iterable[bytes]:
        """The image's bytes in chunks, streamed from Glance.

        Glance returns an iterator of chunks; a service that only writes into a file
        object (Nova's test fixture does) is read through a spooled temporary file.
        """
        try:
            chunks = self.api.download(context, image_id)
            if chunks is not None:
                return chunks
            spool = tempfile.SpooledTemporaryFile(max_size=64 * CHUNK_SIZE)  # noqa: SIM115
            self.api.download(context, image_id, data=spool)
        except nova_exc.ImageNotFound as error:
            raise vd_exc.ImageNotFound(image_id) from error
        spool.seek(0)
        return _drain(spool)

    def create(self, context: Any, meta: dict[str, Any]) -> ImageMeta:
        """Register a queued image in Glance."""
        record = self.api.create(context, {k: v for k, v in meta.items() if k in _META_KEYS})
        return image_meta_from_glance(record)

    def upload(self, context: Any, image_id: str, data: Iterable[bytes],
               meta: dict[str, Any] | None = None) -> ImageMeta:
        """Stream the data to the image Nova created, with the backend's metadata."""
        update = {k: v for k, v in (meta or {}).items() if k in _META_KEYS}
        reader = ChunkReader(data)
        try:
            record = self.api.update(context, image_id, update, data=reader,
                                     purge_props=False)
        except nova_exc.ImageNotFound as error:
            raise vd_exc.ImageNotFound(image_id) from error
        # Glance reads everything; a service that did not still lets the backend's stream
        # run to its end, so whatever it holds open (an HTTP read, a temp disk) is released.
        for _ in reader:
            pass
        return image_meta_from_glance(record)


def _drain(handle: Any) -> Iterator[bytes]:
    with handle:
        while chunk := handle.read(CHUNK_SIZE):
            yield chunk
