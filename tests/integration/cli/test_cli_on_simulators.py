"""The virtdriver command against both embedded simulators, run for real in subprocesses."""

import json
import os
import re
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from virtdriver.vmware.simulator import build_launcher

pytestmark = pytest.mark.integration
REPO = Path(__file__).resolve().parents[3]
NETWORKS = {"vmware": "VM Network", "xen": "Pool-wide network associated with eth0"}
IMAGES = {"vmware": "tiny-vmdk", "xen": "tiny-raw"}


def run(workdir, *args, config=None):
    config_args = ["--config-file", str(config)] if config else []
    return subprocess.run([sys.executable, "-m", "virtdriver.cli", *config_args, *args],
                          cwd=workdir, capture_output=True, text=True, timeout=120)


def run_json(workdir, *args):
    done = run(workdir, "--format", "json", *args)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    """Both simulators started by 'virtdriver sim start', an image of each format imported."""
    directory = tmp_path_factory.mktemp("cli")
    data = os.urandom(512 * 1024)
    for name, fmt in (("tiny-vmdk", "vmdk"), ("tiny-raw", "raw")):
        (directory / f"{name}.img").write_bytes(data)
        run_json(directory, "image", "import", f"{name}.img", "--name", name,
                 "--disk-format", fmt)
    started = run(directory, "sim", "start", "--vcsim", str(build_launcher()))
    assert started.returncode == 0, started.stderr
    yield directory
    stopped = run_json(directory, "sim", "stop")
    assert stopped == {"stopped": ["vmware", "xen"]}
    assert not (directory / "virtdriver-sims").exists()


def test_sim_status_reports_both_running(workdir):
    status = run_json(workdir, "sim", "status")
    assert {row["backend"] for row in status} == {"vmware", "xen"}
    assert all(row["running"] for row in status)
    assert (workdir / "virtdriver.conf").stat().st_mode & 0o077 == 0  # it holds passwords


@pytest.mark.parametrize("backend", ["vmware", "xen"])
def test_spawn_show_stop_start_destroy_in_json(workdir, backend):
    spawned = run_json(workdir, "--backend", backend, "spawn", "web1", "--vcpus", "1",
                       "--memory", "128", "--disk", "1", "--image", IMAGES[backend],
                       "--network", NETWORKS[backend])
    assert spawned["state"] == "RUNNING"
    shown = run_json(workdir, "--backend", backend, "show", "web1")
    assert shown["uuid"] == spawned["uuid"] and len(shown["macs"]) == 1
    assert run_json(workdir, "--backend", backend, "stop", "web1")["state"] == "SHUTDOWN"
    assert run_json(workdir, "--backend", backend, "start", "web1")["state"] == "RUNNING"
    listed = run_json(workdir, "--backend", backend, "list")
    assert [(row["name"], row["uuid"]) for row in listed] == [("web1", spawned["uuid"])]
    assert run_json(workdir, "--backend", backend, "destroy", "web1")["destroyed"] is True
    assert run_json(workdir, "--backend", backend, "list") == []


def test_admin_password_from_stdin_reaches_spawn(workdir):
    """The password comes on stdin ('--admin-password-file -'), never on the command line."""
    done = subprocess.run([sys.executable, "-m", "virtdriver.cli", "--format", "json",
                           "--backend", "xen", "spawn", "pw1", "--vcpus", "1", "--memory",
                           "128", "--disk", "1", "--image", IMAGES["xen"], "--network",
                           NETWORKS["xen"], "--admin-password-file", "-"],
                          cwd=workdir, input="Adm1n-pass\n", capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["state"] == "RUNNING"
    assert run_json(workdir, "--backend", "xen", "destroy", "pw1")["destroyed"] is True


def test_stats_file_counts_server_calls(workdir):
    stats = workdir / "stats.json"
    run_json(workdir, "--backend", "xen", "--stats-file", str(stats), "list")
    calls = json.loads(stats.read_text())
    assert calls["total_calls"] == sum(calls["calls"].values()) > 0


@pytest.mark.parametrize("backend", ["vmware", "xen"])
def test_unknown_network_is_one_clear_line(workdir, backend):
    done = run(workdir, "--backend", backend, "spawn", "web2", "--vcpus", "1", "--memory",
               "128", "--disk", "1", "--image", IMAGES[backend], "--network", "no-such-net")
    assert done.returncode != 0
    assert done.stderr.strip().startswith("virtdriver: error: invalid vif.network='no-such-net'")
    assert len(done.stderr.strip().splitlines()) == 1, done.stderr
    assert "Traceback" not in done.stderr
    assert run_json(workdir, "--backend", backend, "list") == []


def test_unreachable_server_is_one_clear_line(workdir, tmp_path):
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    config = tmp_path / "down.conf"
    config.write_text(f"[xenserver]\nconnection_url = http://127.0.0.1:{port}\n"
                      "connection_password = x\napi_retry_count = 0\n")
    done = run(workdir, "--backend", "xen", "list", config=config)
    assert done.returncode == 1
    assert done.stderr.startswith("virtdriver: error:") and "Traceback" not in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1


def test_refused_certificate_is_one_clear_line(workdir, tmp_path):
    conf_text = (workdir / "virtdriver.conf").read_text()
    untrusted = re.sub(r"ca_file = .*", "ca_file =", conf_text)
    config = tmp_path / "untrusted.conf"
    config.write_text(untrusted)
    done = run(workdir, "--backend", "vmware", "list", config=config)
    assert done.returncode == 1
    assert "certificate" in done.stderr.lower() and "Traceback" not in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1


def processes_under(root: Path) -> set[int]:
    """PIDs whose working directory is inside ``root``: what the demo started there.

    Other test runs on the machine start simulators too; the cwd tells the demo's apart.
    """
    found = set()
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if os.readlink(entry / "cwd").startswith(str(root)):
                    found.add(int(entry.name))
            except OSError:  # gone meanwhile, or not ours to read
                continue
    return found


def test_make_demo_script_end_to_end(tmp_path):
    """The script behind 'make demo': both lifecycles succeed, nothing is left running."""
    build_launcher()  # the demo's 'sim start' finds it in the user cache
    env = {key: value for key, value in os.environ.items() if key != "VIRTDRIVER_VCSIM"}
    env["TMPDIR"] = str(tmp_path)  # the demo's work directory, and its simulators' cwd
    done = subprocess.run([sys.executable, str(REPO / "tools" / "demo.py")], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    assert "24 of 24 steps succeeded" in done.stdout
    for operation in ("spawn", "snapshot", "rescue", "resize", "live-migrate", "destroy"):
        assert re.search(rf"{operation}\s.*ok.*ok", done.stdout), operation
    assert "building the vcsim launcher" not in done.stderr
    assert processes_under(tmp_path) == set()
