"""Child process of the concurrency benchmark: N spawns in green threads under eventlet.

Monkey-patching must come before any other import (sockets, threads and locks of pyvmomi,
XenAPI and oslo are then green), so this runs in its own interpreter. Reads one JSON object
on stdin (backend, count, network, disk_format, hosts, options of the backend's group,
``raw``), caches the image with one untimed spawn, runs ``count`` spawns in a GreenPool,
destroys them, and prints one JSON line: ``wall_s``, ``failures``, ``first_error``. With
``raw``, the raw client (the floor, a connection and login per green thread, built before
the clock starts) does the same after the library, under the same monkey-patching, and the
line also holds ``raw``: its ``wall_s``, ``failures``, ``first_error``.
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
    out: dict[str, Any] = {"wall_s": wall, "failures": len(errors),
                           "first_error": errors[0] if errors else ""}
    if payload.get("raw"):
        out["raw"] = _raw(payload, count)
    print(json.dumps(out))
    return 0


class _Sim:
    """What the raw clients read of a simulator, from the backend's options."""

    def __init__(self, backend: str, options: dict[str, Any]) -> None:
        if backend == "vmware":
            self.host, self.port = options["host_ip"], options["host_port"]
            self.username, self.password = options["host_username"], options["host_password"]
            self.ca_file = options["ca_file"]
        else:
            self.url = options["connection_url"]
            self.username = options["connection_username"]
            self.password = options["connection_password"]

    def ssl_context(self) -> Any:
        """A context that trusts the simulator's CA."""
        import ssl
        return ssl.create_default_context(cafile=self.ca_file)


def _raw(payload: dict[str, Any], count: int) -> dict[str, Any]:
    """``count`` floor clients, one green thread each, one warm spawn each; then cleanup."""
    from benchmarks import common
    if payload["backend"] == "vmware":
        from benchmarks.floor_vmware import FloorVmware as Floor
    else:
        from benchmarks.floor_xen import FloorXen as Floor  # type: ignore[assignment]
    sim = _Sim(payload["backend"], payload["options"])
    clients: list[Any] = []
    made: list[Any] = []
    errors: list[str] = []
    try:
        first = Floor(sim)
        clients.append(first)
        image = first.new_image()
        first.destroy(first.spawn(image, True))  # caches the image (untimed)
        for _ in range(count - 1):
            other = Floor(sim)
            if hasattr(first, "cache"):
                other.cache = first.cache  # the Xen floor remembers its cached VDI
            clients.append(other)

        def one(floor: Any) -> None:
            try:
                made.append((floor, floor.spawn(image, False)))
            except Exception as error:  # noqa: BLE001 - counted, the rest go on
                errors.append(common.unavailable_reason(error))

        pool = eventlet.GreenPool(count)
        start = time.perf_counter()
        for floor in clients:
            pool.spawn_n(one, floor)
        with eventlet.Timeout(SPAWN_SECONDS, False):
            pool.waitall()
        wall = time.perf_counter() - start
        cleanup = eventlet.GreenPool(8)
        for floor, vm in made:
            cleanup.spawn_n(lambda f, v: f.destroy(v), floor, vm)
        with eventlet.Timeout(CLEANUP_SECONDS, False):
            cleanup.waitall()
        return {"wall_s": wall, "failures": len(errors),
                "first_error": errors[0] if errors else ""}
    except Exception as error:  # noqa: BLE001 - reported, the section goes on
        return {"error": common.unavailable_reason(error)}
    finally:
        for floor in clients:
            try:
                floor.close()
            except Exception:  # noqa: BLE001 - best effort at teardown
                continue


if __name__ == "__main__":
    sys.exit(main())
