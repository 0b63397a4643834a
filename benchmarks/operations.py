"""Per-operation measurements: the library, the (fair) floor and the naive client.

Every client offers the same small interface (``new_image``, ``spawn(image, cold)``,
``destroy``, ``reboot``, ``power_off``, ``power_on``, ``snapshot``, ``resize``,
``live_migrate``, plus ``calls``/``reset``/``close``), so one :class:`Sequence` measures all
three the same way: per repetition, spawn with a cold cache (a new image) and with a warm
cache (the same image again), then the lifecycle operations on the warm-spawned VM, then
destroy both; the three clients take turns operation by operation. Each operation is timed alone and
its server calls counted alone.

:class:`LibraryClient` drives a backend loaded by ``virtdriver.load_backend`` through the
VMOps contract only, with Nova's signatures, and reads the backend's own call accounting.
"""

from __future__ import annotations

import contextlib
import shutil
import tempfile
import time
import uuid as uuid_module
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from benchmarks import common

#: Operations in the order they are reported.
OPERATIONS = ["spawn_cold", "spawn_warm", "destroy", "reboot", "power_off", "power_on",
              "snapshot", "resize", "live_migrate"]


class LibraryClient:
    """A backend loaded through ``virtdriver.load_backend``, seen only through VMOps.

    ``network`` is the hypervisor-side network name of the instances' one VIF,
    ``disk_format`` the image format the backend boots, ``hosts`` the host names a live
    migration alternates between.
    """

    name = "library"

    def __init__(self, backend: str, conf: Any, network: str, disk_format: str,
                 hosts: list[str], resize_dest: str = "") -> None:
        import virtdriver

        self.virtdriver = virtdriver
        self.backend_name = backend
        self.network = network
        self.disk_format = disk_format
        self.hosts = hosts
        # Xen's migrate_disk_and_power_off needs the destination (its XAPI URL); VMware
        # resizes in place and takes "".
        self.resize_dest = resize_dest
        self.image_dir = Path(tempfile.mkdtemp(prefix="virtdriver-bench-images-"))
        try:
            self.images = virtdriver.LocalImageStore(self.image_dir / "store")
            self.image_file = self.image_dir / "bench.img"
            from benchmarks.raw_vmware import image_bytes
            self.image_file.write_bytes(image_bytes())
            self.ops = virtdriver.load_backend(backend, conf, image_store=self.images)
        except BaseException:
            shutil.rmtree(self.image_dir, ignore_errors=True)
            raise
        self._count = 0

    # -- accounting --------------------------------------------------------------------------------

    def warm_up(self) -> None:
        """Log in and read the inventory once, so no measured operation pays for first use."""
        self.ops.list_instances()

    def reset(self) -> None:
        """Start counting afresh (every backend records its server calls in ``ops.stats``)."""
        self.ops.stats.reset()

    def calls(self) -> dict[str, int]:
        """Calls since the last reset."""
        return self.ops.stats.snapshot()

    def close(self) -> None:
        """Log out and remove the image store's directory."""
        try:
            self.ops.close()
        finally:
            shutil.rmtree(self.image_dir, ignore_errors=True)

    # -- inputs ------------------------------------------------------------------------------------

    def new_image(self) -> Any:
        """A new image in the store (a new id: the first spawn with it finds no cache)."""
        return self.images.import_file(self.image_file, disk_format=self.disk_format,
                                       name=f"bench-{uuid_module.uuid4().hex[:8]}")

    def flavor(self, large: bool = False) -> Any:
        """The benchmark flavors: 1 vCPU/256 MiB, or 2 vCPU/512 MiB; 1 GiB root either way."""
        return self.virtdriver.Flavor(vcpus=2 if large else 1, memory_mb=512 if large else 256,
                                      root_gb=1, name="large" if large else "small")

    def instance(self) -> Any:
        """A new instance with a unique uuid and name."""
        self._count += 1
        uuid = str(uuid_module.uuid4())
        return self.virtdriver.Instance(uuid=uuid, name=f"bench-{uuid[:8]}",
                                        flavor=self.flavor())

    def network_info(self) -> list[Any]:
        """One VIF on the benchmark network."""
        mac = "fa:16:3e:" + ":".join(f"{b:02x}" for b in uuid_module.uuid4().bytes[:3])
        return [self.virtdriver.VIF(id=str(uuid_module.uuid4()), address=mac,
                                    network=self.network)]

    # -- operations ------------------------------------------------------------------------------

    def spawn(self, image: Any, cold: bool = False) -> Any:
        """``VMOps.spawn`` of a new instance; ``cold`` only says which image the caller chose."""
        instance = self.instance()
        instance.bench_vifs = self.network_info()
        instance.bench_image = image
        self.ops.spawn(None, instance, image, injected_files=[], admin_password=None,
                       network_info=instance.bench_vifs)
        return instance

    def destroy(self, instance: Any) -> None:
        """``VMOps.destroy``."""
        self.ops.destroy(instance, instance.bench_vifs)

    def reboot(self, instance: Any) -> None:
        """``VMOps.reboot`` HARD (a reset: SOFT would wait on a guest the simulators lack)."""
        self.ops.reboot(instance, instance.bench_vifs, reboot_type="HARD")

    def power_off(self, instance: Any) -> None:
        """``VMOps.power_off`` (hard, as Nova asks with timeout 0)."""
        self.ops.power_off(instance)

    def power_on(self, instance: Any) -> None:
        """``VMOps.power_on``."""
        self.ops.power_on(instance)

    def snapshot(self, instance: Any) -> None:
        """``VMOps.snapshot`` into an image the caller created, as Nova does with Glance."""
        target = self.images.create(None, {"name": f"snap-{instance.name}",
                                           "disk_format": self.disk_format})
        self.ops.snapshot(None, instance, target.id, lambda **kwargs: None)
        self.images.delete(target.id)

    def resize(self, instance: Any) -> None:
        """Nova's resize: migrate_disk_and_power_off, finish_migration, confirm_migration."""
        large = instance.flavor.name != "large"
        new_flavor = self.flavor(large)
        disk_info = self.ops.migrate_disk_and_power_off(None, instance, self.resize_dest,
                                                        new_flavor)
        instance.flavor = new_flavor  # Nova applies the new flavor before finish_migration
        self.ops.finish_migration(None, None, instance, disk_info, instance.bench_vifs,
                                  instance.bench_image, resize_instance=True, power_on=True)
        self.ops.confirm_migration(None, instance, instance.bench_vifs)

    def live_migrate(self, instance: Any) -> None:
        """Nova's live migration: both checks, pre, the move, and the post steps."""
        index = (getattr(instance, "bench_host", 0) + 1) % max(1, len(self.hosts))
        instance.bench_host = index
        destination = self.hosts[index] if self.hosts else ""
        dest_data = self.ops.check_can_live_migrate_destination(None, instance)
        migrate_data = self.ops.check_can_live_migrate_source(None, instance, dest_data)
        migrate_data = self.ops.pre_live_migration(None, instance, None, instance.bench_vifs,
                                                   None, migrate_data) or migrate_data
        failures: list[Any] = []
        self.ops.live_migrate(None, instance, destination, lambda *a, **k: None,
                              lambda *a, **k: failures.append(a), False, migrate_data)
        if failures:
            raise common.Unavailable("live_migrate called recover_method")
        self.ops.post_live_migration(None, instance, migrate_data)
        self.ops.post_live_migration_at_destination(None, instance, instance.bench_vifs)


