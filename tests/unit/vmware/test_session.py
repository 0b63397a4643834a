"""Session policy without a server: retries, re-login, missingSet, stats, translation."""

from __future__ import annotations

import http.client
from typing import Any

import pytest
from pyVmomi import vim, vmodl

from virtdriver.common import exceptions
from virtdriver.vmware.faults import translate_fault
from virtdriver.vmware.session import CallStats, RetryPolicy, VMwareSession


class FakeObject:
    """A managed object whose methods answer from a script of results or exceptions."""

    def __init__(self, **scripts: list[Any]) -> None:
        self.scripts = scripts
        self.calls: list[str] = []

    def __getattr__(self, name: str) -> Any:
        if name not in self.scripts:
            raise AttributeError(name)

        def method(*args: Any, **kwargs: Any) -> Any:
            self.calls.append(name)
            outcome = self.scripts[name].pop(0)
            if isinstance(outcome, BaseException):
                raise outcome
            return outcome
        return method


def make_session(retries: int = 3) -> tuple[VMwareSession, list[float]]:
    slept: list[float] = []
    session = VMwareSession("vc.example", 443, "admin", "s3cret-pw", api_retry_count=retries,
                            sleep=slept.append, connect=False)
    session.logins = 0  # type: ignore[attr-defined]

    def fake_login() -> None:
        session.logins += 1  # type: ignore[attr-defined]
        session.generation += 1
    session.login = fake_login  # type: ignore[method-assign]
    session._stub = FakeObject()
    return session, slept


def test_connection_failures_are_retried_with_backoff_then_given_up() -> None:
    session, slept = make_session(retries=3)
    obj = FakeObject(PowerOnVM_Task=[ConnectionResetError("reset"),
                                     http.client.RemoteDisconnected("gone"), "task-1"])
    assert session.invoke(obj, "PowerOnVM_Task") == "task-1"
    assert slept == [0.5, 1.0]
    assert session.stats.calls["PowerOnVM_Task"] == 3
    obj = FakeObject(PowerOnVM_Task=[ConnectionRefusedError("no")] * 4)
    with pytest.raises(exceptions.ConnectionFailed, match="after 4 tries") as err:
        session.invoke(obj, "PowerOnVM_Task")
    assert isinstance(err.value.__cause__, ConnectionRefusedError)


def test_retry_policy_is_capped() -> None:
    policy = RetryPolicy(attempts=20, base=1, cap=8)
    assert [policy.wait(n) for n in range(6)] == [1, 2, 4, 8, 8, 8]


def test_not_authenticated_logs_in_once_and_repeats() -> None:
    session, _ = make_session()
    obj = FakeObject(Destroy_Task=[vim.fault.NotAuthenticated(), "task-2"])
    assert session.invoke(obj, "Destroy_Task") == "task-2"
    assert session.logins == 1  # type: ignore[attr-defined]
    obj = FakeObject(Destroy_Task=[vim.fault.NotAuthenticated(), vim.fault.NotAuthenticated()])
    with pytest.raises(exceptions.SessionExpired):
        session.invoke(obj, "Destroy_Task")
    assert session.logins == 2  # type: ignore[attr-defined]


def test_missing_set_not_authenticated_triggers_relogin() -> None:
    session, _ = make_session()
    pc = vmodl.query.PropertyCollector
    vm = vim.VirtualMachine("vm-1")
    stale = pc.RetrieveResult(objects=[pc.ObjectContent(obj=vm, missingSet=[pc.MissingProperty(
        path="name", fault=vim.fault.NotAuthenticated())])])
    good = pc.RetrieveResult(objects=[pc.ObjectContent(obj=vm, propSet=[
        vmodl.DynamicProperty(name="name", val="x")])])
    collector = FakeObject(RetrievePropertiesEx=[stale, good])
    session._content = type("C", (), {"propertyCollector": collector})()
    assert session.retrieve_one(vm, ["name"]) == {"name": "x"}
    assert session.logins == 1  # type: ignore[attr-defined]


