"""The XAPI session: the one place the Xen backend talks to its server.

Two layers, as in oslo.vmware: the *wire* layer (:class:`_Connection`) sends one XML-RPC
call on one logged-in XAPI session and turns the reply into a value or an
:class:`XenAPI.Failure`; the *policy* layer (:class:`XenAPISession`) lends connections
from a small pool, retries connection failures with backoff, logs in again once on
``SESSION_INVALID``, counts and times every call, and translates failures into
:mod:`virtdriver.common.exceptions`.

The PyPI ``XenAPI`` client silently logs in again (up to three times) when a call gets
``SESSION_INVALID``; that hides expired sessions and can loop. We keep its ``Session``
class as the XML-RPC proxy but send every call ourselves through the proxy's raw
``ServerProxy`` methods, so the client's retry loop never runs and the re-login policy
is ours: exactly one.

Operations that last on the server (``VM.start``, ``VDI.copy``, ``VM.pool_migrate``) are
plain calls too (:meth:`XenAPISession.call_lasting`): one round trip where ``Async.*`` +
``event.from`` + ``task.destroy`` cost three, made on a connection outside the pool of
``connection_concurrent`` connections (:meth:`XenAPISession.long_connection`), so short
calls never queue behind them, and bounded by ``task_timeout``. XAPI runs such a call as a
task of its own all the same, listed in the object's ``current_operations``, which is how
a live migration is cancelled and why ``VM.hard_shutdown`` can cut a clean shutdown short.
:meth:`XenAPISession.call_async` remains for callers that want the task itself: awaited by
push (never by polling ``task.get_record``), with a deadline, progress reports, and
``task.destroy`` in every case, the waiting shared (:class:`~virtdriver.xen.tasks.TaskWatch`:
one ``event.from`` long poll on class ``task`` at a time per session, on a long
connection, handing every task's record to its waiter). A task whose ``task.destroy``
failed (the server was unreachable) is destroyed by the next call that succeeds, or at
:meth:`XenAPISession.close` (:class:`~virtdriver.xen.tasks.LeftoverTasks`).

Failures are translated by :mod:`virtdriver.xen.faults` (its :func:`is_handle_invalid` is
re-exported here for the many modules that import it from the session); the task waiting
lives in :mod:`virtdriver.xen.tasks`. This module keeps the connections, the chokepoint,
and the HTTP transfers of VDI contents.

Every call is bounded: ordinary calls by ``[xenserver] call_timeout`` (a socket timeout:
such a call fails with ConnectionFailed, code ``CALL_TIMEOUT``, and is not repeated),
lasting calls by ``[DEFAULT] task_timeout`` (TaskTimeout), long polls by their wait plus
``call_timeout``.
"""

from __future__ import annotations

import contextlib
import http.client
import queue
import select
import ssl
import threading
import time
import urllib.parse
import xmlrpc.client
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any

import XenAPI
from oslo_log import log as logging

from virtdriver.common import exceptions as exc
from virtdriver.common.stats import CallStats
from virtdriver.xen.faults import failure_details, is_handle_invalid, translate_failure
from virtdriver.xen.tasks import LeftoverTasks, ProgressFn, TaskWatch

LOG = logging.getLogger(__name__)

API_VERSION = "2.1"
ORIGINATOR = "virtdriver"
#: Default socket timeout of ordinary calls ([xenserver] call_timeout); event.from waits get
#: their own wait plus this.
CALL_TIMEOUT_SECONDS = 60.0
HTTP_CHUNK = 1024 * 1024


# -- retry policy, as small objects with an injectable sleep -----------------------------------

@dataclass(frozen=True)
class Backoff:
    """Exponential backoff: ``initial * factor**attempt`` seconds, capped at ``maximum``."""

    initial: float = 0.5
    factor: float = 2.0
    maximum: float = 10.0

    def delay(self, attempt: int) -> float:
        """Seconds to wait before retry number ``attempt`` (0-based)."""
        return min(self.maximum, self.initial * self.factor ** attempt)


