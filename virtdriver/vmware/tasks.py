"""Waiting for vCenter tasks by push: :class:`TaskWaiter`.

Each waiting caller borrows a property collector of its own from a small pool, puts one
filter on its task's ``info.state``, ``info.error`` and ``info.result`` (``info.progress``
too when someone listens) and calls ``WaitForUpdatesEx`` on it; a wait that fails on the
connection is followed by a re-read of the task's state, never repeated blind. A failed
task raises TaskFailed (or a more specific class) from its vim fault; a task still running
at the deadline raises TaskTimeout.

The waiter makes its calls through the session it serves (:class:`WaitingSession` names
what it uses); :class:`~virtdriver.vmware.session.VMwareSession` lends one per session.
"""

from __future__ import annotations

import contextlib
import dataclasses
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from typing import Any, Protocol

from oslo_log import log as logging
from pyVmomi import vim, vmodl

from virtdriver.common import exceptions
from virtdriver.vmware.faults import translate_fault

LOG = logging.getLogger(__name__)


class WaitingSession(Protocol):
    """What the task waiter needs of its session (the session imports this module, not the
    other way round)."""

    generation: int
    retry: Any
    sleep: Callable[[float], None]

    @property
    def content(self) -> Any: ...

    def invoke(self, obj: Any, method: str, *args: Any, **kwargs: Any) -> Any: ...

    def retrieve_one(self, obj: Any, paths: Sequence[str]) -> dict[str, Any]: ...

    def wait_for_updates(self, collector: Any, version: str, max_wait: float) -> Any: ...


@dataclasses.dataclass
class _Pending:
    task: Any
    progress: Callable[[int], None] | None
    state: str | None = None
    error: Any = None
    result: Any = None

    @property
    def over(self) -> bool:
        return self.state in ("success", "error")


TASK_PATHS = ["info.state", "info.error", "info.result"]


