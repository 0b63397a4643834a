"""``make bench``: every measurement of issues 8 and 15 on both backends, in one run.

    .venv/bin/python benchmarks/run.py            # the full run (about 10 minutes at most)
    .venv/bin/python benchmarks/run.py --quick    # a smoke run: a few seconds per section
    .venv/bin/python benchmarks/run.py --only operations,task_wait --backend vmware

Prints one table per section and the targets of issue 15 with whether each is met (judged
from this run's figures), and writes everything as JSON to ``benchmarks/results/latest.json``
(or ``--output``). A section or backend that cannot run is reported with its reason; the
run always completes.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    # Run as a script (benchmarks/run.py): make ``benchmarks`` and ``tests`` importable.
    sys.path.insert(0, str(ROOT))

from benchmarks import report, targets  # noqa: E402
from benchmarks.backends import BACKENDS  # noqa: E402
from benchmarks.common import Unavailable, error_entry  # noqa: E402

SECTIONS = ["operations", "task_wait", "scale", "concurrency"]
DEFAULT_OUTPUT = ROOT / "benchmarks" / "results" / "latest.json"


def settings(quick: bool, runs: int | None) -> dict[str, Any]:
    """Repetitions and sizes: the full run fits in about 10 minutes, ``--quick`` in seconds."""
    if quick:
        return {"runs": runs or 1, "task_seconds": 1.0, "task_runs": 1, "task_extra": [],
                "scale_sizes": [100], "get_info_sample": 100, "concurrency": 5}
    return {"runs": runs or 7, "task_seconds": 1.0, "task_runs": 9, "task_extra": [0.33, 0.77],
            "scale_sizes": [1000, 10000], "get_info_sample": 1000, "concurrency": 50}


def run_section(name: str, spec: Any, config: dict[str, Any]) -> dict[str, Any]:
    """One section on one backend; any failure becomes an ``error`` entry."""
    try:
        if name == "operations":
            from benchmarks import operations
            return operations.run_section(spec, config["runs"])
        if name == "task_wait":
            from benchmarks import task_wait
            return task_wait.run_section(spec, config["task_seconds"], config["task_runs"],
                                         tuple(config["task_extra"]))
        if name == "scale":
            from benchmarks import scale
            return scale.run_section(spec, config["scale_sizes"], config["get_info_sample"])
        if name == "concurrency":
            from benchmarks import concurrency
            return concurrency.run_section(spec, config["concurrency"])
        raise Unavailable(f"unknown section {name}")
    except Exception as error:  # noqa: BLE001 - reported, never fatal
        return error_entry(error)


def main(argv: list[str] | None = None) -> int:
    """Run the chosen sections on the chosen backends; print, write JSON; exit 0."""
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="smoke run: seconds per section")
    parser.add_argument("--only", default="", help=f"comma-separated sections of {SECTIONS}")
    parser.add_argument("--backend", default="", help="comma-separated: vmware, xen")
    parser.add_argument("--runs", type=int, default=None, help="repetitions per operation")
    parser.add_argument("--output", type=Path, default=DEFAULT_OUTPUT, help="JSON file")
    args = parser.parse_args(argv)

    sections = [s for s in args.only.split(",") if s] or SECTIONS
    unknown = sorted(set(sections) - set(SECTIONS))
    if unknown:
        parser.error(f"unknown section(s) {unknown}; choose from {SECTIONS}")
    names = [b for b in args.backend.split(",") if b]
    known = [b.name for b in BACKENDS]
    if sorted(set(names) - set(known)):
        parser.error(f"unknown backend(s) {sorted(set(names) - set(known))}; choose from {known}")
    backends = [b for b in BACKENDS if not names or b.name in names]
    config = settings(args.quick, args.runs)

    started = time.perf_counter()
    results: dict[str, Any] = {
        "meta": {"quick": args.quick, "sections": sections,
                 "backends": [b.name for b in backends], "settings": config,
                 "python": platform.python_version(), "machine": platform.machine(),
                 "started_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())},
        "sections": {},
    }
    for section in sections:
        results["sections"][section] = {}
        for spec in backends:
            section_started = time.perf_counter()
            outcome = run_section(section, spec, config)
            outcome["section_wall_s"] = time.perf_counter() - section_started
            results["sections"][section][spec.name] = outcome
            report.progress(section, spec.name, outcome)
    results["targets"] = targets.judge(results["sections"])
    results["meta"]["wall_s"] = time.perf_counter() - started

    report.print_all(results)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(results, indent=2, sort_keys=True, default=str))
    report.console().print(f"JSON written to {args.output}; wall time "
                           f"{results['meta']['wall_s']:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
