"""Hostile input (issue 14 rows 6-8, 10-14) refused by the models and validators, with the
field named: a MAC with a trailing newline, names with control characters, injected files
that are not (absolute path, contents) pairs, image records with keys ImageMeta lacks."""

import json
import uuid

import pytest

import virtdriver
from virtdriver.common.exceptions import ImageError, InvalidInput
from virtdriver.common.model import VIF, Flavor, ImageMeta, Instance, stuck_rebooting
from virtdriver.common.validation import (
    has_control_character,
    require_admin_password,
    require_guest_path,
    require_injected_files,
    require_mac,
)

UUID = "6f2c1e2a-0a4b-4c55-9d8e-2b1e7a3c9f10"
CONTROL = ["\n", "\r", "\0", "\t", "\x1b", "\x7f", "\x85", "\u2028", "\u2029"]


def instance(**kwargs):
    return Instance(**{"uuid": UUID, "name": "instance-0001",
                       "flavor": Flavor(vcpus=1, memory_mb=256, root_gb=1), **kwargs})


# -- row 6: a regex validates the whole value ------------------------------------------------

@pytest.mark.parametrize("mac", ["fa:16:3e:00:00:0a\n", "fa:16:3e:00:00:0a\r\n",
                                 "\nfa:16:3e:00:00:0a", "fa:16:3e:00:00:0a ",
                                 "fa:16:3e:00:00:0a\0"])
def test_a_mac_with_anything_around_it_is_refused(mac):
    with pytest.raises(InvalidInput) as caught:
        VIF(id=str(uuid.uuid4()), address=mac, network="VM Network")
    assert caught.value.field == "vif.address" and caught.value.value == mac
    with pytest.raises(InvalidInput):
        VIF.from_nova({"id": str(uuid.uuid4()), "address": mac, "network": "VM Network"})


def test_a_good_mac_is_kept_in_lower_case():
    assert require_mac("vif.address", "FA:16:3E:00:00:0A") == "fa:16:3e:00:00:0a"


# -- rows 7-8: control characters in what is written to the server ----------------------------

@pytest.mark.parametrize("char", CONTROL)
@pytest.mark.parametrize("field", ["name", "hostname", "project_id"])
def test_control_characters_in_written_text_are_refused(field, char):
    value = f"x{char}uuid:{uuid.uuid4()}"
    with pytest.raises(InvalidInput) as caught:
        instance(**{field: value})
    assert caught.value.field == f"instance.{field}" and caught.value.value == value
    assert "control characters" in str(caught.value)
    # the message stays one line whatever the value holds (the CLI prints it as is)
    assert "\n" not in str(caught.value) and "\0" not in str(caught.value)


@pytest.mark.parametrize("char", ["\n", "\0"])
def test_control_characters_are_refused_in_nova_like_objects_too(char):
    nova_like = {"uuid": UUID, "name": f"x{char}y",
                 "flavor": {"vcpus": 1, "memory_mb": 256, "root_gb": 1}}
    with pytest.raises(InvalidInput, match="instance.name"):
        virtdriver.common.model.validate_instance(nova_like)
    with pytest.raises(InvalidInput, match="instance.name"):
        virtdriver.common.model.validate_instance_identity(nova_like)


def test_metadata_keys_are_names_and_values_may_hold_anything():
    kept = instance(metadata={"motd": "line one\nline two\0", "role": "db"})
    assert kept.metadata["motd"] == "line one\nline two\0"  # JSON-encoded wherever it goes
    for key in ["a\nb", "a\0", "", 7]:
        with pytest.raises(InvalidInput, match="instance.metadata key"):
            instance(metadata={key: "v"})


def test_text_without_control_characters_is_kept():
    kept = instance(name="web 1: ünïcode", hostname="web-1", project_id="p1")
    assert (kept.name, kept.hostname, kept.project_id) == ("web 1: ünïcode", "web-1", "p1")
    assert not has_control_character("web 1: ünïcode")


