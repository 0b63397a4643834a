"""Aborting a live migration in flight (Nova's live_migration_abort): the running
VM.pool_migrate task is cancelled, the migration fails over to recover_method, and the VM
keeps running where it was."""

from __future__ import annotations

import threading
import time

import pytest

from virtdriver.common import exceptions as exc
from virtdriver.xen.simulator import Simulator

from .conftest import make_instance, make_vif, vm_of

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def sim():
    simulator = Simulator(host="127.0.0.1", port=0, hosts=2).start()
    yield simulator
    simulator.stop()


def test_abort_cancels_the_running_pool_migrate(ops, image, xapi, sim):
    instance = make_instance()
    ops.spawn(None, instance, image, [], None, [make_vif(1)])
    try:
        here = vm_of(xapi, instance)[1]["resident_on"]
        other = next(h for h in xapi.host.get_all() if h != here)
        data = ops.check_can_live_migrate_source(
            None, instance, ops.check_can_live_migrate_destination(None, instance, False))
        ops.live_migration_abort(instance)  # nothing running: a no-op
        sim.inject_delay("VM.pool_migrate", 30)
        calls, errors = [], []
        target = xapi.host.get_name_label(other)  # the reader's session: this thread only

        def migrate():
            try:
                ops.live_migrate(None, instance, target,
                                 lambda *a: calls.append("post"),
                                 lambda *a: calls.append("recover"), False, data)
            except exc.MigrationError as error:
                errors.append(error)

        worker = threading.Thread(target=migrate)
        worker.start()
        deadline = time.monotonic() + 10
        while not vm_of(xapi, instance)[1]["current_operations"]:
            assert time.monotonic() < deadline, "the migration never started"
            time.sleep(0.05)
        started = time.monotonic()
        ops.live_migration_abort(instance)
        worker.join(timeout=20)
        assert not worker.is_alive()
        assert time.monotonic() - started < 10  # cancelled, not the 30 s delay
        assert calls == ["recover"] and len(errors) == 1
        _, vm = vm_of(xapi, instance)
        assert (vm["resident_on"], vm["power_state"]) == (here, "Running")
    finally:
        sim.clear_faults()
        ops.destroy(instance)
