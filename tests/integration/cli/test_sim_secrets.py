"""'virtdriver sim start' keeps its secrets private: file modes and command lines (issue 14).

Run under umask 000, the most permissive, so a mode that only holds thanks to the usual 022
(or a chmod after the file was written) fails here.
"""

import json
import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from virtdriver.vmware.simulator import build_launcher

pytestmark = pytest.mark.integration


def _virtdriver(workdir: Path, *args: str, umask: int = -1):
    env = {**os.environ, "VIRTDRIVER_VCSIM": str(build_launcher())}
    return subprocess.run([sys.executable, "-m", "virtdriver.cli", *args], cwd=workdir,
                          env=env, capture_output=True, text=True, timeout=120, umask=umask)


@pytest.fixture(scope="module")
def started(tmp_path_factory):
    """Both simulators started under umask 000; what sims.json says about them."""
    workdir = tmp_path_factory.mktemp("secrets")
    done = _virtdriver(workdir, "sim", "start", umask=0)
    assert done.returncode == 0, done.stderr
    sims = json.loads((workdir / "virtdriver-sims" / "sims.json").read_text())
    yield workdir, sims
    assert _virtdriver(workdir, "sim", "stop").returncode == 0
    for sim in sims.values():
        with pytest.raises(ProcessLookupError):
            os.kill(sim["pid"], 0)


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.lstat().st_mode)


def test_directory_is_0700_and_every_file_in_it_0600(started):
    workdir, _ = started
    directory = workdir / "virtdriver-sims"
    assert _mode(directory) == 0o700
    seen = []
    for root, dirs, files in os.walk(directory):
        for name in dirs:
            path = Path(root, name)
            assert _mode(path) & 0o077 == 0, f"{path} is {oct(_mode(path))}"
        for name in files:
            path = Path(root, name)
            seen.append(path.relative_to(directory).as_posix())
            assert _mode(path) == 0o600, f"{path} is {oct(_mode(path))}"
    # The files holding secrets are among those checked.
    assert {"sims.json", "vcsim/server-key.pem", "vcsim/vcsim.log", "xapi.log"} <= set(seen)


def test_config_file_is_0600(started):
    workdir, _ = started
    config = workdir / "virtdriver.conf"
    assert _mode(config) == 0o600
    assert "host_password" in config.read_text()


@pytest.mark.parametrize("backend", ["vmware", "xen"])
def test_no_password_on_a_simulator_command_line(started, backend):
    _, sims = started
    sim = sims[backend]
    cmdline = Path(f"/proc/{sim['pid']}/cmdline").read_bytes().split(b"\0")
    assert cmdline[0], "the simulator is not running"
    assert not any(sim["password"].encode() in arg for arg in cmdline), cmdline
    assert not any(b"password" in arg.lower() for arg in cmdline), cmdline


def test_the_config_logs_into_both_simulators(started):
    """The passwords the simulators got by environment are the ones in the config."""
    workdir, _ = started
    for backend in ("vmware", "xen"):
        done = _virtdriver(workdir, "--backend", backend, "--format", "json", "list")
        assert done.returncode == 0, done.stderr
        assert json.loads(done.stdout) == []