@dataclass(frozen=True)
class RetryPolicy:
    """Retry a call that failed to reach the server at most ``attempts`` more times."""

    attempts: int = 3
    backoff: Backoff = Backoff()

    def should_retry(self, attempt: int, error: BaseException) -> bool:
        """Retry connection errors (never certificate errors) while attempts remain."""
        if attempt >= self.attempts:
            return False
        if isinstance(error, (ssl.SSLCertVerificationError, TimeoutError)):
            return False  # untrusted, or stalled past call_timeout: a repeat cannot help
        return isinstance(error, (OSError, http.client.HTTPException,
                                  xmlrpc.client.ProtocolError))


# -- the wire layer: one logged-in XAPI session -------------------------------------------------

class _RecordFieldFilter(xmlrpc.client.Unmarshaller):
    """An Unmarshaller that keeps only ``keep`` members of each record of a records reply.

    A ``get_all_records(_where)`` reply is ``{Status, Value: {ref: record}}``: the records
    are the structs at depth :data:`RECORD_DEPTH`. Each is cut down to the wanted members
    as soon as it closes, while the reply streams in, so memory grows with what is kept,
    not with the full records. Structs nested inside a record (other_config) are kept
    whole when their member is wanted.
    """

    RECORD_DEPTH = 3

    def __init__(self, keep: frozenset[str], **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._keep = keep

    def end_struct(self, data: str) -> None:
        if len(self._marks) == self.RECORD_DEPTH:
            mark = self._marks.pop()
            items = self._stack[mark:]
            keep = self._keep
            self._stack[mark:] = [{items[i]: items[i + 1] for i in range(0, len(items), 2)
                                   if items[i] in keep}]
            self._value = 0
            return
        super().end_struct(data)

    dispatch = dict(xmlrpc.client.Unmarshaller.dispatch)
    dispatch["struct"] = end_struct


class _TimeoutTransportMixin:
    """Sets a socket timeout on every connection the XML-RPC transport opens; while
    ``keep_fields`` is set, parses replies with :class:`_RecordFieldFilter`.

    While ``lasting`` is set (``(seconds, check)``: a call that lasts on the server), the
    call goes on a fresh connection and is sent once: the standard transport sends a call
    again when its kept-alive connection turns out closed, which is safe only if the call
    never reached the server, and a lasting call may break off after it did. Its reply is
    awaited in slices of ``seconds``, with ``check()`` between them (it raises when the
    server is gone)."""

    timeout: float = CALL_TIMEOUT_SECONDS
    keep_fields: frozenset[str] | None = None
    lasting: tuple[float, Callable[[], None]] | None = None

    def request(self, host: Any, handler: Any, request_body: Any, verbose: bool = False) -> Any:
        if self.lasting is None:
            return super().request(host, handler, request_body, verbose)  # type: ignore[misc]
        self.close()  # type: ignore[attr-defined]
        return self.single_request(host, handler, request_body,  # type: ignore[attr-defined]
                                   verbose)

    def send_request(self, host: Any, handler: Any, request_body: Any, debug: Any) -> Any:
        conn = super().send_request(host, handler, request_body, debug)  # type: ignore[misc]
        if self.lasting is not None and conn.sock is not None:
            interval, check = self.lasting
            deadline = time.monotonic() + self.timeout
            # nothing to read yet: the server is still at work, or gone; ask another way
            while not select.select([conn.sock], [], [], max(0.0, min(
                    interval, deadline - time.monotonic())))[0]:
                if time.monotonic() >= deadline:
                    raise TimeoutError("no answer in time")
                check()
        return conn

    def getparser(self) -> tuple[Any, Any]:
        if self.keep_fields is None:
            return super().getparser()  # type: ignore[misc]
        target = _RecordFieldFilter(self.keep_fields,
                                    use_datetime=self._use_datetime,  # type: ignore[attr-defined]
                                    use_builtin_types=self._use_builtin_types)  # type: ignore[attr-defined]
        return xmlrpc.client.ExpatParser(target), target

    def make_connection(self, host: Any) -> Any:
        conn = super().make_connection(host)  # type: ignore[misc]
        conn.timeout = self.timeout
        if conn.sock is not None:
            conn.sock.settimeout(self.timeout)
        return conn


class _Transport(_TimeoutTransportMixin, xmlrpc.client.Transport):
    pass


class _SafeTransport(_TimeoutTransportMixin, xmlrpc.client.SafeTransport):
    pass


class _Connection:
    """One XenAPI proxy and the session handle logged in on it (not thread-safe: lent)."""

    def __init__(self, proxy: Any, transport: _TimeoutTransportMixin,
                 shared: bool = False) -> None:
        self.proxy = proxy
        self.transport = transport
        self.handle: str | None = None
        #: a long connection: its handle is the one XAPI session all of them share
        self.shared = shared

    def send(self, method: str, params: tuple[Any, ...], timeout: float) -> Any:
        """Send one call; return its value or raise XenAPI.Failure (including SESSION_INVALID).

        ``getattr`` on the proxy for a non-login name reaches ``ServerProxy`` directly, so
        the client's own SESSION_INVALID retry loop is bypassed.
        """
        self.transport.timeout = timeout
        reply = getattr(self.proxy, method)(*params)
        if not isinstance(reply, dict) or "Status" not in reply:
            raise XenAPI.Failure(["INTERNAL_ERROR", f"malformed reply to {method}"])
        if reply["Status"] == "Success":
            return reply.get("Value", "")
        raise XenAPI.Failure(list(reply.get("ErrorDescription") or ["UNKNOWN_ERROR"]))


# -- the policy layer ---------------------------------------------------------------------------

class XenAPISession:
    """A pool of logged-in XAPI sessions with accounting, retries and translation.

    Nothing is sent at construction: the first call logs the first session in. Use
    :meth:`call` (``session.call("VM.get_record", ref)``) or the attribute form
    ``session.xenapi.VM.get_record(ref)``; :meth:`call_lasting` makes a call that lasts on
    the server, :meth:`call_async` runs ``Async.*`` and waits for its task. ``stats`` (the
    backend's shared CallStats, if given) counts every call by method. :meth:`close` logs
    every session out.
    """

    def __init__(self, url: str, username: str, password: str, *, concurrent: int = 5,
                 ca_file: str | None = None, insecure: bool = False,
                 login_timeout: float = 10.0, retry: RetryPolicy | None = None,
                 task_timeout: float = 3600.0, call_timeout: float = CALL_TIMEOUT_SECONDS,
                 sleep: Callable[[float], None] = time.sleep,
                 proxy_factory: Callable[[], tuple[Any, Any]] | None = None,
                 stats: CallStats | None = None) -> None:
        parsed = urllib.parse.urlsplit(url or "")
        if parsed.scheme not in ("http", "https") or not parsed.hostname:
            raise exc.InvalidInput("xenserver.connection_url", url,
                                   "must be an http:// or https:// URL")
        if concurrent < 1:
            raise exc.InvalidInput("xenserver.connection_concurrent", concurrent,
                                   "must be at least 1")
        self.url = url
        self.username = username
        self._password = password
        self.concurrent = concurrent
        self.login_timeout = float(login_timeout)
        self.task_timeout = float(task_timeout)
        self.call_timeout = float(call_timeout)
        self.retry = retry or RetryPolicy()
        self._sleep = sleep
        self._parsed = parsed
        self._ssl_context = self._make_ssl_context(parsed.scheme, ca_file, insecure)
        self._proxy_factory = proxy_factory or self._make_proxy
        self._idle: queue.LifoQueue[_Connection] = queue.LifoQueue()
        self._created = 0
        self._all: list[_Connection] = []
        self._lock = threading.Lock()
        self._closed = False
        # Connections for lasting calls and long polls, apart from the pool of short calls.
        # They share one XAPI session (a session is not bound to a connection), so a burst
        # of lasting calls costs no logins.
        self._long_idle: queue.LifoQueue[_Connection] = queue.LifoQueue()
        self._long_handle: str | None = None
        self._long_login = threading.Lock()
        self._tasks = TaskWatch(self)
        # Tasks whose task.destroy failed: destroyed by the next good call, or at close().
        self._leftover = LeftoverTasks(self.call)
        self._host_ref: str | None = None
        self.stats = stats if stats is not None else CallStats()
        self.xenapi = _Dispatcher(self.call)

    @classmethod
    def from_conf(cls, conf: Any, **kwargs: Any) -> XenAPISession:
        """A session configured from the ``[xenserver]`` and ``[DEFAULT]`` options."""
        xen = conf.xenserver
        if not xen.connection_url:
            raise exc.InvalidInput("xenserver.connection_url", None, "is required")
        return cls(xen.connection_url, xen.connection_username,
                   xen.connection_password or "", concurrent=xen.connection_concurrent,
                   ca_file=xen.ca_file, insecure=xen.insecure,
                   login_timeout=xen.login_timeout,
                   retry=RetryPolicy(attempts=xen.api_retry_count),
                   task_timeout=conf.task_timeout, call_timeout=xen.call_timeout, **kwargs)

    def for_url(self, url: str, ca_file: str | None = None,
                insecure: bool = False) -> XenAPISession:
        """A session to another pool (a migration's destination) with the same credentials
        and policy, and a pool of two."""
        return XenAPISession(url, self.username, self._password, concurrent=2,
                             ca_file=ca_file, insecure=insecure,
                             login_timeout=self.login_timeout, retry=self.retry,
                             task_timeout=self.task_timeout, call_timeout=self.call_timeout,
                             sleep=self._sleep)

    def __repr__(self) -> str:
        # Never the password, never a session handle.
        return (f"XenAPISession(url={self.url!r}, username={self.username!r}, "
                f"concurrent={self.concurrent})")

    # -- connections ----------------------------------------------------------------------

    @staticmethod
    def _make_ssl_context(scheme: str, ca_file: str | None,
                          insecure: bool) -> ssl.SSLContext | None:
        if scheme != "https":
            return None
        if ca_file:
            return ssl.create_default_context(cafile=ca_file)
        context = ssl.create_default_context()
        if insecure:
            LOG.warning("XAPI certificate verification is disabled ([xenserver] insecure); "
                        "use this only for tests")
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
        return context

    def _make_proxy(self) -> tuple[Any, Any]:
        if self._ssl_context is not None:
            transport: Any = _SafeTransport(context=self._ssl_context)
        else:
            transport = _Transport()
        return XenAPI.Session(self.url, transport=transport), transport

    def _new_connection(self, shared: bool = False) -> _Connection:
        proxy, transport = self._proxy_factory()
        return _Connection(proxy, transport, shared)

    @contextlib.contextmanager
    def connection(self) -> Iterator[_Connection]:
        """Lend one logged-in connection for the duration of the block."""
        if self._closed:
            raise exc.SessionExpired("the XAPI session is closed", "SESSION_CLOSED")
        conn = self._acquire()
        try:
            if conn.handle is None:
                self._login(conn)
            yield conn
        finally:
            self._idle.put(conn)

    #: idle long connections kept for reuse (more are closed: a TCP connection, no logout)
    LONG_IDLE_KEPT = 8

    @contextlib.contextmanager
    def long_connection(self) -> Iterator[_Connection]:
        """Lend a connection for a lasting call or a long poll, from outside the pool of
        short calls, logged in with the session every long connection shares.

        One is created when none is idle; up to :attr:`LONG_IDLE_KEPT` are kept for reuse;
        the shared session is logged out at close().
        """
        if self._closed:
            raise exc.SessionExpired("the XAPI session is closed", "SESSION_CLOSED")
        try:
            conn = self._long_idle.get_nowait()
        except queue.Empty:
            conn = self._new_connection(shared=True)
        try:
            if conn.handle is None or conn.handle != self._long_handle:
                conn.handle = None
                self._login(conn)
            yield conn
        finally:
            if self._long_idle.qsize() < self.LONG_IDLE_KEPT:
                self._long_idle.put(conn)
            else:
                with contextlib.suppress(Exception):
                    conn.transport.close()  # type: ignore[attr-defined]

    def _acquire(self) -> _Connection:
        try:
            return self._idle.get_nowait()
        except queue.Empty:
            pass
        with self._lock:
            if self._created < self.concurrent:
                self._created += 1
                conn = self._new_connection()
                self._all.append(conn)
                return conn
        return self._idle.get()

    def _login(self, conn: _Connection) -> None:
        """Log ``conn`` in; a long connection takes the shared session, logging in only if
        there is none yet or its handle is the one that just failed."""
        if not conn.shared:
            self._login_alone(conn)
            return
        with self._long_login:
            if self._long_handle is not None and self._long_handle != conn.handle:
                conn.handle = self._long_handle  # logged in (again) by another already
                return
            self._login_alone(conn)
            self._long_handle = conn.handle

    def _login_alone(self, conn: _Connection) -> None:
        # The password travels only as this call's parameter; it is never logged.
        conn.handle = None
        try:
            handle = self._send(conn, "session.login_with_password",
                                (self.username, self._password, API_VERSION, ORIGINATOR),
                                self.login_timeout)
        except XenAPI.Failure as failure:
            code, params = failure_details(failure)
            raise translate_failure("session.login_with_password", code, params) from failure
        conn.handle = str(handle)
        LOG.debug("logged in to %s as %s (session ...%s)", self.url, self.username,
                  conn.handle[-4:])

    def close(self) -> None:
        """Destroy tasks left over from an outage, log out every session; later calls raise
        SessionExpired (code SESSION_CLOSED)."""
        if not self._closed:
            self._leftover.destroy_all()
        self._closed = True
        logged_out: set[str] = set()
        for idle in (self._idle, self._long_idle):
            while True:
                try:
                    conn = idle.get_nowait()
                except queue.Empty:
                    break
                stale = conn.shared and conn.handle != self._long_handle
                if conn.handle is None or conn.handle in logged_out or stale:
                    continue  # the long connections' shared session: logged out once
                logged_out.add(conn.handle)
                try:
                    self._send(conn, "session.logout", (conn.handle,), self.login_timeout)
                except (exc.VirtDriverError, XenAPI.Failure, OSError) as error:
                    LOG.debug("logout failed: %s", type(error).__name__)
                conn.handle = None
        self._long_handle = None

    # -- calls ----------------------------------------------------------------------------

    def _send(self, conn: _Connection, method: str, params: tuple[Any, ...],
              timeout: float, *, repeatable: bool = True) -> Any:
        """One wire call with connection retries and accounting; Failures pass through.

        ``repeatable=False``: the call is sent again only if it never reached the server
        (the connection was refused), since the server may have run it.
        """
        attempt = 0
        while True:
            started = time.monotonic()
            try:
                return conn.send(method, params, timeout)
            except XenAPI.Failure:
                raise
            except xmlrpc.client.Fault as error:
                # The server answered, but with an XML-RPC fault instead of a XAPI failure
                # (a malformed call): not a connection problem, and not worth a retry.
                raise exc.BackendError(f"XAPI {method} failed: XML-RPC fault "
                                       f"{error.faultCode}: {error.faultString}",
                                       "XMLRPC_FAULT", (str(error.faultCode),)) from error
            except ssl.SSLCertVerificationError as error:
                raise exc.CertificateRejected(
                    f"the certificate of {self._parsed.hostname} is not trusted: "
                    f"{error.verify_message}; set [xenserver] ca_file", "CERTIFICATE") from error
            except TimeoutError as error:
                raise exc.ConnectionFailed(
                    f"XAPI {method} to {self._parsed.hostname}: no answer within {timeout:g}s "
                    f"([xenserver] call_timeout)", "CALL_TIMEOUT") from error
            except Exception as error:
                unsent = isinstance(error, ConnectionRefusedError)
                if not self.retry.should_retry(attempt, error) or not (repeatable or unsent):
                    if isinstance(error, (OSError, http.client.HTTPException,
                                          xmlrpc.client.ProtocolError)):
                        raise exc.ConnectionFailed(
                            f"XAPI {method} to {self._parsed.hostname} failed after "
                            f"{attempt + 1} attempt(s): {type(error).__name__}: {error}",
                            "CONNECTION") from error
                    raise
                delay = self.retry.backoff.delay(attempt)
                LOG.warning("XAPI %s: %s; retrying in %.1fs", method, type(error).__name__,
                            delay)
                attempt += 1
                self._sleep(delay)
            finally:
                self.stats.record(method, time.monotonic() - started)

    def call(self, method: str, *args: Any, timeout: float | None = None) -> Any:
        """Call ``method`` (``"VM.get_record"``) with the session handle prepended.

        ``timeout`` (seconds; default ``call_timeout``) bounds the wait for the answer.
        On ``SESSION_INVALID`` the session logs in once more and the call is sent again;
        a second ``SESSION_INVALID`` is SessionExpired. Other failures become
        BackendError (or a subclass) with the XAPI code and params, raised from the Failure.
        """
        with self.connection() as conn:
            result = self._call_on(conn, method, args,
                                   self.call_timeout if timeout is None else timeout)
        if method != "task.destroy":
            self._clean_up_after_outage()
        return result

    def call_lasting(self, method: str, *args: Any, timeout: float | None = None) -> Any:
        """Call ``method``, one that lasts on the server (``VM.start``), as a plain call.

        It is sent on a long connection (outside the pool of short calls) and waits up to
        ``timeout`` seconds (default ``task_timeout``) for its answer; past that TaskTimeout
        (code ``TASK_TIMEOUT``) is raised while the server may still be running it (a
        ``VM.hard_shutdown`` cancels a clean shutdown or reboot in flight). It goes on a
        fresh TCP connection and is never sent again once it may have reached the server
        (only a refused connection is tried again). Every
        ``call_timeout`` without an answer, one short call checks that the server is still
        there: if it is not, the lasting call fails with that call's ConnectionFailed.
        Failures are translated as by :meth:`call`.
        """
        limit = self.task_timeout if timeout is None else float(timeout)
        with self.long_connection() as conn:
            lasting = isinstance(conn.transport, _TimeoutTransportMixin)
            if lasting:
                conn.transport.lasting = (self.call_timeout, self._check_alive)
            try:
                result = self._call_on(conn, method, args, limit, repeatable=False)
            except exc.ConnectionFailed as error:
                if error.code != "CALL_TIMEOUT":
                    raise
                raise exc.TaskTimeout(f"XAPI {method} did not finish within {limit:g}s",
                                      "TASK_TIMEOUT") from error
            finally:
                if lasting:
                    conn.transport.lasting = None
        self._clean_up_after_outage()
        return result

    def _check_alive(self) -> None:
        """While a lasting call has no answer yet: one short call on the pool. A server
        gone or stalled fails it (ConnectionFailed within ``call_timeout``), which ends
        the lasting call too rather than let it wait out ``task_timeout``."""
        try:
            self.call("pool.get_all")
        except exc.ConnectionFailed as error:
            raise exc.ConnectionFailed(f"XAPI at {self._parsed.hostname} stopped answering "
                                       f"during a lasting call: {error}",
                                       "CONNECTION") from error

    def _clean_up_after_outage(self) -> None:
        """The server answers again: destroy the tasks an outage left behind."""
        if self._leftover:
            self._leftover.destroy_all()

    def records_where(self, cls: str, expr: str,
                      fields: Iterable[str]) -> dict[str, dict[str, Any]]:
        """``<cls>.get_all_records_where(expr)`` keeping only ``fields`` of each record.

        One call, as :meth:`call`; XAPI has no field selection, so the reply is filtered as
        it is parsed (:class:`_RecordFieldFilter`) and only the wanted members of each
        record are ever held in full.
        """
        keep = frozenset(fields)
        method = f"{cls}.get_all_records_where"
        with self.connection() as conn:
            filtering = isinstance(conn.transport, _TimeoutTransportMixin)
            if filtering:
                conn.transport.keep_fields = keep
            try:
                records = self._call_on(conn, method, (expr,), self.call_timeout)
            finally:
                if filtering:
                    conn.transport.keep_fields = None
        self._clean_up_after_outage()
        if filtering:
            return dict(records)
        return {ref: {k: v for k, v in rec.items() if k in keep}
                for ref, rec in records.items()}

    def event_from(self, classes: list[str], token: str, wait: float) -> dict[str, Any]:
        """One ``event.from`` long poll on a connection outside the pool of short calls.

        Blocks on the server up to ``wait`` seconds; the socket allows ``wait`` plus
        ``call_timeout``.
        """
        with self.long_connection() as conn:
            return dict(self._call_on(conn, "event.from", (classes, token, float(wait)),
                                      float(wait) + self.call_timeout))

    def _call_on(self, conn: _Connection, method: str, args: tuple[Any, ...],
                 timeout: float, *, repeatable: bool = True) -> Any:
        for relogin in (True, False):
            try:
                return self._send(conn, method, (conn.handle, *args), timeout,
                                  repeatable=repeatable)
            except XenAPI.Failure as failure:
                code, params = failure_details(failure)
                if code == "SESSION_INVALID" and relogin:
                    LOG.info("XAPI session expired during %s; logging in again", method)
                    self._login(conn)
                    continue
                raise translate_failure(method, code, params) from failure
        raise AssertionError("unreachable")  # pragma: no cover

    @property
    def pending_cleanup(self) -> frozenset[str]:
        """Tasks whose ``task.destroy`` failed and will be retried (for tests, reports)."""
        return self._leftover.pending

    @property
    def host_ref(self) -> str:
        """The host this session is logged in to (cached after the first ask)."""
        if self._host_ref is None:
            with self.connection() as conn:
                try:
                    self._host_ref = str(self._send(conn, "session.get_this_host",
                                                    (conn.handle, conn.handle),
                                                    self.call_timeout))
                except XenAPI.Failure as failure:
                    code, params = failure_details(failure)
                    raise translate_failure("session.get_this_host", code,
                                            params) from failure
        return self._host_ref

    def console_session(self) -> str:
        """A session handle for the host's console handler (one of the pool's)."""
        with self.connection() as conn:
            return str(conn.handle)

    # -- tasks ----------------------------------------------------------------------------

    def call_async(self, method: str, *args: Any, timeout: float | None = None,
                   progress: ProgressFn | None = None) -> Any:
        """Run ``Async.<method>`` and wait for its task through event.from.

        Returns the task's result (parsed); a failed task raises the translated error
        (TaskFailed unless a more specific class applies); a task still pending at the
        deadline is cancelled and TaskTimeout raised. The task is destroyed in every case:
        if the server cannot be reached to do so, by the next call that succeeds or at
        :meth:`close`.
        """
        task = self.call(f"Async.{method}", *args)
        try:
            result = self.wait_for_task(task, method, timeout=timeout, progress=progress)
        except exc.ConnectionFailed:
            # The server is unreachable: the caller hears so now, not after one more
            # call_timeout for task.destroy; the next call that gets through destroys it.
            self._leftover.add(task)
            raise
        except BaseException:
            self._leftover.destroy(task, method)
            raise
        self._leftover.destroy(task, method)
        return result

    def wait_for_task(self, task: str, method: str = "task", timeout: float | None = None,
                      progress: ProgressFn | None = None) -> Any:
        """Wait by push (the session's shared event.from on class ``task``) until ``task``
        leaves pending; return its parsed result or raise the translated failure."""
        deadline = time.monotonic() + (self.task_timeout if timeout is None else timeout)
        return self._tasks.result(task, method, deadline, progress)

    # -- HTTP transfers of VDI contents ---------------------------------------------------

    def _http_connection(self, timeout: float) -> http.client.HTTPConnection:
        host = self._parsed.hostname or ""
        port = self._parsed.port
        if self._ssl_context is not None:
            return http.client.HTTPSConnection(host, port, timeout=timeout,
                                               context=self._ssl_context)
        return http.client.HTTPConnection(host, port, timeout=timeout)

    def put_vdi(self, vdi_ref: str, data: Iterable[bytes], size: int,
                fmt: str = "raw") -> None:
        """Upload ``size`` bytes into a VDI through ``PUT /import_raw_vdi``."""
        with self.connection() as conn:
            query = urllib.parse.urlencode({"session_id": conn.handle, "vdi": vdi_ref,
                                            "format": fmt})
            started = time.monotonic()
            try:
                http_conn = self._http_connection(self.call_timeout)
                try:
                    http_conn.putrequest("PUT", f"/import_raw_vdi?{query}")
                    http_conn.putheader("Content-Length", str(size))
                    http_conn.putheader("Content-Type", "application/octet-stream")
                    http_conn.endheaders()
                    for chunk in data:
                        http_conn.send(chunk)
                    response = http_conn.getresponse()
                    body = response.read()
                finally:
                    http_conn.close()
            except (OSError, http.client.HTTPException) as error:
                raise exc.ConnectionFailed(f"VDI upload failed: {type(error).__name__}",
                                           "CONNECTION") from error
            finally:
                self.stats.record("HTTP PUT /import_raw_vdi", time.monotonic() - started)
        if response.status >= 300:
            raise exc.BackendError(
                f"VDI upload failed: HTTP {response.status} {body[:200]!r}",
                f"HTTP_{response.status}")

    def get_vdi(self, vdi_ref: str, fmt: str = "raw") -> Iterator[bytes]:
        """Download a VDI's contents through ``GET /export_raw_vdi``, in chunks."""
        with self.connection() as conn:
            handle = conn.handle
        query = urllib.parse.urlencode({"session_id": handle, "vdi": vdi_ref, "format": fmt})
        started = time.monotonic()
        try:
            http_conn = self._http_connection(self.call_timeout)
            http_conn.request("GET", f"/export_raw_vdi?{query}")
            response = http_conn.getresponse()
        except (OSError, http.client.HTTPException) as error:
            raise exc.ConnectionFailed(f"VDI download failed: {type(error).__name__}",
                                       "CONNECTION") from error
        finally:
            self.stats.record("HTTP GET /export_raw_vdi", time.monotonic() - started)
        if response.status >= 300:
            body = response.read()
            http_conn.close()
            raise exc.BackendError(
                f"VDI download failed: HTTP {response.status} {body[:200]!r}",
                f"HTTP_{response.status}")
        return _read_response(http_conn, response)


def _read_response(http_conn: http.client.HTTPConnection,
                   response: http.client.HTTPResponse) -> Iterator[bytes]:
    try:
        while chunk := response.read(HTTP_CHUNK):
            yield chunk
    finally:
        http_conn.close()


class _Dispatcher:
    """``session.xenapi.VM.get_record(ref)`` -> ``session.call("VM.get_record", ref)``."""

    def __init__(self, send: Callable[..., Any], name: str | None = None) -> None:
        self._send = send
        self._name = name

    def __getattr__(self, name: str) -> _Dispatcher:
        if name.startswith("__"):
            raise AttributeError(name)
        return _Dispatcher(self._send, name if self._name is None else f"{self._name}.{name}")

    def __call__(self, *args: Any) -> Any:
        if self._name is None:
            raise TypeError("call a method, e.g. session.xenapi.VM.get_record(ref)")
        return self._send(self._name, *args)


__all__ = ["Backoff", "CallStats", "RetryPolicy", "XenAPISession", "is_handle_invalid",
           "translate_failure"]
