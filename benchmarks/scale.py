"""Scale: ``list_instances`` and Nova's power-state sync of every instance, at 1,000 and
10,000 VMs: server calls, wall time, peak memory added.

The simulators are started with that many VMs (vcsim ``-vm N`` in one cluster, powered off;
the XAPI simulator ``vms=N``), which are then made the backend's own before anything is
measured (untimed): VMware marks each ``managedBy`` virtdriver (one ReconfigVM each), the
XAPI simulator's VMs get ``other_config:nova_uuid`` (set inside the simulator's process). So
``list_instances`` reads and returns all N, and the event channel reports all N.

Nova's ``_sync_power_states`` asks ``get_num_instances`` (``list_instances``) once, then
``get_info`` of every instance. It is measured twice:

* **channel live**: the backend's event channel (``virtdriver.<backend>.events``) feeds
  ``ops.power_cache`` in a thread, as the Nova adapter's EventPump does; once its first
  answer is in, the sync is timed over every instance. Its calls are the sync's own; the
  channel's long polls in that time are counted apart (they are per second, not per
  instance);
* **no channel**: ``get_info`` asks the server (a call each): over every VM when there are
  at most ``sample`` of them, otherwise over the first ``sample`` and extrapolated linearly
  to N (the JSON says which).

Wall time is measured without tracing; memory in a second, traced pass (tracemalloc slows
Python down, so the two are never mixed). Memory is the peak of Python allocations the call
added in this process; the simulators run in their own processes.
"""

from __future__ import annotations

import math
import time
from typing import Any

from benchmarks import common

#: Page size used to express listing calls "per page" (Nova's and our maximum_objects default).
PAGE_SIZE = 100


def _instances(spec: Any, running: Any, virtdriver: Any) -> list[Any]:
    """An Instance per simulator VM (its name and a uuid the backend can find it by)."""
    flavor = virtdriver.Flavor(vcpus=1, memory_mb=256, root_gb=1)
    found: list[tuple[str, str]] = []
    if spec.name == "vmware":
        from pyVmomi import vim

        from benchmarks.raw_vmware import RawConnection
        conn = RawConnection(spec.raw_sim(running))
        try:
            view = conn.content.viewManager.CreateContainerView(
                conn.content.rootFolder, [vim.VirtualMachine], True)
            from pyVmomi import vmodl
            pc = vmodl.query.PropertyCollector
            spec_ = pc.FilterSpec(
                objectSet=[pc.ObjectSpec(obj=view, skip=True, selectSet=[pc.TraversalSpec(
                    name="v", type=vim.view.ContainerView, path="view", skip=False)])],
                propSet=[pc.PropertySpec(type=vim.VirtualMachine,
                                         pathSet=["name", "config.instanceUuid"])])
            result = conn.content.propertyCollector.RetrievePropertiesEx([spec_],
                                                                        pc.RetrieveOptions())
            while result is not None:
                for obj in result.objects or []:
                    props = {p.name: p.val for p in obj.propSet or []}
                    if props.get("config.instanceUuid"):
                        found.append((props["name"], props["config.instanceUuid"]))
                if not result.token:
                    break
                result = conn.content.propertyCollector.ContinueRetrievePropertiesEx(
                    result.token)
            view.DestroyView()
        finally:
            conn.close()
    else:
        from benchmarks.raw_xen import RawXen
        raw = RawXen(running)
        try:
            records = raw.api.VM.get_all_records()
        finally:
            raw.close()
        found = [(r["name_label"], r["uuid"]) for r in records.values()
                 if not r["is_control_domain"] and not r["is_a_template"]]
    found.sort()
    return [virtdriver.Instance(uuid=uuid, name=name, flavor=flavor) for name, uuid in found]


def _adopt(spec: Any, running: Any) -> None:
    """Make every VM of the simulator the backend's own (untimed setup, see the docstring)."""
    if spec.name == "xen":
        running.command({"adopt": True})
        return
    import concurrent.futures

    from pyVmomi import vim

    from benchmarks.raw_vmware import RawConnection
    from virtdriver.vmware.vm_util import MANAGED_BY
    conn = RawConnection(spec.raw_sim(running))
    try:
        view = conn.content.viewManager.CreateContainerView(
            conn.content.rootFolder, [vim.VirtualMachine], True)
        vms = list(view.view)
        view.DestroyView()
        config = vim.vm.ConfigSpec(managedBy=MANAGED_BY)
        with concurrent.futures.ThreadPoolExecutor(16) as pool:
            tasks = list(pool.map(lambda vm: vm.ReconfigVM_Task(config), vms))
        from pyVim.task import WaitForTasks
        for start in range(0, len(tasks), 500):
            WaitForTasks(tasks[start:start + 500], si=conn.si)
    finally:
        conn.close()


