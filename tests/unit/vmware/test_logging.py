"""VMware log lines go through oslo.log and name their instance (DESIGN.md "Logging").

A fake backend stands in for vCenter: what is checked is the logic of the power module's
fallback and what its log line carries, not the server.
"""

from __future__ import annotations

import io
import uuid as uuid_module
from collections.abc import Iterator
from typing import Any

import pytest

from tests.support.logs import oslo_log_text
from virtdriver.common import exceptions
from virtdriver.vmware import power, spawn


class FakeSession:
    """Refuses RebootGuest as vCenter does without tools; records tasks."""

    def __init__(self) -> None:
        self.tasks: list[str] = []

    def invoke(self, obj: Any, method: str, *args: Any) -> Any:
        raise exceptions.BackendError("no tools", code="ToolsUnavailable")

    def call_task(self, obj: Any, method: str, *args: Any, **kwargs: Any) -> Any:
        self.tasks.append(method)


class FakeBackend:
    """Just what power.reboot and spawn.destroy read."""

    def __init__(self, props: dict[str, Any] | None) -> None:
        self.session = FakeSession()
        self.props = props

    def read(self, instance: Any, paths: list[str]) -> tuple[Any, dict[str, Any]]:
        if self.props is None:
            raise exceptions.InstanceNotFound(instance["uuid"], "no VM")
        return "vm-1", self.props

    def read_devices(self, instance: Any) -> tuple[Any, list[Any], dict[str, Any]]:
        vm, props = self.read(instance, [])
        return vm, [], props


@pytest.fixture
def log_text() -> Iterator[io.StringIO]:
    """What oslo.log's ContextFormatter writes for the virtdriver.vmware loggers."""
    with oslo_log_text("virtdriver.vmware") as stream:
        yield stream


def test_a_refused_guest_reboot_resets_and_logs_the_instance(log_text: io.StringIO) -> None:
    instance = {"uuid": str(uuid_module.uuid4())}
    backend = FakeBackend({"runtime.powerState": "poweredOn",
                           "guest.toolsRunningStatus": "guestToolsRunning"})
    power.reboot(backend, instance, "SOFT")  # type: ignore[arg-type]
    assert backend.session.tasks == ["ResetVM_Task"]
    line = log_text.getvalue()
    assert f"[instance: {instance['uuid']}]" in line
    assert "guest reboot refused (ToolsUnavailable); resetting" in line
    assert "virtdriver.vmware.power" in line


def test_destroying_a_gone_vm_logs_the_instance(log_text: io.StringIO) -> None:
    instance = {"uuid": str(uuid_module.uuid4())}
    backend = FakeBackend(None)
    spawn.destroy(backend, instance)  # type: ignore[arg-type]
    assert backend.session.tasks == []
    assert f"[instance: {instance['uuid']}] no VM to destroy" in log_text.getvalue()
