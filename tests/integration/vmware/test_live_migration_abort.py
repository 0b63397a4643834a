"""Aborting a live migration in flight (Nova's live_migration_abort) between two clusters of
one vCenter: the VM's running RelocateVM_Task is cancelled (CancelTask), the migrating call
fails with the task's RequestCanceled and runs recover_method, and the VM stays on its
source cluster and host.

vcsim 0.24.2 ends every task before answering and has no CancelTask: the launcher's
"delay" rule keeps the RelocateVM_Task running, and the launcher's CancelTask STAND-IN ends
such a delayed task in RequestCanceled without running the relocation (hence ``stand_in``
in the test's name). It shows the library finds and cancels the right task, not that
vCenter cancels a vMotion the same way."""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest
from pyVmomi import vim, vmodl

from tests.integration.vmware.helpers import (  # noqa: F401 (fixtures)
    TWO_CLUSTERS,
    image_store,
    inspector,
    make_conf,
    make_instance,
    make_vif,
    two_clusters_vcsim_flags,
)
from virtdriver.common import exceptions

pytestmark = pytest.mark.integration

CLUSTERS = TWO_CLUSTERS


def placement(inspector: Any, uuid: str) -> tuple[str, str]:  # noqa: F811
    """(cluster name, host name) of the instance's VM, read from its pool and host."""
    vm = inspector.vm(uuid)
    pools = inspector.objects(vim.ResourcePool, ["owner"])
    owner = pools[vm["resourcePool"]._moId][1]["owner"]
    return inspector.names([owner])[0], inspector.names([vm["runtime.host"]])[0]


def relocate_tasks(inspector: Any) -> list[Any]:  # noqa: F811
    """TaskInfo of every RelocateVM task vCenter lists, read by the test's own client."""
    pc = vmodl.query.PropertyCollector
    spec = pc.FilterSpec(
        objectSet=[pc.ObjectSpec(obj=inspector.content.taskManager, skip=True, selectSet=[
            pc.TraversalSpec(type=vim.TaskManager, path="recentTask")])],
        propSet=[pc.PropertySpec(type=vim.Task, pathSet=["info"])])
    found = inspector._collect([spec])
    return [props["info"] for _, props in found.values()
            if "relocate" in (props["info"].descriptionId or "").lower()]


def test_stand_in_canceltask_abort_keeps_the_vm_on_its_source_cluster(
        computes: Any, image_store: Any, inspector: Any, vcsim_faults: Any) -> None:  # noqa: F811
    source, dest = computes
    inst = make_instance(root_gb=1)
    source.spawn(None, inst, image_store.disk, [], None, [make_vif(1, "DC0_DVPG0")])
    try:
        here = placement(inspector, inst.uuid)
        assert here[0] == CLUSTERS[0]
        data = dest.check_can_live_migrate_destination(None, inst)
        data = source.check_can_live_migrate_source(None, inst, data)
        data = dest.pre_live_migration(None, inst, None, [], None, data)
        before = len(relocate_tasks(inspector))
        source.live_migration_abort(inst)  # nothing running: a no-op
        vcsim_faults.inject("RelocateVM_Task", "delay", delay_ms=30000)
        calls: list[str] = []
        errors: list[Exception] = []

        def migrate() -> None:
            try:
                source.live_migrate(None, inst, "host2", lambda *a: calls.append("post"),
                                    lambda *a: calls.append("recover"), migrate_data=data)
            except exceptions.VirtDriverError as error:
                errors.append(error)

        worker = threading.Thread(target=migrate)
        worker.start()
        deadline = time.monotonic() + 10
        while not [t for t in relocate_tasks(inspector)[before:] if t.state == "running"]:
            assert time.monotonic() < deadline, "the relocation never started"
            time.sleep(0.05)
        started = time.monotonic()
        source.live_migration_abort(inst)
        worker.join(timeout=20)
        assert not worker.is_alive()
        assert time.monotonic() - started < 10  # cancelled, not the 30 s delay
        assert calls == ["recover"]
        (error,) = errors
        assert isinstance(error, exceptions.TaskFailed) and error.code == "RequestCanceled"
        (task,) = relocate_tasks(inspector)[before:]
        assert task.state == "error" and isinstance(task.error, vmodl.fault.RequestCanceled)
        assert placement(inspector, inst.uuid) == here
        assert inspector.vm(inst.uuid)["runtime.powerState"] == "poweredOn"
        assert inst.uuid in source.list_instance_uuids()
        assert inst.uuid not in dest.list_instance_uuids()
        source.live_migration_abort(inst)  # the cancelled task is over: a no-op again
    finally:
        vcsim_faults.clear_faults()
        source.destroy(inst)
