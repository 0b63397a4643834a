"""The exception tree and the per-instance lock."""

import threading
import time

import pytest

from virtdriver.common import exceptions as exc
from virtdriver.common.exceptions import InvalidInput
from virtdriver.common.locks import instance_lock


def test_everything_is_a_virtdriver_error():
    for name in ("InvalidInput", "UnsupportedOperation", "InstanceNotFound", "InstanceExists",
                 "InstanceInvalidState", "InstanceNotInRescueMode", "ImageNotFound",
                 "ImageError", "MigrationError", "MigrationPreCheckError", "AgentError",
                 "AgentTimeout", "BackendError", "ConnectionFailed", "CertificateRejected",
                 "AuthenticationFailed", "SessionExpired", "TaskFailed", "TaskTimeout"):
        assert issubclass(getattr(exc, name), exc.VirtDriverError), name


def test_invalid_input_is_a_value_error_naming_field_and_value():
    error = exc.InvalidInput("flavor.memory_mb", -1, "must be a positive integer")
    assert isinstance(error, ValueError)
    assert str(error) == "invalid flavor.memory_mb=-1: must be a positive integer"


def test_backend_error_keeps_code_params_and_cause():
    fault = RuntimeError("VM_BAD_POWER_STATE")
    try:
        try:
            raise fault
        except RuntimeError as cause:
            raise exc.BackendError("bad state", "VM_BAD_POWER_STATE",
                                   ["OpaqueRef:1", "halted", "running"]) from cause
    except exc.BackendError as error:
        assert error.code == "VM_BAD_POWER_STATE"
        assert error.params == ("OpaqueRef:1", "halted", "running")
        assert error.__cause__ is fault


def test_instance_lock_serializes_one_instance_but_not_others():
    order = []
    a = {"uuid": "6f2c1e2a-0a4b-4c55-9d8e-2b1e7a3c9f10", "name": "a"}
    b = {"uuid": "0b7e9c3d-5a1f-4e2b-8c6d-9f0a1b2c3d4e", "name": "b"}
    inside = threading.Event()

    def hold(instance, tag, wait):
        with instance_lock(instance):
            order.append(f"{tag}-in")
            inside.set()
            time.sleep(wait)
            order.append(f"{tag}-out")

    first = threading.Thread(target=hold, args=(a, "a1", 0.2))
    first.start()
    inside.wait(2)
    other = threading.Thread(target=hold, args=(b, "b", 0))
    same = threading.Thread(target=hold, args=(a, "a2", 0))
    other.start()
    same.start()
    for thread in (first, other, same):
        thread.join(5)
    assert order.index("b-out") < order.index("a1-out")  # another instance never waits
    assert order.index("a2-in") > order.index("a1-out")  # the same instance does


EVENTLET_SCRIPT = """
import eventlet
eventlet.monkey_patch()
import time
from virtdriver.common.locks import instance_lock

order = []

def hold(uuid, tag, wait):
    with instance_lock({"uuid": uuid, "name": "x"}):
        order.append(tag + "-in")
        eventlet.sleep(wait)
        order.append(tag + "-out")

pool = eventlet.GreenPool()
pool.spawn(hold, "6f2c1e2a-0a4b-4c55-9d8e-2b1e7a3c9f10", "a1", 0.2)
eventlet.sleep(0.05)
pool.spawn(hold, "0b7e9c3d-5a1f-4e2b-8c6d-9f0a1b2c3d4e", "b", 0)
pool.spawn(hold, "6f2c1e2a-0a4b-4c55-9d8e-2b1e7a3c9f10", "a2", 0)
pool.waitall()
assert order.index("b-out") < order.index("a1-out"), order
assert order.index("a2-in") > order.index("a1-out"), order
print("ok")
"""


@pytest.mark.parametrize("instance", [
    {"uuid": "../x", "name": "x"}, {"uuid": None, "name": "x"},
    {"uuid": "6f2c1e2a-0a4b-4c55-9d8e-2b1e7a3c9f10", "name": "x\nuuid:other"}])
def test_instance_lock_refuses_a_bad_identity_before_locking(instance):
    """The lock is every locked operation's first step: a bad identity never gets past it."""
    entered = []
    with pytest.raises(InvalidInput), instance_lock(instance):
        entered.append(True)
    assert entered == []


def test_instance_lock_under_eventlet_monkey_patching():
    """The same lock serializes green threads when eventlet has patched threading."""
    import subprocess
    import sys

    result = subprocess.run([sys.executable, "-c", EVENTLET_SCRIPT], capture_output=True,
                            text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "ok"


def test_a_lock_is_dropped_from_the_table_by_its_last_holder_even_on_failure():
    """The table holds only names in use; a block that raises releases its lock."""
    from virtdriver.common import locks

    instance = {"uuid": "6f2c1e2a-0a4b-4c55-9d8e-2b1e7a3c9f10", "name": "a"}
    name = f"virtdriver-instance-{instance['uuid']}"
    with pytest.raises(RuntimeError), instance_lock(instance):
        assert name in locks._TABLE
        raise RuntimeError("boom")
    assert name not in locks._TABLE
    with instance_lock(instance):  # released: taken again at once
        pass
    assert name not in locks._TABLE


def test_a_waiter_keeps_the_lock_in_the_table_until_it_is_done():
    from virtdriver.common import locks

    instance = {"uuid": "0b7e9c3d-5a1f-4e2b-8c6d-9f0a1b2c3d4e", "name": "b"}
    name = f"virtdriver-instance-{instance['uuid']}"
    entered: list[bool] = []

    def second():
        with instance_lock(instance):
            entered.append(True)

    with instance_lock(instance):
        waiter = threading.Thread(target=second)
        waiter.start()
        for _ in range(200):  # until the waiter has registered
            if locks._TABLE[name][1] == 2:
                break
            time.sleep(0.005)
        assert locks._TABLE[name][1] == 2 and entered == []
    waiter.join(5)
    assert entered == [True] and name not in locks._TABLE
