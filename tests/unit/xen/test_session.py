"""XenAPISession policy: pooling, re-login, retries, accounting, translation, lasting calls,
task waits.

The fake sits at the one seam (the XML-RPC proxy the session is given); nothing sleeps.
"""

import logging
import threading
import time
import xmlrpc.client

import pytest
import XenAPI

from virtdriver.common import exceptions as exc
from virtdriver.xen.session import (
    Backoff,
    RetryPolicy,
    XenAPISession,
    is_handle_invalid,
)
from virtdriver.xen.tasks import parse_task_result

PASSWORD = "s3cr3t-pa55"


class FakeServer:
    """Answers XML-RPC calls like xapi: dict replies, session handles, tasks."""

    def __init__(self):
        self.calls = []
        self.sessions = set()
        self.logins = 0
        self.handlers = {}
        self.lock = threading.Lock()

    def reply(self, method, params):
        with self.lock:
            self.calls.append((method, params))
        if method == "session.login_with_password":
            if params[1] != PASSWORD:
                return failure("SESSION_AUTHENTICATION_FAILED", params[0], "bad credentials")
            with self.lock:
                self.logins += 1
                handle = f"OpaqueRef:session-{self.logins}"
                self.sessions.add(handle)
            return ok(handle)
        if method == "session.logout":
            self.sessions.discard(params[0])
            return ok("")
        if params and params[0] not in self.sessions:
            return failure("SESSION_INVALID", params[0])
        handler = self.handlers.get(method)
        if handler is None:
            return failure("MESSAGE_METHOD_UNKNOWN", method)
        result = handler(*params[1:])
        if isinstance(result, Exception):
            raise result
        return result

    def methods(self):
        return [method for method, _ in self.calls]


def ok(value):
    return {"Status": "Success", "Value": value}


def failure(code, *params):
    return {"Status": "Failure", "ErrorDescription": [code, *params]}


class FakeProxy:
    def __init__(self, server):
        self._server = server

    def __getattr__(self, name):
        return lambda *params: self._server.reply(name, params)


class FakeTransport:
    timeout = None


def timeout_recording_transport():
    """A fake transport class whose instances note every socket timeout set on them."""
    seen = []

    class Transport(FakeTransport):
        def __setattr__(self, name, value):
            if name == "timeout":
                seen.append(value)
            super().__setattr__(name, value)

    return Transport, seen


def make_session(server, **kwargs):
    sleeps = []
    kwargs.setdefault("sleep", sleeps.append)
    session = XenAPISession("http://xapi.example", "root", PASSWORD,
                            proxy_factory=lambda: (FakeProxy(server), FakeTransport()),
                            **kwargs)
    session.sleeps = sleeps
    return session


@pytest.fixture
def server():
    return FakeServer()


def test_construction_sends_nothing(server):
    session = make_session(server)
    assert server.calls == []
    assert session.stats.total_calls == 0


def test_first_call_logs_in_and_is_counted(server):
    server.handlers["VM.get_all"] = lambda: ok(["OpaqueRef:a"])
    session = make_session(server)
    assert session.xenapi.VM.get_all() == ["OpaqueRef:a"]
    assert server.methods() == ["session.login_with_password", "VM.get_all"]
    assert server.calls[0][1][2:] == ("2.1", "virtdriver")
    assert session.stats.snapshot() == {"session.login_with_password": 1, "VM.get_all": 1}
    assert session.stats.seconds["VM.get_all"] >= 0
    session.stats.reset()
    assert session.stats.total_calls == 0


def test_failure_is_translated_with_code_params_and_cause(server):
    server.handlers["VM.start"] = lambda *a: failure("VM_BAD_POWER_STATE", "OpaqueRef:v",
                                                     "halted", "running")
    session = make_session(server)
    with pytest.raises(exc.BackendError) as caught:
        session.call("VM.start", "OpaqueRef:v", False, False)
    assert caught.value.code == "VM_BAD_POWER_STATE"
    assert caught.value.params == ("OpaqueRef:v", "halted", "running")
    assert isinstance(caught.value.__cause__, XenAPI.Failure)


def test_handle_invalid_helper(server):
    server.handlers["VM.get_record"] = lambda ref: failure("HANDLE_INVALID", "VM", ref)
    session = make_session(server)
    with pytest.raises(exc.BackendError) as caught:
        session.call("VM.get_record", "OpaqueRef:gone")
    assert is_handle_invalid(caught.value, "VM")
    assert not is_handle_invalid(caught.value, "VDI")


