"""The session against the launcher: TLS, login, stats, re-login, faults, push task waiting."""

from __future__ import annotations

import logging
import time
from typing import Any

import pytest
from pyVmomi import vim

from virtdriver.common import exceptions
from virtdriver.vmware.session import VMwareSession
from virtdriver.vmware.tasks import TaskWaiter


def _session(vcsim: Any, **kwargs: Any) -> VMwareSession:
    kwargs.setdefault("ca_file", vcsim.ca_file)
    return VMwareSession(
        vcsim.host,
        vcsim.port,
        kwargs.pop("username", vcsim.username),
        kwargs.pop("password", vcsim.password),
        sleep=lambda s: None,
        **kwargs,
    )


@pytest.fixture(scope="module")
def session(vcsim: Any) -> VMwareSession:
    return _session(vcsim)


@pytest.fixture
def vm_ref(session: VMwareSession) -> Any:
    ref = next(
        ref
        for ref, props in session.list_objects(vim.VirtualMachine, ["name"]).values()
        if props["name"].startswith("DC0_C0")
    )
    if session.retrieve_one(ref, ["runtime.powerState"])["runtime.powerState"] != "poweredOff":
        session.call_task(ref, "PowerOffVM_Task")
    return ref


def test_verified_tls_login_counts_calls(vcsim: Any) -> None:
    session = _session(vcsim)
    assert session.stats.calls["Login"] == 1
    assert session.stats.total_calls == 2  # RetrieveServiceContent + Login
    assert session.stats.seconds["Login"] > 0
    session.stats.reset()
    assert session.stats.total_calls == 0
    session.logout()


def test_untrusted_certificate_is_refused_with_a_clear_error(vcsim: Any) -> None:
    with pytest.raises(exceptions.CertificateRejected, match="ca_file"):
        _session(vcsim, ca_file=None)


def test_insecure_connects_and_warns(vcsim: Any, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING):
        session = _session(vcsim, ca_file=None, insecure=True)
    assert "NOT verified" in caplog.text
    session.logout()


def test_wrong_password_is_authentication_failed_and_never_shown(
    vcsim: Any, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.DEBUG), pytest.raises(exceptions.AuthenticationFailed) as err:
        _session(vcsim, password="hunter2-wrong")
    assert err.value.code == "InvalidLogin"
    assert "hunter2" not in str(err.value) and "hunter2" not in caplog.text


def test_repr_hides_password_and_cookie(session: VMwareSession, vcsim: Any) -> None:
    text = repr(session) + repr(session.__dict__.get("stats"))
    assert vcsim.password not in text
    assert session._stub.cookie not in text


def test_many_objects_and_paths_in_one_call(session: VMwareSession) -> None:
    vms = session.list_objects(vim.VirtualMachine, ["name"])
    session.stats.reset()
    props = session.retrieve(
        [ref for ref, _ in vms.values()], ["name", "runtime.powerState", "config.instanceUuid"]
    )
    assert session.stats.calls == {"RetrievePropertiesEx": 1}
    assert len(props) == len(vms)
    assert all({"name", "runtime.powerState"} <= set(p) for p in props.values())


def test_relogin_after_expiry_repeats_the_call(
    session: VMwareSession, vcsim: Any, vm_ref: Any
) -> None:
    generation = session.generation
    assert vcsim.expire_sessions() >= 1
    session.stats.reset()
    # RetrievePropertiesEx reports NotAuthenticated in missingSet, not as a fault.
    assert session.retrieve_one(vm_ref, ["runtime.powerState"]) == {
        "runtime.powerState": "poweredOff"
    }
    assert session.generation == generation + 1
    assert session.stats.calls["Login"] == 1
    vcsim.expire_sessions()
    session.call_task(vm_ref, "PowerOnVM_Task")  # a task method: a real fault
    assert session.retrieve_one(vm_ref, ["runtime.powerState"])["runtime.powerState"] == "poweredOn"


def test_repeated_not_authenticated_is_session_expired(
    session: VMwareSession, vcsim_faults: Any, vm_ref: Any
) -> None:
    vcsim_faults.inject("PowerOnVM_Task", "fault", fault="NotAuthenticated", count=2)
    with pytest.raises(exceptions.SessionExpired) as err:
        session.invoke(vm_ref, "PowerOnVM_Task")
    assert err.value.code == "NotAuthenticated"


