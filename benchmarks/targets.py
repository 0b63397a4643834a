"""Issue 8's targets, each judged from this run's measurements (never hard-coded).

``met`` is True or False when the figure was measured, None when it could not be (the
``figure`` then says why).
"""

from __future__ import annotations

from typing import Any

from benchmarks.common import target

WARM_SPAWN_MAX_CALLS = 10
DESTROY_MAX_CALLS = 6
LIBRARY_OVER_FLOOR_MAX = 1.5
NAIVE_OVER_LIBRARY_MIN = 3.0
TASK_HEARD_MAX_S = 0.050
TASK_WAIT_MAX_CALLS = 3
LISTING_VMS = 10_000
LISTING_MAX_CALLS_PER_PAGE = 3
LISTING_MAX_ADDED_MIB = 200.0
CONCURRENCY_MIN_SPEEDUP = 5.0


def _calls_target(name: str, ops: dict[str, Any], op: str, limit: int) -> dict[str, Any]:
    entry = (ops.get("library") or {}).get(op) or {}
    if "calls" not in entry:
        return target(name, None, entry.get("error", "not measured"), f"<= {limit} calls")
    calls = entry["calls"]
    return target(name, calls <= limit, f"{calls} calls (median run)", f"<= {limit} calls")


def _operation_targets(backend: str, ops: dict[str, Any]) -> list[dict[str, Any]]:
    found = [_calls_target(f"{backend}: warm spawn calls", ops, "spawn_warm",
                           WARM_SPAWN_MAX_CALLS),
             _calls_target(f"{backend}: destroy calls", ops, "destroy", DESTROY_MAX_CALLS)]
    comparison = ops.get("comparison") or {}
    ratios = {op: row["library_over_floor"] for op, row in comparison.items()
              if row.get("library_over_floor") is not None}
    missing = sorted(op for op in comparison if op not in ratios)
    if ratios:
        worst = max(ratios, key=lambda op: ratios[op])
        over = sorted(op for op, r in ratios.items() if r > LIBRARY_OVER_FLOOR_MAX)
        figure = (f"worst {worst} {ratios[worst]:.2f}x; over the limit: {', '.join(over) or 'none'}"
                  + (f"; not measured: {', '.join(missing)}" if missing else ""))
        met: bool | None = not over if not missing else (False if over else None)
    else:
        figure, met = "not measured", None
    found.append(target(f"{backend}: library / floor, every operation", met, figure,
                        f"<= {LIBRARY_OVER_FLOOR_MAX}x"))
    for op in ("spawn_cold", "spawn_warm"):
        row = comparison.get(op) or {}
        value = row.get("naive_over_library")
        if value is None:
            errors = {k: v for k, v in (row.get("errors") or {}).items()
                      if k in ("library", "naive")}
            found.append(target(f"{backend}: naive / library, {op}", None,
                                "; ".join(f"{k}: {v}" for k, v in errors.items())
                                or "not measured", f">= {NAIVE_OVER_LIBRARY_MIN}x"))
        else:
            found.append(target(f"{backend}: naive / library, {op}",
                                value >= NAIVE_OVER_LIBRARY_MIN, f"{value:.2f}x",
                                f">= {NAIVE_OVER_LIBRARY_MIN}x"))
    return found


def _task_targets(backend: str, section: dict[str, Any]) -> list[dict[str, Any]]:
    entry = (section.get("library") or {}).get("wait") or {}
    name = f"{backend}: finished task heard (library)"
    limit = f"<= {TASK_HEARD_MAX_S * 1000:.0f} ms at <= {TASK_WAIT_MAX_CALLS} calls"
    if "heard_after_s" not in entry:
        return [target(name, None, entry.get("error") or section.get("error")
                       or "not measured", limit)]
    heard, calls = entry["heard_after_s"], entry["wait_calls"]
    worst = f" (worst length: {entry['task_seconds']} s)" if "task_seconds" in entry else ""
    return [target(name, heard <= TASK_HEARD_MAX_S and calls <= TASK_WAIT_MAX_CALLS,
                   f"{heard * 1000:.1f} ms after the server finished{worst}, "
                   f"at most {calls} calls", limit)]


