"""Waiting for XAPI tasks by push, and destroying the task records left behind.

:class:`TaskWatch` holds every task wait of one session, fed by one shared ``event.from``
long poll on class ``task`` (leader and followers, on a connection outside the pool of
short calls); :meth:`TaskWatch.result` turns a task's final record into its parsed result
or the translated failure, and cancels a task still pending at its deadline.
:class:`LeftoverTasks` keeps the tasks whose ``task.destroy`` failed (the server was
unreachable) until a later call destroys them.

The watch makes its calls through the session it serves (:class:`WatchedSession` names
what it uses); :class:`~virtdriver.xen.session.XenAPISession` holds one of each.
"""

from __future__ import annotations

import collections
import contextlib
import threading
import time
import xmlrpc.client
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from oslo_log import log as logging

from virtdriver.common import exceptions as exc
from virtdriver.xen.faults import is_handle_invalid, translate_failure

LOG = logging.getLogger(__name__)

#: Longest single event.from wait; a long task is awaited by several of them so a
#: silently dropped long poll cannot hang us (xen-orchestra#2653).
EVENT_WAIT_SECONDS = 30.0
#: Records of finished tasks nobody waits for (yet) kept by the task watch.
RECENT_TASKS = 512

ProgressFn = Callable[[float], None]


class WatchedSession(Protocol):
    """What the task watch needs of its session (the session imports this module, not the
    other way round)."""

    def call(self, method: str, *args: Any, timeout: float | None = None) -> Any: ...

    def event_from(self, classes: list[str], token: str, wait: float) -> dict[str, Any]: ...


@dataclass
class _Waiting:
    """One caller waiting for one task: the task's latest record, once seen."""

    record: dict[str, Any] | None = None
    gone: bool = False
    error: exc.BackendError | None = None


class TaskWatch:
    """Every task wait of one session, fed by one ``event.from`` on class ``task``.

    Leader and followers, with no thread of its own: the first waiter with nobody polling
    becomes the leader and runs one long poll on a connection outside the pool (its wait
    bounded by its own deadline and EVENT_WAIT_SECONDS); every other waiter sleeps on a
    condition. Each reply's task records go to their waiters; when the leader's own task
    is over it leaves and another waiter takes the poll. The event token is kept between
    leaders, so nothing that happened in between is missed; finished tasks nobody waits
    for yet (a waiter registers just after its ``Async`` call returns, and the end may
    already have been reported) are remembered, the last RECENT_TASKS of them.
    """

    def __init__(self, session: WatchedSession) -> None:
        self.session = session
        self._cond = threading.Condition()
        self._waiting: dict[str, _Waiting] = {}
        self._recent: collections.OrderedDict[str, dict[str, Any]] = \
            collections.OrderedDict()
        self._token = ""
        self._leader = False

    def result(self, task: str, method: str, deadline: float,
               progress: ProgressFn | None) -> Any:
        """Wait until ``task`` leaves pending; return its parsed result or raise the
        translated failure (TaskTimeout, after cancelling it, at the deadline)."""
        record = self.wait(task, method, deadline, progress)
        status = str(record.get("status", "")).lower()
        if status == "success":
            if progress is not None:
                progress(1.0)  # the final report is never skipped
            return parse_task_result(record.get("result", ""))
        if status == "pending":  # the deadline passed
            with contextlib.suppress(exc.VirtDriverError):
                self.session.call("task.cancel", task)
            raise exc.TaskTimeout(f"XAPI {method} did not finish in time", "TASK_TIMEOUT")
        info = [str(p) for p in record.get("error_info") or []]
        if not info:
            info = ["TASK_CANCELLED", task] if status == "cancelled" else [status.upper()]
        raise translate_failure(method, info[0], tuple(info[1:]), in_task=True)

    def wait(self, task: str, method: str, deadline: float,
             progress: ProgressFn | None) -> dict[str, Any]:
        """The task's record once it is not pending, or its last one at the deadline."""
        entry = _Waiting(record=None)
        with self._cond:
            entry.record = self._recent.pop(task, None)
            self._waiting[task] = entry
        last_progress = -1.0
        try:
            while True:
                with self._cond:
                    record, gone, error = entry.record, entry.gone, entry.error
                    lead = False
                    remaining = deadline - time.monotonic()
                    if not _is_over(record) and not gone and not error and remaining > 0:
                        if self._leader:
                            self._cond.wait(min(remaining, EVENT_WAIT_SECONDS))
                        else:
                            self._leader = lead = True
                if record is not None and progress is not None:
                    fraction = float(record.get("progress") or 0.0)
                    if fraction != last_progress and not _is_over(record):
                        last_progress = fraction
                        progress(fraction)
                if _is_over(record):
                    return dict(record or {})
                if gone:
                    raise exc.TaskFailed(f"XAPI task of {method} vanished", "TASK_DESTROYED")
                if error is not None:
                    # The shared poll failed (server unreachable): every waiter of that
                    # moment hears it at once rather than each retrying it in turn.
                    raise type(error)(f"waiting for XAPI {method}: {error}", error.code,
                                      error.params) from error
                if remaining <= 0:
                    return dict(record or {"status": "pending"})
                if lead:
                    try:
                        self._poll(min(remaining, EVENT_WAIT_SECONDS))
                    finally:
                        with self._cond:
                            self._leader = False
                            self._cond.notify_all()
        finally:
            with self._cond:
                self._waiting.pop(task, None)

    def _poll(self, wait: float) -> None:
        try:
            reply = self.session.event_from(["task"], self._token, wait)
        except exc.BackendError as error:
            if error.code != "EVENTS_LOST":
                with self._cond:
                    for entry in self._waiting.values():
                        entry.error = error
                    self._cond.notify_all()
                raise
            # The token is older than the server's event buffer: start again from a
            # snapshot of the current tasks.
            with self._cond:
                self._token = ""
            return
        with self._cond:
            self._token = str(reply.get("token", self._token))
            for event in reply.get("events", []):
                ref = str(event.get("ref", ""))
                entry = self._waiting.get(ref)
                if event.get("operation") == "del":
                    self._recent.pop(ref, None)
                    if entry is not None and not _is_over(entry.record):
                        entry.gone = True
                    continue
                record = event.get("snapshot") or {}
                if entry is not None:
                    entry.record = record
                elif _is_over(record):
                    self._recent[ref] = record
                    self._recent.move_to_end(ref)
                    while len(self._recent) > RECENT_TASKS:
                        self._recent.popitem(last=False)
            self._cond.notify_all()


