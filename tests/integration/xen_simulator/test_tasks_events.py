"""Tasks (Async.*, cancel, destroy, names) and events (event.from, inject, legacy API)."""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest
import XenAPI

from virtdriver.xen.simulator import Simulator

from .conftest import failure, new_vm


@pytest.fixture(scope="module")
def sim_options() -> dict[str, Any]:
    """VM.start takes a moment so tasks and events can be observed."""
    return {"task_delays": {"VM.start": 0.5}}


def wait_task(xapi: Any, task: str, timeout: float = 10.0) -> dict[str, Any]:
    """Wait for a task through event.from only (no polling of the task)."""
    token = ""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        res = xapi.event_from([f"task/{task}"], token, 5.0)
        token = res["token"]
        for ev in res["events"]:
            # "cancelling" is not an end: task.cancel sets it before the task's body stops
            if ev["ref"] == task and ev["snapshot"]["status"] not in ("pending", "cancelling"):
                return ev["snapshot"]
    raise AssertionError("task did not finish")


def test_async_start_and_event_wait(xapi: Any) -> None:
    """Async.VM.start returns a task; event.from wakes as soon as it finishes."""
    vm = new_vm(xapi, "async")
    t0 = time.monotonic()
    task = xapi.Async.VM.start(vm, False, False)
    assert time.monotonic() - t0 < 0.4
    rec = xapi.task.get_record(task)
    assert rec["status"] == "pending" and rec["name_label"] == "Async.VM.start"
    assert rec["allowed_operations"] == ["cancel"]
    assert xapi.VM.get_current_operations(vm) == {task: "start"}
    snap = wait_task(xapi, task)
    elapsed = time.monotonic() - t0
    assert 0.5 <= elapsed < 1.5
    assert snap["status"] == "success" and snap["result"] == "" and snap["progress"] == 1.0
    assert xapi.VM.get_power_state(vm) == "Running"
    assert xapi.VM.get_current_operations(vm) == {}
    assert str(xapi.task.get_finished(task)) >= str(xapi.task.get_created(task))
    xapi.task.destroy(task)
    assert failure(xapi.task.get_record, task) == ["HANDLE_INVALID", "task", task]
    xapi.VM.hard_shutdown(vm)


def test_task_result_is_a_value_fragment(xapi: Any) -> None:
    """Async.VM.clone's result is ``<value>OpaqueRef:...</value>``."""
    vm = new_vm(xapi, "frag")
    task = xapi.Async.VM.clone(vm, "frag-clone")
    snap = wait_task(xapi, task)
    assert snap["result"].startswith("<value>OpaqueRef:") and snap["result"].endswith("</value>")
    clone = snap["result"][len("<value>"):-len("</value>")]
    assert xapi.VM.get_name_label(clone) == "frag-clone"
    xapi.task.destroy(task)


def test_task_failure_error_info(xapi: Any) -> None:
    """A failing Async call ends ``failure`` with error_info = the XAPI error."""
    vm = new_vm(xapi, "fail")
    task = xapi.Async.VM.pause(vm)
    snap = wait_task(xapi, task)
    assert snap["status"] == "failure"
    assert snap["error_info"] == ["VM_BAD_POWER_STATE", vm, "running", "halted"]
    xapi.task.destroy(task)


def test_other_operation_in_progress_and_sync_task(sim: Simulator, xapi: Any) -> None:
    """While start runs: OTHER_OPERATION_IN_PROGRESS; a sync long call shows a task by name."""
    vm = new_vm(xapi, "busy")
    task = xapi.Async.VM.start(vm, False, False)
    time.sleep(0.1)
    assert failure(xapi.VM.start, vm, False, False) == [
        "OTHER_OPERATION_IN_PROGRESS", "VM", vm, "start", task]
    wait_task(xapi, task)
    done = threading.Event()

    def reboot() -> None:
        ses = XenAPI.Session(sim.url)
        ses.xenapi.login_with_password("root", "secret", "2.1", "t")
        ses.xenapi.VM.clean_reboot(vm)
        ses.xenapi.session.logout()
        done.set()

    sim.inject_delay("VM.clean_reboot", 0.6)
    thread = threading.Thread(target=reboot)
    thread.start()
    time.sleep(0.2)
    tasks = xapi.task.get_by_name_label("VM.clean_reboot")
    assert len(tasks) == 1 and xapi.task.get_status(tasks[0]) == "pending"
    thread.join(5)
    assert done.is_set() and xapi.task.get_by_name_label("VM.clean_reboot") == []
    xapi.VM.hard_shutdown(vm)


