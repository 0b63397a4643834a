"""The toy backend's conformance fixture: what a third party writes for its own backend."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

import virtdriver
from tests.unit.testing.toy import ToyConformanceBackend
from virtdriver.testing.plugin import *  # noqa: F403 - the default fixture and the skip report


@pytest.fixture(scope="module")
def conformance_backend(tmp_path_factory: pytest.TempPathFactory
                        ) -> Iterator[ToyConformanceBackend]:
    """A toy server with a raw image to spawn."""
    root = tmp_path_factory.mktemp("toy")
    store = virtdriver.LocalImageStore(root / "images")
    (root / "disk.raw").write_bytes(b"toy image")
    provider = ToyConformanceBackend(store, store.import_file(root / "disk.raw",
                                                              disk_format="raw", name="toy"))
    yield provider
    provider.close()