def _is_over(record: dict[str, Any] | None) -> bool:
    return record is not None and str(record.get("status", "pending")).lower() != "pending"


def parse_task_result(result: str) -> Any:
    """A task's ``result`` field is an XML-RPC value fragment; decode it ("" -> "")."""
    text = (result or "").strip()
    if not text:
        return ""
    if not text.startswith("<value"):
        return text
    document = ("<?xml version='1.0'?><methodResponse><params><param>"
                f"{text}</param></params></methodResponse>")
    return xmlrpc.client.loads(document)[0][0]


class LeftoverTasks:
    """Tasks whose ``task.destroy`` failed, destroyed by the next call that gets through.

    ``call`` is the session's :meth:`~virtdriver.xen.session.XenAPISession.call`; the session
    asks :meth:`destroy_all` after every good call while any are left, and at close.
    """

    def __init__(self, call: Callable[..., Any]) -> None:
        self._call = call
        self._tasks: set[str] = set()
        self._lock = threading.Lock()

    def __bool__(self) -> bool:
        return bool(self._tasks)

    @property
    def pending(self) -> frozenset[str]:
        """The tasks still to destroy."""
        return frozenset(self._tasks)

    def add(self, task: str) -> None:
        """Keep ``task`` for a later :meth:`destroy_all` (the server is unreachable now)."""
        self._tasks.add(task)

    def destroy(self, task: str, method: str) -> None:
        """``task.destroy`` the task of ``method`` now, or keep it for later if that fails."""
        try:
            self._call("task.destroy", task)
        except exc.VirtDriverError as error:
            if not is_handle_invalid(error):
                LOG.debug("task.destroy after %s failed (%s); retried later", method,
                          type(error).__name__)
                self._tasks.add(task)

    def destroy_all(self) -> None:
        """Destroy every left-over task, stopping at the first the server still refuses."""
        # One thread at a time; a task that is gone already (HANDLE_INVALID) is done with.
        if not self._lock.acquire(blocking=False):
            return
        try:
            for task in sorted(self._tasks):
                try:
                    self._call("task.destroy", task)
                except exc.VirtDriverError as error:
                    if not is_handle_invalid(error):
                        LOG.debug("task.destroy of a left-over task failed again: %s",
                                  type(error).__name__)
                        return  # still unreachable: the next good call tries again
                self._tasks.discard(task)
                LOG.info("destroyed a task record left over from an outage")
        finally:
            self._lock.release()
