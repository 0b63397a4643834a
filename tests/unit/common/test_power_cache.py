"""PowerStateCache: pushed states answer only while the channel is live, and a late push
never overrides what the library itself just did."""

from __future__ import annotations

import pytest

from virtdriver.common.power_cache import GONE, UNKNOWN, PowerStateCache
from virtdriver.common.power_state import PowerState

RUNNING, SHUTDOWN = PowerState.RUNNING, PowerState.SHUTDOWN


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


class ScriptedChannel:
    """Answers each wait with the next list of changes, or raises it."""

    def __init__(self, *answers: object) -> None:
        self.answers = list(answers)
        self.closed = False

    def wait(self, timeout: float) -> list:
        answer = self.answers.pop(0)
        if isinstance(answer, BaseException):
            raise answer
        return answer  # type: ignore[return-value]

    def close(self) -> None:
        self.closed = True


def test_nothing_answers_before_the_channel_baseline() -> None:
    cache = PowerStateCache()
    assert cache.lookup("a") is None
    assert not cache.live


def test_baseline_then_changes_answer_lookups() -> None:
    cache = PowerStateCache()
    channel = cache.feed(ScriptedChannel([("a", RUNNING), ("b", SHUTDOWN)], [("a", SHUTDOWN)],
                                         [("b", None)]))
    channel.wait(1)
    assert cache.live
    assert cache.lookup("a") == RUNNING and cache.lookup("b") == SHUTDOWN
    channel.wait(1)
    assert cache.lookup("a") == SHUTDOWN
    channel.wait(1)
    assert cache.lookup("b") is None  # gone: the caller reads, and gets InstanceNotFound
    assert cache.lookup("unknown") is None


def test_failed_wait_marks_down_and_the_next_baseline_starts_afresh() -> None:
    cache = PowerStateCache()
    first = cache.feed(ScriptedChannel([("a", RUNNING)], ConnectionError("gone")))
    first.wait(1)
    with pytest.raises(ConnectionError):
        first.wait(1)
    assert not cache.live and cache.lookup("a") is None
    second = cache.feed(ScriptedChannel([("b", RUNNING)]))
    second.wait(1)
    assert cache.lookup("b") == RUNNING
    assert cache.lookup("a") is None  # not in the new baseline


def test_close_marks_down() -> None:
    inner = ScriptedChannel([("a", RUNNING)])
    cache = PowerStateCache()
    channel = cache.feed(inner)
    channel.wait(1)
    channel.close()
    assert inner.closed and cache.lookup("a") is None


def test_silent_channel_is_not_trusted() -> None:
    clock = Clock()
    cache = PowerStateCache(max_silence=10, clock=clock)
    cache.feed(ScriptedChannel([("a", RUNNING)])).wait(1)
    clock.now += 11
    assert cache.lookup("a") is None


def test_late_push_from_a_wait_started_before_the_pin_never_wins() -> None:
    """power_off returns while a wait that began earlier still carries "running"."""
    cache = PowerStateCache()
    cache.apply(cache.begin_wait(), [("a", RUNNING)], baseline=True)
    in_flight = cache.begin_wait()  # started before power_off ended
    cache.pin("a", SHUTDOWN)  # power_off returned
    assert cache.lookup("a") == SHUTDOWN
    cache.apply(in_flight, [("a", RUNNING)], baseline=False)  # the late push
    assert cache.lookup("a") is None  # uncertain: read the server, never the old state
    # a wait that starts after the pin is news
    cache.apply(cache.begin_wait(), [("a", SHUTDOWN)], baseline=False)
    assert cache.lookup("a") == SHUTDOWN


def test_agreeing_late_push_keeps_the_pin() -> None:
    cache = PowerStateCache()
    cache.apply(cache.begin_wait(), [], baseline=True)
    in_flight = cache.begin_wait()
    cache.pin("a", SHUTDOWN)
    cache.apply(in_flight, [("a", SHUTDOWN)], baseline=False)
    assert cache.lookup("a") == SHUTDOWN


def test_destroyed_instance_is_not_revived_by_a_late_push() -> None:
    cache = PowerStateCache()
    cache.apply(cache.begin_wait(), [("a", RUNNING)], baseline=True)
    in_flight = cache.begin_wait()
    cache.pin("a", GONE)
    cache.apply(in_flight, [("a", RUNNING)], baseline=False)
    assert cache.lookup("a") is None


def test_changing_pins_the_outcome_or_unknown_on_failure() -> None:
    cache = PowerStateCache()
    cache.apply(cache.begin_wait(), [("a", RUNNING)], baseline=True)
    with cache.changing({"uuid": "a"}, SHUTDOWN):
        pass
    assert cache.lookup("a") == SHUTDOWN
    with pytest.raises(RuntimeError), cache.changing({"uuid": "a"}, RUNNING):
        raise RuntimeError("failed half way")
    assert cache.lookup("a") is None
    cache.pin("a", UNKNOWN)
    assert cache.lookup("a") is None


def test_baseline_keeps_pins_newer_than_its_start() -> None:
    cache = PowerStateCache()
    number = cache.begin_wait()  # a new channel's first wait is in flight
    cache.pin("new", RUNNING)  # spawn ended meanwhile; not in the baseline
    cache.apply(number, [("old", SHUTDOWN)], baseline=True)
    assert cache.lookup("new") == RUNNING
    assert cache.lookup("old") == SHUTDOWN
