"""Scale (issue 8 §5): ``list_instances`` and ``get_info`` of every instance at 1,000 and
10,000 VMs: server calls, wall time, peak memory added.

The simulators are started with that many VMs (vcsim ``-vm N`` in one cluster, powered off;
the XAPI simulator ``vms=N``). Those VMs were not made by the library, so ``list_instances``
(which returns only the backend's own instances) reads all N and returns few or none: the
figures are those of reading N VMs, and the JSON says how many names came back.

``get_info`` takes one instance at a time in the VMOps contract (Nova's power-state sync
calls it once per instance), and neither backend offers a bulk form, so it is measured per
instance, honestly: over every VM when there are at most ``sample`` of them, otherwise over
the first ``sample`` and extrapolated linearly to N (the JSON says which). It is measured
twice: the first pass pays the VM lookup, the second finds the references cached.

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


def _measure(client: Any, function: Any) -> dict[str, Any]:
    """Wall time and calls (untraced), then peak memory added (traced, calls not re-counted)."""
    client.reset()
    start = time.perf_counter()
    result = function()
    wall = time.perf_counter() - start
    calls = client.calls()
    with common.peak_memory() as memory:
        function()
    return {"wall_s": wall, "calls": sum(calls.values()), "calls_by_method": dict(sorted(
        calls.items())), "peak_added_mib": memory["peak_added_mib"], "result": result}


def _one_size(spec: Any, vms: int, sample: int) -> dict[str, Any]:
    import virtdriver
    out: dict[str, Any] = {"vms": vms}
    started = time.perf_counter()
    with spec.simulator(vms=vms) as running:
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
                               note=f"read {vms:,} VMs, returned {len(names)} of this backend's")
                library["list_instances"] = listing
            except Exception as error:  # noqa: BLE001
                library["list_instances"] = common.error_entry(error)
            chosen = instances[:sample]
            for label in ("get_info (first pass)", "get_info (cached refs)"):
                try:
                    row = _measure(client, lambda: [client.ops.get_info(i) for i in chosen])
                    row.pop("result")
                    measured = len(chosen)
                    factor = len(instances) / measured if measured else 0.0
                    row.update(measured_instances=measured,
                               calls_per_instance=row["calls"] / measured if measured else 0.0)
                    if measured < len(instances):
                        row.update(measured_calls=row["calls"], measured_wall_s=row["wall_s"],
                                   calls=round(row["calls"] * factor),
                                   wall_s=row["wall_s"] * factor,
                                   note=(f"one call at a time; measured on {measured:,} of "
                                         f"{len(instances):,}, calls and time extrapolated"))
                    else:
                        row["note"] = f"one call at a time, all {measured:,} instances"
                    row["calls_per_page"] = row["calls"] / max(1, math.ceil(
                        len(instances) / PAGE_SIZE))
                    library[label] = row
                except Exception as error:  # noqa: BLE001
                    library[label] = common.error_entry(error)
            out["library"] = library
        finally:
            client.close()
    return out


def run_section(spec: Any, sizes: list[int], sample: int) -> dict[str, Any]:
    """Issue 8 §5 for one backend: each inventory size on its own fresh simulator."""
    result: dict[str, Any] = {"sizes": {}, "page_size": PAGE_SIZE}
    for vms in sizes:
        try:
            result["sizes"][str(vms)] = _one_size(spec, vms, sample)
        except Exception as error:  # noqa: BLE001 - reported per size
            result["sizes"][str(vms)] = {"vms": vms, "library": {
                "list_instances": common.error_entry(error)}}
    listed = [(int(size), entry["library"]["list_instances"]["calls"])
              for size, entry in result["sizes"].items()
              if "calls" in entry.get("library", {}).get("list_instances", {})]
    if len(listed) > 1:
        listed.sort()
        result["list_calls_grow_with_vms"] = listed[-1][1] > listed[0][1]
    return result
