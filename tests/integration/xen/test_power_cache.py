"""get_info from the power states XAPI pushes (the event.from channel on class vm)."""

from __future__ import annotations

from tests.integration.power_cache_helpers import check_push_fed_get_info
from tests.integration.xen.conftest import make_instance, make_vif, vm_of
from virtdriver.xen.events import PowerStateChannel


def test_get_info_answers_from_pushed_states(ops, image, xapi) -> None:
    instance = make_instance()
    ops.spawn(None, instance, image, [], None, [make_vif()])

    def start_elsewhere() -> None:
        xapi.VM.start(vm_of(xapi, instance)[0], False, False)

    check_push_fed_get_info(ops, instance, lambda: PowerStateChannel(ops.session),
                            start_elsewhere)
