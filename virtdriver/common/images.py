"""The image store: where images come from and where snapshots go.

:class:`ImageStore` is shaped like Nova's image API (``show``, ``download``, ``create``,
``upload``), so a compute service can hand its own Glance client in. :class:`LocalImageStore`
keeps images in a directory: one data file and one JSON metadata file each, both written
atomically, so an interrupted upload leaves no partial image.
"""

from __future__ import annotations

import abc
import hashlib
import json
import os
import tempfile
import uuid
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from virtdriver.common.exceptions import ImageError, ImageNotFound, InvalidInput
from virtdriver.common.model import ImageMeta

CHUNK_SIZE = 1024 * 1024


class ImageStore(abc.ABC):
    """An image service as backends see it (Nova's ``nova.image.glance.API`` shape)."""

    @abc.abstractmethod
    def show(self, context: Any, image_id: str) -> ImageMeta:
        """The image's metadata; ImageNotFound if there is none."""

    @abc.abstractmethod
    def download(self, context: Any, image_id: str) -> Iterable[bytes]:
        """The image's data as byte chunks; ImageNotFound if there is none."""

    @abc.abstractmethod
    def create(self, context: Any, meta: dict[str, Any]) -> ImageMeta:
        """Register a queued image (no data yet) and return it with its new id."""

    @abc.abstractmethod
    def upload(self, context: Any, image_id: str, data: Iterable[bytes],
               meta: dict[str, Any] | None = None) -> ImageMeta:
        """Store the data (byte chunks) of a created image, updating its metadata."""


class LocalImageStore(ImageStore):
    """Images in a local directory: ``<id>.img`` holds the data, ``<id>.json`` the metadata."""

    def __init__(self, directory: str | os.PathLike[str]) -> None:
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)

    def __repr__(self) -> str:
        return f"LocalImageStore({str(self.directory)!r})"

    # -- reading ------------------------------------------------------------------------------

    def show(self, context: Any, image_id: str) -> ImageMeta:
        """The image's metadata; ImageNotFound if there is none, ImageError if its metadata
        file cannot be read as an image.

        Keys ImageMeta has no field for are kept, as properties (:meth:`ImageMeta.from_dict`),
        so a record another tool or version wrote stays readable.
        """
        path = self._meta_path(image_id)
        try:
            record = json.loads(path.read_text())
        except FileNotFoundError:
            raise ImageNotFound(image_id) from None
        except (OSError, ValueError) as error:  # unreadable, not UTF-8, not JSON
            raise ImageError(f"image {image_id}: cannot read {path.name}: {error}") from error
        try:
            return ImageMeta.from_dict(record)
        except InvalidInput as error:
            raise ImageError(f"image {image_id}: {path.name} is not a usable image "
                             f"record: {error}") from error

    def download(self, context: Any, image_id: str) -> Iterator[bytes]:
        """The image's data in chunks of 1 MiB; ImageNotFound if there is none."""
        image = self.show(context, image_id)
        if image.status != "active":
            raise ImageError(f"image {image_id} has no data (status {image.status})")
        try:
            handle = open(self._data_path(image_id), "rb")  # noqa: SIM115 - closed by the generator
        except FileNotFoundError:
            raise ImageNotFound(image_id) from None
        return _read_chunks(handle)

    def list(self) -> list[ImageMeta]:
        """Every image in the store, sorted by name."""
        images = [self.show(None, path.stem) for path in self.directory.glob("*.json")]
        return sorted(images, key=lambda image: (image.name, image.id))

    def find(self, name_or_id: str) -> ImageMeta:
        """The image with this id, or else the one with this name."""
        try:
            return self.show(None, str(uuid.UUID(name_or_id)))
        except (ValueError, ImageNotFound):
            pass
        matches = [image for image in self.list() if image.name == name_or_id]
        if not matches:
            raise ImageNotFound(name_or_id)
        return matches[0]

    # -- writing ------------------------------------------------------------------------------

    def create(self, context: Any, meta: dict[str, Any]) -> ImageMeta:
        """Register a queued image (no data yet) and return it with its new id."""
        record = {"disk_format": "vmdk", **meta, "id": meta.get("id") or str(uuid.uuid4()),
                  "status": "queued", "size": 0, "checksum": ""}
        image = ImageMeta.from_dict(record)
        if self._meta_path(image.id).exists():
            raise InvalidInput("image.id", image.id, "is already in the store")
        self._write_meta(image)
        return image

    def upload(self, context: Any, image_id: str, data: Iterable[bytes],
               meta: dict[str, Any] | None = None) -> ImageMeta:
        """Store the data of a created image atomically; metadata changes apply with it."""
        image = self.show(context, image_id)
        size, checksum = self._write_data(image_id, data)
        record = {**image.to_dict(), **(meta or {}), "id": image_id, "status": "active",
                  "size": size, "checksum": checksum}
        updated = ImageMeta.from_dict(record)
        self._write_meta(updated)
        return updated

    def import_file(self, path: str | os.PathLike[str], **meta: Any) -> ImageMeta:
        """Copy a local file in as a new active image; ``meta`` sets name, disk_format..."""
        source = Path(path)
        if not source.is_file():
            raise InvalidInput("path", str(source), "is not a readable file")
        meta.setdefault("name", source.stem)
        image = self.create(None, meta)
        try:
            with open(source, "rb") as handle:
                return self.upload(None, image.id, _read_chunks(handle))
        except BaseException:
            self.delete(image.id)
            raise

    def delete(self, image_id: str) -> None:
        """Remove an image's data and metadata; ImageNotFound if there is none."""
        meta_path = self._meta_path(image_id)
        if not meta_path.exists():
            raise ImageNotFound(image_id)
        self._data_path(image_id).unlink(missing_ok=True)
        meta_path.unlink(missing_ok=True)

    # -- files --------------------------------------------------------------------------------

    def _data_path(self, image_id: str) -> Path:
        return self.directory / f"{_checked_id(image_id)}.img"

    def _meta_path(self, image_id: str) -> Path:
        return self.directory / f"{_checked_id(image_id)}.json"

    def _write_meta(self, image: ImageMeta) -> None:
        payload = json.dumps(image.to_dict(), indent=2, sort_keys=True).encode()
        self._write_atomically(self._meta_path(image.id), [payload])

    def _write_data(self, image_id: str, data: Iterable[bytes]) -> tuple[int, str]:
        digest = hashlib.sha256()
        size = 0

        def counted() -> Iterator[bytes]:
            nonlocal size
            for chunk in data:
                digest.update(chunk)
                size += len(chunk)
                yield chunk

        self._write_atomically(self._data_path(image_id), counted())
        return size, digest.hexdigest()

    def _write_atomically(self, target: Path, chunks: Iterable[bytes]) -> None:
        """Write to a temp file beside ``target`` and rename it over; never leave a part."""
        fd, temp_name = tempfile.mkstemp(dir=self.directory, prefix=f".{target.name}.",
                                         suffix=".part")
        try:
            with os.fdopen(fd, "wb") as handle:
                for chunk in chunks:
                    handle.write(chunk)
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(temp_name, target)
        except BaseException:
            os.unlink(temp_name)
            raise


def _checked_id(image_id: str) -> str:
    try:
        return str(uuid.UUID(str(image_id)))
    except ValueError:
        raise ImageNotFound(str(image_id)) from None


def _read_chunks(handle: Any) -> Iterator[bytes]:
    with handle:
        while chunk := handle.read(CHUNK_SIZE):
            yield chunk