def test_pages_are_continued_with_the_token() -> None:
    session, _ = make_session()
    pc = vmodl.query.PropertyCollector
    vms = [vim.VirtualMachine(f"vm-{n}") for n in range(3)]

    def page(refs: list[Any], token: str | None) -> Any:
        return pc.RetrieveResult(token=token, objects=[pc.ObjectContent(
            obj=r, propSet=[vmodl.DynamicProperty(name="name", val=r._moId)]) for r in refs])
    collector = FakeObject(RetrievePropertiesEx=[page(vms[:2], "t1")],
                           ContinueRetrievePropertiesEx=[page(vms[2:], None)])
    session._content = type("C", (), {"propertyCollector": collector})()
    found = session.retrieve(vms, ["name"])
    assert sorted(found) == ["vm-0", "vm-1", "vm-2"]
    assert session.stats.calls == {"RetrievePropertiesEx": 1, "ContinueRetrievePropertiesEx": 1}


def test_translate_fault_keeps_code() -> None:
    err = translate_fault(vim.fault.InvalidPowerState(msg="off"), "PowerOffVM_Task")
    assert type(err) is exceptions.BackendError
    assert err.code == "InvalidPowerState" and "off" in str(err)
    assert isinstance(translate_fault(vim.fault.InvalidLogin(), "Login"),
                      exceptions.AuthenticationFailed)


def test_stats_reset_and_totals() -> None:
    stats = CallStats()
    stats.record("A", 0.5)
    stats.record("A", 0.25)
    stats.record("B", 1)
    assert stats.calls == {"A": 2, "B": 1} and stats.total_calls == 3
    assert stats.total_seconds == pytest.approx(1.75)
    stats.reset()
    assert stats.total_calls == 0 and stats.snapshot() == {}


def test_repr_never_shows_the_password() -> None:
    session, _ = make_session()
    assert "s3cret" not in repr(session)


def test_from_conf_requires_credentials() -> None:
    from oslo_config import cfg

    import virtdriver
    conf = cfg.ConfigOpts()
    virtdriver.register_opts(conf)
    conf([])
    with pytest.raises(exceptions.InvalidInput):
        VMwareSession.from_conf(conf)


def test_every_call_carries_an_op_id() -> None:
    from pyVmomi.VmomiSupport import GetRequestContext

    session, _ = make_session()
    seen: list[str] = []

    class Obj:
        def PowerOnVM_Task(self) -> str:  # noqa: N802 - a vSphere method name
            seen.append(GetRequestContext()["operationID"])
            return "task"
    session.invoke(Obj(), "PowerOnVM_Task")
    session.invoke(Obj(), "PowerOnVM_Task")
    assert len(set(seen)) == 2 and all(s.startswith("virtdriver-") for s in seen)
    assert "operationID" not in GetRequestContext()


def test_password_is_out_of_reach_of_repr_and_vars() -> None:
    """The password lives in a Secret (a closure): no repr, vars() or pickle shows it."""
    import pickle

    session, _ = make_session()
    for shown in (repr(session), str(vars(session)), repr(session._password)):
        assert "s3cret-pw" not in shown
    assert session._password.reveal() == "s3cret-pw"
    with pytest.raises(TypeError):
        pickle.dumps(session._password)


def test_a_call_that_times_out_is_not_repeated() -> None:
    """A stalled server: the socket timeout is ConnectionFailed(CallTimeout) at once."""
    session, slept = make_session(retries=5)
    obj = FakeObject(RetrievePropertiesEx=[TimeoutError("timed out")])
    with pytest.raises(exceptions.ConnectionFailed) as err:
        session.invoke(obj, "RetrievePropertiesEx")
    assert err.value.code == "CallTimeout" and "call_timeout" in str(err.value)
    assert obj.calls == ["RetrievePropertiesEx"] and slept == []


def test_a_logged_out_session_makes_no_more_calls() -> None:
    session, _ = make_session()
    session.logout()
    obj = FakeObject(PowerOnVM_Task=["task-1"])
    with pytest.raises(exceptions.SessionExpired) as err:
        session.invoke(obj, "PowerOnVM_Task")
    assert err.value.code == "SessionClosed" and obj.calls == []