def test_cancel(sim: Simulator, xapi: Any) -> None:
    """task.cancel -> status cancelled, error_info TASK_CANCELLED [task]; VM unchanged."""
    vm = new_vm(xapi, "cancel")
    sim.inject_delay("VM.start", 5.0)  # long enough that a loaded machine still cancels it
    task = xapi.Async.VM.start(vm, False, False)
    xapi.task.cancel(task)
    snap = wait_task(xapi, task)
    assert snap["status"] == "cancelled" and snap["error_info"] == ["TASK_CANCELLED", task]
    assert xapi.VM.get_power_state(vm) == "Halted"
    assert failure(xapi.task.cancel, task)[0] == "OPERATION_NOT_ALLOWED"
    xapi.task.destroy(task)


def test_hard_shutdown_cancels_clean_reboot(sim: Simulator, xapi: Any) -> None:
    """hard_shutdown cancels an in-flight clean_reboot."""
    vm = new_vm(xapi, "hs")
    xapi.VM.start(vm, False, False)
    sim.inject_delay("VM.clean_reboot", 3.0)
    task = xapi.Async.VM.clean_reboot(vm)
    time.sleep(0.1)
    xapi.VM.hard_shutdown(vm)
    snap = wait_task(xapi, task)
    assert snap["status"] == "cancelled"
    assert xapi.VM.get_power_state(vm) == "Halted"


def test_event_from_basics(xapi: Any) -> None:
    """"" token gives adds; later calls give mods/dels; class filters; valid_ref_counts ints."""
    first = xapi.event_from(["vm"], "", 1.0)
    assert first["events"] and {e["operation"] for e in first["events"]} == {"add"}
    assert all(e["class"] == "vm" for e in first["events"])
    counts = first["valid_ref_counts"]
    assert counts["vm"] == len(xapi.VM.get_all()) and isinstance(counts["task"], int)
    assert set(first["events"][0]) >= {
        "id", "timestamp", "class", "operation", "ref", "snapshot"}
    token = first["token"]
    vm = new_vm(xapi, "ev")
    for i in range(5):
        xapi.VM.set_name_description(vm, f"d{i}")
    res = xapi.event_from(["VM"], token, 1.0)
    mine = [e for e in res["events"] if e["ref"] == vm]
    assert len(mine) == 1 and mine[0]["operation"] == "add"
    assert mine[0]["snapshot"]["name_description"] == "d4"
    token = res["token"]
    xapi.VM.set_name_description(vm, "again")
    res = xapi.event_from([f"vm/{vm}"], token, 1.0)
    assert [(e["operation"], e["ref"]) for e in res["events"]] == [("mod", vm)]
    token = res["token"]
    xapi.VM.destroy(vm)
    res = xapi.event_from(["vm"], token, 1.0)
    dels = [e for e in res["events"] if e["ref"] == vm]
    assert dels[0]["operation"] == "del" and "snapshot" not in dels[0]
    gone = new_vm(xapi, "ephemeral")
    xapi.VM.destroy(gone)
    res2 = xapi.event_from(["vm"], res["token"], 0.2)
    assert all(e["ref"] != gone for e in res2["events"])
    assert res["token"] > token