class _Feeder:
    """The backend's event channel feeding ``ops.power_cache`` in a thread (as the Nova
    adapter's EventPump does), until stopped."""

    WAIT_SECONDS = 2.0

    def __init__(self, spec: Any, ops: Any) -> None:
        import threading
        if spec.name == "vmware":
            from virtdriver.vmware.events import PowerStateChannel
            channel: Any = PowerStateChannel(ops.session, ops.inventory.vm_folder)
        else:
            from virtdriver.xen.events import PowerStateChannel as XenChannel
            channel = XenChannel(ops.session)
        self.channel = ops.power_cache.feed(channel)
        self.error: BaseException | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="bench-feeder", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        try:
            while not self._stop.is_set():
                self.channel.wait(self.WAIT_SECONDS)
        except BaseException as error:  # noqa: BLE001 - reported by the measurement
            self.error = error

    def wait_live(self, ops: Any, timeout: float = 300.0) -> None:
        """Until the channel's first answer is in (bounded)."""
        deadline = time.monotonic() + timeout
        while not ops.power_cache.live:
            if self.error is not None:
                raise common.Unavailable(f"event channel failed: {self.error}")
            if time.monotonic() > deadline:
                raise common.Unavailable(f"event channel silent for {timeout:.0f} s")
            time.sleep(0.05)

    def stop(self) -> None:
        """Stop the thread (within one wait) and close the channel."""
        self._stop.set()
        self._thread.join(self.WAIT_SECONDS * 5)
        self.channel.close()


#: The event channels' own long polls, counted apart from a sync's calls.
CHANNEL_METHODS = ("WaitForUpdatesEx", "event.from")


def _measure(client: Any, function: Any, memory_pass: bool = True) -> dict[str, Any]:
    """Wall time and calls (untraced), then peak memory added (traced, calls not re-counted;
    left out when not ``memory_pass``: None).

    Calls of the event channel's long polls are counted apart (``channel_calls``)."""
    client.reset()
    start = time.perf_counter()
    result = function()
    wall = time.perf_counter() - start
    counted = client.calls()
    calls = {m: n for m, n in counted.items() if m not in CHANNEL_METHODS}
    peak = None
    if memory_pass:
        with common.peak_memory() as memory:
            function()
        peak = memory["peak_added_mib"]
    return {"wall_s": wall, "calls": sum(calls.values()), "calls_by_method": dict(sorted(
        calls.items())), "channel_calls": sum(counted.values()) - sum(calls.values()),
        "peak_added_mib": peak, "result": result}


def _sync(client: Any, instances: list[Any]) -> int:
    """Nova's power-state sync: the number of instances, then each one's state."""
    client.ops.list_instances()
    return len([client.ops.get_info(i) for i in instances])


def _one_size(spec: Any, vms: int, sample: int) -> dict[str, Any]:
    import virtdriver
    out: dict[str, Any] = {"vms": vms}
    started = time.perf_counter()
    with spec.simulator(vms=vms) as running:
        _adopt(spec, running)
        out["simulator_start_s"] = time.perf_counter() - started
        client = spec.library(running)
        try:
            instances = _instances(spec, running, virtdriver)
            out["vms_found"] = len(instances)
            library: dict[str, Any] = {}
            try:
                listing = _measure(client, client.ops.list_instances)
                names = listing.pop("result")
                pages = max(1, math.ceil(vms / PAGE_SIZE))
                listing.update(returned=len(names), pages=pages,
                               calls_per_page=listing["calls"] / pages,
                               note=f"read {vms:,} VMs, returned {len(names)} names")
                library["list_instances"] = listing
            except Exception as error:  # noqa: BLE001
                library["list_instances"] = common.error_entry(error)
            library["power-state sync, channel live"] = _sync_live(spec, client, instances)
            library["power-state sync, no channel"] = _sync_polled(client, instances, sample)
            out["library"] = library
        finally:
            client.close()
    return out


def _sync_live(spec: Any, client: Any, instances: list[Any]) -> dict[str, Any]:
    feeder = None
    try:
        started = time.perf_counter()
        feeder = _Feeder(spec, client.ops)
        feeder.wait_live(client.ops)
        baseline_s = time.perf_counter() - started
        row = _measure(client, lambda: _sync(client, instances))
        row.pop("result")
        if feeder.error is not None:
            raise common.Unavailable(f"event channel failed: {feeder.error}")
        row.update(measured_instances=len(instances), channel_first_answer_s=baseline_s,
                   note=f"list_instances + get_info of all {len(instances):,}; the channel's "
                        f"own polls meanwhile: {row['channel_calls']}")
        return row
    except Exception as error:  # noqa: BLE001
        return common.error_entry(error)
    finally:
        if feeder is not None:
            feeder.stop()


def _sync_polled(client: Any, instances: list[Any], sample: int) -> dict[str, Any]:
    chosen = instances[:sample]
    try:
        # a call per instance: the time is what matters, no second (traced) pass
        row = _measure(client, lambda: _sync(client, chosen), memory_pass=False)
    except Exception as error:  # noqa: BLE001
        return common.error_entry(error)
    row.pop("result")
    measured = len(chosen)
    factor = len(instances) / measured if measured else 0.0
    row.update(measured_instances=measured)
    if measured < len(instances):
        row.update(measured_calls=row["calls"], measured_wall_s=row["wall_s"],
                   calls=round(row["calls"] * factor), wall_s=row["wall_s"] * factor,
                   note=(f"a call per instance; measured on {measured:,} of "
                         f"{len(instances):,}, calls and time extrapolated"))
    else:
        row["note"] = f"a call per instance, all {measured:,}"
    return row


def run_section(spec: Any, sizes: list[int], sample: int) -> dict[str, Any]:
    """One backend: each inventory size on its own fresh simulator."""
    result: dict[str, Any] = {"sizes": {}, "page_size": PAGE_SIZE}
    for vms in sizes:
        try:
            result["sizes"][str(vms)] = _one_size(spec, vms, sample)
        except Exception as error:  # noqa: BLE001 - reported per size
            result["sizes"][str(vms)] = {"vms": vms, "library": {
                "list_instances": common.error_entry(error)}}
    return result