def test_faults_are_translated_with_code_and_cause(
    session: VMwareSession, vcsim_faults: Any, vm_ref: Any
) -> None:
    vcsim_faults.inject("PowerOnVM_Task", "fault", fault="TaskInProgress", message="busy")
    with pytest.raises(exceptions.BackendError) as err:
        session.invoke(vm_ref, "PowerOnVM_Task")
    assert err.value.code == "TaskInProgress"
    assert isinstance(err.value.__cause__, vim.fault.TaskInProgress)
    with pytest.raises(exceptions.TaskFailed) as err:
        session.call_task(vm_ref, "PowerOffVM_Task")  # already off
    assert err.value.code == "InvalidPowerState"


def test_task_error_is_task_failed(session: VMwareSession, vcsim_faults: Any, vm_ref: Any) -> None:
    vcsim_faults.inject("PowerOnVM_Task", "taskfault", fault="InsufficientResourcesFault")
    with pytest.raises(exceptions.TaskFailed) as err:
        session.call_task(vm_ref, "PowerOnVM_Task")
    assert err.value.code == "InsufficientResourcesFault"
    assert "PowerOnVM_Task" in str(err.value)


def test_a_running_task_is_waited_on_by_push(session: VMwareSession, vcsim_faults: Any,
                                             vm_ref: Any) -> None:
    """One read finds it running; then a filter and two WaitForUpdatesEx, no polling: four
    calls in all.

    The first run creates the waiter's collector; the second borrows it back from the pool,
    with the version its last wait reached, and leaves the finished task's filter on it.
    """
    for _ in range(2):  # the second run has a warm collector
        vcsim_faults.inject("PowerOnVM_Task", "delay", delay_ms=1500)
        task = session.invoke(vm_ref, "PowerOnVM_Task")
        session.stats.reset()
        start = time.monotonic()
        session.wait_for_task(task)
        assert time.monotonic() - start >= 1.3
        session.call_task(vm_ref, "PowerOffVM_Task")
    calls = session.stats.calls
    assert calls["RetrievePropertiesEx"] == 2  # this task's first look, PowerOff's
    assert calls["CreateFilter"] == 1 and calls["WaitForUpdatesEx"] <= 2, calls
    assert "DestroyPropertyFilter" not in calls  # a finished task's filter stays
    assert "CreatePropertyCollector" not in calls and "DestroyPropertyCollector" not in calls


def test_a_finished_task_costs_one_read(session: VMwareSession, vm_ref: Any) -> None:
    task = session.invoke(vm_ref, "PowerOnVM_Task")
    session.stats.reset()
    session.wait_for_task(task)
    assert session.stats.calls == {"RetrievePropertiesEx": 1}


def test_task_timeout(session: VMwareSession, vcsim_faults: Any, vm_ref: Any) -> None:
    vcsim_faults.inject("PowerOnVM_Task", "delay", delay_ms=3000)
    task = session.invoke(vm_ref, "PowerOnVM_Task")
    with pytest.raises(exceptions.TaskTimeout):
        session.wait_for_task(task, timeout=1)
    session.wait_for_task(task)  # still completes later


def test_concurrent_waiters_each_borrow_a_collector(session: VMwareSession,
                                                    vcsim_faults: Any) -> None:
    """Each concurrent waiter waits on a collector of its own (one filter each), and the
    pool keeps at most POOL_SIZE of them afterwards."""
    import concurrent.futures

    refs = [ref for ref, _ in session.list_objects(vim.VirtualMachine, ["name"]).values()]
    states = session.retrieve(refs, ["runtime.powerState"])
    for ref in refs:
        if states[ref._moId]["runtime.powerState"] == "poweredOn":
            session.call_task(ref, "PowerOffVM_Task")
    vcsim_faults.inject("PowerOnVM_Task", "delay", delay_ms=700, count=len(refs))
    session.stats.reset()
    with concurrent.futures.ThreadPoolExecutor(len(refs)) as pool:
        list(pool.map(lambda r: session.call_task(r, "PowerOnVM_Task"), refs))
    calls = session.stats.calls
    assert calls["CreateFilter"] == len(refs) and "DestroyPropertyFilter" not in calls
    assert calls["WaitForUpdatesEx"] <= 3 * len(refs)
    waiter = session._waiter
    assert waiter is not None and waiter.lent == 0
    assert len(waiter._idle) <= TaskWaiter.POOL_SIZE
    states = session.retrieve(refs, ["runtime.powerState"])
    assert {s["runtime.powerState"] for s in states.values()} == {"poweredOn"}