def test_session_invalid_relogs_in_exactly_once(server):
    session = make_session(server)
    server.handlers["VM.get_all"] = lambda: ok([])
    session.call("VM.get_all")
    server.sessions.clear()  # the server forgot every session (expiry, restart)
    assert session.call("VM.get_all") == []
    assert server.logins == 2


def test_second_session_invalid_is_session_expired(server):
    session = make_session(server)
    server.handlers["VM.get_all"] = lambda: failure("SESSION_INVALID", "x")
    with pytest.raises(exc.SessionExpired) as caught:
        session.call("VM.get_all")
    assert caught.value.code == "SESSION_INVALID"
    assert server.logins == 2  # first login plus exactly one re-login


def test_bad_credentials_are_authentication_failed_without_password(server, caplog):
    caplog.set_level(logging.DEBUG)
    session = XenAPISession("http://xapi.example", "root", "wrong-password-xyz",
                            proxy_factory=lambda: (FakeProxy(server), FakeTransport()))
    with pytest.raises(exc.AuthenticationFailed) as caught:
        session.call("VM.get_all")
    assert "wrong-password-xyz" not in str(caught.value)
    assert "wrong-password-xyz" not in repr(session)
    assert "wrong-password-xyz" not in caplog.text


def test_password_never_in_repr_or_logs(server, caplog):
    caplog.set_level(logging.DEBUG)
    server.handlers["VM.get_all"] = lambda: ok([])
    session = make_session(server)
    session.call("VM.get_all")
    assert PASSWORD not in repr(session)
    assert PASSWORD not in caplog.text
    assert "session-1" not in caplog.text  # handles are truncated


def test_connection_failures_retried_with_backoff_then_succeed(server):
    attempts = []

    def flaky():
        attempts.append(1)
        if len(attempts) < 3:
            return ConnectionRefusedError("refused")
        return ok("fine")

    server.handlers["pool.get_all"] = flaky
    session = make_session(server, retry=RetryPolicy(attempts=3, backoff=Backoff(1, 2, 10)))
    assert session.call("pool.get_all") == "fine"
    assert session.sleeps == [1, 2]
    assert session.stats.calls["pool.get_all"] == 3


def test_connection_failures_bounded(server):
    server.handlers["pool.get_all"] = lambda: ConnectionResetError("reset")
    session = make_session(server, retry=RetryPolicy(attempts=2, backoff=Backoff(1, 2, 3)))
    with pytest.raises(exc.ConnectionFailed):
        session.call("pool.get_all")
    assert session.sleeps == [1, 2]
    assert session.stats.calls["pool.get_all"] == 3


def test_backoff_is_capped():
    backoff = Backoff(initial=1, factor=10, maximum=5)
    assert [backoff.delay(n) for n in range(3)] == [1, 5, 5]


