"""The VMware session and event channel under network faults, against vcsim through a proxy.

Each test checks what the caller gets (error type and how long it took), what the server
holds afterwards, and what the client holds: threads, file descriptors and sessions.
"""

from __future__ import annotations

import ssl
import threading
import time
from typing import Any

from pyVmomi import vim

from tests.support.faultproxy import FaultProxy, client_threads, open_fds
from virtdriver.common import exceptions
from virtdriver.vmware import ds_util
from virtdriver.vmware.events import PowerStateChannel
from virtdriver.vmware.session import VMwareSession

from .conftest import run_bounded

#: Short call timeout for the tests: the default is [vmware] call_timeout (60 s).
CALL_TIMEOUT = 6.0


def make_session(vcsim: Any, proxy: FaultProxy, **kwargs: Any) -> VMwareSession:
    kwargs.setdefault("api_retry_count", 2)
    kwargs.setdefault("call_timeout", CALL_TIMEOUT)
    return VMwareSession(proxy.host, proxy.port, vcsim.username, vcsim.password,
                         ca_file=vcsim.ca_file, sleep=lambda s: time.sleep(min(s, 0.2)),
                         **kwargs)


def a_vm(session: VMwareSession) -> Any:
    ref = next(ref for ref, props in session.list_objects(vim.VirtualMachine, ["name"]).values()
               if props["name"].startswith("DC0_C0"))
    if session.retrieve_one(ref, ["runtime.powerState"])["runtime.powerState"] != "poweredOff":
        session.call_task(ref, "PowerOffVM_Task")
    return ref


def server_sessions(vcsim: Any) -> int:
    """Sessions vcsim holds, read directly (not through the proxy or the code under test)."""
    from pyVim.connect import Disconnect, SmartConnect

    si = SmartConnect(host=vcsim.host, port=vcsim.port, user=vcsim.username,
                      pwd=vcsim.password, sslContext=ssl.create_default_context(
                          cafile=vcsim.ca_file))
    try:
        return len(si.content.sessionManager.sessionList or []) - 1  # not this one
    finally:
        Disconnect(si)


def test_row1_a_wait_whose_answer_was_lost_re_reads_the_task(vcsim: Any,
                                                             vcsim_proxy: FaultProxy) -> None:
    """The server's answer that the task ended is eaten (stall), then every connection is
    reset: the waiter re-reads the task and returns, instead of waiting from a version the
    server has moved past (before: until task_timeout, 3600 s)."""
    session = make_session(vcsim, vcsim_proxy)
    vm = a_vm(session)
    vcsim.inject("PowerOnVM_Task", "delay", delay_ms=1500)
    task = session.invoke(vm, "PowerOnVM_Task")

    def sabotage() -> None:
        time.sleep(0.7)            # the wait call is in flight on the server
        vcsim_proxy.stall()        # ... its answer (the task ended) will be dropped
        time.sleep(1.6)
        vcsim_proxy.forward()
        vcsim_proxy.reset()        # the client sees its wait call fail

    waiter = threading.Thread(target=sabotage, name="sabotage")
    waiter.start()
    _, error, took = run_bounded(lambda: session.wait_for_task(task, timeout=120), 30)
    waiter.join()
    assert error is None, error
    assert took < 6  # about 2.3 s of sabotage, then one re-read
    assert session.retrieve_one(vm, ["runtime.powerState"])["runtime.powerState"] == \
        "poweredOn"
    session.call_task(vm, "PowerOffVM_Task")
    session.logout()


def test_row1_a_wait_whose_connection_breaks_re_reads_and_waits_elsewhere(
        vcsim: Any, vcsim_proxy: FaultProxy) -> None:
    """Every connection is reset while the wait call is in flight on a pooled collector
    (the task still running): the waiter re-reads the task, finds it running, and waits on
    another collector, not again on the broken one, whose call may run on at the server and
    take the update that the task ended; that collector is destroyed with its ListView. The
    wait still ends when the task does."""
    session = make_session(vcsim, vcsim_proxy)
    vm = a_vm(session)
    vcsim.inject("PowerOnVM_Task", "delay", delay_ms=300)
    session.call_task(vm, "PowerOnVM_Task")
    session.call_task(vm, "PowerOffVM_Task")
    waiter = session._waiter
    assert waiter is not None and len(waiter._idle) == 1  # a warm collector
    vcsim.inject("PowerOnVM_Task", "delay", delay_ms=2000)
    task = session.invoke(vm, "PowerOnVM_Task")
    session.stats.reset()
    breaker = threading.Timer(0.8, vcsim_proxy.reset)  # the second wait call is in flight
    breaker.start()
    _, error, took = run_bounded(lambda: session.wait_for_task(task, timeout=120), 30)
    breaker.join()
    assert error is None, error
    assert 1.8 < took < 4, took  # heard at the end, not at a later deadline
    calls = session.stats.calls
    assert calls["RetrievePropertiesEx"] == 2  # the first look and the re-read
    assert calls["DestroyPropertyCollector"] == calls["DestroyView"] == 1, calls
    assert calls["CreatePropertyCollector"] == 1, calls  # the wait went on elsewhere
    assert waiter.lent == 0 and len(waiter._idle) == 1
    assert session.retrieve_one(vm, ["runtime.powerState"])["runtime.powerState"] == \
        "poweredOn"
    session.call_task(vm, "PowerOffVM_Task")
    session.logout()


