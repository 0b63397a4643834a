"""Power states pushed by a backend's event channel, so ``get_info`` need not ask the server.

A backend's lifecycle channel (``virtdriver.vmware.events`` / ``virtdriver.xen.events``)
reports ``(instance uuid, PowerState or None)`` pairs: every managed VM on its first wait,
then only changes. :meth:`PowerStateCache.feed` wraps such a channel so every answer also
lands here; while the channel is *live* (its first answer arrived, no wait has failed since,
and the last answer is recent), ``get_info`` answers from here and Nova's power-state sync of
N instances costs no call per instance. Anything else is a miss and the caller reads the
server, as before: the channel down, the instance not reported, or its state uncertain.

A push can be late: a wait that started before the library powered a VM off may be handled
after ``power_off`` returned, carrying the older "running". So the library *pins* what it
knows when an operation of its own ends (:meth:`PowerStateCache.pin`), and each wait is
numbered when it starts. A wait that started after the pin carries news and replaces it; one
that started before cannot be ordered against it: if it agrees the pin stays, if not the state
becomes unknown (a miss), never the older value. A miss that reads the server pins what it
read the same way, so an uncertain instance costs one read, not one per sync.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from types import TracebackType
from typing import Any

from virtdriver.common.event_pump import Channel
from virtdriver.common.model import InstanceInfo, field_of
from virtdriver.common.power_state import PowerState

#: Seconds without an answer from the channel after which its states are no longer trusted
#: (a healthy channel answers at least once per wait timeout, a few seconds).
DEFAULT_MAX_SILENCE = 30.0


class _Unknown:
    """The state of an instance the cache cannot vouch for (read the server)."""

    def __repr__(self) -> str:
        return "UNKNOWN"


#: Pin this when an operation changed an instance in a way whose outcome is not simply one
#: power state (rescue, resize, migration): the next ``get_info`` reads the server.
UNKNOWN: Any = _Unknown()
#: Pin this when the instance's VM is gone (destroy): a late push must not bring it back.
GONE: Any = None


@dataclass
class _Entry:
    state: Any  # PowerState, GONE (None) or UNKNOWN
    pinned_at: int | None = None  # the wait number current when the library pinned it


class PowerStateCache:
    """Instance power states fed by one channel at a time; thread-safe.

    ``max_silence`` bounds how old the channel's last answer may be while its states are
    trusted; ``clock`` is injectable for tests.
    """

    def __init__(self, max_silence: float = DEFAULT_MAX_SILENCE,
                 clock: Any = time.monotonic) -> None:
        self._lock = threading.Lock()
        self._entries: dict[str, _Entry] = {}
        self._waits = 0  # waits started so far, over every channel fed
        self._live = False
        self._heard = 0.0
        self._max_silence = max_silence
        self._clock = clock

    # -- the channel's side ------------------------------------------------------------------

    def feed(self, channel: Channel) -> FeedingChannel:
        """``channel`` wrapped so that every answer it gives also updates this cache."""
        return FeedingChannel(channel, self)

    def begin_wait(self) -> int:
        """Number a wait as it starts (the order pins are judged against)."""
        with self._lock:
            self._waits += 1
            return self._waits

    def apply(self, wait: int, changes: list[tuple[str, PowerState | None]],
              baseline: bool) -> None:
        """The answer of wait number ``wait``; ``baseline``: the channel's first, complete one.

        Changes are applied in order, so the last one for an instance wins.
        """
        with self._lock:
            if baseline:
                reported = {uuid for uuid, _ in changes}
                for uuid in list(self._entries):
                    entry = self._entries[uuid]
                    # not reported by a wait that started after any pin: not managed, or gone
                    if uuid not in reported and (entry.pinned_at is None
                                                 or entry.pinned_at < wait):
                        del self._entries[uuid]
            for uuid, state in changes:
                self._apply_one(wait, uuid, state)
            self._live = self._live or baseline
            self._heard = self._clock()

    def _apply_one(self, wait: int, uuid: str, state: PowerState | None) -> None:
        entry = self._entries.get(uuid)
        if entry is not None and entry.pinned_at is not None and wait <= entry.pinned_at:
            # started before the library's own change: it may be older than the pin
            if entry.state is not UNKNOWN and entry.state != state:
                entry.state = UNKNOWN
            return
        if state is GONE:
            self._entries.pop(uuid, None)
        else:
            self._entries[uuid] = _Entry(state)

    def down(self) -> None:
        """The channel failed or closed: nothing it said is trusted any more."""
        with self._lock:
            self._live = False
            self._entries.clear()

    # -- the library's side ----------------------------------------------------------------------

    @property
    def live(self) -> bool:
        """Whether the channel's states are trusted now."""
        with self._lock:
            return self._is_live()

    def _is_live(self) -> bool:
        return self._live and self._clock() - self._heard <= self._max_silence

    def lookup(self, uuid: str) -> PowerState | None:
        """The pushed state of ``uuid``, or None: read the server (channel down, instance
        unknown, gone, or its state uncertain)."""
        with self._lock:
            if not self._is_live():
                return None
            entry = self._entries.get(uuid)
            if entry is None or entry.state is UNKNOWN or entry.state is GONE:
                return None
            return entry.state

    def pin(self, uuid: str, state: Any) -> None:
        """What the library knows right after an operation of its own, or a read, ended:
        a PowerState, :data:`GONE` or :data:`UNKNOWN`. Only waits that start after this call
        may replace it."""
        with self._lock:
            self._entries[uuid] = _Entry(state, pinned_at=self._waits)


    def answer(self, instance: Any, read: Any) -> InstanceInfo:
        """``get_info``: the pushed state of ``instance`` while the channel is live, else
        ``read()`` (the server's answer, pinned when the channel is live so an uncertain
        instance costs one read, not one per sync)."""
        uuid = str(field_of(instance, "uuid"))
        state = self.lookup(uuid)
        if state is not None:
            return InstanceInfo(state=state)
        info: InstanceInfo = read()
        if self.live:
            self.pin(uuid, info.state)
        return info

    def changing(self, instance: Any, state: Any) -> Changing:
        """Around an operation of the library on ``instance``: pin ``state`` when it ends
        well, :data:`UNKNOWN` when it fails (it may have changed the VM before failing)."""
        return Changing(self, instance, state)


