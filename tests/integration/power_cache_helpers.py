"""What the push-fed get_info tests of both backends share: a thread that runs a backend's
event channel into ``ops.power_cache`` (Nova's EventPump does this in production), and the
checks themselves, with the backend's own ways to change a VM behind the library's back."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

import pytest

from virtdriver.common import exceptions
from virtdriver.common.power_state import PowerState

#: Longest the tests wait for a push (the channels answer within about a second).
PUSH_SECONDS = 10.0


class Feeder:
    """Runs ``channel`` wrapped by ``ops.power_cache.feed`` in a thread until stopped."""

    def __init__(self, ops: Any, channel: Any) -> None:
        self.channel = ops.power_cache.feed(channel)
        self._stop = threading.Event()
        self.error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="power-feeder", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        try:
            while not self._stop.is_set():
                self.channel.wait(0.5)
        except BaseException as error:  # noqa: BLE001 - the test reads it
            self.error = error

    def stop(self) -> None:
        """Stop the thread (within one wait), then close the channel."""
        self._stop.set()
        self._thread.join(PUSH_SECONDS)
        self.channel.close()


#: The channel's own long polls (counted in the same stats as every other call).
CHANNEL_METHODS = ("WaitForUpdatesEx", "event.from")


def reads(ops: Any) -> int:
    """Server calls since the last reset, the channel's own waits left out."""
    return sum(n for method, n in ops.stats.snapshot().items()
               if method not in CHANNEL_METHODS)


def wait_until(predicate: Callable[[], bool], what: str) -> None:
    """Poll ``predicate`` (no server calls of its own) until true, bounded."""
    deadline = time.monotonic() + PUSH_SECONDS
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.02)
    raise AssertionError(f"not within {PUSH_SECONDS} s: {what}")


def check_push_fed_get_info(ops: Any, instance: Any, channel_factory: Callable[[], Any],
                            start_behind_our_back: Callable[[], None]) -> None:
    """Spawned ``instance`` (running): get_info answers from the channel, with no call,
    after our own power_off at once (never the late 'running'), after a change made by
    someone else once pushed; with the channel down it reads the server again."""
    feeder = Feeder(ops, channel_factory())
    try:
        wait_until(lambda: ops.power_cache.live, "the channel's first answer")
        ops.stats.reset()
        assert ops.get_info(instance).state == PowerState.RUNNING
        assert ops.get_info(instance, use_cache=False).state == PowerState.RUNNING
        assert reads(ops) == 1  # only the use_cache=False one asked the server

        ops.power_off(instance)
        ops.stats.reset()
        for _ in range(20):  # while late pushes arrive: never 'running' again
            assert ops.get_info(instance).state == PowerState.SHUTDOWN
            time.sleep(0.05)
        assert reads(ops) <= 1  # at most one read if a push was uncertain

        start_behind_our_back()
        ops.stats.reset()
        wait_until(lambda: ops.power_cache.lookup(instance.uuid) == PowerState.RUNNING,
                   "the push of a power-on made by another client")
        assert ops.get_info(instance).state == PowerState.RUNNING
        assert reads(ops) == 0
        assert feeder.error is None
    finally:
        feeder.stop()
    ops.stats.reset()
    assert ops.get_info(instance).state == PowerState.RUNNING
    assert reads(ops) >= 1  # the channel is down: the server is asked
    ops.destroy(instance)
    with pytest.raises(exceptions.InstanceNotFound):
        ops.get_info(instance)
