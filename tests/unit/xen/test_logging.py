"""Xen log lines go through oslo.log and name their instance (DESIGN.md "Logging").

A fake session stands in for XAPI: what is checked is what the log line carries.
"""

from __future__ import annotations

import io
import logging
from collections.abc import Iterator

import pytest

from tests.support.logs import oslo_log_text

from .fakes import failure
from .test_vmops import UUID, instance, make_ops, records


@pytest.fixture
def log_text() -> Iterator[io.StringIO]:
    """What oslo.log's ContextFormatter writes for the virtdriver.xen loggers."""
    with oslo_log_text("virtdriver.xen") as stream:
        yield stream


def soft_reboot_that_falls_back(inst: object) -> None:
    ops = make_ops({"VM.get_all_records_where": records(),
                    "VM.clean_reboot": failure("VM_MISSING_PV_DRIVERS", "vm"),
                    "VM.hard_reboot": None})
    ops.reboot(inst, reboot_type="SOFT")
    assert ops.session.methods()[-1] == "VM.hard_reboot"


def test_a_hard_reboot_fallback_logs_the_instance(log_text: io.StringIO) -> None:
    # A mapping, as Nova's objects are: ContextFormatter reads its uuid with "%(uuid)s".
    soft_reboot_that_falls_back({"uuid": UUID, "name": "inst"})
    line = log_text.getvalue()
    assert f"[instance: {UUID}]" in line
    assert "clean reboot failed (VM_MISSING_PV_DRIVERS); rebooting hard" in line
    assert "virtdriver.xen.power" in line


def test_the_record_carries_our_instance_too(caplog: pytest.LogCaptureFixture) -> None:
    inst = instance()
    with caplog.at_level(logging.INFO, logger="virtdriver.xen"):
        soft_reboot_that_falls_back(inst)
    lines = [r for r in caplog.records if "rebooting hard" in r.getMessage()]
    assert len(lines) == 1 and lines[0].instance is inst
