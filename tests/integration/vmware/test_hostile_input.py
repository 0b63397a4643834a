"""What the VMware backend does with guest data it cannot deliver (issue 14 rows 10-12), through
``virtdriver.load_backend`` against the launcher. Malformed files, bad paths and bad
identities are in the conformance suite, for every backend; this is VMware's own choice."""

from __future__ import annotations

import logging
from typing import Any

import pytest
from pyVmomi import vim

from tests.integration.vmware.helpers import (
    devices,
    image_store,
    inspector,
    make_instance,
    make_vif,
    ops,
)
from virtdriver.common import exceptions

__all__ = ["image_store", "inspector", "ops"]


def test_files_without_a_config_drive_are_refused_by_name(ops: Any, image_store: Any,
                                                          inspector: Any) -> None:
    inst = make_instance()  # config_drive False, and vSphere has no guest agent
    ops.stats.reset()
    with pytest.raises(exceptions.InvalidInput) as caught:
        ops.spawn(None, inst, image_store.disk, [("/etc/motd", b"hi")], None, [make_vif(7)])
    assert caught.value.field == "injected_files" and caught.value.value == ["/etc/motd"]
    assert "config drive" in str(caught.value)
    assert ops.stats.total_calls == 0, ops.stats.snapshot()
    assert inst.uuid not in inspector.vms()


def test_a_password_without_a_config_drive_is_dropped_with_a_warning(
        ops: Any, image_store: Any, inspector: Any, caplog: pytest.LogCaptureFixture) -> None:
    """Nova sends a generated password with every spawn (its own driver tests too), so it is
    not refused; it is not silently lost either: a warning on the instance says so."""
    inst = make_instance()
    with caplog.at_level(logging.WARNING):
        ops.spawn(None, inst, image_store.disk, [], "s3cret-pw", [make_vif(8)])
    try:
        warnings = [r for r in caplog.records if r.levelno == logging.WARNING
                    and "admin password not set" in r.getMessage()]
        assert len(warnings) == 1
        assert "s3cret-pw" not in caplog.text
        vm = inspector.vm(inst.uuid)
        assert vm["runtime.powerState"] == "poweredOn"
        assert not devices(vm, vim.vm.device.VirtualCdrom)  # no config drive was made
    finally:
        ops.destroy(inst)
