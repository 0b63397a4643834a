"""The suite's verdicts, run as a user runs it (pytest in a subprocess): capability skips are
reported with their reasons, and a backend that breaks a promise fails."""

from __future__ import annotations

import pathlib
import subprocess
import sys
import textwrap

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[3]
HERE = pathlib.Path(__file__).resolve().parent


def run_pytest(*args: str, cwd: pathlib.Path = ROOT) -> subprocess.CompletedProcess[str]:
    """pytest in a fresh interpreter, with the repository importable."""
    return subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                           *args], cwd=cwd, capture_output=True, text=True, timeout=120,
                          env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"})


def test_capability_skips_are_listed_with_their_reasons() -> None:
    result = run_pytest(str(HERE / "test_toy_conformance.py"))
    assert result.returncode == 0, result.stdout + result.stderr
    out = result.stdout
    assert "virtdriver conformance: 17 skipped by capability" in out
    assert ("test_pause_and_unpause: capability supports_pause is False for toy: pause, "
            "unpause raise UnsupportedOperation, as declared") in out
    assert "test_rescue_and_unrescue: capability supports_rescue is False for toy" in out
    assert ("test_attach_and_detach_a_volume_in_any_power_state: capability "
            "supports_volume_attach is False for toy: attach_volume, detach_volume raise "
            "UnsupportedOperation, as declared") in out
    assert "43 passed, 17 skipped" in out


BROKEN = {
    # capabilities promise pause, the backend cannot
    "lying_capability": ("""
        class Broken(ToyVMOps):
            capabilities = {**ToyVMOps.capabilities, "supports_pause": True}
        """, "test_pause_and_unpause",
        "capabilities['supports_pause'] is True, but pause is not supported"),
    # the backend suspends although capabilities say it cannot
    "hidden_capability": ("""
        class Broken(ToyVMOps):
            capabilities = {**ToyVMOps.capabilities, "supports_suspend": False}
        """, "test_suspend_and_resume",
        "capabilities['supports_suspend'] is False, but suspend succeeded"),
    # destroy forgets the disks
    "leaky_destroy": ("""
        class Broken(ToyVMOps):
            def destroy(self, instance, *args, **kwargs):
                self.server.vms.pop(instance.uuid, None)
        """, "test_spawn_makes_a_running_vm_with_the_flavor", "disks=frozenset({"),
    # a failed spawn keeps what it made
    "no_rollback": ("""
        class Broken(ToyVMOps):
            def spawn(self, context, instance, *args, **kwargs):
                disks = dict(self.server.disks)
                try:
                    super().spawn(context, instance, *args, **kwargs)
                except Exception:
                    self.server.disks.update(disks | {instance.uuid + "-0": 1})
                    raise
        """, "test_a_failed_step_leaves_nothing_behind", "('create_disk', Leftovers("),
    # the server is asked before the input is checked
    "calls_first": ("""
        class Broken(ToyVMOps):
            def spawn(self, context, instance, *args, **kwargs):
                self.server.call(self, "find_vm")
                super().spawn(context, instance, *args, **kwargs)
        """, "test_bad_input_makes_no_server_call", "AssertionError: {'find_vm': 1}"),
}


@pytest.mark.parametrize("name", sorted(BROKEN))
def test_a_broken_backend_fails_the_suite(tmp_path: pathlib.Path, name: str) -> None:
    broken, test, message = BROKEN[name]
    (tmp_path / "conftest.py").write_text(textwrap.dedent('''
        import pytest
        import virtdriver
        from tests.unit.testing.toy import ToyConformanceBackend, ToyVMOps
        from virtdriver.testing.plugin import *  # noqa: F403
        ''') + textwrap.dedent(broken) + textwrap.dedent('''
        @pytest.fixture(scope="module")
        def conformance_backend(tmp_path_factory):
            root = tmp_path_factory.mktemp("toy")
            store = virtdriver.LocalImageStore(root / "images")
            (root / "disk.raw").write_bytes(b"toy image")
            image = store.import_file(root / "disk.raw", disk_format="raw", name="toy")
            return ToyConformanceBackend(store, image, ops_class=Broken)
        '''))
    (tmp_path / "test_broken.py").write_text(
        "from virtdriver.testing import ConformanceSuite\n\n\n"
        "class TestBroken(ConformanceSuite):\n    pass\n")
    result = run_pytest("-k", test, str(tmp_path), cwd=tmp_path)
    assert result.returncode == 1, result.stdout + result.stderr
    assert f"FAILED test_broken.py::TestBroken::{test}" in result.stdout, result.stdout
    assert message in result.stdout, result.stdout


def test_every_gated_operation_is_a_contract_operation_with_a_known_capability() -> None:
    from virtdriver.common.base import DEFAULT_CAPABILITIES, VMOps
    from virtdriver.testing import CAPABILITY_OPERATIONS

    assert set(CAPABILITY_OPERATIONS) <= set(DEFAULT_CAPABILITIES)
    gated = [op for ops in CAPABILITY_OPERATIONS.values() for op in ops]
    assert len(gated) == len(set(gated))  # one capability per operation
    assert set(gated) <= VMOps.__abstractmethods__
