"""Hostile names through the virtdriver command (issue 14 rows 7-8): a name with a newline or
NUL is one error line and exit 2, before any server call.

The configuration points both backends at a closed port on loopback: a server call would be
ConnectionFailed (exit 1), so exit 2 naming ``instance.name`` and a stats file with no call
show the name was refused first.
"""

import json
import socket
import subprocess
import sys

import pytest


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def workdir(tmp_path):
    port = closed_port()
    (tmp_path / "virtdriver.conf").write_text(
        f"[vmware]\nhost_ip = 127.0.0.1\nhost_port = {port}\nhost_username = u\n"
        f"host_password = p\ninsecure = true\napi_retry_count = 0\n"
        f"[xenserver]\nconnection_url = http://127.0.0.1:{port}\n"
        f"connection_password = p\napi_retry_count = 0\n")
    (tmp_path / "disk.img").write_bytes(b"\x01" * 4096)
    for name, disk_format in (("tiny-vmdk", "vmdk"), ("tiny-raw", "raw")):
        done = virtdriver(tmp_path, "image", "import", "disk.img", "--name", name,
                          "--disk-format", disk_format)
        assert done.returncode == 0, done.stderr
    return tmp_path


def virtdriver(cwd, *args):
    return subprocess.run([sys.executable, "-m", "virtdriver.cli", "--config-file",
                           str(cwd / "virtdriver.conf"), *args], cwd=cwd,
                          capture_output=True, text=True, timeout=60)


@pytest.mark.parametrize(("backend", "image"), [("vmware", "tiny-vmdk"), ("xen", "tiny-raw")])
@pytest.mark.parametrize("name", ["x\nuuid:6f2c1e2a-0a4b-4c55-9d8e-2b1e7a3c9f10",
                                  "x\x1b[2Jy"])  # argv cannot hold a NUL
def test_spawn_with_a_control_character_in_the_name_is_one_line_and_exit_2(
        workdir, backend, image, name):
    stats = workdir / "stats.json"
    done = virtdriver(workdir, "--backend", backend, "--stats-file", str(stats), "spawn",
                      name, "--vcpus", "1", "--memory", "128", "--disk", "1",
                      "--image", image)
    assert done.returncode == 2, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("virtdriver: error: invalid instance.name="), \
        done.stderr
    assert "control characters" in lines[0]
    assert json.loads(stats.read_text())["total_calls"] == 0
    state = workdir / "virtdriver-state" / "instances.json"  # no instance recorded
    assert not state.exists() or not json.loads(state.read_text()).get(backend)


def test_the_same_spawn_with_a_good_name_does_reach_the_server(workdir):
    """The check above can fail: a good name gets as far as the (closed) server, exit 1."""
    done = virtdriver(workdir, "--backend", "xen", "spawn", "web1", "--vcpus", "1",
                      "--memory", "128", "--disk", "1", "--image", "tiny-raw")
    assert done.returncode == 1, done.stderr
    assert "instance.name" not in done.stderr