def test_event_from_timeout_and_other_calls_proceed(sim: Simulator, xapi: Any) -> None:
    """A long poll waits its timeout (float) while other clients are served."""
    token = xapi.event_from(["pool"], "", 0.0)["token"]
    result: dict[str, Any] = {}

    def poll() -> None:
        ses = XenAPI.Session(sim.url)
        ses.xenapi.login_with_password("root", "secret", "2.1", "t")
        t0 = time.monotonic()
        result["res"] = ses.xenapi.event_from(["pool"], token, 0.8)
        result["took"] = time.monotonic() - t0
        ses.xenapi.session.logout()

    thread = threading.Thread(target=poll)
    thread.start()
    t0 = time.monotonic()
    for _ in range(5):
        xapi.VM.get_all()
    assert time.monotonic() - t0 < 0.5
    thread.join(5)
    assert result["res"]["events"] == [] and 0.7 <= result["took"] < 2


def test_event_inject_and_errors(xapi: Any) -> None:
    """event.inject returns a token that makes event.from return at once; parse failures."""
    pool = xapi.pool.get_all()[0]
    token = xapi.event.inject("pool", pool)
    t0 = time.monotonic()
    res = xapi.event_from(["pool"], token, 10.0)
    assert time.monotonic() - t0 < 1 and res["events"][0]["ref"] == pool
    assert failure(xapi.event_from, ["vm"], "garbage", 0.1) == [
        "EVENT_FROM_TOKEN_PARSE_FAILURE", "garbage"]
    assert failure(xapi.event_from, ["nosuchclass"], "", 0.1) == [
        "EVENT_SUBSCRIPTION_PARSE_FAILURE", "nosuchclass"]


def test_legacy_events(xapi: Any) -> None:
    """event.next without register -> SESSION_NOT_REGISTERED; register/next/unregister."""
    assert failure(xapi.event.next)[0] == "SESSION_NOT_REGISTERED"
    xapi.event.register(["vm"])
    vm = new_vm(xapi, "legacy")
    events = xapi.event.next()
    assert any(e["ref"] == vm and e["class"] == "vm" for e in events)
    xapi.event.unregister(["vm"])
    assert int(xapi.event.get_current_id()) > 0


def test_overlapping_hard_shutdown_wins(sim: Simulator, xapi: Any) -> None:
    """A slow pause overtaken by hard_shutdown fails instead of pausing a halted VM."""
    vm = new_vm(xapi, "race")
    xapi.VM.start(vm, False, False)
    sim.inject_delay("VM.pause", 0.4)
    task = xapi.Async.VM.pause(vm)
    time.sleep(0.1)
    xapi.VM.hard_shutdown(vm)
    snap = wait_task(xapi, task)
    assert snap["status"] == "failure"
    assert snap["error_info"] == ["VM_BAD_POWER_STATE", vm, "running", "halted"]
    assert xapi.VM.get_power_state(vm) == "Halted"


def test_no_task_event_is_lost_under_concurrency(sim: Simulator) -> None:
    """Many clients each wait by event.from for their own quick tasks: none may miss the
    task's completion (a token must never skip a change it did not report)."""
    import threading

    import XenAPI

    lost: list[str] = []
    errors: list[BaseException] = []

    def client(number: int) -> None:
        session = XenAPI.Session(sim.url)
        session.xenapi.login_with_password("root", "secret", "2.1", "test")
        xapi = session.xenapi
        try:
            vm = new_vm(xapi, f"race-{number}")
            for _ in range(15):
                task = xapi.Async.VM.clone(vm, f"race-{number}-clone")
                token, finished = "", False
                while not finished:
                    res = xapi.event_from([f"task/{task}"], token, 1.0)
                    token = res["token"]
                    finished = any(ev["snapshot"]["status"] != "pending"
                                   for ev in res["events"] if "snapshot" in ev)
                    if not res["events"] and xapi.task.get_status(task) != "pending":
                        lost.append(task)  # done, yet event.from had nothing to say
                        finished = True
                xapi.VM.destroy(xapi.task.get_result(task).replace("<value>", "")
                                .replace("</value>", ""))
                xapi.task.destroy(task)
            xapi.VM.destroy(vm)
        except BaseException as error:  # surfaced by the assertion below
            errors.append(error)
        finally:
            session.xenapi.session.logout()

    threads = [threading.Thread(target=client, args=(n,)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    assert errors == []
    assert lost == []
