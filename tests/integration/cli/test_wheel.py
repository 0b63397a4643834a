"""The built wheel, installed in a fresh venv: 'virtdriver sim start', 'spawn', 'sim stop'.

What a pip user gets: the wheel (built from a copy of the sources, as ``pip wheel`` does
for a release) installed with its dependencies in a venv of its own, and the command run
from a directory outside the repository, so nothing of the checkout is importable. The
vcsim launcher is built by the installed package from the Go sources it ships, into an
XDG cache under ``.cache/`` that later runs reuse (the first run builds, ~20-60 s).

The venv is cached under ``.cache/wheel-venv-<hash of the wheel's dependency list>``: a
re-run only reinstalls the wheel itself.
"""

import hashlib
import json
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[3]
CACHE = REPO / ".cache"
#: Where the installed package builds the launcher (XDG_CACHE_HOME), reused across runs.
XDG_CACHE = CACHE / "wheel-test-xdg"


def _run(command, **kwargs):
    kwargs.setdefault("capture_output", True)
    kwargs.setdefault("text", True)
    done = subprocess.run(command, timeout=kwargs.pop("timeout", 600), **kwargs)
    assert done.returncode == 0, f"{command}:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    return done


def _requirements(wheel: Path) -> list[str]:
    """The wheel's own dependencies (Requires-Dist without an extra), as pip reads them."""
    with zipfile.ZipFile(wheel) as archive:
        name = next(n for n in archive.namelist() if n.endswith(".dist-info/METADATA"))
        metadata = archive.read(name).decode()
    return sorted(line.split(":", 1)[1].strip() for line in metadata.splitlines()
                  if line.startswith("Requires-Dist:") and "extra ==" not in line)


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    """The wheel built from a copy of the package sources (the checkout stays untouched)."""
    source = tmp_path_factory.mktemp("wheel-src")
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(REPO / name, source / name)
    for name in ("virtdriver", "nova_shim"):
        shutil.copytree(REPO / name, source / name, ignore=ignore)
    dist = tmp_path_factory.mktemp("dist")
    _run([sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "-w", str(dist),
          str(source)])
    (built,) = dist.glob("virtdriver-*.whl")
    with zipfile.ZipFile(built) as archive:
        go_sources = [n for n in archive.namelist() if n.endswith(".go")]
    assert "virtdriver/vmware/simulator/launcher/main.go" in go_sources
    return built


@pytest.fixture(scope="module")
def venv(wheel: Path) -> Path:
    """A venv with the wheel and its dependencies (cached by the dependency list)."""
    key = hashlib.sha256("\n".join(_requirements(wheel)).encode()).hexdigest()[:12]
    path = CACHE / f"wheel-venv-{key}"
    python = path / "bin" / "python"
    stamp = path / ".installed"
    if not stamp.exists():
        shutil.rmtree(path, ignore_errors=True)
        _run([sys.executable, "-m", "venv", str(path)])
        _run([str(python), "-m", "pip", "install", "--quiet", str(wheel)], timeout=1200)
        stamp.touch()
    else:  # same dependencies: only this build of the package changes
        _run([str(python), "-m", "pip", "install", "--quiet", "--force-reinstall",
              "--no-deps", str(wheel)])
    return path


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def test_sim_start_spawn_stop_from_the_installed_wheel(venv: Path, tmp_path: Path) -> None:
    env = {key: value for key, value in os.environ.items()
           if key not in ("VIRTDRIVER_VCSIM", "PYTHONPATH", "VIRTUAL_ENV")}
    env["XDG_CACHE_HOME"] = str(XDG_CACHE)
    env["PATH"] = f"{venv / 'bin'}{os.pathsep}{env.get('PATH', '')}"
    work = tmp_path / "work"
    work.mkdir()

    def virtdriver(*args, check=True):
        done = subprocess.run([str(venv / "bin" / "virtdriver"), *args], cwd=work, env=env,
                              capture_output=True, text=True, timeout=600)
        if check:
            assert done.returncode == 0, f"virtdriver {args}: {done.stderr[-3000:]}"
        return done

    # The package that runs is the installed wheel, not the checkout.
    where = _run([str(venv / "bin" / "python"), "-c",
                  "import virtdriver.vmware.simulator as s; print(s.__file__)"],
                 cwd=work, env=env).stdout.strip()
    assert Path(where).is_relative_to(venv / "lib"), where

    started = virtdriver("sim", "start")
    sims = json.loads((work / "virtdriver-sims" / "sims.json").read_text())
    pids = [sim["pid"] for sim in sims.values()]
    try:
        binaries = list((XDG_CACHE / "virtdriver").glob("vcsim-*"))
        assert any(b.is_file() and os.access(b, os.X_OK) and ".tmp" not in b.name
                   for b in binaries), binaries
        if "building the vcsim launcher" in started.stderr:
            assert str(XDG_CACHE / "virtdriver") in started.stderr
        assert sims["vmware"]["launcher"] is True  # the project's launcher, not a stock vcsim

        for backend, fmt, network in (("vmware", "vmdk", "VM Network"),
                                      ("xen", "raw", "Pool-wide network associated with eth0")):
            disk = work / f"tiny.{fmt}"
            disk.write_bytes(os.urandom(64 * 1024) + bytes(448 * 1024))
            virtdriver("image", "import", str(disk), "--name", f"tiny-{fmt}",
                       "--disk-format", fmt)
            spawned = json.loads(virtdriver(
                "--backend", backend, "--format", "json", "spawn", "web1", "--vcpus", "1",
                "--memory", "128", "--disk", "1", "--image", f"tiny-{fmt}",
                "--network", network).stdout)
            assert spawned["state"] == "RUNNING"
            shown = json.loads(virtdriver("--backend", backend, "--format", "json", "show",
                                          "web1").stdout)
            assert shown["uuid"] == spawned["uuid"] and len(shown["macs"]) == 1
            destroyed = json.loads(virtdriver("--backend", backend, "--format", "json",
                                              "destroy", "web1").stdout)
            assert destroyed["destroyed"] is True
    finally:
        stopped = virtdriver("--format", "json", "sim", "stop", check=False)
    assert stopped.returncode == 0, stopped.stderr
    assert json.loads(stopped.stdout) == {"stopped": ["vmware", "xen"]}
    assert not [pid for pid in pids if _alive(pid)]
    assert not (work / "virtdriver-sims").exists()