class TaskWaiter:
    """Waits for tasks by push, each waiting caller on a property collector of its own.

    A task that is already over when its call returns (most are) costs one read of its
    state and nothing else. A task still running borrows a collector from a small pool
    (creating one when none is idle), puts one filter on the task's ``info.state``,
    ``info.error`` and ``info.result`` (plus ``info.progress`` when someone listens), and
    waits with ``WaitForUpdatesEx``: the filter's first report, then the one saying the
    task ended. That is four calls in all: the filter of a task that ended is not destroyed
    one by one but left on its collector (a finished task never changes, so it adds no
    updates), which goes back to the pool with the version its last wait reached (the next
    waiter's first wait then brings only its own filter's report). A collector that has
    served ``WAITS_PER_COLLECTOR`` waits is destroyed whole with its filters
    (``DestroyPropertyCollector``) by the waiter that would borrow it next, which creates a
    fresh one instead: two calls per that many waits, both in one of them, and no collector
    carries more than that many filters. A filter whose wait ended otherwise (timeout, failure, a
    re-read) is destroyed at once. At most ``POOL_SIZE`` idle collectors are kept, the rest
    destroyed.

    Why not one shared collector: a server evaluates every filter of a collector on every
    change it reports, so with one collector per waiter the work of a wait does not grow
    with the number of tasks in flight (vcsim's WaitForUpdatesEx on one shared collector
    took 6-10 s with 50 filters; 50 concurrent 0.2 s power-ons went from 0.6-2x over in a
    row to 10x and more, see the README).

    A wait call that fails on the connection is not repeated as such: a server may have
    sent the update it answered with (and forgotten it) before the connection broke. The
    waiter re-reads the task's state once (with the session's retry policy), then waits
    again; after ``api_retry_count`` such failures in a row it gives up with
    ConnectionFailed. After a re-login the old collector is gone: a fresh one and a fresh
    filter report the task's current state.
    """

    POOL_SIZE = 8
    #: Waits a collector serves (keeping their finished tasks' filters) before it is destroyed.
    WAITS_PER_COLLECTOR = 8
    MAX_WAIT_SECONDS = 60

    def __init__(self, session: WaitingSession) -> None:
        self.session = session
        self._lock = threading.Lock()
        #: (collector, session generation, version its last wait reached, waits served)
        self._idle: list[tuple[Any, int, str, int]] = []
        #: Collectors lent right now (for tests and stats).
        self.lent = 0

    def wait(self, task: Any, timeout: float, progress: Callable[[int], None] | None,
             what: str = "") -> Any:
        """Block until ``task`` ends or ``timeout`` seconds pass."""
        deadline = time.monotonic() + timeout
        pending = _Pending(task=task, progress=progress)
        # Most tasks are over by the time their call returns: one read says so, at once.
        self._read(pending)
        if not pending.over:
            self._wait_by_push(pending, deadline, timeout, what)
        return self._outcome(pending, what)

    def _read(self, pending: _Pending) -> None:
        values = self.session.retrieve_one(pending.task, TASK_PATHS)
        self._apply(pending, [vmodl.query.PropertyCollector.Change(name=path, op="assign",
                                                                      val=value)
                              for path, value in values.items()])

    def _wait_by_push(self, pending: _Pending, deadline: float, timeout: float,
                      what: str) -> None:
        session = self.session
        paths = TASK_PATHS + (["info.progress"] if pending.progress is not None else [])
        pc = vmodl.query.PropertyCollector
        spec = pc.FilterSpec(objectSet=[pc.ObjectSpec(obj=pending.task)],
                             propSet=[pc.PropertySpec(type=vim.Task, pathSet=paths)])
        collector: Any = None
        generation = -1
        task_filter: Any = None
        version = ""
        served = 0
        failures = 0
        heard_end = False  # the end came in a wait's update (nothing of it left queued)
        try:
            while not pending.over:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise exceptions.TaskTimeout(
                        f"{what or pending.task._moId} did not finish within {timeout:.0f}s",
                        code="TaskTimeout")
                if collector is None or generation != session.generation:
                    # First round, or logged in again: the old collector went with the
                    # old session; a new filter's first report is the current state.
                    if collector is not None:
                        with self._lock:
                            self.lent -= 1
                        collector = None
                    collector, generation, version, served = self._borrow()
                    task_filter = None
                if task_filter is None:
                    try:
                        task_filter = session.invoke(collector, "CreateFilter", spec,
                                                     partialUpdates=True)
                    except exceptions.BackendError:
                        if session.generation == generation:
                            raise
                        continue  # logged in during the call: the collector is stale
                    if session.generation != generation:
                        continue
                try:
                    update = session.wait_for_updates(
                        collector, version, min(self.MAX_WAIT_SECONDS, remaining))
                except exceptions.ConnectionFailed as exc:
                    if exc.code == "CallTimeout" or failures >= session.retry.attempts:
                        raise
                    LOG.warning("waiting for %s: %s; re-reading its state",
                                what or pending.task._moId, exc.code)
                    session.sleep(session.retry.wait(failures))
                    failures += 1
                    # The answer may have been sent and lost: ask for the state itself.
                    self._read(pending)
                    heard_end = False
                    continue
                except exceptions.BackendError:
                    if session.generation == generation:
                        raise
                    continue  # logged in again: next round re-creates collector and filter
                failures = 0
                if session.generation != generation or update is None:
                    continue
                version = update.version
                for filter_update in update.filterSet or []:
                    for obj_update in filter_update.objectSet or []:
                        if obj_update.obj._moId == pending.task._moId:
                            self._apply(pending, obj_update.changeSet or [])
                heard_end = pending.over
        finally:
            if collector is not None:
                self._give_back(collector, generation, task_filter, version, served + 1,
                                heard_end and pending.over)

    def _borrow(self) -> tuple[Any, int, str, int]:
        session = self.session
        spent: Any = None
        with self._lock:
            self.lent += 1
            while self._idle:
                collector, generation, version, served = self._idle.pop()
                if generation != session.generation:
                    continue
                if served < self.WAITS_PER_COLLECTOR:
                    return collector, generation, version, served
                spent = collector  # served its share: destroyed with its filters, replaced
                break
        generation = session.generation
        if spent is not None:
            with contextlib.suppress(exceptions.VirtDriverError):
                session.invoke(spent, "DestroyPropertyCollector")
        try:
            collector = session.invoke(session.content.propertyCollector,
                                       "CreatePropertyCollector")
        except BaseException:
            with self._lock:
                self.lent -= 1
            raise
        return collector, generation, "", 0

    def _give_back(self, collector: Any, generation: int, task_filter: Any, version: str,
                   served: int, ended: bool) -> None:
        """Lend ``collector`` again or destroy it. ``ended``: the filter's task ended and
        its wait heard so, so the filter stays (it will report nothing more)."""
        session = self.session
        keep = generation == session.generation
        if keep and task_filter is not None and not ended:
            try:
                session.invoke(task_filter, "DestroyPropertyFilter")
            except exceptions.VirtDriverError:
                keep = False  # unsure what it still watches: do not lend it again
            version = ""  # a change of the filter may be queued: the next wait starts afresh
        with self._lock:
            self.lent -= 1
            if keep and len(self._idle) < self.POOL_SIZE:
                self._idle.append((collector, generation, version, served))
                return
        if generation == session.generation:
            with contextlib.suppress(exceptions.VirtDriverError):
                session.invoke(collector, "DestroyPropertyCollector")

    def forget(self) -> None:
        """Drop the idle collectors (the session logged out: they went with it)."""
        with self._lock:
            self._idle = []

    @staticmethod
    def _outcome(pending: _Pending, what: str) -> Any:
        task = pending.task
        if pending.state == "error":
            fault = pending.error
            if isinstance(fault, vmodl.MethodFault):
                raise translate_fault(fault, what or task._moId,
                                      exceptions.TaskFailed) from fault
            raise exceptions.TaskFailed(f"{what or task._moId} failed", code="TaskFailed")
        return pending.result

    @staticmethod
    def _apply(pending: _Pending, changes: Iterable[Any]) -> None:
        for change in changes:
            if change.name == "info.state":
                pending.state = str(change.val)
            elif change.name == "info.error":
                pending.error = change.val
            elif change.name == "info.result":
                pending.result = change.val
            elif change.name == "info.progress" and pending.progress and change.val is not None:
                with contextlib.suppress(Exception):
                    pending.progress(int(change.val))