class Changing:
    """The context manager :meth:`PowerStateCache.changing` returns (a class, not a
    generator: it wraps every power operation, so it is kept cheap)."""

    __slots__ = ("cache", "instance", "state")

    def __init__(self, cache: PowerStateCache, instance: Any, state: Any) -> None:
        self.cache = cache
        self.instance = instance
        self.state = state

    def __enter__(self) -> None:
        return None

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 traceback: TracebackType | None) -> None:
        # any exception, BaseException included: it may have changed the VM before failing
        self.cache.pin(str(field_of(self.instance, "uuid")),
                       self.state if exc_type is None else UNKNOWN)


class FeedingChannel:
    """A channel whose answers also feed a :class:`PowerStateCache` (see ``feed``).

    A failed wait, or closing, marks the cache down before the error goes on to the caller
    (the thread that runs the channel decides whether to reopen it).
    """

    def __init__(self, channel: Channel, cache: PowerStateCache) -> None:
        self.channel = channel
        self.cache = cache
        self._first = True

    def wait(self, timeout: float) -> list[tuple[str, PowerState | None]]:
        """The inner channel's answer, applied to the cache first."""
        number = self.cache.begin_wait()
        try:
            changes = self.channel.wait(timeout)
        except BaseException:
            self.cache.down()
            raise
        self.cache.apply(number, changes, baseline=self._first)
        self._first = False
        return changes

    def close(self) -> None:
        """Mark the cache down, then close the inner channel."""
        self.cache.down()
        self.channel.close()


__all__ = ["GONE", "UNKNOWN", "FeedingChannel", "PowerStateCache"]
