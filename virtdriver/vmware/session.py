"""The one door to vCenter: login, re-login, retries, fault translation, task waiting, stats.

Every server call of the VMware backend goes through :meth:`VMwareSession.invoke`, which

* counts the call and its time per method in :attr:`VMwareSession.stats`;
* logs in again once when the server says ``NotAuthenticated`` (also when it says so in a
  ``RetrievePropertiesEx`` ``missingSet``) and repeats the call;
* retries connection failures up to ``api_retry_count`` times with a capped exponential
  backoff (the sleep function is injectable so tests never sleep);
* turns vim faults into :mod:`virtdriver.common.exceptions` types, keeping the fault's name
  as ``code`` and the fault itself as ``__cause__``.

Properties are read only through the property collector (``RetrievePropertiesEx`` and its
continuation pages), never through pyvmomi attribute access, which costs one round trip
per attribute and crashes vcsim on unset properties. Tasks are waited on by push
(:class:`TaskWaiter`): a property-collector filter on ``info.state``, ``info.error`` and
``info.result`` and ``WaitForUpdatesEx``, shared by every task in flight.

Passwords and session cookies never reach a log line, an exception message or a repr.
"""

from __future__ import annotations

import contextlib
import dataclasses
import http.client
import logging
import ssl
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any

from pyVmomi import SoapStubAdapter, vim, vmodl
from pyVmomi.VmomiSupport import GetRequestContext

from virtdriver.common import exceptions
from virtdriver.common.stats import CallStats

LOG = logging.getLogger(__name__)

#: The vSphere API version we speak; vcsim and vCenter 7+ accept it.
API_VERSION = "vim.version.v7_0"

Sleep = Callable[[float], None]


# -- retry policy ---------------------------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class RetryPolicy:
    """How often and how patiently a connection failure is retried.

    ``attempts`` retries after the first try; the n-th wait is ``base * 2**n`` seconds,
    capped at ``cap``.
    """

    attempts: int = 10
    base: float = 0.5
    cap: float = 30.0

    def wait(self, retry_number: int) -> float:
        """Seconds to sleep before retry ``retry_number`` (0-based)."""
        return min(self.cap, self.base * (2 ** retry_number))


CONNECTION_ERRORS = (ConnectionError, http.client.HTTPException, TimeoutError, OSError)


def fault_name(fault: BaseException) -> str:
    """The vim fault's WSDL name (``InvalidPowerState``), or the class name."""
    return getattr(fault, "_wsdlName", None) or type(fault).__name__


def translate_fault(fault: vmodl.MethodFault, what: str,
                    cls: type[exceptions.BackendError] = exceptions.BackendError
                    ) -> exceptions.BackendError:
    """A virtdriver exception for a vim fault (the caller raises it ``from`` the fault)."""
    code = fault_name(fault)
    message = getattr(fault, "msg", None) or ""
    if isinstance(fault, vim.fault.InvalidLogin):
        cls = exceptions.AuthenticationFailed
    elif isinstance(fault, vim.fault.NotAuthenticated):
        cls = exceptions.SessionExpired
    return cls(f"{what}: {code}{': ' + message if message else ''}", code=code)


def _missing_fault(result: Any) -> vmodl.MethodFault | None:
    """The NotAuthenticated fault vCenter hides in a RetrievePropertiesEx missingSet."""
    for obj in getattr(result, "objects", None) or []:
        for missing in obj.missingSet or []:
            if isinstance(missing.fault, vim.fault.NotAuthenticated):
                return missing.fault
    return None


# -- the session ----------------------------------------------------------------------------------

