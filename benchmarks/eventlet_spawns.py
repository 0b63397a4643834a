"""Child process of the concurrency benchmark: N spawns in green threads under eventlet.

Monkey-patching must come before any other import (sockets, threads and locks of pyvmomi,
XenAPI and oslo are then green), so this runs in its own interpreter. Reads one JSON object
on stdin (backend, count, network, disk_format, hosts, options of the backend's group),
caches the image with one untimed spawn, runs ``count`` spawns in a GreenPool, destroys
them, and prints one JSON line: ``wall_s``, ``failures``, ``first_error``.
"""

import eventlet

eventlet.monkey_patch()

import json  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from typing import Any  # noqa: E402

SPAWN_SECONDS = 180.0
CLEANUP_SECONDS = 120.0


def main() -> int:
    """Run the green spawns described on stdin; print the result as one JSON line."""
    from benchmarks import common, sims
    from benchmarks.operations import LibraryClient

    payload = json.loads(sys.stdin.read())
    group = "vmware" if payload["backend"] == "vmware" else "xenserver"
    conf = sims._base_conf()
    for name, value in payload["options"].items():
        conf.set_override(name, value, group=group)
    if group == "vmware":
        conf.set_override("cluster_name", "DC0_C0", group="vmware")
    client = LibraryClient(payload["backend"], conf, payload["network"], payload["disk_format"],
                           payload["hosts"])
    count = int(payload["count"])
    made: list[Any] = []
    errors: list[str] = []
    try:
        client.warm_up()
        image = client.new_image()
        client.destroy(client.spawn(image, True))

        def one(_: int) -> None:
            try:
                made.append(client.spawn(image, False))
            except Exception as error:  # noqa: BLE001 - counted, the rest go on
                errors.append(common.unavailable_reason(error))

        pool = eventlet.GreenPool(count)
        start = time.perf_counter()
        for n in range(count):
            pool.spawn_n(one, n)
        with eventlet.Timeout(SPAWN_SECONDS, False):  # bounded: a lost event fails, not hangs
            pool.waitall()
        wall = time.perf_counter() - start
        if pool.running():
            errors.append(f"{pool.running()} spawns still running after {SPAWN_SECONDS:.0f} s")

        def destroy(instance: Any) -> None:
            try:
                client.destroy(instance)
            except Exception:  # noqa: BLE001 - best-effort cleanup
                return

        cleanup = eventlet.GreenPool(8)
        for instance in made:
            cleanup.spawn_n(destroy, instance)
        with eventlet.Timeout(CLEANUP_SECONDS, False):
            cleanup.waitall()
    finally:
        client.close()
    print(json.dumps({"wall_s": wall, "failures": len(errors),
                      "first_error": errors[0] if errors else ""}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