def test_stuck_rebooting_leaves_out_entries_with_a_bad_identity():
    good = instance(task_state="rebooting")
    bad = {"uuid": "../x", "name": "x", "task_state": "rebooting"}
    assert stuck_rebooting([good, bad], timeout=0) == [good]


# -- rows 10-13: injected files ------------------------------------------------------------------

@pytest.mark.parametrize(("files", "field"), [
    ([("../../etc/passwd", b"x")], "injected_files.path"),
    ([("etc/motd", b"x")], "injected_files.path"),
    ([("/etc/../../passwd", b"x")], "injected_files.path"),
    ([("/etc/motd\0.bak", b"x")], "injected_files.path"),
    ([("/etc/motd\nx", b"x")], "injected_files.path"),
    ([("/", b"x")], "injected_files.path"),
    ([(b"/etc/motd", b"x")], "injected_files.path"),
    ([("/etc/motd", 7)], "injected_files.contents"),
    ([("/etc/motd", None)], "injected_files.contents"),
    ([("/etc/motd",)], "injected_files"),
    ([("/a", b"x", "extra")], "injected_files"),
    (["/etc/motd"], "injected_files"),
    ([b"/etc/motd"], "injected_files"),
    ([7], "injected_files"),
    ("/etc/motd", "injected_files"),
    ({"/etc/motd": b"x"}, "injected_files"),
    (7, "injected_files"),
])
def test_malformed_injected_files_are_invalid_input(files, field):
    with pytest.raises(InvalidInput) as caught:
        require_injected_files(files)
    assert caught.value.field == field


def test_good_injected_files_come_back_as_bytes():
    assert require_injected_files(None) == []
    assert require_injected_files((("/etc/motd", "hé"), ("/a/b", b"\0\n"))) == [
        ("/etc/motd", "hé".encode()), ("/a/b", b"\0\n")]
    assert require_guest_path("path", "/etc/./motd") == "/etc/./motd"


def test_admin_password_is_a_string_and_never_shown():
    assert require_admin_password("admin_password", "") is None
    assert require_admin_password("admin_password", "s3cret\n") == "s3cret\n"
    with pytest.raises(InvalidInput) as caught:
        require_admin_password("admin_password", b"s3cret")
    assert "s3cret" not in str(caught.value)


# -- row 14: image records with keys ImageMeta has no field for ----------------------------------

def test_image_record_keys_without_a_field_are_kept_as_properties():
    image = ImageMeta.from_dict({"id": UUID, "disk_format": "vmdk", "min_disk": 1,
                                 "visibility": "private", "properties": {"min_disk": 2}})
    assert image.properties == {"min_disk": 2, "visibility": "private"}
    assert ImageMeta.from_dict(image.to_dict()) == image  # stable through a rewrite


def test_local_store_shows_a_record_with_unknown_keys(tmp_path):
    store = virtdriver.LocalImageStore(tmp_path)
    created = store.create(None, {"name": "x", "disk_format": "raw", "os_hidden": False})
    path = tmp_path / f"{created.id}.json"
    record = json.loads(path.read_text())
    record["owner"] = "someone"  # another tool (or version) wrote a key of its own
    path.write_text(json.dumps(record))
    shown = store.show(None, created.id)
    assert shown.properties == {"os_hidden": False, "owner": "someone"}
    assert [image.id for image in store.list()] == [created.id]


@pytest.mark.parametrize("payload", [
    lambda record: b"[1, 2]",  # JSON, not a record
    lambda record: b"{not json",
    lambda record: b"\xff\xfe not UTF-8",
    lambda record: json.dumps({**record, "id": "nope"}).encode(),
    lambda record: json.dumps({**record, "disk_format": "floppy"}).encode(),
    lambda record: json.dumps({**record, "size": -1}).encode(),
])
def test_local_store_unusable_record_is_image_error(tmp_path, payload):
    store = virtdriver.LocalImageStore(tmp_path)
    created = store.create(None, {"name": "x", "disk_format": "raw"})
    (tmp_path / f"{created.id}.json").write_bytes(payload(created.to_dict()))
    with pytest.raises(ImageError, match=created.id):
        store.show(None, created.id)
