"""Smoke test of ``make bench``: a quick run of one cheap section writes well-formed JSON.

It checks the shape and that figures were measured (calls counted, times positive), never
the targets' outcome: speed is measured by the benchmarks, not asserted in tests.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.integration


def _run(tmp_path: Path, *args: str) -> dict:
    output = tmp_path / "bench.json"
    proc = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "run.py"), "--quick", *args,
         "--output", str(output)],
        cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "Targets of issue 15" in proc.stdout
    return json.loads(output.read_text())


def test_quick_operations_on_xen_write_expected_json(tmp_path: Path) -> None:
    """One repetition of every operation on the XAPI simulator: library, floor and naive."""
    result = _run(tmp_path, "--only", "operations", "--backend", "xen")

    assert result["meta"]["quick"] is True
    assert result["meta"]["sections"] == ["operations"]
    assert result["meta"]["wall_s"] > 0
    section = result["sections"]["operations"]["xen"]
    assert set(section) >= {"library", "floor", "naive", "comparison", "section_wall_s"}
    for kind in ("library", "floor", "naive"):
        assert set(section[kind]) == {"spawn_cold", "spawn_warm", "destroy", "reboot",
                                      "power_off", "power_on", "snapshot", "resize",
                                      "live_migrate"}
        for entry in section[kind].values():
            # every operation is either measured or says why it was not
            assert ("median_s" in entry) or ("error" in entry)
            if "median_s" in entry:
                assert entry["median_s"] > 0
                assert entry["calls"] == sum(entry["calls_by_method"].values())
    # the floor's spawn is measured whatever state the backend is in
    spawn = section["floor"]["spawn_warm"]
    assert spawn["calls"] > 0 and spawn["runs"] == 1
    row = section["comparison"]["spawn_warm"]
    assert set(row) >= {"library_s", "floor_s", "naive_s", "library_over_floor",
                        "naive_over_library"}
    names = [t["target"] for t in result["targets"]]
    assert "xen: every operation, library calls vs fair floor" in names
    assert "xen: every operation, library wall time vs fair floor" in names
    for entry in result["targets"]:
        assert entry["met"] in (True, False, None)


def test_quick_scale_on_xen_measures_the_sync_with_and_without_the_channel(
        tmp_path: Path) -> None:
    """100 VMs made the backend's own: listing, and Nova's power-state sync of every one with
    the event channel feeding get_info and without it."""
    result = _run(tmp_path, "--only", "scale", "--backend", "xen")
    size = result["sections"]["scale"]["xen"]["sizes"]["100"]
    assert size["vms_found"] == 100
    listing = size["library"]["list_instances"]
    assert listing["returned"] == 100 and listing["calls"] > 0
    for label in ("power-state sync, channel live", "power-state sync, no channel"):
        row = size["library"][label]
        assert "error" not in row, row
        assert row["measured_instances"] == 100
        assert row["calls"] == sum(row["calls_by_method"].values())
    names = [t["target"] for t in result["targets"]]
    assert "xen: 10,000-VM listing" in names
