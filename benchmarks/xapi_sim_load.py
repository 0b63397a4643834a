"""How the XAPI simulator serves load (issue 15 item 3): N raw XenAPI clients spawning at
once, several runs on one simulator, and the cost of ``event.from`` with token ``""`` as the
simulator's history grows.

Each client is the Xen floor (:class:`benchmarks.floor_xen.FloorXen`: a stock ``XenAPI``
session of its own, plain calls, ``VM.start`` holding its connection while it lasts), so the
figures are those of issue 15's "raw XenAPI with 50 sessions". The simulator runs in a child
process (``benchmarks.sims.XenSim``) with ``VM.start`` lasting ``--task-seconds``.

Run: ``.venv/bin/python -m benchmarks.xapi_sim_load [--sessions 50] [--runs 3]``; prints one
JSON object per line (a ``serial`` line, then one per run). ``--history`` instead times
``event.from`` with token ``""`` after 0, 20,000 and 100,000 changes to one object.
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import functools
import json
import statistics
import threading
import time
from typing import Any

from benchmarks.concurrency import run_at_once
from benchmarks.floor_xen import FloorXen
from benchmarks.sims import XenSim

JOIN_SECONDS = 300.0


def _event_from_seconds(client: FloorXen, rounds: int = 5) -> float:
    """Median seconds of ``event.from(["vm"], "", 0)`` (the call a task wait starts with)."""
    took = []
    for _ in range(rounds):
        t0 = time.perf_counter()
        client.api.event_from(["vm"], "", 0.0)
        took.append(time.perf_counter() - t0)
    return statistics.median(took)


def _spawn_all(clients: list[FloorXen], image: str) -> dict[str, Any]:
    """Every client spawns one VM at the same instant; wall time, errors by type."""
    made: list[tuple[FloorXen, Any]] = []
    errors: collections.Counter[str] = collections.Counter()
    lock = threading.Lock()

    def one(client: FloorXen) -> None:
        try:
            vm = client.spawn(image, False)
        except Exception as error:  # noqa: BLE001 - counted by type, the others go on
            with lock:
                errors[type(error).__name__] += 1
            return
        with lock:
            made.append((client, vm))

    wall, _ = run_at_once([functools.partial(one, c) for c in clients], "load", JOIN_SECONDS)
    for client, vm in made:
        with contextlib.suppress(Exception):  # best-effort cleanup between runs
            client.destroy(vm)
    return {"wall_s": round(wall, 3), "spawned": len(made), "errors": dict(errors)}


def history_cost(steps: tuple[int, ...] = (0, 20_000, 100_000)) -> None:
    """Seconds of ``event.from(["vm"], "", 0)`` (median of 5) on an in-process simulator after
    each total of field changes in ``steps`` (one VM's ``name_description`` set again and
    again through the dispatcher: the history grows, the objects do not)."""
    from virtdriver.xen.simulator import Simulator

    with Simulator() as sim:
        call = sim.dispatcher.call
        session = call("session.login_with_password", ["root", "secret", "2.1", "bench"])["Value"]
        vm = call("VM.create", [session, {"name_label": "history"}])["Value"]
        made = 0
        for total in steps:
            for n in range(made, total):
                call("VM.set_name_description", [session, vm, str(n)])
            made = total
            took = []
            for _ in range(5):
                t0 = time.perf_counter()
                reply = call("event.from", [session, ["vm"], "", 0.0])
                took.append(time.perf_counter() - t0)
            print(json.dumps({"history_changes": total,
                              "events": len(reply["Value"]["events"]),
                              "event_from_empty_s": round(statistics.median(took), 5)}),
                  flush=True)


def main(argv: list[str] | None = None) -> int:
    """Serial baseline, then ``--runs`` concurrent runs of ``--sessions`` clients."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sessions", type=int, default=50)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--task-seconds", type=float, default=0.2)
    parser.add_argument("--no-serial", action="store_true", help="skip the in-a-row baseline")
    parser.add_argument("--history", action="store_true",
                        help="only measure event.from('') against the length of the history")
    args = parser.parse_args(argv)
    if args.history:
        history_cost()
        return 0
    with XenSim() as sim:
        sim.inject_delay("VM.start", args.task_seconds, 1_000_000)
        first = FloorXen(sim)
        clients = [first]
        try:
            image = first.new_image()
            first.destroy(first.spawn(image, True))  # imports and caches the image (untimed)
            if not args.no_serial:
                start = time.perf_counter()
                vms = [first.spawn(image, False) for _ in range(args.sessions)]
                wall = time.perf_counter() - start
                for vm in vms:
                    first.destroy(vm)
                print(json.dumps({"serial_wall_s": round(wall, 3),
                                  "event_from_empty_s": _event_from_seconds(first)}),
                      flush=True)
            for _ in range(args.sessions - 1):
                client = FloorXen(sim)
                client.cache = first.cache
                clients.append(client)
            for run in range(1, args.runs + 1):
                result = _spawn_all(clients, image)
                result.update(run=run, sessions=args.sessions,
                              event_from_empty_s=round(_event_from_seconds(first), 5))
                print(json.dumps(result), flush=True)
        finally:
            for client in clients:
                with contextlib.suppress(Exception):  # best effort at teardown
                    client.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