def test_pool_never_exceeds_concurrency(server):
    server.handlers["VM.get_all"] = lambda: ok([])
    session = make_session(server, concurrent=2)
    barrier = threading.Barrier(4)
    errors = []

    def worker():
        try:
            barrier.wait()
            for _ in range(5):
                session.call("VM.get_all")
        except Exception as error:  # pragma: no cover - reported below
            errors.append(error)

    threads = [threading.Thread(target=worker) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors
    assert server.logins <= 2


def test_close_logs_out_every_session(server):
    server.handlers["VM.get_all"] = lambda: ok([])
    session = make_session(server)
    session.call("VM.get_all")
    session.close()
    assert "session.logout" in server.methods()
    assert server.sessions == set()
    with pytest.raises(exc.SessionExpired):
        session.call("VM.get_all")


def task_record(status, result="", error_info=(), progress=0.0):
    return {"status": status, "result": result, "error_info": list(error_info),
            "progress": progress}


def scripted_events(server, records):
    """event.from answers each record in turn as a mod of the task."""
    script = list(records)

    def event_from(classes, token, timeout):
        assert isinstance(timeout, float)
        record = script.pop(0)
        return ok({"events": [{"ref": "OpaqueRef:task", "class": "task", "operation": "mod",
                               "snapshot": record}],
                   "token": f"{len(script):020d}", "valid_ref_counts": {}})

    server.handlers["event.from"] = event_from
    server.handlers["task.destroy"] = lambda task: ok("")


def test_async_waits_by_event_from_and_destroys_task(server):
    server.handlers["Async.VM.clone"] = lambda *a: ok("OpaqueRef:task")
    scripted_events(server, [task_record("pending", progress=0.5),
                             task_record("success", "<value>OpaqueRef:new</value>", progress=1.0)])
    seen = []
    session = make_session(server)
    assert session.call_async("VM.clone", "OpaqueRef:vm", "copy", progress=seen.append) \
        == "OpaqueRef:new"
    assert seen == [0.5, 1.0]
    assert "task.get_record" not in server.methods()  # no polling
    assert server.methods()[-1] == "task.destroy"


def test_async_failure_is_task_failed_and_task_destroyed(server):
    server.handlers["Async.VM.start"] = lambda *a: ok("OpaqueRef:task")
    scripted_events(server, [task_record("failure", error_info=["VM_BAD_POWER_STATE", "v",
                                                                 "halted", "running"])])
    session = make_session(server)
    with pytest.raises(exc.TaskFailed) as caught:
        session.call_async("VM.start", "v", False, False)
    assert caught.value.code == "VM_BAD_POWER_STATE"
    assert server.methods()[-1] == "task.destroy"


def test_async_timeout_cancels_and_destroys(server):
    server.handlers["Async.VM.start"] = lambda *a: ok("OpaqueRef:task")
    server.handlers["task.cancel"] = lambda task: ok("")
    scripted_events(server, [task_record("pending")] * 3)
    session = make_session(server)
    with pytest.raises(exc.TaskTimeout):
        session.call_async("VM.start", "v", False, False, timeout=0.0)
    assert "task.cancel" in server.methods()
    assert server.methods()[-1] == "task.destroy"


def test_a_lasting_call_is_one_plain_call_outside_the_pool(server):
    """VM.start as one round trip (no Async, event.from or task.destroy), on a connection of
    its own: with a pool of one, a short call goes through while it lasts."""
    started, release = threading.Event(), threading.Event()

    def start(*args):
        started.set()
        release.wait(5)
        return ok("")

    server.handlers["VM.start"] = start
    server.handlers["VM.get_all"] = lambda: ok([])
    session = make_session(server, concurrent=1)
    session.call("VM.get_all")
    lasting = threading.Thread(target=session.call_lasting,
                               args=("VM.start", "OpaqueRef:vm", False, False))
    lasting.start()
    assert started.wait(5)
    session.call("VM.get_all")  # not queued behind VM.start
    release.set()
    lasting.join(5)
    assert not lasting.is_alive()
    assert [m for m in server.methods() if m != "session.login_with_password"] == \
        ["VM.get_all", "VM.start", "VM.get_all"]


def test_lasting_calls_in_flight_share_one_login(server):
    """Four lasting calls at once: four connections, one XAPI session among them; an
    expired session is logged in again once for all; close logs it out once."""
    started, release = threading.Barrier(4, timeout=5), threading.Event()

    def start(*args):
        started.wait()
        release.wait(5)
        return ok("")

    server.handlers["VM.start"] = start
    session = make_session(server)
    threads = [threading.Thread(target=session.call_lasting, args=("VM.start", "v", False,
                                                                   False)) for _ in range(4)]
    for thread in threads:
        thread.start()
    time.sleep(0.2)
    release.set()
    for thread in threads:
        thread.join(5)
    assert server.logins == 1
    server.sessions.clear()  # expired on the server
    server.handlers["VM.start"] = lambda *a: ok("")
    session.call_lasting("VM.start", "v", False, False)
    session.call_lasting("VM.start", "v", False, False)
    assert server.logins == 2
    session.close()
    assert server.methods().count("session.logout") == 1


def test_a_lasting_call_waits_up_to_task_timeout(server):
    transport, seen = timeout_recording_transport()
    server.handlers["VM.start"] = lambda *a: ok("")
    session = XenAPISession("http://xapi.example", "root", PASSWORD, call_timeout=42,
                            login_timeout=3, task_timeout=900,
                            proxy_factory=lambda: (FakeProxy(server), transport()))
    session.call_lasting("VM.start", "v", False, False)
    session.call_lasting("VM.start", "v", False, False, timeout=7)
    assert seen == [3, 900, 7]


def test_a_lasting_call_past_its_timeout_is_task_timeout_and_not_repeated(server):
    server.handlers["VM.clean_shutdown"] = lambda *a: TimeoutError("timed out")
    session = make_session(server)
    with pytest.raises(exc.TaskTimeout) as caught:
        session.call_lasting("VM.clean_shutdown", "v", timeout=5)
    assert caught.value.code == "TASK_TIMEOUT"
    assert server.methods().count("VM.clean_shutdown") == 1


def test_a_lasting_call_is_repeated_only_if_it_never_reached_the_server(server):
    """Reset after sending: the server may have started the VM, so no repeat; refused: it
    never got there, so the retry policy applies."""
    server.handlers["VM.start"] = lambda *a: ConnectionResetError("reset")
    session = make_session(server, retry=RetryPolicy(attempts=2, backoff=Backoff(1, 2, 3)))
    with pytest.raises(exc.ConnectionFailed):
        session.call_lasting("VM.start", "v", False, False)
    assert server.methods().count("VM.start") == 1 and session.sleeps == []
    attempts = []

    def refused_once(*args):
        attempts.append(1)
        return ConnectionRefusedError("refused") if len(attempts) == 1 else ok("")

    server.handlers["VM.start"] = refused_once
    session.call_lasting("VM.start", "v", False, False)
    assert len(attempts) == 2 and session.sleeps == [1]


def test_parse_task_result():
    assert parse_task_result("") == ""
    assert parse_task_result("<value>OpaqueRef:x</value>") == "OpaqueRef:x"
    assert parse_task_result("<value><array><data><value>a</value></data></array></value>") \
        == ["a"]


def test_invalid_url_is_invalid_input():
    with pytest.raises(exc.InvalidInput):
        XenAPISession("ftp://nowhere", "root", "x")


def test_https_verifies_by_default_and_insecure_warns(caplog):
    import ssl
    secure = XenAPISession("https://xapi.example", "root", "x")
    assert secure._ssl_context.verify_mode == ssl.CERT_REQUIRED
    assert secure._ssl_context.check_hostname
    with caplog.at_level(logging.WARNING):
        insecure = XenAPISession("https://xapi.example", "root", "x", insecure=True)
    assert insecure._ssl_context.verify_mode == ssl.CERT_NONE
    assert "insecure" in caplog.text


def test_xmlrpc_fault_is_backend_error_without_retry(server):
    server.handlers["VM.get_all"] = lambda: xmlrpc.client.Fault(500, "boom")
    session = make_session(server)
    with pytest.raises(exc.BackendError) as caught:
        session.call("VM.get_all")
    assert caught.value.code == "XMLRPC_FAULT"
    assert not isinstance(caught.value, exc.ConnectionFailed)
    assert session.sleeps == []


def test_stats_can_be_shared_with_the_backend(server):
    from virtdriver.common.stats import CallStats

    shared = CallStats()
    server.handlers["VM.get_all"] = lambda: ok([])
    session = make_session(server, stats=shared)
    session.call("VM.get_all")
    assert shared.snapshot() == {"session.login_with_password": 1, "VM.get_all": 1}
    assert shared.total_seconds >= 0


def test_a_call_that_times_out_is_not_repeated(server):
    """A stalled server: the socket timeout is ConnectionFailed(CALL_TIMEOUT), no retry."""
    server.handlers["VM.get_all"] = lambda: TimeoutError("timed out")
    session = make_session(server, call_timeout=7)
    with pytest.raises(exc.ConnectionFailed) as caught:
        session.call("VM.get_all")
    assert caught.value.code == "CALL_TIMEOUT" and "call_timeout" in str(caught.value)
    assert server.methods().count("VM.get_all") == 1 and session.sleeps == []


def test_call_timeout_is_the_default_socket_timeout(server):
    transport, seen = timeout_recording_transport()
    server.handlers["VM.get_all"] = lambda: ok([])
    session = XenAPISession("http://xapi.example", "root", PASSWORD, call_timeout=42,
                            login_timeout=3,
                            proxy_factory=lambda: (FakeProxy(server), transport()))
    session.call("VM.get_all")
    session.call("VM.get_all", timeout=5)
    assert seen == [3, 42, 5]


def test_a_task_whose_destroy_failed_is_destroyed_by_the_next_good_call(server):
    server.handlers["Async.VM.start"] = lambda *a: ok("OpaqueRef:task")
    scripted_events(server, [task_record("success")])
    outage = {"on": True}
    destroyed = []

    def destroy(task):
        if outage["on"]:
            return ConnectionResetError("reset")
        destroyed.append(task)
        return ok("")

    server.handlers["task.destroy"] = destroy
    server.handlers["VM.get_all"] = lambda: ok([])
    session = make_session(server, retry=RetryPolicy(attempts=0))
    session.call_async("VM.start", "v", False, False)
    assert session.pending_cleanup == {"OpaqueRef:task"} and destroyed == []
    outage["on"] = False
    session.call("VM.get_all")
    assert destroyed == ["OpaqueRef:task"] and session.pending_cleanup == frozenset()


def test_a_task_whose_destroy_failed_is_destroyed_at_close(server):
    server.handlers["Async.VM.start"] = lambda *a: ok("OpaqueRef:task")
    scripted_events(server, [task_record("success")])
    calls = {"n": 0}

    def destroy(task):
        calls["n"] += 1
        return ConnectionResetError("reset") if calls["n"] == 1 else ok("")

    server.handlers["task.destroy"] = destroy
    session = make_session(server, retry=RetryPolicy(attempts=0))
    session.call_async("VM.start", "v", False, False)
    assert session.pending_cleanup == {"OpaqueRef:task"}
    session.close()
    assert calls["n"] == 2 and session.pending_cleanup == frozenset()


def test_concurrent_waits_share_one_long_poll_outside_the_pool(server):
    """Five tasks waited on at once: one event.from at a time, on its own connection, so a
    pool of one still serves short calls while the tasks are pending."""
    release = threading.Event()
    polls = []
    counter = {"n": 0}
    lock = threading.Lock()

    def start(*args):
        with lock:
            counter["n"] += 1
            return ok(f"OpaqueRef:task-{counter['n']}")

    def event_from(classes, token, timeout):
        polls.append(token)
        assert classes == ["task"]
        release.wait(5)
        events = [{"ref": f"OpaqueRef:task-{n}", "class": "task", "operation": "mod",
                   "snapshot": task_record("success", f"<value>r{n}</value>")}
                  for n in range(1, 6)]
        return ok({"events": events, "token": "t1", "valid_ref_counts": {}})

    server.handlers["Async.VM.start"] = start
    server.handlers["event.from"] = event_from
    server.handlers["task.destroy"] = lambda task: ok("")
    server.handlers["VM.get_all"] = lambda: ok([])
    session = make_session(server, concurrent=1)
    results = []
    threads = [threading.Thread(target=lambda: results.append(
        session.call_async("VM.start", "v", False, False))) for _ in range(5)]
    for thread in threads:
        thread.start()
    while counter["n"] < 5:
        threading.Event().wait(0.01)
    session.call("VM.get_all")  # the pool's only connection is free for short calls
    release.set()
    for thread in threads:
        thread.join(5)
    assert sorted(results) == [f"r{n}" for n in range(1, 6)]
    assert len(polls) <= 2  # one poll served every waiter (a second may start meanwhile)
    assert server.methods().count("task.destroy") == 5


def test_a_failed_shared_poll_fails_every_waiter_at_once(server):
    counter = {"n": 0}

    def start(*args):
        counter["n"] += 1
        return ok(f"OpaqueRef:task-{counter['n']}")

    gate = threading.Event()

    def event_from(classes, token, timeout):
        gate.wait(5)
        return ConnectionRefusedError("down")

    server.handlers["Async.VM.start"] = start
    server.handlers["event.from"] = event_from
    server.handlers["task.destroy"] = lambda task: ok("")
    session = make_session(server, retry=RetryPolicy(attempts=0))
    errors = []

    def run():
        try:
            session.call_async("VM.start", "v", False, False)
        except exc.ConnectionFailed as error:
            errors.append(error)

    threads = [threading.Thread(target=run) for _ in range(3)]
    for thread in threads:
        thread.start()
    while counter["n"] < 3:
        threading.Event().wait(0.01)
    threading.Event().wait(0.05)
    gate.set()
    for thread in threads:
        thread.join(5)
    assert len(errors) == 3
    assert server.methods().count("event.from") == 1


def test_a_wait_that_lost_the_server_does_not_also_wait_for_task_destroy(server):
    """The shared poll cannot reach the server: the caller hears it at once; the task is
    left for the next good call rather than costing one more call timeout now."""
    server.handlers["Async.VM.start"] = lambda *a: ok("OpaqueRef:task")
    server.handlers["event.from"] = lambda *a: ConnectionRefusedError("down")
    server.handlers["task.destroy"] = lambda task: ok("")
    server.handlers["VM.get_all"] = lambda: ok([])
    session = make_session(server, retry=RetryPolicy(attempts=0))
    with pytest.raises(exc.ConnectionFailed):
        session.call_async("VM.start", "v", False, False)
    assert "task.destroy" not in server.methods()
    assert session.pending_cleanup == {"OpaqueRef:task"}
    session.call("VM.get_all")
    assert server.methods()[-1] == "task.destroy" and session.pending_cleanup == frozenset()
