"""Faults and expiry mid-operation. (A spawn that fails at any step leaving nothing behind is
tests/integration/conformance's.)"""

from __future__ import annotations

import concurrent.futures
import os
from typing import Any

import pytest

from tests.integration.vmware.helpers import (
    datastore_files,
    image_store,
    inspector,
    make_instance,
    make_vif,
    ops,
)
from virtdriver.common import exceptions

__all__ = ["image_store", "inspector", "ops"]


def _state(inspector: Any) -> tuple[set[str], set[str]]:
    return set(inspector.vms()), datastore_files(inspector)


def test_failed_image_upload_leaves_no_temp_files_and_no_cache(vcsim_faults: Any, ops: Any,
                                                                inspector: Any,
                                                                image_store: Any,
                                                                tmp_path: Any) -> None:
    image = image_store.import_file(_write(tmp_path / "other.vmdk", b"x" * 4096),
                                    disk_format="vmdk", name="other")
    before = inspector.files()
    vcsim_faults.inject("MoveDatastoreFile_Task", "taskfault", fault="CannotAccessFile")
    with pytest.raises(exceptions.TaskFailed):
        ops.spawn(None, make_instance(), image, [], None, [])
    after = inspector.files()
    assert not any(image.id in f for f in after - before)
    temp = os.path.join(vcsim_faults.datastores["LocalDS_0"], "vmware_temp")
    assert not os.path.isdir(temp) or os.listdir(temp) == []


def test_concurrent_spawns_of_one_image_upload_it_once(ops: Any, image_store: Any,
                                                       tmp_path: Any, vcsim: Any) -> None:
    image = image_store.import_file(_write(tmp_path / "shared.vmdk", b"y" * 8192),
                                    disk_format="vmdk", name="shared")
    insts = [make_instance() for _ in range(3)]
    ops.session.stats.reset()
    with concurrent.futures.ThreadPoolExecutor(3) as pool:
        list(pool.map(lambda i: ops.spawn(None, i, image, [], None, []), insts))
    assert ops.session.stats.calls["MoveDatastoreFile_Task"] == 1
    assert ops.session.stats.calls["HTTP PUT"] == 2  # flat extent + descriptor
    for inst in insts:
        ops.destroy(inst)


def test_session_expiry_mid_spawn_is_survived(ops: Any, image_store: Any, vcsim: Any,
                                              inspector: Any,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    from virtdriver.vmware import spawn
    ops.session.stats.reset()
    inst = make_instance()
    real = spawn._create_vm

    def expire_then_create(*args: Any) -> Any:
        vcsim.expire_sessions()
        return real(*args)
    monkeypatch.setattr(spawn, "_create_vm", expire_then_create)
    ops.spawn(None, inst, image_store.disk, [], None, [])
    monkeypatch.undo()
    assert ops.session.stats.calls["Login"] == 1
    assert inspector.vm(inst.uuid)["runtime.powerState"] == "poweredOn"
    ops.destroy(inst)


def test_a_slow_task_is_waited_on_not_polled(vcsim_faults: Any, ops: Any,
                                             image_store: Any) -> None:
    inst = make_instance()
    ops.spawn(None, inst, image_store.disk, [], None, [])
    ops.power_off(inst)
    vcsim_faults.inject("PowerOnVM_Task", "delay", delay_ms=1500)
    ops.session.stats.reset()
    ops.power_on(inst)
    calls = ops.session.stats.calls
    assert calls["WaitForUpdatesEx"] <= 2 and calls["RetrievePropertiesEx"] == 1
    # the call, a look, two waits, and the task put in the waiter's ListView: one
    # ResetListView on a pooled collector, or the collector's setup (collector, view made
    # with the task, filter) on the session's first wait
    setup = sum(calls[m] for m in ("CreatePropertyCollector", "CreateListView", "CreateFilter",
                                   "ResetListView"))
    assert setup in (1, 3), calls
    assert ops.session.stats.total_calls - setup <= 4, calls
    ops.destroy(inst)


def _write(path: Any, data: bytes) -> Any:
    path.write_bytes(data)
    return path


def test_connection_lost_mid_spawn_is_retried_then_rolled_back(ops: Any, image_store: Any,
                                                               inspector: Any) -> None:
    """The launcher cannot drop connections: the client's stub raises instead."""
    ops.spawn(None, warm := make_instance(), image_store.disk, [], None, [])
    ops.destroy(warm)
    before = _state(inspector)
    stub = ops.session._stub
    real = stub.InvokeMethod
    drops = {"left": 10}

    def flaky(mo: Any, info: Any, args: Any, *rest: Any) -> Any:
        if info.wsdlName == "PowerOnVM_Task" and drops["left"]:
            drops["left"] -= 1
            raise ConnectionResetError("connection reset by peer")
        return real(mo, info, args, *rest)
    stub.InvokeMethod = flaky
    ops.session.sleep = lambda seconds: None
    try:
        with pytest.raises(exceptions.ConnectionFailed, match="PowerOnVM_Task"):
            ops.spawn(None, make_instance(), image_store.disk, [], None, [make_vif(8)])
    finally:
        stub.InvokeMethod = real
    assert drops["left"] == 10 - 3  # first try + api_retry_count (2) retries
    assert _state(inspector) == before
    # one dropped connection is retried transparently
    drops["left"] = 1
    stub.InvokeMethod = flaky
    try:
        inst = make_instance()
        ops.spawn(None, inst, image_store.disk, [], None, [])
    finally:
        stub.InvokeMethod = real
    assert inspector.vm(inst.uuid)["runtime.powerState"] == "poweredOn"
    ops.destroy(inst)
