"""Power-state changes from a backend's push channel, run in one background thread.

A backend-specific channel (``virtdriver.vmware.events``: a property-collector filter on
the managed VMs' ``runtime.powerState`` waited on with WaitForUpdatesEx;
``virtdriver.xen.events``: XAPI ``event.from`` on class ``vm``) reports power-state changes
as ``(instance uuid, PowerState)`` pairs. :class:`EventPump` runs it in one thread and
hands each change to a callback as ``(uuid, old, new)``. Nothing is polled: the thread
sleeps inside the server's wait call. A failed channel is reopened with a growing delay;
a session closed on purpose ends the thread.

Nova's adapter turns the changes into lifecycle events (``virtdriver.nova.events``); any
compute service can do the same with its own callback. Under eventlet monkey-patching the
thread is a green thread; without it, a native thread.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Protocol

from oslo_log import log as logging

from virtdriver.common.power_state import PowerState

LOG = logging.getLogger(__name__)

#: Seconds one server wait may last; also how long stop() may take.
WAIT_SECONDS = 2.0
#: Seconds to wait before opening the channel again after it failed: doubled after each
#: failure in a row, up to RETRY_MAX_SECONDS (so a dead server is not hammered, nor its
#: errors logged every few seconds), back to the start after a good wait.
RETRY_SECONDS = 5.0
RETRY_MAX_SECONDS = 60.0
#: Codes of a session that was closed on purpose: the thread ends instead of retrying.
CLOSED_CODES = ("SessionClosed", "SESSION_CLOSED")

#: ``on_change(uuid, old, new)``: ``old`` is None the first time an instance is seen.
ChangeCallback = Callable[[str, "PowerState | None", PowerState], None]


class Channel(Protocol):
    """A backend's stream of power-state changes."""

    def wait(self, timeout: float) -> list[tuple[str, PowerState | None]]:
        """Block until a change or ``timeout``; the first call reports every VM's state.

        A VM that left (destroyed, or no longer managed) is reported with None.
        """

    def close(self) -> None:
        """Release the server-side filter or session."""


class EventPump:
    """One thread that reads a channel and reports power-state changes until stopped.

    The channel's first answer is the starting point, not news: it is remembered and not
    reported. Later answers are reported when an instance's state differs from the last
    one seen.
    """

    def __init__(self, channel_factory: Callable[[], Channel], on_change: ChangeCallback,
                 name: str = "virtdriver-events") -> None:
        self._factory = channel_factory
        self._on_change = on_change
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._states: dict[str, PowerState] = {}

    def start(self) -> None:
        """Start the thread."""
        self._thread.start()

    def stop(self, timeout: float = WAIT_SECONDS * 5) -> None:
        """Ask the thread to stop and wait for it (at most one server wait)."""
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout)

    @property
    def running(self) -> bool:
        """Whether the thread is alive."""
        return self._thread.is_alive()

    def _run(self) -> None:
        delay = RETRY_SECONDS
        while not self._stop.is_set():
            channel = None
            try:
                channel = self._factory()
                first = True
                while not self._stop.is_set():
                    changes = channel.wait(WAIT_SECONDS)
                    delay = RETRY_SECONDS
                    self._dispatch(changes, baseline=first)
                    first = False
            except Exception as error:  # the thread must survive any server trouble
                if getattr(error, "code", None) in CLOSED_CODES:
                    LOG.info("power-state channel closed with its session; stopping")
                    return
                LOG.warning("power-state channel failed (%s: %s); reopening in %ss",
                            type(error).__name__, error, delay)
                self._stop.wait(delay)
                delay = min(delay * 2, RETRY_MAX_SECONDS)
            finally:
                if channel is not None:
                    try:
                        channel.close()
                    except Exception:  # closing a broken channel may fail too
                        LOG.debug("closing the power-state channel failed", exc_info=True)

    def _dispatch(self, changes: list[tuple[str, PowerState | None]], baseline: bool) -> None:
        for uuid, state in changes:
            if state is None:
                self._states.pop(uuid, None)
                continue
            old = self._states.get(uuid)
            self._states[uuid] = state
            if baseline and old is None:
                continue  # the channel's first report is the starting point, not news
            if old != state:
                LOG.debug("instance %s: %s -> %s", uuid, old, state)
                self._on_change(uuid, old, state)


__all__ = ["CLOSED_CODES", "Channel", "ChangeCallback", "EventPump"]