class VMwareSession:
    """A logged-in vCenter session that every server call goes through.

    Build it with :meth:`from_conf` or directly; it logs in on construction unless
    ``connect=False``. TLS certificates are verified against ``ca_file`` or the system
    store; only ``insecure=True`` turns that off, with a warning.
    """

    def __init__(self, host: str, port: int, username: str, password: str, *,
                 ca_file: str | None = None, insecure: bool = False, api_retry_count: int = 10,
                 task_timeout: float = 3600.0, sleep: Sleep = time.sleep,
                 connect: bool = True, stats: CallStats | None = None) -> None:
        self.host = host
        self.port = port
        self.username = username
        self._password = password
        self.ca_file = ca_file
        self.insecure = insecure and not ca_file
        self.retry = RetryPolicy(attempts=api_retry_count)
        self.task_timeout = task_timeout
        self.sleep = sleep
        self.stats = stats if stats is not None else CallStats()
        #: Bumped by every login, so server-side state tied to a session can be rebuilt.
        self.generation = 0
        self._login_lock = threading.Lock()
        self._stub: Any = None
        self._content: Any = None
        self._waiter: TaskWaiter | None = None
        if connect:
            self.login()

    @classmethod
    def from_conf(cls, conf: Any, **kwargs: Any) -> VMwareSession:
        """A session configured by the ``[vmware]`` group of ``conf``."""
        group = conf.vmware
        if not group.host_ip or not group.host_username or not group.host_password:
            raise exceptions.InvalidInput("vmware.host_ip/host_username/host_password", None,
                                          "must all be set")
        return cls(group.host_ip, group.host_port, group.host_username, group.host_password,
                   ca_file=group.ca_file, insecure=group.insecure,
                   api_retry_count=group.api_retry_count, task_timeout=conf.task_timeout,
                   **kwargs)

    def __repr__(self) -> str:
        return f"<VMwareSession {self.username}@{self.host}:{self.port}>"

    # -- connection ---------------------------------------------------------------------------

    def ssl_context(self) -> ssl.SSLContext:
        """The TLS context for vCenter: verifying, unless ``insecure`` was asked for."""
        if self.insecure:
            LOG.warning("TLS certificate of %s:%s is NOT verified ([vmware] insecure = True)",
                        self.host, self.port)
            context = ssl.create_default_context()
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
            return context
        return ssl.create_default_context(cafile=self.ca_file)

    @property
    def content(self) -> Any:
        """The ServiceContent (data, read once at login)."""
        if self._content is None:
            self.login()
        return self._content

    def login(self) -> None:
        """Open the connection and log in (again)."""
        if self._stub is None:
            self._stub = SoapStubAdapter(host=self.host, port=self.port, path="/sdk",
                                         version=API_VERSION, sslContext=self.ssl_context(),
                                         poolSize=8)
        if self._content is None:
            # The ServiceContent is plain data that outlives sessions: read it once.
            instance = vim.ServiceInstance("ServiceInstance", self._stub)
            self._content = self._call_with_retries("RetrieveServiceContent",
                                                    instance.RetrieveContent, (), {})
        self._call_with_retries("Login", self._content.sessionManager.Login, (),
                                {"userName": self.username, "password": self._password})
        self.generation += 1
        LOG.info("logged in to vCenter %s:%s as %s", self.host, self.port, self.username)

    def _relogin(self, seen_generation: int) -> None:
        # Under a lock, and only if no other thread logged in since the call failed.
        with self._login_lock:
            if self.generation == seen_generation:
                LOG.info("session of %s@%s expired; logging in again", self.username, self.host)
                # Drop the dead cookie: a server may refuse Login on a session it still knows.
                self._stub.cookie = ""
                self.login()

    def logout(self) -> None:
        """Log out; errors are logged, never raised (the session is being thrown away)."""
        if self._content is None:
            return
        try:
            self.invoke(self._content.sessionManager, "Logout")
        except exceptions.VirtDriverError as exc:
            LOG.debug("logout failed: %s", exc)
        self._content = None
        self._waiter = None

    # -- the chokepoint -----------------------------------------------------------------------

    def invoke(self, obj: Any, method: str, *args: Any, **kwargs: Any) -> Any:
        """Call ``method`` on the managed object ``obj``: counted, retried, translated.

        A ``NotAuthenticated`` answer logs in again once and repeats the call; if the
        repeat also fails, SessionExpired is raised.
        """
        for attempt in (0, 1):
            generation = self.generation
            try:
                result = self._call_with_retries(method, getattr(obj, method), args, kwargs)
                if method in ("RetrievePropertiesEx", "ContinueRetrievePropertiesEx"):
                    fault = _missing_fault(result)
                    if fault is not None:
                        raise fault
                return result
            except vim.fault.NotAuthenticated as fault:
                if attempt:
                    raise translate_fault(fault, method) from fault
                self._relogin(generation)
            except vmodl.MethodFault as fault:
                raise translate_fault(fault, method) from fault
        raise AssertionError("unreachable")

    def _call_with_retries(self, method: str, function: Callable[..., Any],
                           args: Sequence[Any], kwargs: dict[str, Any]) -> Any:
        retries = 0
        # An opID in the SOAP header ties this call to vCenter's own logs.
        op_id = f"virtdriver-{uuid.uuid4().hex[:12]}"
        context = GetRequestContext()
        while True:
            start = time.monotonic()
            context["operationID"] = f"{op_id}-{retries}" if retries else op_id
            try:
                LOG.debug("calling %s (opID %s)", method, context["operationID"])
                return function(*args, **kwargs)
            except ssl.SSLCertVerificationError as exc:
                raise exceptions.CertificateRejected(
                    f"the TLS certificate of vCenter {self.host}:{self.port} is not trusted "
                    f"({exc.verify_message}); set [vmware] ca_file to the CA that signed it",
                    code="CertificateRejected") from exc
            except vim.fault.InvalidLogin as fault:
                raise translate_fault(fault, method) from fault
            except vmodl.MethodFault:
                raise
            except CONNECTION_ERRORS as exc:
                if retries >= self.retry.attempts:
                    raise exceptions.ConnectionFailed(
                        f"{method}: vCenter {self.host}:{self.port} unreachable after "
                        f"{retries + 1} tries: {type(exc).__name__}: {exc}",
                        code=type(exc).__name__) from exc
                delay = self.retry.wait(retries)
                LOG.warning("%s: connection to %s failed (%s); retry %d of %d in %.1fs",
                            method, self.host, type(exc).__name__, retries + 1,
                            self.retry.attempts, delay)
                retries += 1
                self.sleep(delay)
            finally:
                context.pop("operationID", None)
                self.stats.record(method, time.monotonic() - start)

    # -- property reads -------------------------------------------------------------------------

    def retrieve(self, objs: Iterable[Any], paths: Sequence[str],
                 missing_ok: bool = False) -> dict[str, dict[str, Any]]:
        """Read ``paths`` of every object of ``objs`` in one property-collector pass.

        Returns ``{moref value: {path: value}}``; unset properties are absent. With
        ``missing_ok`` an object that no longer exists is left out instead of raising.
        """
        objs = list(objs)
        if not objs:
            return {}
        by_type: dict[type, list[Any]] = {}
        for obj in objs:
            by_type.setdefault(type(obj), []).append(obj)
        spec = vmodl.query.PropertyCollector.FilterSpec(
            objectSet=[vmodl.query.PropertyCollector.ObjectSpec(obj=obj, skip=False)
                       for obj in objs],
            propSet=[vmodl.query.PropertyCollector.PropertySpec(type=kind, pathSet=list(paths))
                     for kind in by_type],
            reportMissingObjectsInResults=missing_ok)
        return self._retrieve([spec])

    def retrieve_one(self, obj: Any, paths: Sequence[str]) -> dict[str, Any]:
        """Read ``paths`` of one object."""
        return self.retrieve([obj], paths).get(obj._moId, {})

    def list_objects(self, kind: type, paths: Sequence[str],
                     root: Any = None) -> dict[str, tuple[Any, dict[str, Any]]]:
        """Every object of ``kind`` under ``root`` with ``paths``: one container-view pass.

        Returns ``{moref value: (moref, {path: value})}``.
        """
        view_manager = self.content.viewManager
        view = self.invoke(view_manager, "CreateContainerView",
                           root or self.content.rootFolder, [kind], True)
        try:
            spec = vmodl.query.PropertyCollector.FilterSpec(
                objectSet=[vmodl.query.PropertyCollector.ObjectSpec(
                    obj=view, skip=True,
                    selectSet=[vmodl.query.PropertyCollector.TraversalSpec(
                        name="view", type=vim.view.ContainerView, path="view", skip=False)])],
                propSet=[vmodl.query.PropertyCollector.PropertySpec(type=kind,
                                                                   pathSet=list(paths))])
            return self._retrieve([spec], keep_refs=True)
        finally:
            with contextlib.suppress(exceptions.VirtDriverError):
                self.invoke(view, "DestroyView")

    def _retrieve(self, specs: list[Any], keep_refs: bool = False) -> dict[str, Any]:
        collector = self.content.propertyCollector
        options = vmodl.query.PropertyCollector.RetrieveOptions()
        result = self.invoke(collector, "RetrievePropertiesEx", specs, options)
        found: dict[str, Any] = {}
        while result is not None:
            for obj in result.objects or []:
                props = {prop.name: prop.val for prop in obj.propSet or []}
                found[obj.obj._moId] = (obj.obj, props) if keep_refs else props
            if not result.token:
                break
            result = self.invoke(collector, "ContinueRetrievePropertiesEx", result.token)
        return found

    # -- tasks -----------------------------------------------------------------------------------

    def wait_for_task(self, task: Any, timeout: float | None = None,
                      progress: Callable[[int], None] | None = None, what: str = "") -> Any:
        """Wait by push for ``task`` to end; return its result or raise TaskFailed/TaskTimeout."""
        if self._waiter is None:
            with self._login_lock:
                if self._waiter is None:
                    self._waiter = TaskWaiter(self)
        return self._waiter.wait(task, self.task_timeout if timeout is None else timeout,
                                 progress, what or f"task {task._moId}")

    def call_task(self, obj: Any, method: str, *args: Any, **kwargs: Any) -> Any:
        """Start a ``*_Task`` method and wait for it by push; return the task's result."""
        task = self.invoke(obj, method, *args, **kwargs)
        return self.wait_for_task(task, what=method)


