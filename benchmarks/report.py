"""Tables of a benchmark run (rich), one per section, and the targets."""

from __future__ import annotations

from typing import Any

from rich.console import Console
from rich.table import Table

_CONSOLE: Console | None = None


def console() -> Console:
    """The one console every table goes to (wide, so the tables never wrap in a log)."""
    global _CONSOLE
    if _CONSOLE is None:
        _CONSOLE = Console(width=160)
    return _CONSOLE


def _ms(seconds: float | None) -> str:
    return "-" if seconds is None else f"{seconds * 1000:.1f}"


def _x(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}x"


def _n(value: Any) -> str:
    return "-" if value is None else str(value)


def progress(section: str, backend: str, outcome: dict[str, Any]) -> None:
    """One line as each section finishes, so a long run shows it is alive."""
    state = f"error: {outcome['error']}" if "error" in outcome and len(outcome) <= 3 else "done"
    console().print(f"[bold]{section}[/bold] on {backend}: {state} "
                    f"({outcome.get('section_wall_s', 0):.1f} s)")


def operations_table(backend: str, result: dict[str, Any]) -> Table:
    """Per operation: library calls and time, floor and naive, and the two ratios."""
    table = Table(title=f"{backend}: operations (median of runs; times in ms)")
    for column in ("operation", "lib calls", "lib ms", "floor calls", "floor ms", "lib/floor",
                   "naive calls", "naive ms", "naive/lib", "notes"):
        table.add_column(column, justify="left" if column in ("operation", "notes")
                         else "right")
    for op, row in (result.get("comparison") or {}).items():
        notes = "; ".join(f"{k}: {v}" for k, v in (row.get("errors") or {}).items())
        table.add_row(op, _n(row["library_calls"]), _ms(row["library_s"]),
                      _n(row["floor_calls"]), _ms(row["floor_s"]), _x(row["library_over_floor"]),
                      _n(row["naive_calls"]), _ms(row["naive_s"]), _x(row["naive_over_library"]),
                      notes[:90])
    return table


def task_wait_table(backend: str, result: dict[str, Any]) -> Table:
    """How long after the server finished a task each client heard, and at what cost."""
    table = Table(title=f"{backend}: waiting on a task (issue 8: {result.get('task_seconds')} s;"
                        " other lengths show the simulator's tick)")
    for column in ("task s", "client", "how", "heard after (ms)", "wait calls",
                   "calls by method", "notes"):
        table.add_column(column, justify="right" if column in ("task s", "heard after (ms)",
                                                               "wait calls") else "left")
    by_length = result.get("by_task_seconds") or {str(result.get("task_seconds")): result}
    for length, entry_set in by_length.items():
        for kind in ("library", "floor", "naive"):
            for how, entry in (entry_set.get(kind) or {}).items():
                if kind == "library" and how == "wait":
                    continue  # the worst library figure, kept under one name for targets.py
                if "error" in entry:
                    table.add_row(length, kind, how, "-", "-", "", entry["error"][:80])
                    continue
                table.add_row(length, kind, how, _ms(entry.get("heard_after_s")),
                              _n(entry.get("wait_calls")),
                              ", ".join(f"{k} {v}" for k, v in sorted(
                                  (entry.get("wait_calls_by_method") or {}).items())),
                              entry.get("note", ""))
    return table


def scale_table(backend: str, result: dict[str, Any]) -> Table:
    """Listing and Nova's power-state sync: calls, time, memory, by inventory size."""
    table = Table(title=f"{backend}: scale")
    for column in ("VMs", "operation", "calls", "channel polls", "wall s", "peak added MiB",
                   "notes"):
        table.add_column(column, justify="left" if column in ("operation", "notes") else "right")
    for size, entry in sorted((result.get("sizes") or {}).items(), key=lambda kv: int(kv[0])):
        for op, row in (entry.get("library") or {}).items():
            if "error" in row:
                table.add_row(f"{int(size):,}", op, "-", "-", "-", "-", row["error"][:90])
                continue
            table.add_row(f"{int(size):,}", op, _n(row.get("calls")),
                          _n(row.get("channel_calls")), f"{row['wall_s']:.3f}",
                          "-" if row.get("peak_added_mib") is None
                          else f"{row['peak_added_mib']:.1f}", row.get("note", "")[:90])
    return table


def concurrency_table(backend: str, result: dict[str, Any]) -> Table:
    """N spawns in a row, in threads and under eventlet; instant and slow server tasks."""
    table = Table(title=f"{backend}: {result.get('count', '?')} spawns")
    for column in ("server tasks", "mode", "wall s", "speedup vs in a row", "failures",
                   "notes"):
        table.add_column(column, justify="left" if column in ("server tasks", "mode", "notes")
                         else "right")
    scenarios = [("instant", result)]
    if result.get("slow_tasks"):
        slow = result["slow_tasks"]
        scenarios.append((f"power-on {slow.get('task_seconds')} s", slow))
        raw = slow.get("raw") or {}
        if raw:
            scenarios.append((f"raw client, power-on {slow.get('task_seconds')} s",
                              {mode: raw.get(mode) or {"error": raw.get("error")}
                               for mode in ("serial", "threads", "eventlet")}))
    for label, scenario in scenarios:
        for mode in ("serial", "threads", "eventlet"):
            entry = scenario.get(mode) or {}
            if "wall_s" not in entry:
                table.add_row(label, mode, "-", "-", "-",
                              (entry.get("error") or "not measured")[:90])
                continue
            table.add_row(label, mode, f"{entry['wall_s']:.2f}", _x(entry.get("speedup")),
                          _n(entry.get("failures")), (entry.get("first_error") or "")[:90])
    return table


def targets_table(judged: list[dict[str, Any]]) -> Table:
    """Each target of issue 15: met, not met, or not measured, with the figure."""
    table = Table(title="Targets of issue 15 (judged from this run)")
    for column in ("target", "limit", "met", "figure"):
        table.add_column(column)
    for entry in judged:
        met = {True: "[green]met[/green]", False: "[red]NOT met[/red]",
               None: "[yellow]not measured[/yellow]"}[entry["met"]]
        table.add_row(entry["target"], entry["limit"], met, str(entry["figure"])[:240])
    return table


TABLES = {"operations": operations_table, "task_wait": task_wait_table, "scale": scale_table,
          "concurrency": concurrency_table}


def print_all(results: dict[str, Any]) -> None:
    """Every section's tables, then the targets."""
    out = console()
    for section, by_backend in results["sections"].items():
        for backend, result in by_backend.items():
            if "error" in result and len(result) <= 3:
                out.print(f"[bold]{section}[/bold] on {backend}: [red]{result['error']}[/red]")
                continue
            out.print(TABLES[section](backend, result))
    out.print(targets_table(results["targets"]))
