"""The Xen session under network faults, against the XAPI simulator through a proxy.

Each test checks what the caller gets (error type and how long it took), what the server
holds afterwards (read with a plain XenAPI client straight to the simulator), and what the
client holds: threads and file descriptors.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest

from tests.support.faultproxy import FaultProxy, client_threads, open_fds
from tests.support.xapi import client_session
from virtdriver.common import exceptions
from virtdriver.xen.session import RetryPolicy, XenAPISession

from .conftest import run_bounded

#: Short call timeout for the tests: the default is [xenserver] call_timeout (60 s).
CALL_TIMEOUT = 4.0


def make_session(proxy: FaultProxy, **kwargs: Any) -> XenAPISession:
    kwargs.setdefault("call_timeout", CALL_TIMEOUT)
    kwargs.setdefault("retry", RetryPolicy(attempts=1))
    return XenAPISession(f"http://{proxy.host}:{proxy.port}", "root", "secret",
                         sleep=lambda s: time.sleep(min(s, 0.2)), **kwargs)


@pytest.fixture(scope="module")
def xapi(xapi_sim: Any) -> Iterator[Any]:
    """A plain XenAPI client straight to the simulator (never through the proxy)."""
    with client_session(xapi_sim.url) as session:
        yield session.xenapi


@pytest.fixture
def vm(xapi: Any) -> Iterator[str]:
    ref = xapi.VM.create({"name_label": "fault-src", "memory_static_max": str(2 ** 28),
                          "memory_dynamic_max": str(2 ** 28),
                          "memory_dynamic_min": str(2 ** 28), "memory_static_min": "0",
                          "VCPUs_max": "1", "VCPUs_at_startup": "1"})
    yield ref
    for other, record in xapi.VM.get_all_records().items():
        if record["name_label"] in ("fault-src", "fault-dst"):
            xapi.VM.destroy(other)


def clone_tasks(xapi: Any) -> list[str]:
    return [ref for ref, task in xapi.task.get_all_records().items()
            if task["name_label"] == "Async.VM.clone"]


def test_row4_a_stalled_server_fails_a_call_after_call_timeout(xapi_proxy: FaultProxy) -> None:
    """Before: a fixed 600 s. Now [xenserver] call_timeout, a typed error, not repeated;
    the same session answers again once the server does."""
    session = make_session(xapi_proxy)
    session.call("VM.get_all")
    threads, fds = client_threads(), open_fds()
    xapi_proxy.stall()
    _, error, took = run_bounded(lambda: session.call("VM.get_all"), 4 * CALL_TIMEOUT)
    assert isinstance(error, exceptions.ConnectionFailed), error
    assert error.code == "CALL_TIMEOUT"
    assert CALL_TIMEOUT - 0.5 <= took < CALL_TIMEOUT + 2
    xapi_proxy.forward()
    xapi_proxy.reset()
    assert isinstance(session.call("VM.get_all"), list)  # the same object works again
    assert client_threads() <= threads | {"bounded-call"}
    assert open_fds() <= fds + 2
    session.close()


def test_row4_the_option_reaches_the_session() -> None:
    from oslo_config import cfg

    import virtdriver

    conf = cfg.ConfigOpts()
    virtdriver.register_opts(conf)
    conf([])
    assert conf.xenserver.call_timeout == 60 and conf.vmware.call_timeout == 60
    conf.set_override("connection_url", "http://127.0.0.1:9", "xenserver")
    conf.set_override("call_timeout", 17, "xenserver")
    assert XenAPISession.from_conf(conf).call_timeout == 17


def test_row5_a_task_whose_destroy_failed_goes_with_the_next_good_call(
        xapi_proxy: FaultProxy, xapi: Any, vm: str) -> None:
    """The server is unreachable right when the task is to be destroyed: the clone is
    returned, the task record stays; the next call that gets through removes it."""
    session = make_session(xapi_proxy)
    # the final progress report comes just before task.destroy: the outage starts there
    clone = session.call_async("VM.clone", vm, "fault-dst",
                               progress=lambda f: f >= 1.0 and xapi_proxy.refuse())
    assert xapi.VM.get_name_label(clone) == "fault-dst"
    assert len(clone_tasks(xapi)) == 1  # the outage left it
    xapi_proxy.forward()
    session.call("VM.get_all")
    assert clone_tasks(xapi) == []
    session.close()


def test_row5_a_task_whose_destroy_failed_goes_at_close(xapi_proxy: FaultProxy, xapi: Any,
                                                        vm: str) -> None:
    session = make_session(xapi_proxy)
    session.call_async("VM.clone", vm, "fault-dst",
                       progress=lambda f: f >= 1.0 and xapi_proxy.refuse())
    assert len(clone_tasks(xapi)) == 1
    xapi_proxy.forward()
    session.close()
    assert clone_tasks(xapi) == []


def test_a_task_wait_survives_reset_connections(xapi_proxy: FaultProxy, xapi_sim: Any,
                                                xapi: Any, vm: str) -> None:
    """Every connection is reset while a task is waited on: the shared event.from is sent
    again with the same token and still hears the end; the task is destroyed."""
    session = make_session(xapi_proxy)
    xapi_sim.inject_delay("VM.clone", 1.0)
    threading.Timer(0.4, xapi_proxy.reset).start()
    clone, error, took = run_bounded(
        lambda: session.call_async("VM.clone", vm, "fault-dst"), 20)
    assert error is None, error
    assert xapi.VM.get_name_label(clone) == "fault-dst"
    assert took < 5
    assert clone_tasks(xapi) == []
    session.close()


def test_concurrent_task_waits_leave_the_pool_to_short_calls(xapi_proxy: FaultProxy,
                                                             xapi_sim: Any, xapi: Any,
                                                             vm: str) -> None:
    """Four slow clones waited on at once with a pool of one: a short call still goes
    through at once, and one long poll at a time serves every waiter."""
    session = make_session(xapi_proxy, concurrent=1)
    xapi_sim.inject_delay("VM.clone", 1.5, 4)
    results: list[Any] = []
    threads = [threading.Thread(target=lambda: results.append(
        session.call_async("VM.clone", vm, "fault-dst"))) for _ in range(4)]
    for thread in threads:
        thread.start()
    time.sleep(0.5)
    _, error, took = run_bounded(lambda: session.call("VM.get_all"), 10)
    assert error is None and took < 1.0
    for thread in threads:
        thread.join(20)
    assert len(results) == 4
    assert clone_tasks(xapi) == []
    session.close()


def test_a_lasting_call_on_a_stalled_server_fails_within_two_call_timeouts(
        xapi_proxy: FaultProxy, xapi_sim: Any, xapi: Any, vm: str) -> None:
    """VM.clone lasting 12 s as a plain call (task_timeout an hour), the server stalled
    under it: after call_timeout without an answer, a short call checks the server, which
    does not answer either; the lasting call fails with ConnectionFailed then, not after
    task_timeout, and is not sent again. Healthy again, the same session works."""
    session = make_session(xapi_proxy, task_timeout=3600)
    session.call("VM.get_all")
    xapi_sim.inject_delay("VM.clone", 12)
    threads, fds = client_threads(), open_fds()
    threading.Timer(0.5, xapi_proxy.stall).start()
    _, error, took = run_bounded(lambda: session.call_lasting("VM.clone", vm, "fault-dst"),
                                 4 * CALL_TIMEOUT)
    assert isinstance(error, exceptions.ConnectionFailed), error
    assert CALL_TIMEOUT <= took < 2 * CALL_TIMEOUT + 2, took
    assert session.stats.calls["VM.clone"] == 1
    xapi_proxy.forward()
    xapi_proxy.reset()
    xapi_sim.clear_faults()
    assert isinstance(session.call("VM.get_all"), list)
    assert client_threads() <= threads | {"bounded-call"}
    assert open_fds() <= fds + 2
    session.close()
    deadline = time.monotonic() + 20  # the server finishes the clone it was sent
    while xapi.task.get_all() and time.monotonic() < deadline:
        time.sleep(0.2)
    for ref, record in xapi.VM.get_all_records().items():
        if record["name_label"] == "fault-dst":
            xapi.VM.destroy(ref)


def test_a_lasting_call_that_outlives_a_check_still_answers(xapi_proxy: FaultProxy,
                                                           xapi_sim: Any, xapi: Any,
                                                           vm: str) -> None:
    """A healthy server working longer than call_timeout: the checks in between answer, the
    lasting call gets its answer, one call of it."""
    session = make_session(xapi_proxy, call_timeout=1.0)
    xapi_sim.inject_delay("VM.clone", 2.5)
    clone, error, took = run_bounded(
        lambda: session.call_lasting("VM.clone", vm, "fault-dst"), 20)
    assert error is None, error
    assert xapi.VM.get_name_label(clone) == "fault-dst"
    assert 2.4 <= took < 6
    assert session.stats.calls["VM.clone"] == 1 and session.stats.calls["pool.get_all"] >= 2
    session.close()
    xapi.VM.destroy(clone)


def test_a_lasting_call_whose_connection_breaks_is_not_sent_again(
        xapi_proxy: FaultProxy, xapi_sim: Any, xapi: Any, vm: str) -> None:
    """The connection of a lasting VM.clone is reset while the server works on it: the
    caller gets ConnectionFailed at once, and the server made one clone, not two (the
    standard transport would have sent the call again on a fresh connection)."""
    session = make_session(xapi_proxy, retry=RetryPolicy(attempts=3))
    session.call("VM.get_all")
    xapi_sim.inject_delay("VM.clone", 1.0, 2)
    threading.Timer(0.3, xapi_proxy.reset).start()
    _, error, took = run_bounded(lambda: session.call_lasting("VM.clone", vm, "fault-dst"),
                                 20)
    assert isinstance(error, exceptions.ConnectionFailed), error
    assert took < 3  # at once: not after the clone (1 s), nor after a second one
    assert session.stats.calls["VM.clone"] == 1
    deadline = time.monotonic() + 10  # the server finishes the clone it was sent
    while xapi.task.get_all() and time.monotonic() < deadline:
        time.sleep(0.1)
    clones = [ref for ref, record in xapi.VM.get_all_records().items()
              if record["name_label"] == "fault-dst"]
    assert len(clones) == 1
    xapi_sim.clear_faults()
    session.close()
    for ref in clones:
        xapi.VM.destroy(ref)
