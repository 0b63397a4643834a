"""LocalImageStore: atomic writes, metadata, missing images."""

import uuid

import pytest

from virtdriver.common.exceptions import ImageError, ImageNotFound, InvalidInput
from virtdriver.common.images import LocalImageStore


@pytest.fixture
def store(tmp_path):
    return LocalImageStore(tmp_path / "images")


def test_import_file_then_show_and_download(store, tmp_path):
    source = tmp_path / "cirros.vmdk"
    payload = bytes(range(256)) * 9000  # a little over 2 MiB: several chunks
    source.write_bytes(payload)
    image = store.import_file(source, disk_format="vmdk", name="cirros",
                              properties={"vmware_disktype": "preallocated"})
    assert image.status == "active" and image.size == len(payload)
    shown = store.show(None, image.id)
    assert shown.name == "cirros" and shown.properties == {"vmware_disktype": "preallocated"}
    assert b"".join(store.download(None, image.id)) == payload
    assert store.find("cirros").id == image.id
    assert [i.id for i in store.list()] == [image.id]


def test_create_then_upload_like_a_snapshot(store):
    queued = store.create(None, {"name": "snap", "disk_format": "vhd"})
    assert queued.status == "queued"
    with pytest.raises(ImageError, match="no data"):
        store.download(None, queued.id)
    active = store.upload(None, queued.id, iter([b"ab", b"cd"]), meta={"properties": {"k": "v"}})
    assert (active.status, active.size, active.properties) == ("active", 4, {"k": "v"})
    assert b"".join(store.download(None, queued.id)) == b"abcd"


def test_interrupted_upload_leaves_no_partial_image(store):
    queued = store.create(None, {"name": "snap"})

    def chunks():
        yield b"x" * 1000
        raise ConnectionResetError("upload interrupted")

    with pytest.raises(ConnectionResetError):
        store.upload(None, queued.id, chunks())
    assert store.show(None, queued.id).status == "queued"
    leftovers = [p.name for p in store.directory.iterdir()]
    assert leftovers == [f"{queued.id}.json"], leftovers


def test_missing_image_is_image_not_found(store):
    missing = str(uuid.uuid4())
    for call in (lambda: store.show(None, missing), lambda: store.download(None, missing),
                 lambda: store.delete(missing), lambda: store.find("nope"),
                 lambda: store.show(None, "../../etc/passwd")):
        with pytest.raises(ImageNotFound):
            call()


def test_delete_removes_both_files(store, tmp_path):
    source = tmp_path / "disk.raw"
    source.write_bytes(b"data")
    image = store.import_file(source, disk_format="raw")
    store.delete(image.id)
    assert list(store.directory.iterdir()) == []


def test_import_rejects_missing_file_and_bad_format(store, tmp_path):
    with pytest.raises(InvalidInput, match="path"):
        store.import_file(tmp_path / "absent.vmdk")
    source = tmp_path / "disk.bin"
    source.write_bytes(b"x")
    with pytest.raises(InvalidInput, match="image.disk_format"):
        store.import_file(source, disk_format="floppy")
    assert list(store.directory.iterdir()) == []
