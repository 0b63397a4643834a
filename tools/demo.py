"""make demo: the library's main job on the embedded simulators, through the command.

Starts vcsim and the XAPI simulator with ``virtdriver sim start``, imports a small image, and
runs an instance's whole lifecycle on each backend with the ``virtdriver`` command (progress
bars come from the library's progress callback), then prints a summary table: operation x
backend, outcome, wall time and server calls. The simulators are stopped and the work
directory removed whatever happens; the exit status is non-zero if any step failed.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from rich.console import Console
from rich.table import Table

REPO = Path(__file__).resolve().parent.parent
CONSOLE = Console(stderr=True)


@dataclass(frozen=True)
class BackendPlan:
    """What the lifecycle needs to know about one backend's simulator."""

    name: str
    image: str
    network: str
    other_host: str


@dataclass
class Outcome:
    """One step's result for the summary."""

    backend: str
    operation: str
    ok: bool
    seconds: float
    calls: int | None
    detail: str = ""


LIFECYCLE = [
    ("spawn", ["spawn", "web1", "--vcpus", "1", "--memory", "256", "--disk", "1",
               "--image", "{image}", "--network", "{network}"]),
    ("show", ["show", "web1"]),
    ("reboot", ["reboot", "web1"]),
    ("suspend", ["suspend", "web1"]),
    ("resume", ["resume", "web1"]),
    ("snapshot", ["snapshot", "web1", "web1-{backend}-snap"]),
    ("rescue", ["rescue", "web1"]),
    ("unrescue", ["unrescue", "web1"]),
    ("resize", ["resize", "web1", "--vcpus", "2", "--memory", "512", "--disk", "2"]),
    ("confirm-resize", ["confirm-resize", "web1"]),
    ("live-migrate", ["live-migrate", "web1", "--host", "{other_host}"]),
    ("destroy", ["destroy", "web1"]),
]


def virtdriver(workdir: Path, *args: str, stats: Path | None = None) -> subprocess.CompletedProcess:
    """Run the command in ``workdir``; its progress bars go straight to the terminal."""
    extra = ["--stats-file", str(stats)] if stats else []
    return subprocess.run([sys.executable, "-m", "virtdriver.cli", *extra, *args], cwd=workdir,
                          stdout=subprocess.PIPE, stderr=None, text=True, timeout=300)


def run_lifecycle(workdir: Path, plan: BackendPlan) -> list[Outcome]:
    """Every lifecycle step on one backend; stops at the first failure (then cleans up)."""
    outcomes = []
    values = {"image": plan.image, "network": plan.network, "other_host": plan.other_host,
              "backend": plan.name}
    for operation, template in LIFECYCLE:
        args = [part.format(**values) for part in template]
        stats = workdir / "stats.json"
        stats.unlink(missing_ok=True)
        CONSOLE.rule(f"{plan.name}: {operation}")
        started = time.monotonic()
        done = virtdriver(workdir, "--backend", plan.name, *args, stats=stats)
        seconds = time.monotonic() - started
        sys.stdout.write(done.stdout)
        calls = json.loads(stats.read_text())["total_calls"] if stats.exists() else None
        outcomes.append(Outcome(plan.name, operation, done.returncode == 0, seconds, calls,
                                "" if done.returncode == 0 else f"exit {done.returncode}"))
        if done.returncode != 0:
            virtdriver(workdir, "--backend", plan.name, "destroy", "web1")
            break
    return outcomes


def summary(outcomes: list[Outcome]) -> Table:
    """Operation x backend: outcome, wall time, server calls."""
    backends = list(dict.fromkeys(o.backend for o in outcomes))
    table = Table(title="virtdriver demo: the lifecycle on both backends")
    table.add_column("operation")
    for backend in backends:
        table.add_column(f"{backend}", justify="right")
    by_key = {(o.backend, o.operation): o for o in outcomes}
    for operation, _ in LIFECYCLE:
        cells = []
        for backend in backends:
            outcome = by_key.get((backend, operation))
            if outcome is None:
                cells.append("not run")
            else:
                mark = "ok" if outcome.ok else f"FAILED ({outcome.detail})"
                calls = "?" if outcome.calls is None else str(outcome.calls)
                cells.append(f"{mark}  {outcome.seconds:5.2f} s  {calls:>3} calls")
        table.add_row(operation, *cells)
    return table


def make_image(workdir: Path) -> None:
    """A small disk image in both formats the backends take."""
    data = os.urandom(64 * 1024) + b"\0" * (1024 * 1024 - 64 * 1024)
    (workdir / "tiny.raw").write_bytes(data)
    (workdir / "tiny.vmdk").write_bytes(data)
    for name, fmt in (("tiny.vmdk", "vmdk"), ("tiny.raw", "raw")):
        done = virtdriver(workdir, "image", "import", name, "--disk-format", fmt,
                          "--name", f"tiny-{fmt}",
                          *(["--property", "vmware_disktype=preallocated"]
                            if fmt == "vmdk" else []))
        if done.returncode != 0:
            raise SystemExit(f"image import of {name} failed")


def main() -> int:
    """Run the demo; non-zero exit if any step failed."""
    workdir = Path(tempfile.mkdtemp(prefix="virtdriver-demo-"))
    started = time.monotonic()
    outcomes: list[Outcome] = []
    try:
        make_image(workdir)
        # The vcsim launcher: $VIRTDRIVER_VCSIM if set, else the one 'sim start' builds
        # into the user's cache on first use (make's vcsim target has built it already).
        if virtdriver(workdir, "sim", "start").returncode != 0:
            raise SystemExit("could not start the simulators")
        plans = [BackendPlan("vmware", "tiny-vmdk", "VM Network", "DC0_C0_H1"),
                 BackendPlan("xen", "tiny-raw", "Pool-wide network associated with eth0",
                             "host1")]
        for plan in plans:
            outcomes += run_lifecycle(workdir, plan)
    finally:
        virtdriver(workdir, "sim", "stop")
        shutil.rmtree(workdir, ignore_errors=True)
    Console().print(summary(outcomes))
    failed = [o for o in outcomes if not o.ok]
    total = len(LIFECYCLE) * 2
    print(f"{len(outcomes) - len(failed)} of {total} steps succeeded "
          f"in {time.monotonic() - started:.1f} s")
    return 1 if failed or len(outcomes) < total else 0


if __name__ == "__main__":
    sys.exit(main())