@dataclasses.dataclass
class _Pending:
    task: Any
    progress: Callable[[int], None] | None
    state: str | None = None
    error: Any = None
    result: Any = None
    generation: int = -1


class TaskWaiter:
    """Waits for tasks by push on one property collector shared by every task in flight.

    Each task gets a filter on ``info.state``, ``info.error`` and ``info.result`` (plus
    ``info.progress`` when someone listens). One thread at a time calls
    ``WaitForUpdatesEx`` (the leader) and hands every update to its task's waiter; the
    others sleep on a condition.

    A task that is already over when its call returns (most are) costs one read of its
    state and nothing else. A task still running costs CreateFilter and, whatever it lasts,
    about two WaitForUpdatesEx: the filter's first report, then the one saying it ended.

    The filters live on a collector of the waiter's own. Filters of finished tasks see no
    further changes but a server still evaluates them on every change it reports (vcsim
    re-reads every filter for every change, so hundreds of them stall it), so rather than
    one DestroyPropertyFilter per task the whole collector is destroyed, in one call, once
    ``RECYCLE_AFTER`` tasks have used it and none is in flight; the next long task creates
    a fresh one.
    """

    RECYCLE_AFTER = 16
    MAX_WAIT_SECONDS = 60

    def __init__(self, session: VMwareSession) -> None:
        self.session = session
        self._cond = threading.Condition()
        self._pending: dict[str, _Pending] = {}
        self._leader = False
        self._collector: Any = None
        self._collector_generation = -1
        self._version = ""
        self._filters: list[Any] = []

    def wait(self, task: Any, timeout: float, progress: Callable[[int], None] | None,
             what: str = "") -> Any:
        """Block until ``task`` ends or ``timeout`` seconds pass."""
        deadline = time.monotonic() + timeout
        pending = _Pending(task=task, progress=progress)
        # Most tasks are over by the time their call returns: one read says so, at once.
        # Only a task still running gets a filter and is waited on by push.
        paths = ["info.state", "info.error", "info.result"]
        self._apply(pending, [vmodl.query.PropertyCollector.Change(name=path, op="assign",
                                                                      val=value)
                              for path, value in self.session.retrieve_one(task, paths).items()])
        if pending.state in ("success", "error"):
            return self._outcome(pending, what)
        with self._cond:
            self._pending[task._moId] = pending
        try:
            self._add_filter(pending)
            while True:
                with self._cond:
                    if pending.state in ("success", "error"):
                        break
                    remaining = deadline - time.monotonic()
                    if remaining <= 0:
                        raise exceptions.TaskTimeout(
                            f"{what or task._moId} did not finish within {timeout:.0f}s",
                            code="TaskTimeout")
                    if self._leader:
                        self._cond.wait(remaining)
                        continue
                    self._leader = True
                try:
                    self._lead(remaining)
                finally:
                    with self._cond:
                        self._leader = False
                        self._cond.notify_all()
        finally:
            with self._cond:
                self._pending.pop(task._moId, None)
                # The last task out recycles a collector that has served enough tasks.
                if (not self._pending and not self._leader
                        and len(self._filters) >= self.RECYCLE_AFTER):
                    self._reset_collector()
        return self._outcome(pending, what)

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

    def _add_filter(self, pending: _Pending) -> None:
        session = self.session
        with self._cond:
            collector = self._own_collector()
        paths = ["info.state", "info.error", "info.result"]
        if pending.progress is not None:
            paths.append("info.progress")
        spec = vmodl.query.PropertyCollector.FilterSpec(
            objectSet=[vmodl.query.PropertyCollector.ObjectSpec(obj=pending.task)],
            propSet=[vmodl.query.PropertyCollector.PropertySpec(type=vim.Task, pathSet=paths)])
        generation = session.generation
        task_filter = None
        try:
            task_filter = session.invoke(collector, "CreateFilter", spec, partialUpdates=True)
        except exceptions.BackendError:
            if session.generation == generation:
                raise
            # logged in again during the call: the repeat hit the old session's collector
        if session.generation != generation:
            # The call logged in again: the collector belonged to the old session.
            self._add_filter(pending)
            return
        pending.generation = session.generation
        with self._cond:
            self._filters.append(task_filter)

    def _reset_collector(self) -> None:
        # Called under the condition. Finished tasks' filters go with their collector, in
        # one call, when no task is in flight; after a re-login the old session's
        # collector is gone with it. The next call makes a new one.
        session = self.session
        if self._collector is not None and self._collector_generation == session.generation:
            with contextlib.suppress(exceptions.VirtDriverError):
                session.invoke(self._collector, "DestroyPropertyCollector")
        self._collector = None
        self._collector_generation = session.generation
        self._version = ""
        self._filters = []

    def _own_collector(self) -> Any:
        # Called under the condition.
        if self._collector is None or self._collector_generation != self.session.generation:
            self._reset_collector()
            self._collector = self.session.invoke(self.session.content.propertyCollector,
                                                  "CreatePropertyCollector")
        return self._collector

    def _lead(self, remaining: float) -> None:
        session = self.session
        with self._cond:
            if self._collector_generation != session.generation:
                stale = [p for p in self._pending.values() if p.generation != session.generation]
                self._reset_collector()
            else:
                stale = []
            collector, version = self._collector, self._version
        for pending in stale:
            self._add_filter(pending)
            with self._cond:
                collector, version = self._collector, self._version
        options = vmodl.query.PropertyCollector.WaitOptions(
            maxWaitSeconds=max(1, min(int(remaining + 0.999), self.MAX_WAIT_SECONDS)))
        generation = session.generation
        try:
            update = session.invoke(collector, "WaitForUpdatesEx", version, options)
        except exceptions.BackendError:
            if session.generation == generation:
                raise
            return  # logged in again: the next round re-creates the collector and filters
        with self._cond:
            if update is None:
                return
            if session.generation == self._collector_generation:
                self._version = update.version
            for filter_update in update.filterSet or []:
                for obj_update in filter_update.objectSet or []:
                    pending = self._pending.get(obj_update.obj._moId)
                    if pending is not None:
                        self._apply(pending, obj_update.changeSet or [])

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


@contextlib.contextmanager
def ignoring(*codes: str) -> Iterator[None]:
    """Swallow BackendErrors whose fault code is one of ``codes`` (e.g. already off)."""
    try:
        yield
    except exceptions.BackendError as exc:
        if exc.code not in codes:
            raise
