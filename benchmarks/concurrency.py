"""Concurrency (issue 8 §6): N spawns at once in one process against N in a row.

One backend object serves every spawn, as one compute service's driver does. The image is
cached first (one spawn and destroy, untimed), so every measured spawn is a warm one.

* **in a row**: N spawns one after another;
* **threads**: N plain threads started together on one barrier;
* **eventlet**: a child process (``benchmarks/eventlet_spawns.py``) that monkey-patches before
  importing anything, then runs N spawns in a GreenPool against the same simulator;
* **raw**: the yardstick, in the same run: the floor client (fewest raw pyvmomi / XenAPI
  calls, push waiting) in a row, then N threads each with a floor client (and so a
  connection and login) of its own, built before the clock starts, and the same under
  eventlet in the eventlet child. The library's speedup in each mode is judged against the
  raw client's in that mode.

Both with the simulators' instant tasks and with every power-on task made to last 0.2 s on
the server (delay injection), see :func:`run_section`.

Wall time is from the first spawn's start to the last one's end; the instances are destroyed
afterwards (untimed, by a few worker threads, bounded in time).
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from benchmarks import common

ROOT = Path(__file__).resolve().parent.parent
#: Longest a measured batch of spawns, or the cleanup after it, may take.
SPAWN_SECONDS = 180.0
CLEANUP_SECONDS = 120.0
#: Server time of each power-on task in the second scenario.
SLOW_TASK_SECONDS = 0.2


def run_at_once(jobs: list[Callable[[], None]], name: str,
                seconds: float = SPAWN_SECONDS) -> tuple[float, int]:
    """Run every job in a thread of its own, all released together by one barrier; the wall
    time from the release until the last ended (or ``seconds`` passed), and how many were
    still running then (daemon threads: one that never returns cannot hang the run)."""
    barrier = threading.Barrier(len(jobs) + 1)

    def runner(job: Callable[[], None]) -> None:
        barrier.wait()
        job()

    threads = [threading.Thread(target=runner, args=(job,), name=f"{name}-{n}", daemon=True)
               for n, job in enumerate(jobs)]
    for thread in threads:
        thread.start()
    barrier.wait()
    start = time.perf_counter()
    deadline = time.monotonic() + seconds
    for thread in threads:
        thread.join(max(0.0, deadline - time.monotonic()))
    return time.perf_counter() - start, sum(thread.is_alive() for thread in threads)


def spawn_many(client: Any, image: Any, count: int, parallel: bool) -> dict[str, Any]:
    """Spawn ``count`` instances in a row or in threads; wall time, failures, instances."""
    made: list[Any] = []
    errors: list[str] = []
    lock = threading.Lock()

    def one() -> None:
        try:
            instance = client.spawn(image, False)
        except Exception as error:  # noqa: BLE001 - counted, the rest go on
            with lock:
                errors.append(common.unavailable_reason(error))
            return
        with lock:
            made.append(instance)

    if parallel:
        wall, stuck = run_at_once([one] * count, "spawn")
        if stuck:
            errors.append(f"{stuck} spawns still running after {SPAWN_SECONDS:.0f} s")
    else:
        start = time.perf_counter()
        for _ in range(count):
            one()
        wall = time.perf_counter() - start
    return {"wall_s": wall, "failures": len(errors), "first_error": errors[0] if errors else "",
            "instances": made}


def destroy_all(client: Any, instances: list[Any], workers: int = 8) -> int:
    """Destroy instances with a few worker threads (untimed cleanup); errors are ignored.

    Returns how many destroys were still running at the deadline: the workers are daemon
    threads, so a destroy that never returns (a lost task event) cannot hang the run; it
    ends when its simulator is stopped.
    """
    pending = list(instances)
    lock = threading.Lock()

    def worker() -> None:
        while True:
            with lock:
                if not pending:
                    return
                instance = pending.pop()
            with contextlib.suppress(Exception):  # best-effort cleanup
                client.destroy(instance)

    threads = [threading.Thread(target=worker, daemon=True, name=f"destroy-{n}")
               for n in range(min(workers, len(instances)))]
    for thread in threads:
        thread.start()
    deadline = time.monotonic() + CLEANUP_SECONDS
    for thread in threads:
        thread.join(max(0.0, deadline - time.monotonic()))
    return sum(thread.is_alive() for thread in threads)


def _connection(spec: Any, running: Any) -> dict[str, Any]:
    raw = spec.raw_sim(running)
    if spec.name == "vmware":
        return {"host_ip": raw.host, "host_port": raw.port, "host_username": raw.username,
                "host_password": raw.password, "ca_file": raw.ca_file}
    return {"connection_url": raw.url, "connection_username": raw.username,
            "connection_password": raw.password}


def _eventlet(spec: Any, running: Any, count: int, raw: bool = False) -> dict[str, Any]:
    """Run the eventlet child against the running simulator (with ``raw``, the raw client
    under eventlet too); its JSON answer."""
    payload = {"backend": spec.name, "count": count, "network": spec.network,
               "disk_format": spec.disk_format, "hosts": spec.hosts,
               "options": _connection(spec, running), "raw": raw}
    env = dict(os.environ, PYTHONPATH=f"{ROOT}{os.pathsep}{os.environ.get('PYTHONPATH', '')}")
    try:
        proc = subprocess.run([sys.executable, "-m", "benchmarks.eventlet_spawns"],
                              input=json.dumps(payload), capture_output=True, text=True,
                              cwd=ROOT, env=env, timeout=480)
    except subprocess.TimeoutExpired:
        return {"error": "eventlet child did not finish within 480 s"}
    lines = [line for line in proc.stdout.splitlines() if line.startswith("{")]
    if proc.returncode != 0 or not lines:
        tail = " ".join(proc.stderr.split())[-300:]
        return {"error": f"eventlet child failed (exit {proc.returncode}): {tail}"}
    return json.loads(lines[-1])


def _slow_tasks(spec: Any, running: Any, seconds: float | None) -> None:
    """Make every power-on task last ``seconds`` (None: clear the rule)."""
    raw = spec.raw_sim(running)
    if seconds is None:
        raw.clear_faults()
    elif spec.name == "vmware":
        raw.inject("PowerOnVM_Task", "delay", delay_ms=int(seconds * 1000), count=-1)
    else:
        raw.inject_delay("VM.start", seconds, 100_000)


def _raw(spec: Any, running: Any, count: int) -> dict[str, Any]:
    """The floor client: N warm spawns in a row on one client, then N threads with a client
    (connection, login) each; speedup of the threads over the row."""
    clients: list[Any] = []
    result: dict[str, Any] = {}
    try:
        first = spec.floor(running)
        clients.append(first)
        image = first.new_image()
        first.destroy(first.spawn(image, True))  # caches the image (untimed)
        cache = getattr(first, "cache", None)
        serial = spawn_many(first, image, count, False)
        destroy_all(first, serial.pop("instances"), workers=1)
        result["serial"] = serial
        for _ in range(count - 1):
            client = spec.floor(running)
            if cache is not None:
                client.cache = cache  # the Xen floor remembers its cached VDI per client
            clients.append(client)
        made: list[Any] = []
        errors: list[str] = []
        lock = threading.Lock()

        def one(client: Any) -> None:
            try:
                vm = client.spawn(image, False)
            except Exception as error:  # noqa: BLE001 - counted, the rest go on
                with lock:
                    errors.append(common.unavailable_reason(error))
                return
            with lock:
                made.append((client, vm))

        wall, _ = run_at_once([functools.partial(one, c) for c in clients], "raw")
        result["threads"] = {"wall_s": wall, "failures": len(errors),
                             "first_error": errors[0] if errors else "",
                             "speedup": common.ratio(serial["wall_s"], wall)}
        for client, vm in made:
            with contextlib.suppress(Exception):  # best-effort cleanup
                client.destroy(vm)
    except Exception as error:  # noqa: BLE001 - reported, the section goes on
        result["error"] = common.unavailable_reason(error)
    finally:
        for client in clients:
            with contextlib.suppress(Exception):  # best effort at teardown
                client.close()
    return result


def _scenario(spec: Any, running: Any, client: Any, image: Any, count: int,
              raw: bool = False) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for mode, parallel in (("serial", False), ("threads", True)):
        outcome = spawn_many(client, image, count, parallel)
        stuck = destroy_all(client, outcome.pop("instances"))
        if stuck:
            outcome["cleanup_stuck"] = stuck
        result[mode] = outcome
    result["eventlet"] = _eventlet(spec, running, count, raw)
    serial = result["serial"]["wall_s"]
    for mode in ("threads", "eventlet"):
        entry = result.get(mode) or {}
        if "wall_s" in entry:
            entry["speedup"] = common.ratio(serial, entry["wall_s"])
    return result


def run_section(spec: Any, count: int, task_seconds: float = SLOW_TASK_SECONDS) -> dict[str, Any]:
    """One backend, with instant and with slow tasks, each scenario on a fresh simulator.

    The simulators end most tasks at once, so a spawn costs only client and simulator CPU,
    which threads cannot overlap on a small machine. The second scenario gives every
    power-on task ``task_seconds`` on the server, as a real hypervisor takes: then what
    concurrency buys is the overlap of waits. A fresh simulator each: vcsim never gives a
    destroyed VM's disk space back to its datastore, so some 220 spawns exhaust one.
    """
    result: dict[str, Any] = {"count": count}
    result.update(_on_fresh_simulator(spec, count, None))
    slow = _on_fresh_simulator(spec, count, task_seconds)
    slow["task_seconds"] = task_seconds
    raw_speedup = ((slow.get("raw") or {}).get("threads") or {}).get("speedup")
    for mode in ("threads", "eventlet"):
        entry = slow.get(mode) or {}
        if raw_speedup and entry.get("speedup"):
            # the library's speedup over the raw client's, in the same run
            entry["vs_raw"] = entry["speedup"] / raw_speedup
    result["slow_tasks"] = slow
    return result


def _on_fresh_simulator(spec: Any, count: int, task_seconds: float | None) -> dict[str, Any]:
    """One scenario (tasks of ``task_seconds`` on the server, None: instant) on its own
    simulator; with lasting tasks, the raw client too."""
    with spec.simulator() as running:
        client = spec.library(running)
        try:
            image = client.new_image()
            warm = client.spawn(image, True)  # caches the image: every measured spawn is warm
            client.destroy(warm)
            if task_seconds is None:
                return _scenario(spec, running, client, image, count)
            _slow_tasks(spec, running, task_seconds)
            try:
                scenario = _scenario(spec, running, client, image, count, raw=True)
                scenario["raw"] = _raw(spec, running, count)
                green = scenario["eventlet"].pop("raw", None) or {}
                serial = (scenario["raw"].get("serial") or {}).get("wall_s")
                if "wall_s" in green and serial:
                    green["speedup"] = common.ratio(serial, green["wall_s"])
                scenario["raw"]["eventlet"] = green or {"error": "not measured"}
            finally:
                _slow_tasks(spec, running, None)
            return scenario
        finally:
            client.close()
