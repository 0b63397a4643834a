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
(:class:`TaskWaiter`): each waiting caller borrows a property collector of its own from a
small pool, puts one filter on its task's ``info.state``, ``info.error`` and ``info.result``
and calls ``WaitForUpdatesEx`` on it.

Every call is bounded: the SOAP connection has a socket timeout (``[vmware] call_timeout``),
a call the server does not answer within it fails with ConnectionFailed (code
``CallTimeout``) and is not repeated, and long waits ask the server for less than that.

Passwords and session cookies never reach a log line, an exception message or a repr; the
password is held by a :class:`Secret`.
"""

from __future__ import annotations

import contextlib
import dataclasses
import http.client
import ssl
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any

from oslo_log import log as logging
from pyVmomi import SoapStubAdapter, vim, vmodl
from pyVmomi.VmomiSupport import GetRequestContext

from virtdriver.common import exceptions
from virtdriver.common.stats import CallStats

LOG = logging.getLogger(__name__)

#: The vSphere API version we speak; vcsim and vCenter 7+ accept it.
API_VERSION = "vim.version.v7_0"

Sleep = Callable[[float], None]

#: Default seconds a call may go unanswered before it fails ([vmware] call_timeout).
CALL_TIMEOUT_SECONDS = 60.0
#: How much sooner than the call timeout a WaitForUpdatesEx asks the server to answer.
WAIT_SLACK_SECONDS = 5


class Secret:
    """A password that shows as ``***`` in reprs, logs, tracebacks and debuggers' views.

    The value lives in a closure, not an attribute, so ``vars()`` and ``repr`` of the
    holder (or of the session holding it) never print it; :meth:`reveal` hands it to the
    one call that needs it. It refuses to be pickled or copied into a crash dump by pickle.
    """

    __slots__ = ("_reveal",)

    def __init__(self, value: str) -> None:
        def reveal() -> str:
            return value
        self._reveal = reveal

    def reveal(self) -> str:
        """The secret itself, for the login call only."""
        return self._reveal()

    def __repr__(self) -> str:
        return "Secret('***')"

    __str__ = __repr__

    def __reduce__(self) -> Any:
        raise TypeError("a Secret cannot be pickled")


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
#: A call the server accepted but did not answer in time: not repeated (the server may be
#: doing it, and a stalled server would make every repeat wait as long again).
TIMEOUT_ERRORS = (TimeoutError,)


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
                 task_timeout: float = 3600.0, call_timeout: float = CALL_TIMEOUT_SECONDS,
                 sleep: Sleep = time.sleep, connect: bool = True,
                 stats: CallStats | None = None) -> None:
        self.host = host
        self.port = port
        self.username = username
        self._password = Secret(password)
        self.call_timeout = float(call_timeout)
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
        #: Set by :meth:`logout`; a closed session makes no more calls.
        self.closed = False
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
                   call_timeout=group.call_timeout, **kwargs)

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
        if self.closed:
            raise exceptions.SessionExpired(
                f"the session to vCenter {self.host} is closed", code="SessionClosed")
        if self._content is None:
            self.login()
        return self._content

    def login(self) -> None:
        """Open the connection and log in (again)."""
        if self._stub is None:
            self._stub = SoapStubAdapter(host=self.host, port=self.port, path="/sdk",
                                         version=API_VERSION, sslContext=self.ssl_context(),
                                         poolSize=8, httpConnectionTimeout=self.call_timeout)
        if self._content is None:
            # The ServiceContent is plain data that outlives sessions: read it once.
            instance = vim.ServiceInstance("ServiceInstance", self._stub)
            self._content = self._call_with_retries("RetrieveServiceContent",
                                                    instance.RetrieveContent, (), {})
        self._call_with_retries("Login", self._content.sessionManager.Login, (),
                                {"userName": self.username, "password": self._password.reveal()})
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
        """Log out and close: later calls raise SessionExpired (code ``SessionClosed``)
        without touching the network. Errors are logged, never raised (the session is
        being thrown away)."""
        self.closed = True
        waiter, self._waiter = self._waiter, None
        if waiter is not None:
            waiter.forget()  # the collectors go with the session
        if self._content is not None:
            try:
                self._call_with_retries("Logout", self._content.sessionManager.Logout, (), {},
                                        attempts=0)
            except (exceptions.VirtDriverError, vmodl.MethodFault) as exc:
                LOG.debug("logout failed: %s", type(exc).__name__)
        self._content = None
        drop = getattr(self._stub, "DropConnections", None)
        if drop is not None:
            drop()  # close the kept-alive SOAP connections now, not at garbage collection

    # -- the chokepoint -----------------------------------------------------------------------

    def invoke(self, obj: Any, method: str, *args: Any, **kwargs: Any) -> Any:
        """Call ``method`` on the managed object ``obj``: counted, retried, translated.

        A ``NotAuthenticated`` answer logs in again once and repeats the call; if the
        repeat also fails, SessionExpired is raised.
        """
        return self._invoke(obj, method, args, kwargs)

    def _invoke(self, obj: Any, method: str, args: Sequence[Any], kwargs: dict[str, Any],
                retry: bool = True) -> Any:
        # ``retry=False``: a connection failure is raised at once (the task waiter re-reads
        # its task instead of repeating a wait whose answer may have been lost).
        if self.closed:
            raise exceptions.SessionExpired(
                f"{method}: the session to vCenter {self.host} is closed", code="SessionClosed")
        for attempt in (0, 1):
            generation = self.generation
            try:
                result = self._call_with_retries(method, getattr(obj, method), args, kwargs,
                                                 self.retry.attempts if retry else 0)
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
                           args: Sequence[Any], kwargs: dict[str, Any],
                           attempts: int | None = None) -> Any:
        attempts = self.retry.attempts if attempts is None else attempts
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
            except TIMEOUT_ERRORS as exc:
                raise exceptions.ConnectionFailed(
                    f"{method}: vCenter {self.host}:{self.port} did not answer within "
                    f"{self.call_timeout:g}s ([vmware] call_timeout)",
                    code="CallTimeout") from exc
            except CONNECTION_ERRORS as exc:
                if retries >= attempts:
                    raise exceptions.ConnectionFailed(
                        f"{method}: vCenter {self.host}:{self.port} unreachable after "
                        f"{retries + 1} tries: {type(exc).__name__}: {exc}",
                        code=type(exc).__name__) from exc
                delay = self.retry.wait(retries)
                LOG.warning("%s: connection to %s failed (%s); retry %d of %d in %.1fs",
                            method, self.host, type(exc).__name__, retries + 1,
                            attempts, delay)
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

    def wait_for_updates(self, collector: Any, version: str, max_wait: float) -> Any:
        """One ``WaitForUpdatesEx`` on ``collector``: the server answers at a change or after
        about ``max_wait`` seconds (never longer than call_timeout allows).

        Not repeated on a connection failure (ConnectionFailed at once): the server may
        have sent, and forgotten, the update it answered with, so the caller re-reads what
        it waits for, or reopens its channel, instead of waiting again from ``version``.
        """
        seconds = min(int(max_wait + 0.999), int(self.call_timeout) - WAIT_SLACK_SECONDS)
        options = vmodl.query.PropertyCollector.WaitOptions(maxWaitSeconds=max(1, seconds))
        return self._invoke(collector, "WaitForUpdatesEx", (version, options), {}, retry=False)

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
    task ended. The filter is destroyed when the wait ends, so an idle collector carries
    none; at most ``POOL_SIZE`` idle collectors are kept, the rest destroyed.

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
    MAX_WAIT_SECONDS = 60

    def __init__(self, session: VMwareSession) -> None:
        self.session = session
        self._lock = threading.Lock()
        self._idle: list[tuple[Any, int]] = []  # (collector, session generation)
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
        failures = 0
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
                    collector, generation = self._borrow()
                    task_filter, version = None, ""
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
        finally:
            if collector is not None:
                self._give_back(collector, generation, task_filter)

    def _borrow(self) -> tuple[Any, int]:
        session = self.session
        with self._lock:
            self.lent += 1
            while self._idle:
                collector, generation = self._idle.pop()
                if generation == session.generation:
                    return collector, generation
        generation = session.generation
        try:
            collector = session.invoke(session.content.propertyCollector,
                                       "CreatePropertyCollector")
        except BaseException:
            with self._lock:
                self.lent -= 1
            raise
        return collector, generation

    def _give_back(self, collector: Any, generation: int, task_filter: Any) -> None:
        session = self.session
        keep = generation == session.generation
        if keep and task_filter is not None:
            try:
                session.invoke(task_filter, "DestroyPropertyFilter")
            except exceptions.VirtDriverError:
                keep = False  # unsure what it still watches: do not lend it again
        with self._lock:
            self.lent -= 1
            if keep and len(self._idle) < self.POOL_SIZE:
                self._idle.append((collector, generation))
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


@contextlib.contextmanager
def ignoring(*codes: str) -> Iterator[None]:
    """Swallow BackendErrors whose fault code is one of ``codes`` (e.g. already off)."""
    try:
        yield
    except exceptions.BackendError as exc:
        if exc.code not in codes:
            raise
