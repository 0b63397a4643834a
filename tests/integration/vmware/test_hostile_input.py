"""What the VMware backend does with guest data it cannot deliver (issue 14 rows 10-12), through
``virtdriver.load_backend`` against the launcher. Malformed files, bad paths and bad
identities are in the conformance suite, for every backend; this is VMware's own choice."""

from __future__ import annotations

from typing import Any

import pytest

from tests.integration.vmware.helpers import (
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


def test_a_password_without_a_config_drive_is_refused(ops: Any, image_store: Any,
                                                      inspector: Any) -> None:
    """No mechanism can deliver it (no config drive, no guest agent): refused, not lost,
    before any call and without showing it. (Nova's adapter withholds the password Nova
    generates for every server when the backend cannot set it.)"""
    inst = make_instance()
    ops.stats.reset()
    with pytest.raises(exceptions.InvalidInput) as caught:
        ops.spawn(None, inst, image_store.disk, [], "s3cret-pw", [make_vif(8)])
    assert caught.value.field == "admin_password" and "config drive" in str(caught.value)
    assert "s3cret-pw" not in str(caught.value)
    assert ops.stats.total_calls == 0, ops.stats.snapshot()
    assert inst.uuid not in inspector.vms()
