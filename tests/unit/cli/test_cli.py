"""The virtdriver command, run for real in a subprocess: exit codes, JSON, error lines."""

import json
import subprocess
import sys
import uuid

import pytest

from virtdriver.cli.state import StateFile
from virtdriver.common.exceptions import InstanceExists, InstanceNotFound


def virtdriver(cwd, *args):
    return subprocess.run([sys.executable, "-m", "virtdriver.cli", *args], cwd=cwd,
                          capture_output=True, text=True, timeout=60)


@pytest.fixture
def workdir(tmp_path):
    (tmp_path / "disk.vmdk").write_bytes(b"\x01" * 70000)
    return tmp_path


def test_image_import_list_show_delete_in_json(workdir):
    done = virtdriver(workdir, "--format", "json", "image", "import", "disk.vmdk",
                      "--name", "cirros", "--property", "vmware_disktype=preallocated")
    assert done.returncode == 0, done.stderr
    imported = json.loads(done.stdout)
    assert imported["size"] == 70000
    assert imported["properties"] == {"vmware_disktype": "preallocated"}
    listed = json.loads(virtdriver(workdir, "--format", "json", "image", "list").stdout)
    assert [(i["name"], i["id"]) for i in listed] == [("cirros", imported["id"])]
    shown = json.loads(virtdriver(workdir, "--format", "json", "image", "show", "cirros").stdout)
    assert shown["checksum"] == imported["checksum"]
    assert virtdriver(workdir, "image", "delete", imported["id"]).returncode == 0
    assert json.loads(virtdriver(workdir, "--format", "json", "image", "list").stdout) == []


def test_missing_image_is_one_line_and_exit_2(workdir):
    done = virtdriver(workdir, "image", "show", "nope")
    assert done.returncode == 2
    assert done.stderr.strip() == "virtdriver: error: image nope could not be found"
    assert "Traceback" not in done.stderr


def test_unknown_backend_names_the_installed_ones(workdir):
    done = virtdriver(workdir, "--backend", "hyperv", "list")
    assert done.returncode == 2
    assert "backend='hyperv'" in done.stderr and "vmware, xen" in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1


def test_bad_flavor_value_is_refused_with_the_field(workdir):
    virtdriver(workdir, "image", "import", "disk.vmdk", "--name", "cirros")
    done = virtdriver(workdir, "--backend", "xen", "spawn", "web1", "--vcpus", "0",
                      "--memory", "256", "--disk", "1", "--image", "cirros")
    assert done.returncode == 2
    assert "flavor.vcpus=0" in done.stderr and "Traceback" not in done.stderr


def test_unknown_instance_is_a_clear_error(workdir):
    done = virtdriver(workdir, "--backend", "xen", "show", "ghost")
    assert done.returncode == 1
    assert "no instance named 'ghost'" in done.stderr


def test_usage_errors_exit_2(workdir):
    done = virtdriver(workdir, "spawn", "web1")
    assert done.returncode == 2 and "required" in done.stderr


def test_state_file_is_written_atomically_and_refuses_duplicates(tmp_path):
    state = StateFile(tmp_path / "instances.json")
    record = {"uuid": str(uuid.uuid4()), "flavor": {"vcpus": 1, "memory_mb": 64, "root_gb": 1}}
    state.add("xen", "web1", record)
    with pytest.raises(InstanceExists):
        state.add("xen", "web1", record)
    state.update("xen", "web1", old_flavor={"vcpus": 2}, migration=None)
    assert state.get("xen", "web1")["old_flavor"] == {"vcpus": 2}
    state.update("xen", "web1", old_flavor=None)
    assert "old_flavor" not in state.get("xen", "web1")
    state.remove("xen", "web1")
    with pytest.raises(InstanceNotFound):
        state.get("xen", "web1")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["instances.json"]
