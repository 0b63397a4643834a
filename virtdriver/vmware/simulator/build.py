"""Build the vcsim launcher (the Go sources in ``launcher/``) into the user's cache.

The launcher is a Go ``main`` over govmomi 0.24.2's ``simulator`` package, built with
Debian's Go and govmomi sources (``apt-get install golang-go
golang-github-vmware-govmomi-dev``) in GOPATH mode: no network, no module download.

The binary goes to ``<cache>/vcsim-<12 hex>``, where ``<cache>`` is
``$XDG_CACHE_HOME/virtdriver`` (``~/.cache/virtdriver``) and the suffix is a hash of the Go
sources, so an installed wheel, a checkout and a test run all share one build per source
version. A build that already exists is only looked up; the first build takes ~20 s and says
so on stderr.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

from virtdriver.common.exceptions import VirtDriverError

#: The Go sources, shipped in the package (package data).
SOURCE_DIR = Path(__file__).resolve().parent / "launcher"
#: Where Debian's golang-github-vmware-govmomi-dev puts govmomi (GOPATH layout).
GOPATH = Path("/usr/share/gocode")
GOVMOMI_SIMULATOR = GOPATH / "src/github.com/vmware/govmomi/simulator"
#: What to install when the launcher cannot be built.
APT_PACKAGES = "golang-go golang-github-vmware-govmomi-dev"
#: The longest a build (or waiting for another process's build) may take.
BUILD_TIMEOUT = 600.0


class VcsimError(VirtDriverError):
    """The vcsim launcher could not be built, started or controlled."""


class LauncherUnavailable(VcsimError):
    """The launcher is not built and this machine cannot build it (no Go or govmomi)."""


def cache_dir() -> Path:
    """``$XDG_CACHE_HOME/virtdriver``, or ``~/.cache/virtdriver`` (the XDG default)."""
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "virtdriver"


def source_hash(source_dir: Path = SOURCE_DIR) -> str:
    """First 12 hex digits of the sha256 over the ``*.go`` files' names and contents."""
    digest = hashlib.sha256()
    sources = sorted(source_dir.glob("*.go"))
    if not sources:
        raise VcsimError(f"no Go sources in {source_dir}: the package is incomplete")
    for path in sources:
        digest.update(path.name.encode() + b"\n")
        digest.update(path.read_bytes())
    return digest.hexdigest()[:12]


def launcher_path(cache: Path | None = None) -> Path:
    """Where the launcher built from the current sources is (or will be)."""
    return (cache or cache_dir()) / f"vcsim-{source_hash()}"


def _stderr(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def build_launcher(cache: Path | None = None,
                   notify: Callable[[str], None] | None = _stderr) -> Path:
    """Return the launcher built from the current sources, building it first if needed.

    ``notify`` is told (stderr by default) when a build starts and ends, since the first
    one takes a while. Raises ``LauncherUnavailable`` naming the Debian packages when Go
    or govmomi's sources are missing, ``VcsimError`` when the build fails.
    """
    cache = cache or cache_dir()
    binary = launcher_path(cache)
    if _is_executable(binary):
        return binary
    go = shutil.which("go")
    if go is None or not GOVMOMI_SIMULATOR.is_dir():
        missing = "'go'" if go is None else f"govmomi's sources ({GOVMOMI_SIMULATOR})"
        raise LauncherUnavailable(
            f"the vcsim launcher is not built and cannot be: {missing} not found; "
            f"install them with 'apt-get install {APT_PACKAGES}', "
            "or pass --vcsim PATH to a vcsim binary")
    cache.mkdir(parents=True, exist_ok=True)
    with _build_lock(cache):
        if _is_executable(binary):  # another process built it while we waited
            return binary
        if notify:
            notify(f"virtdriver: building the vcsim launcher into {binary} "
                   "(first use; about 20 s)")
        started = time.monotonic()
        _go_build(go, cache, binary)
        if notify:
            notify(f"virtdriver: built the vcsim launcher in {time.monotonic() - started:.0f} s")
        _drop_stale(cache, keep=binary)
    return binary


def _is_executable(path: Path) -> bool:
    return path.is_file() and os.access(path, os.X_OK)


def _go_build(go: str, cache: Path, binary: Path) -> None:
    # Build into a temporary name and rename: a reader never sees half a binary.
    fd, tmp = tempfile.mkstemp(prefix=f"{binary.name}.", suffix=".tmp", dir=cache)
    os.close(fd)
    env = dict(os.environ, GOPATH=str(GOPATH), GO111MODULE="off", GOFLAGS="",
               CGO_ENABLED="0")
    # Go's own build cache follows XDG_CACHE_HOME; keep it beside ours when HOME is unusable.
    env.setdefault("GOCACHE", str(cache / "go-build"))
    try:
        try:
            subprocess.run([go, "build", "-o", tmp, "."], cwd=SOURCE_DIR, env=env, check=True,
                           stdin=subprocess.DEVNULL, capture_output=True, text=True,
                           timeout=BUILD_TIMEOUT)
        except subprocess.CalledProcessError as error:
            raise VcsimError(f"building the vcsim launcher failed:\n{error.stderr}") from error
        except subprocess.TimeoutExpired as error:
            raise VcsimError(f"building the vcsim launcher took over {BUILD_TIMEOUT:.0f} s"
                             ) from error
        os.chmod(tmp, 0o755)
        os.replace(tmp, binary)
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)


@contextlib.contextmanager
def _build_lock(cache: Path) -> Iterator[None]:
    """One build at a time per cache (parallel test runs, a CLI and a test)."""
    with open(cache / "vcsim.lock", "a") as handle:
        deadline = time.monotonic() + BUILD_TIMEOUT
        while True:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    raise VcsimError(f"another vcsim build held {cache / 'vcsim.lock'} "
                                     f"for over {BUILD_TIMEOUT:.0f} s") from None
                time.sleep(0.2)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _drop_stale(cache: Path, keep: Path, age: float = 3600.0) -> None:
    """Remove launchers built from older sources over an hour ago.

    A running one keeps its inode; a recent one may still be about to start by path.
    """
    now = time.time()
    for path in cache.glob("vcsim-*"):
        if path == keep or path.name.endswith(".tmp"):
            continue
        with contextlib.suppress(OSError):
            if now - path.stat().st_mtime > age:
                path.unlink()
