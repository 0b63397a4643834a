"""'virtdriver sim start --vcsim PATH' with a vcsim that is not the project's launcher."""

import json
import os
import subprocess
import sys

import pytest

from tests.integration.stock import build_stock_vcsim

pytestmark = pytest.mark.integration


def test_sim_start_with_a_stock_vcsim_says_what_it_lacks_and_works(tmp_path):
    env = {key: value for key, value in os.environ.items() if key != "VIRTDRIVER_VCSIM"}

    def virtdriver(*args):
        return subprocess.run([sys.executable, "-m", "virtdriver.cli", *args], cwd=tmp_path,
                              env=env, capture_output=True, text=True, timeout=120)

    started = virtdriver("sim", "start", "--vcsim", str(build_stock_vcsim()))
    assert started.returncode == 0, started.stderr
    try:
        assert "is a stock vcsim" in started.stderr and "fault injection" in started.stderr
        sims = json.loads((tmp_path / "virtdriver-sims" / "sims.json").read_text())
        assert sims["vmware"]["launcher"] is False
        listed = virtdriver("--backend", "vmware", "--format", "json", "list")
        assert listed.returncode == 0, listed.stderr
        assert json.loads(listed.stdout) == []
    finally:
        stopped = virtdriver("--format", "json", "sim", "stop")
    assert json.loads(stopped.stdout) == {"stopped": ["vmware", "xen"]}
    for sim in sims.values():
        with pytest.raises(ProcessLookupError):
            os.kill(sim["pid"], 0)
