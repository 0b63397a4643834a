"""get_info from the power states vCenter pushes (the property-collector channel)."""

from __future__ import annotations

from typing import Any

from pyVim.task import WaitForTask

from tests.integration.power_cache_helpers import check_push_fed_get_info
from tests.integration.vmware.helpers import image_store, inspector, make_instance, ops
from virtdriver.vmware.events import PowerStateChannel

__all__ = ["image_store", "inspector", "ops"]


def test_get_info_answers_from_pushed_states(ops: Any, image_store: Any,
                                             inspector: Any) -> None:
    instance = make_instance()
    ops.spawn(None, instance, image_store.disk, [], None, [])

    def power_on_elsewhere() -> None:
        WaitForTask(inspector.vm(instance.uuid)["ref"].PowerOnVM_Task())

    check_push_fed_get_info(
        ops, instance, lambda: PowerStateChannel(ops.session, ops.inventory.vm_folder),
        power_on_elsewhere)