# -- the sequence runner ---------------------------------------------------------------------------

def _timed(client: Any, operation: Callable[[], Any]) -> tuple[Any, float, dict[str, int]]:
    client.reset()
    start = time.perf_counter()
    result = operation()
    elapsed = time.perf_counter() - start
    return result, elapsed, client.calls()


class Sequence:
    """Every operation measured on one client, one step at a time (see :meth:`steps`), so
    the section can interleave the clients operation by operation: a machine whose load
    changes over the run then weighs on each client alike."""

    def __init__(self, client: Any) -> None:
        self.client = client
        self.seconds: dict[str, list[float]] = {op: [] for op in OPERATIONS}
        self.calls: dict[str, list[dict[str, int]]] = {op: [] for op in OPERATIONS}
        self.errors: dict[str, dict[str, Any]] = {}

    def _attempt(self, op: str, function: Callable[[], Any]) -> Any:
        try:
            result, elapsed, counted = _timed(self.client, function)
        except Exception as error:  # noqa: BLE001 - reported per operation, never fatal
            self.errors.setdefault(op, common.error_entry(error))
            return None
        self.seconds[op].append(elapsed)
        self.calls[op].append(counted)
        return result if result is not None else True

    def steps(self) -> Iterator[None]:
        """One repetition, pausing after each operation: spawn cold and warm, the lifecycle
        operations on the warm-spawned VM, then destroy both (the same number of steps
        whatever fails, so clients can take turns step by step)."""
        client = self.client
        try:
            image = client.new_image()
        except Exception as error:  # noqa: BLE001
            for op in OPERATIONS:
                self.errors.setdefault(op, common.error_entry(error))
            image = None
        vms = []
        for op, cold in (("spawn_cold", True), ("spawn_warm", False)):
            vm = None if image is None else self._attempt(
                op, lambda cold=cold: client.spawn(image, cold))
            vms.append(vm)
            yield
        subject = vms[1] if vms[1] not in (None, True) else None
        for op in ("power_off", "power_on", "reboot", "snapshot", "resize", "live_migrate"):
            if subject is None:
                self.errors.setdefault(op, {"error": "not measured: spawn failed"})
            else:
                self._attempt(op, lambda op=op, vm=subject: getattr(client, op)(vm))
            yield
        for vm in vms:
            if vm in (None, True):
                self.errors.setdefault("destroy", {"error": "not measured: spawn failed"})
            else:
                self._attempt("destroy", lambda vm=vm: client.destroy(vm))
            yield

    def result(self) -> dict[str, Any]:
        """``{operation: summary}`` (:func:`common.summarize`), or ``{"error": ...}`` for an
        operation that never succeeded."""
        result: dict[str, Any] = {}
        for op in OPERATIONS:
            if self.seconds[op]:
                result[op] = common.summarize(self.seconds[op], self.calls[op])
                if op in self.errors:
                    result[op]["partial_error"] = self.errors[op]["error"]
            else:
                result[op] = self.errors.get(op, {"error": "not measured"})
        return result