def test_session_expiry_while_a_task_is_waited_on(session: VMwareSession, vcsim_faults: Any,
                                                  vm_ref: Any) -> None:
    """The wait logs in again, re-creates its filter and still sees the task end.

    The launcher runs a delayed method inside the caller's session, so the expired session
    makes the task itself end in SystemError there; vCenter would finish it. Either way the
    waiter must report the task's end, not hang or give up with SessionExpired.
    """
    import threading

    vcsim_faults.inject("PowerOnVM_Task", "delay", delay_ms=1500)
    task = session.invoke(vm_ref, "PowerOnVM_Task")
    session.stats.reset()
    timer = threading.Timer(0.5, vcsim_faults.expire_sessions)
    timer.start()
    start = time.monotonic()
    try:
        session.wait_for_task(task, timeout=20)
    except exceptions.TaskFailed as exc:
        assert exc.code == "SystemError"
    finally:
        timer.join()
    assert time.monotonic() - start < 10
    # the next call finds the session gone and logs in again
    session.retrieve_one(vm_ref, ["runtime.powerState"])
    assert session.stats.calls["Login"] == 1


def test_session_expired_before_the_wait_starts(session: VMwareSession, vcsim_faults: Any,
                                                vm_ref: Any) -> None:
    session.wait_for_task(session.invoke(vm_ref, "PowerOnVM_Task"))  # collector exists
    session.call_task(vm_ref, "PowerOffVM_Task")
    task = session.invoke(vm_ref, "PowerOnVM_Task")
    vcsim_faults.expire_sessions()
    session.stats.reset()
    session.wait_for_task(task, timeout=20)
    assert session.stats.calls["Login"] == 1
    assert session.retrieve_one(vm_ref, ["runtime.powerState"])["runtime.powerState"] == \
        "poweredOn"


def test_backend_stats_are_the_session_stats(vcsim):
    """ops.stats counts the backend's server calls: the same object the session records in."""
    from tests.integration.vmware.helpers import make_conf
    from virtdriver.vmware.vmops import VMwareVMOps

    ops = VMwareVMOps(make_conf(vcsim))
    try:
        ops.list_instance_uuids()
        assert ops.stats is ops.session.stats
        assert ops.stats.calls["Login"] == 1 and ops.stats.total_calls >= 2
    finally:
        ops.close()


def test_sequential_waits_reuse_one_collector(session: VMwareSession, vcsim_faults: Any,
                                             vm_ref: Any) -> None:
    """Filters of finished tasks do not pile up on the server (hundreds of idle filters made
    vcsim stall every wait of a busy process): they stay on their collector, which waits one
    after another borrow back, until it has served WAITS_PER_COLLECTOR waits; then it is
    destroyed whole and a fresh one takes over."""
    rounds = 2 * TaskWaiter.POOL_SIZE + 1
    vcsim_faults.inject("PowerOnVM_Task", "delay", delay_ms=20, count=rounds)
    session.stats.reset()
    for _ in range(rounds):
        session.call_task(vm_ref, "PowerOnVM_Task")
        session.call_task(vm_ref, "PowerOffVM_Task")
    calls = session.stats.calls
    assert calls["CreateFilter"] == rounds and "DestroyPropertyFilter" not in calls
    per = TaskWaiter.WAITS_PER_COLLECTOR
    assert calls.get("DestroyPropertyCollector", 0) <= rounds // per
    assert calls.get("CreatePropertyCollector", 0) <= -(-rounds // per)
    waiter = session._waiter
    assert waiter is not None and waiter.lent == 0
    assert all(served <= per for _, _, _, served in waiter._idle)
