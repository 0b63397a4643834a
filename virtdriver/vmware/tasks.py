"""Waiting for vCenter tasks by push: :class:`TaskWaiter`.

Each waiting caller borrows a property collector of its own from a small pool. A collector
owns one ListView and one filter that watches the ``info.state``, ``info.error`` and
``info.result`` of whatever task the view holds (``info.progress`` too on collectors lent to
callers who listen); a wait puts its task in the view and calls ``WaitForUpdatesEx``. A
wait that fails on the connection is followed by a re-read of the task's state, never
repeated blind. A failed task raises TaskFailed (or a more specific class) from its vim
fault; a task still running at the deadline raises TaskTimeout.

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


@dataclasses.dataclass
class _Collector:
    """A property collector with its ListView and the one filter over that view."""

    generation: int  #: the session's login it was made in (it goes with that login)
    progress: bool   #: its filter also watches ``info.progress``
    collector: Any = None
    view: Any = None
    #: The version its last wait reached ("" until its first wait: the filter's first report).
    version: str = ""


TASK_PATHS = ["info.state", "info.error", "info.result"]


class TaskWaiter:
    """Waits for tasks by push, each waiting caller on a property collector of its own.

    A task that is already over when its call returns (most are) costs one read of its
    state and nothing else. A task still running borrows a collector from a small pool.
    Each collector owns one ListView and one filter on it (the view skipped, a traversal
    from its ``view`` to the tasks in it, their ``info.state``, ``info.error`` and
    ``info.result``), all three made once, with the collector. A wait puts its task in the
    view with one ``ResetListView`` (which also takes out the task of the collector's
    previous wait) and calls ``WaitForUpdatesEx`` from the version the collector's last wait
    reached: first the view's change (a filter over a view follows what the view holds, so
    the task enters, with its state), then the change saying it ended. That is four calls
    for every wait on a pooled collector, however many waits the collector served before,
    and nothing piles up on the server: the view holds one task, the collector one filter,
    so no collector ever needs retiring. Updates of other objects (on vCenter, the previous
    task leaving the view; vcsim does not report that) are passed over.

    ``ResetListView`` rather than ``ModifyListView(add, remove)``: the same one call, but it
    says what the view holds instead of what changes, so a call the session repeats after a
    lost answer cannot leave a task in the view twice or the previous one in it.

    The first wait on a fresh collector (none idle, the first of a session, or after a
    re-login) pays its setup: ``CreatePropertyCollector``, ``CreateListView`` (made with the
    task in it, so no ``ResetListView``) and ``CreateFilter``, whose first
    ``WaitForUpdatesEx`` (from version "") reports the task's current state at once: six
    calls. A collector dropped (the pool has ``POOL_SIZE`` idle ones, or its wait did not
    end cleanly) is destroyed with its view: ``DestroyPropertyCollector`` (which takes its
    filter) and ``DestroyView``.

    Callers who listen to ``info.progress`` get collectors whose filter also watches it,
    pooled apart from the others: on vCenter every progress step of a task answers a
    ``WaitForUpdatesEx``, so watching progress always would cost every wait a call per step
    that nobody reads (vcsim reports no progress, so there it would cost nothing).

    A collector goes back to the pool only if its task is over and its wait called nothing
    that failed on the connection: a task over never changes again, so the filter has no
    update of it still to send (the one that said it ended was sent), and nothing else is
    left that the next waiter would have to read past. A task still running (timeout,
    failure) could still report on the collector (vcsim keeps reporting objects a filter
    once saw, even after they leave its view), so its collector is destroyed.

    Why not one shared collector: a server evaluates every filter of a collector on every
    change it reports, so with one collector per waiter the work of a wait does not grow
    with the number of tasks in flight (vcsim's WaitForUpdatesEx on one shared collector
    took 6-10 s with 50 filters; 50 concurrent 0.2 s power-ons went from 0.6-2x over in a
    row to 10x and more, see the README).

    A wait call that fails on the connection is not repeated as such: a server may have
    sent the update it answered with (and forgotten it) before the connection broke. The
    waiter re-reads the task's state once (with the session's retry policy), then waits
    again on another collector: the failed call may still be waiting on the server
    (vcsim runs it on) and would take the next update from a second wait on the same
    collector; the abandoned one is destroyed, which ends that call too. After
    ``api_retry_count`` such failures in a row it gives up with ConnectionFailed, and a
    wait that gives up on the connection makes no more calls (its collector goes with the
    session at logout). After a re-login the old collectors are gone: a fresh one reports
    the task's current state.
    """

    POOL_SIZE = 8
    MAX_WAIT_SECONDS = 60

    def __init__(self, session: WaitingSession) -> None:
        self.session = session
        self._lock = threading.Lock()
        #: Idle collectors, the most recently used last.
        self._idle: list[_Collector] = []
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
        self._apply(pending, values.items())

    def _wait_by_push(self, pending: _Pending, deadline: float, timeout: float,
                      what: str) -> None:
        session = self.session
        lent: _Collector | None = None
        aimed = False  # the lent collector's view holds this task
        failures = 0
        clean = True   # nothing called on the lent collector failed on the connection
        try:
            while not pending.over:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise exceptions.TaskTimeout(
                        f"{what or pending.task._moId} did not finish within {timeout:.0f}s",
                        code="TaskTimeout")
                if lent is not None and lent.generation != session.generation:
                    # Logged in again: the collector went with the old session.
                    self._give_back(lent, keep=False)
                    lent = None
                if lent is None:
                    lent, aimed = self._borrow(pending), False
                    clean = True
                if not aimed:
                    try:
                        self._aim(lent, pending)
                    except exceptions.ConnectionFailed:
                        raise
                    except exceptions.BackendError:
                        if session.generation == lent.generation:
                            raise
                        continue  # logged in during the call: the collector is stale
                    aimed = True
                    if session.generation != lent.generation:
                        continue
                try:
                    update = session.wait_for_updates(
                        lent.collector, lent.version, min(self.MAX_WAIT_SECONDS, remaining))
                except exceptions.ConnectionFailed as exc:
                    clean = False
                    if exc.code == "CallTimeout" or failures >= session.retry.attempts:
                        raise
                    LOG.warning("waiting for %s: %s; re-reading its state",
                                what or pending.task._moId, exc.code)
                    session.sleep(session.retry.wait(failures))
                    failures += 1
                    # The answer may have been sent and lost: ask for the state itself.
                    self._read(pending)
                    # The failed call may run on at the server: wait elsewhere from now on.
                    self._give_back(lent, keep=False)
                    lent = None
                    continue
                except exceptions.BackendError:
                    if session.generation == lent.generation:
                        raise
                    continue  # logged in again: the next round takes a fresh collector
                failures = 0
                if session.generation != lent.generation or update is None:
                    continue
                lent.version = update.version
                for filter_update in update.filterSet or []:
                    for obj_update in filter_update.objectSet or []:
                        if obj_update.obj._moId == pending.task._moId:
                            self._apply(pending, ((change.name, change.val)
                                                  for change in obj_update.changeSet or []))
        except exceptions.ConnectionFailed:
            clean = False
            raise
        finally:
            if lent is not None:
                # Over the connection that just failed, no more calls: the session's
                # logout takes the collector.
                self._give_back(lent, keep=clean and pending.over, call=clean)

    def _borrow(self, pending: _Pending) -> _Collector:
        """An idle collector of the right kind, or a fresh one (made with ``pending``'s task
        already in its view: see :meth:`_aim`)."""
        session = self.session
        progress = pending.progress is not None
        with self._lock:
            self.lent += 1
            # Those of an earlier login went with it: forgotten without a call.
            self._idle = [c for c in self._idle if c.generation == session.generation]
            for index in range(len(self._idle) - 1, -1, -1):
                if self._idle[index].progress == progress:
                    return self._idle.pop(index)
        return _Collector(generation=session.generation, progress=progress)

    def _aim(self, lent: _Collector, pending: _Pending) -> None:
        """Make ``lent``'s view hold ``pending``'s task and nothing else (a fresh collector
        is made here, view and filter with it)."""
        session = self.session
        if lent.collector is not None:
            unresolved = session.invoke(lent.view, "ResetListView", [pending.task])
            if any(obj._moId == pending.task._moId for obj in unresolved or []):
                raise exceptions.BackendError(
                    f"task {pending.task._moId} is no longer on the server",
                    code="ManagedObjectNotFound")
            return
        pc = vmodl.query.PropertyCollector
        lent.collector = session.invoke(session.content.propertyCollector,
                                        "CreatePropertyCollector")
        lent.view = session.invoke(session.content.viewManager, "CreateListView",
                                   [pending.task])
        paths = TASK_PATHS + (["info.progress"] if lent.progress else [])
        spec = pc.FilterSpec(
            objectSet=[pc.ObjectSpec(obj=lent.view, skip=True, selectSet=[
                pc.TraversalSpec(name="view", type=vim.view.ListView, path="view",
                                 skip=False)])],
            propSet=[pc.PropertySpec(type=vim.Task, pathSet=paths)])
        session.invoke(lent.collector, "CreateFilter", spec, partialUpdates=True)

    def _give_back(self, lent: _Collector, keep: bool, call: bool = True) -> None:
        """Lend ``lent`` again (``keep``: its task is over and its wait went cleanly) or
        destroy it with its view; ``call=False`` forgets it without a call."""
        session = self.session
        current = lent.generation == session.generation
        with self._lock:
            self.lent -= 1
            if keep and current and lent.collector is not None \
                    and len(self._idle) < self.POOL_SIZE:
                self._idle.append(lent)
                return
        if not (call and current):
            return  # gone with the old session, or the connection is failing
        for obj, method in ((lent.collector, "DestroyPropertyCollector"),
                            (lent.view, "DestroyView")):
            if obj is not None:
                with contextlib.suppress(exceptions.VirtDriverError):
                    session.invoke(obj, method)

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
    def _apply(pending: _Pending, values: Iterable[tuple[str, Any]]) -> None:
        """Take in (path, value) pairs of a read or of a wait's changes."""
        for path, value in values:
            if path == "info.state":
                pending.state = str(value)
            elif path == "info.error":
                pending.error = value
            elif path == "info.result":
                pending.result = value
            elif path == "info.progress" and pending.progress and value is not None:
                with contextlib.suppress(Exception):
                    pending.progress(int(value))