def compare(library: dict[str, Any], floor: dict[str, Any],
            naive: dict[str, Any]) -> dict[str, Any]:
    """Per operation: library calls and time, floor time and ratio, naive time and ratio."""
    rows: dict[str, Any] = {}
    for op in OPERATIONS:
        lib, flo, nai = library.get(op, {}), floor.get(op, {}), naive.get(op, {})
        lib_s = lib.get("median_s") if "median_s" in lib else None
        flo_s = flo.get("median_s") if "median_s" in flo else None
        nai_s = nai.get("median_s") if "median_s" in nai else None
        rows[op] = {
            "library_calls": lib.get("calls"), "library_s": lib_s,
            "floor_calls": flo.get("calls"), "floor_s": flo_s,
            "naive_calls": nai.get("calls"), "naive_s": nai_s,
            "library_over_floor": common.ratio(lib_s, flo_s),
            "naive_over_library": common.ratio(nai_s, lib_s),
            "errors": {name: part["error"] for name, part in
                       (("library", lib), ("floor", flo), ("naive", nai)) if "error" in part},
        }
    return rows


#: Xen verbs made to last on the simulator, for every client alike: real starts, reboots
#: and migrations take time, and a client that polls shows it only when they do.
LASTING_XEN_VERBS = ("VM.start", "VM.start_on", "VM.hard_reboot", "VM.pool_migrate")
LASTING_SECONDS = 0.2


def run_section(spec: Any, runs: int) -> dict[str, Any]:
    """One backend: library, floor and naive on one fresh simulator, their repetitions
    interleaved."""
    results: dict[str, Any] = {}
    with spec.simulator() as running:
        if spec.name == "xen":
            for verb in LASTING_XEN_VERBS:
                running.inject_delay(verb, LASTING_SECONDS, 1_000_000)
            results["lasting"] = {"verbs": list(LASTING_XEN_VERBS), "seconds": LASTING_SECONDS}
        sequences: dict[str, Sequence] = {}
        try:
            for kind in ("library", "floor", "naive"):
                try:
                    sequences[kind] = Sequence(getattr(spec, kind)(running))
                except common.Unavailable as error:
                    results[kind] = {op: {"error": str(error)} for op in OPERATIONS}
            for _ in range(max(1, runs)):
                # the clients take turns operation by operation, so a change in the
                # machine's load weighs on each alike
                for _steps in zip(*(sequence.steps() for sequence in sequences.values())):
                    pass
            for kind, sequence in sequences.items():
                results[kind] = sequence.result()
        finally:
            for sequence in sequences.values():
                with contextlib.suppress(Exception):  # teardown against a live simulator
                    sequence.client.close()
    results["comparison"] = compare(results["library"], results["floor"], results["naive"])
    return results