def _scale_targets(backend: str, section: dict[str, Any]) -> list[dict[str, Any]]:
    sizes = section.get("sizes") or {}
    name = f"{backend}: {LISTING_VMS:,}-VM listing"
    limit = (f"<= {LISTING_MAX_CALLS_PER_PAGE} calls per page of maximum_objects, "
             f"< {LISTING_MAX_ADDED_MIB:.0f} MiB added")
    if not sizes:
        return [target(name, None, section.get("error") or "not measured", limit)]
    largest = max(sizes, key=int)
    listing = (sizes[largest].get("library") or {}).get("list_instances") or {}
    if "calls" not in listing:
        return [target(name, None, listing.get("error") or "not measured", limit)]
    per_page = listing["calls_per_page"]
    memory = listing["peak_added_mib"]
    note = "" if int(largest) >= LISTING_VMS else f" (measured at {int(largest):,} VMs only)"
    met: bool | None = per_page <= LISTING_MAX_CALLS_PER_PAGE and memory < LISTING_MAX_ADDED_MIB
    if int(largest) < LISTING_VMS and met:
        met = None  # a smaller inventory cannot show the 10,000-VM target is met
    found = [target(name, met, f"{listing['calls']} calls = {per_page:.2f} per page, "
                    f"{memory:.1f} MiB{note}", limit)]
    found.append(_growth_target(backend, sizes))
    return found


def _growth_target(backend: str, sizes: dict[str, Any]) -> dict[str, Any]:
    """Section 5's rule: the number of calls must not grow with the number of VMs."""
    name = f"{backend}: calls do not grow with the VMs (listing and get_info of every one)"
    limit = "same calls at every inventory size"
    if len(sizes) < 2:
        return target(name, None, "needs two inventory sizes (full run)", limit)
    small, large = sorted(sizes, key=int)[0], sorted(sizes, key=int)[-1]
    parts, grows = [], False
    for op in ("list_instances", "get_info (cached refs)"):
        a = (sizes[small].get("library") or {}).get(op) or {}
        b = (sizes[large].get("library") or {}).get(op) or {}
        if "calls" not in a or "calls" not in b:
            return target(name, None, f"{op} not measured at both sizes", limit)
        grows = grows or b["calls"] > a["calls"]
        parts.append(f"{op}: {a['calls']} -> {b['calls']}")
    return target(name, not grows, f"{int(small):,} -> {int(large):,} VMs: " + "; ".join(parts),
                  limit)


def _concurrency_targets(backend: str, section: dict[str, Any]) -> list[dict[str, Any]]:
    found = _concurrency_rows(backend, section, "instant tasks")
    slow = section.get("slow_tasks")
    if slow:
        slow = {"count": section.get("count"), **slow}
        found += _concurrency_rows(backend, slow, f"{slow.get('task_seconds')} s power-on")
    return found


def _concurrency_rows(backend: str, section: dict[str, Any], label: str) -> list[dict[str, Any]]:
    found = []
    count = section.get("count")
    for mode in ("threads", "eventlet"):
        entry = section.get(mode) or {}
        name = f"{backend}: {count or '?'} concurrent spawns ({mode}, {label}) vs in a row"
        limit = f">= {CONCURRENCY_MIN_SPEEDUP}x"
        if "speedup" not in entry:
            found.append(target(name, None, entry.get("error") or section.get("error")
                                or "not measured", limit))
            continue
        serial = section["serial"]["wall_s"]
        figure = f"{entry['speedup']:.2f}x ({entry['wall_s']:.2f} s vs {serial:.2f} s in a row)"
        if entry.get("failures"):
            figure += f"; {entry['failures']} failed"
        found.append(target(name, entry["speedup"] >= CONCURRENCY_MIN_SPEEDUP
                            and not entry.get("failures"), figure, limit))
    return found


def judge(sections: dict[str, Any]) -> list[dict[str, Any]]:
    """Every target of issue 8 for every backend that ran the section concerned."""
    judged: list[dict[str, Any]] = []
    for section, judge_one in (("operations", _operation_targets), ("task_wait", _task_targets),
                               ("scale", _scale_targets),
                               ("concurrency", _concurrency_targets)):
        for backend, result in (sections.get(section) or {}).items():
            if "error" in result and len(result) <= 3:
                judged.append(target(f"{backend}: {section}", None, result["error"], "-"))
                continue
            judged.extend(judge_one(backend, result))
    return judged
