"""A stand-in for a stock vcsim binary (``stock_vcsim/main.go``), built once per source hash.

Debian ships govmomi's simulator package but not its vcsim command; this small program has
the stock command's flags and startup line, so the tests can check what the product does
when given a vcsim that is not the project's launcher.
"""

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from virtdriver.vmware.simulator.build import GOPATH, source_hash

SOURCES = Path(__file__).resolve().parent / "stock_vcsim"
CACHE = Path(__file__).resolve().parents[2] / ".cache"


def build_stock_vcsim() -> Path:
    """The stand-in's binary under ``.cache/`` (built on first use, ~20 s)."""
    binary = CACHE / f"stock-vcsim-{source_hash(SOURCES)}"
    if binary.is_file():
        return binary
    go = shutil.which("go")
    if go is None:
        pytest.fail("building the stock vcsim stand-in needs Go (make system-deps)")
    CACHE.mkdir(exist_ok=True)
    tmp = binary.with_name(f"{binary.name}.{os.getpid()}.tmp")
    env = dict(os.environ, GOPATH=str(GOPATH), GO111MODULE="off", GOFLAGS="", CGO_ENABLED="0")
    subprocess.run([go, "build", "-o", str(tmp), "."], cwd=SOURCES, env=env, check=True,
                   capture_output=True, timeout=600)
    os.replace(tmp, binary)
    return binary
