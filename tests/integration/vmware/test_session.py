"""The session against the launcher: TLS, login, stats, re-login, faults, push task waiting."""

from __future__ import annotations

import logging
import time
from typing import Any

import pytest
from pyVmomi import vim, vmodl

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
    """One read finds it running; then the task goes into the collector's ListView and two
    WaitForUpdatesEx hear it enter and end, no polling: four calls in all.

    The first run pays the collector's setup (collector, view with the task, filter); the
    second borrows it back from the pool with the version its last wait reached.
    """
    per_run = []
    for _ in range(2):  # the second run has a warm collector
        vcsim_faults.inject("PowerOnVM_Task", "delay", delay_ms=1500)
        task = session.invoke(vm_ref, "PowerOnVM_Task")
        session.stats.reset()
        start = time.monotonic()
        session.wait_for_task(task)
        assert time.monotonic() - start >= 1.3
        per_run.append(dict(session.stats.calls))
        session.call_task(vm_ref, "PowerOffVM_Task")
    first, second = per_run
    setup = {"CreatePropertyCollector", "CreateListView", "CreateFilter"}
    assert setup <= set(first) and sum(first.values()) <= 4 + len(setup), first
    assert second == {"RetrievePropertiesEx": 1, "ResetListView": 1,
                      "WaitForUpdatesEx": 2}, second


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


def power_on_every_vm_at_once(session: VMwareSession, vcsim_faults: Any) -> list[Any]:
    """Power every VM of the simulator off, then on again at once (each power-on lasting
    0.7 s on the server), with the session's call counts reset in between; its VMs."""
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
    return refs


def test_concurrent_waiters_each_borrow_a_collector(session: VMwareSession,
                                                    vcsim_faults: Any) -> None:
    """Each concurrent waiter waits on a collector of its own (one view and one filter
    each), and the pool keeps at most POOL_SIZE of them afterwards."""

    refs = power_on_every_vm_at_once(session, vcsim_faults)
    calls = session.stats.calls
    # one collector, view and filter each at most (the pool's waiters reuse theirs)
    assert calls["CreateFilter"] <= len(refs) and "DestroyPropertyFilter" not in calls
    assert calls["CreateListView"] == calls["CreateFilter"] == calls["CreatePropertyCollector"]
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


def _recording_creations(session: VMwareSession,
                         monkeypatch: pytest.MonkeyPatch) -> list[Any]:
    """The collectors and views the session creates from now on (in creation order)."""
    created: list[Any] = []
    invoke = session.invoke

    def recording(obj: Any, method: str, *args: Any, **kwargs: Any) -> Any:
        result = invoke(obj, method, *args, **kwargs)
        if method in ("CreatePropertyCollector", "CreateListView"):
            created.append(result)
        return result

    monkeypatch.setattr(session, "invoke", recording)
    return created


def _alive_on_server(session: VMwareSession, refs: list[Any]) -> dict[str, int]:
    """How many of ``refs`` (collectors and ListViews) the server still holds, by kind:
    read from the server, which leaves out the objects it no longer has."""
    pc = vmodl.query.PropertyCollector
    alive = {}
    for name, kind, path in (("views", vim.view.ListView, "view"),
                             ("collectors", pc, "filter")):
        mine = [ref for ref in refs if isinstance(ref, kind)]
        spec = pc.FilterSpec(objectSet=[pc.ObjectSpec(obj=ref) for ref in mine],
                             propSet=[pc.PropertySpec(type=kind, pathSet=[path])],
                             reportMissingObjectsInResults=True)
        alive[name] = len(session._retrieve([spec])) if mine else 0
    return alive


def test_every_wait_on_a_pooled_collector_costs_four_calls(
        vcsim: Any, vcsim_faults: Any, vm_ref: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """20 waits in a row on tasks that last: each one RetrievePropertiesEx, ResetListView and
    two WaitForUpdatesEx, the 20th as the 1st (nothing piles up on the collector that would
    have to be retired); only the first wait of the session pays the collector's setup."""
    session = _session(vcsim)
    created = _recording_creations(session, monkeypatch)
    try:
        per_wait = []
        for _ in range(21):
            vcsim_faults.inject("PowerOnVM_Task", "delay", delay_ms=300)
            task = session.invoke(vm_ref, "PowerOnVM_Task")
            session.stats.reset()
            session.wait_for_task(task)
            per_wait.append(dict(session.stats.calls))
            session.call_task(vm_ref, "PowerOffVM_Task")
        first, rest = per_wait[0], per_wait[1:]
        assert first == {"RetrievePropertiesEx": 1, "CreatePropertyCollector": 1,
                         "CreateListView": 1, "CreateFilter": 1, "WaitForUpdatesEx": 2}, first
        assert all(sum(calls.values()) <= 4 for calls in rest), rest
        assert all(calls.get("WaitForUpdatesEx") for calls in rest), rest  # waited, by push
        waiter = session._waiter
        assert waiter is not None and waiter.lent == 0 and len(waiter._idle) == 1
        assert _alive_on_server(session, created) == {"views": 1, "collectors": 1}
    finally:
        session.logout()


def test_collectors_the_pool_does_not_keep_are_destroyed_with_their_views(
        vcsim: Any, vcsim_faults: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """Concurrent waits each take a collector; past POOL_SIZE idle ones, a collector given
    back is destroyed, its ListView with it: the server keeps POOL_SIZE of each at most."""

    session = _session(vcsim)
    created = _recording_creations(session, monkeypatch)
    waiter = session._waiter = TaskWaiter(session)
    waiter.POOL_SIZE = 2  # fewer than the simulator's VMs
    try:
        refs = power_on_every_vm_at_once(session, vcsim_faults)
        assert len(refs) > waiter.POOL_SIZE
        calls = session.stats.calls
        made = calls["CreatePropertyCollector"]
        assert made > waiter.POOL_SIZE and calls["CreateListView"] == made
        assert calls["DestroyPropertyCollector"] == calls["DestroyView"] == made - 2
        assert waiter.lent == 0 and len(waiter._idle) == 2
        assert _alive_on_server(session, created) == {"views": 2, "collectors": 2}
        for ref in refs:
            session.call_task(ref, "PowerOffVM_Task")
    finally:
        session.logout()


def test_progress_listeners_get_collectors_of_their_own(vcsim: Any, vcsim_faults: Any,
                                                         vm_ref: Any) -> None:
    """A caller who listens to info.progress borrows a collector whose filter watches it;
    such collectors are pooled apart, so a wait that does not listen never pays for
    progress steps (on vCenter each would answer a WaitForUpdatesEx)."""
    session = _session(vcsim)
    made = []
    try:
        for listens in (True, False, True, False):
            vcsim_faults.inject("PowerOnVM_Task", "delay", delay_ms=300)
            task = session.invoke(vm_ref, "PowerOnVM_Task")
            session.stats.reset()
            session.wait_for_task(task, progress=(lambda p: None) if listens else None)
            made.append(session.stats.calls.get("CreatePropertyCollector", 0))
            session.call_task(vm_ref, "PowerOffVM_Task")
        assert made == [1, 1, 0, 0]  # one of each kind, then each borrowed back
        waiter = session._waiter
        assert waiter is not None
        assert sorted(c.progress for c in waiter._idle) == [False, True]
    finally:
        session.logout()
