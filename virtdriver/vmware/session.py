"""The one door to vCenter: login, re-login, retries, fault translation, property reads, stats.

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
(:meth:`VMwareSession.wait_for_task`, through the session's
:class:`~virtdriver.vmware.tasks.TaskWaiter`).

The faults' translation lives in :mod:`virtdriver.vmware.faults` and the task waiting in
:mod:`virtdriver.vmware.tasks`; :func:`~virtdriver.vmware.faults.ignoring` is re-exported
here for the modules that import it from the session.

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
import itertools
import secrets
import ssl
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from oslo_log import log as logging
from pyVmomi import SoapStubAdapter, vim, vmodl
from pyVmomi.VmomiSupport import GetRequestContext

from virtdriver.common import exceptions
from virtdriver.common.stats import CallStats
from virtdriver.vmware.faults import ignoring, missing_fault, translate_fault
from virtdriver.vmware.tasks import TaskWaiter

LOG = logging.getLogger(__name__)

#: The vSphere API version we speak; vcsim and vCenter 7+ accept it.
API_VERSION = "vim.version.v7_0"

Sleep = Callable[[float], None]

#: Default seconds a call may go unanswered before it fails ([vmware] call_timeout).
CALL_TIMEOUT_SECONDS = 60.0
#: How much sooner than the call timeout a WaitForUpdatesEx asks the server to answer.
WAIT_SLACK_SECONDS = 5

_PC = vmodl.query.PropertyCollector
#: Options of every RetrievePropertiesEx (defaults; shared, never changed).
_RETRIEVE_OPTIONS = _PC.RetrieveOptions()
#: PropertySpecs built so far by (type, paths): shared by every read, never changed (a
#: pyVmomi data object costs about 10 us to build, and every task wait reads one).
_PROPERTY_SPECS: dict[tuple[type, tuple[str, ...]], Any] = {}
_PROPERTY_SPECS_MAX = 512


def _property_spec(kind: type, paths: Sequence[str]) -> Any:
    key = (kind, tuple(paths))
    spec = _PROPERTY_SPECS.get(key)
    if spec is None:
        if len(_PROPERTY_SPECS) >= _PROPERTY_SPECS_MAX:
            _PROPERTY_SPECS.clear()  # bounded: callers with ever new path lists start over
        spec = _PROPERTY_SPECS[key] = _PC.PropertySpec(type=kind, pathSet=list(paths))
    return spec


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
        # opIDs: a random prefix per session and a counter (no uuid4 per call)
        self._op_prefix = f"virtdriver-{secrets.token_hex(3)}"
        self._op_numbers = itertools.count(1)
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
                    fault = missing_fault(result)
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
        op_id = f"{self._op_prefix}{next(self._op_numbers):06x}"
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
        kinds = dict.fromkeys(map(type, objs))  # each type once, in order
        spec = _PC.FilterSpec(
            objectSet=[_PC.ObjectSpec(obj=obj) for obj in objs],
            propSet=[_property_spec(kind, paths) for kind in kinds],
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
        result = self.invoke(collector, "RetrievePropertiesEx", specs, _RETRIEVE_OPTIONS)
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


__all__ = ["API_VERSION", "CALL_TIMEOUT_SECONDS", "CONNECTION_ERRORS", "CallStats",
           "RetryPolicy", "Secret", "TIMEOUT_ERRORS", "VMwareSession", "ignoring"]