def test_row2_any_error_on_a_kept_datastore_connection_retries_on_a_fresh_one(
        vcsim: Any, vcsim_proxy: FaultProxy) -> None:
    """A kept-alive datastore connection that fails with SSLEOFError (what a reset TLS
    connection gives) is replaced once, at once; the HEAD answers."""
    session = make_session(vcsim, vcsim_proxy)
    http = ds_util.DatastoreHTTP(session)
    ds_name = next(iter(vcsim.datastores))
    assert http.exists("DC0", ds_name, "no-such-file") is False  # keeps a connection
    assert len(http._idle) == 1

    class Broken:
        def request(self, *args: Any, **kwargs: Any) -> None:
            raise ssl.SSLEOFError(8, "EOF occurred in violation of protocol")

        def close(self) -> None:
            pass

    http._idle = [Broken()]  # type: ignore[list-item]
    session.stats.reset()
    assert http.exists("DC0", ds_name, "no-such-file") is False
    assert session.stats.calls["HTTP HEAD"] == 1
    # a fresh connection that fails is retried by the session's policy (refused, then back)
    vcsim_proxy.refuse()
    threading.Timer(0.3, vcsim_proxy.forward).start()
    http._idle = []
    assert http.exists("DC0", ds_name, "no-such-file") is False
    session.logout()


def test_row3_a_stalled_server_fails_a_call_after_call_timeout(
        vcsim: Any, vcsim_proxy: FaultProxy) -> None:
    """pyvmomi had no socket timeout: a server that stops answering hung the call for
    ever. Now: ConnectionFailed(CallTimeout) after call_timeout, not repeated; the next
    call on the same session, once the server answers, works; nothing is left behind."""
    session = make_session(vcsim, vcsim_proxy)
    vm = a_vm(session)
    threads, fds = client_threads(), open_fds()
    vcsim_proxy.stall()
    _, error, took = run_bounded(lambda: session.retrieve_one(vm, ["name"]), 3 * CALL_TIMEOUT)
    assert isinstance(error, exceptions.ConnectionFailed), error
    assert error.code == "CallTimeout"
    assert CALL_TIMEOUT - 0.5 <= took < CALL_TIMEOUT + 2
    vcsim_proxy.forward()
    vcsim_proxy.reset()
    assert session.retrieve_one(vm, ["name"])["name"].startswith("DC0_C0")  # same object
    assert client_threads() <= threads | {"bounded-call"}
    assert open_fds() <= fds + 2
    before = server_sessions(vcsim)
    session.logout()
    assert server_sessions(vcsim) == before - 1


def test_row3_a_stalled_task_wait_fails_after_call_timeout_too(
        vcsim: Any, vcsim_proxy: FaultProxy) -> None:
    """A task wait never asks the server for longer than call_timeout allows, so a
    stalled server fails the wait (typed) instead of hanging it."""
    session = make_session(vcsim, vcsim_proxy)
    vm = a_vm(session)
    vcsim.inject("PowerOnVM_Task", "delay", delay_ms=60_000)
    task = session.invoke(vm, "PowerOnVM_Task")
    time.sleep(0.2)
    vcsim_proxy.stall()
    _, error, took = run_bounded(lambda: session.wait_for_task(task), 4 * CALL_TIMEOUT)
    assert isinstance(error, exceptions.ConnectionFailed) and error.code == "CallTimeout"
    assert took < 2 * CALL_TIMEOUT
    vcsim_proxy.forward()
    vcsim_proxy.reset()
    session.logout()


def test_also_the_password_is_held_out_of_reach(vcsim: Any, vcsim_proxy: FaultProxy) -> None:
    session = make_session(vcsim, vcsim_proxy)
    try:
        for shown in (repr(session), str(vars(session)), repr(session._password)):
            assert vcsim.password not in shown
    finally:
        session.logout()


def test_also_the_event_channel_fails_fast_when_the_server_goes_and_stops_on_close(
        vcsim: Any, vcsim_proxy: FaultProxy) -> None:
    """The channel's wait is not retried for minutes (api_retry_count with backoff) when the
    server goes: it fails at once, so the thread running it can back off or stop; after
    logout it fails without a call and never logs in again."""
    session = make_session(vcsim, vcsim_proxy, api_retry_count=10)
    root = session.content.rootFolder
    datacenter = session.retrieve_one(root, ["childEntity"])["childEntity"][0]
    folder = session.retrieve_one(datacenter, ["vmFolder"])["vmFolder"]
    channel = PowerStateChannel(session, folder)
    channel.wait(1)  # the first report (of managed VMs: none here)
    vcsim_proxy.refuse()
    _, error, took = run_bounded(lambda: channel.wait(1), 20)
    assert isinstance(error, exceptions.ConnectionFailed), error
    assert took < 2
    vcsim_proxy.forward()
    session.logout()
    session.stats.reset()
    _, error, took = run_bounded(lambda: channel.wait(1), 5)
    assert isinstance(error, exceptions.SessionExpired) and error.code == "SessionClosed"
    channel.close()
    assert session.stats.total_calls == 0  # no Login behind the caller's back
