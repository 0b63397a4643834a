"""Run the XAPI simulator in its own process for the benchmarks, controlled over stdin.

The benchmarks keep the simulator out of their own process so that its CPU time does not
share the client's interpreter lock and its memory is not counted in the client's peak.
Protocol: one JSON line on stdout once listening (``{"url": ..., "pid": ...}``); then each
stdin line is a JSON command answered by one JSON line:

* ``{"delay": ["VM.start", 1.0, 1]}``: ``Simulator.inject_delay(method, seconds, count)``;
* ``{"clear": true}``: ``Simulator.clear_faults()``;
* ``{"adopt": true}``: every VM that is no template and no control domain gets
  ``other_config:nova_uuid`` (its own uuid), so it counts as an instance of the library's
  (the scale benchmark's inventory; set in this process, no call per VM);
* ``{"ping": true}``: answers ``{"ok": true}``.

End of stdin (the parent closed it or died) stops the simulator and exits, so no server
outlives its benchmark.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any


def _answer(payload: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(payload) + "\n")
    sys.stdout.flush()


def _adopt(sim: Any) -> None:
    db = sim.backend.db
    for ref, record in db.all("VM").items():
        if record.get("is_a_template") or record.get("is_control_domain"):
            continue
        db.update("VM", ref, other_config={**(record.get("other_config") or {}),
                                           "nova_uuid": record["uuid"]})


def main(argv: list[str] | None = None) -> int:
    """Start the simulator with the given inventory, serve commands until stdin closes."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--username", default="root")
    parser.add_argument("--password", required=True)
    parser.add_argument("--hosts", type=int, default=2)
    parser.add_argument("--vms", type=int, default=0)
    args = parser.parse_args(argv)

    from virtdriver.xen.simulator import Simulator

    # Generous HTTP limits: the scale section reads 10,000 VM records (tens of MB) while
    # tracemalloc slows the client's parsing down several times; the server's defaults
    # (limits for hostile clients) would cut such a reply off mid-way.
    sim = Simulator("127.0.0.1", port=0, username=args.username, password=args.password,
                    hosts=args.hosts, vms=args.vms, header_timeout=600.0, idle_timeout=600.0)
    sim.start()
    try:
        _answer({"url": sim.url})
        for line in sys.stdin:
            line = line.strip()
            if not line:
                continue
            try:
                command = json.loads(line)
                if "delay" in command:
                    method, seconds, count = command["delay"]
                    sim.inject_delay(method, float(seconds), int(count))
                if command.get("clear"):
                    sim.clear_faults()
                if command.get("adopt"):
                    _adopt(sim)
                _answer({"ok": True})
            except Exception as error:  # reported to the parent, never fatal
                _answer({"ok": False, "error": f"{type(error).__name__}: {error}"})
    finally:
        sim.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
