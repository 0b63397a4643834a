"""Datastores: which one to use, the paths on it, and file operations through the session.

Choosing a datastore and building paths is pure; the functions that take a ``session`` talk to
vCenter (FileManager and VirtualDiskManager always get the datacenter, which vCenter needs).
Paths are oslo.vmware :class:`DatastorePath` values (``[ds] folder/file``).
"""

from __future__ import annotations

import dataclasses
import http.client
import re
import ssl
import threading
import time
from collections.abc import Iterable, Iterator, Mapping
from typing import Any
from urllib.parse import quote, urlencode

from oslo_vmware.objects.datastore import DatastorePath
from pyVmomi import vim

from virtdriver.common import exceptions
from virtdriver.vmware.session import CONNECTION_ERRORS, VMwareSession, ignoring

__all__ = ["Datastore", "DatastorePath", "choose_datastore", "cache_folder_name"]

GiB = 1024 ** 3


@dataclasses.dataclass(frozen=True)
class Datastore:
    """A datastore as spawn needs it: reference, name, free space, and its datacenter."""

    ref: Any
    name: str
    free_space: int
    capacity: int
    dc_ref: Any = None
    dc_name: str = ""

    def path(self, *parts: str) -> DatastorePath:
        """``[name] part/part``."""
        return DatastorePath(self.name, *parts)


DATASTORE_PATHS = ["summary.name", "summary.freeSpace", "summary.capacity",
                   "summary.accessible", "summary.maintenanceMode"]


def choose_datastore(candidates: Mapping[str, tuple[Any, dict[str, Any]]],
                     regex: str | None, needed_bytes: int = 0) -> tuple[Any, dict[str, Any]]:
    """The usable datastore with the most free space among ``candidates``.

    ``candidates`` maps moref values to ``(ref, properties)`` read with DATASTORE_PATHS.
    Usable: accessible, not in maintenance, name matching ``regex`` (whole name), and at
    least ``needed_bytes`` free.
    """
    pattern = re.compile(regex) if regex else None
    usable = []
    for ref, props in candidates.values():
        name = props.get("summary.name", "")
        if not props.get("summary.accessible", False):
            continue
        if props.get("summary.maintenanceMode", "normal") != "normal":
            continue
        if pattern is not None and not pattern.fullmatch(name):
            continue
        if props.get("summary.freeSpace", 0) < needed_bytes:
            continue
        usable.append((props.get("summary.freeSpace", 0), name, ref, props))
    if not usable:
        raise exceptions.BackendError(
            f"no usable datastore (regex {regex!r}, {needed_bytes} bytes needed) among "
            f"{sorted(p.get('summary.name', '?') for _, p in candidates.values())}",
            code="NoValidDatastore")
    usable.sort(key=lambda item: (-item[0], item[1]))
    _, _, ref, props = usable[0]
    return ref, props


def cache_folder_name(conf: Any) -> str:
    """The image-cache folder: ``<cache_prefix>_base``, or ``image_cache_subdirectory_name``."""
    prefix = conf.vmware.cache_prefix
    return f"{prefix}_base" if prefix else conf.image_cache_subdirectory_name


# -- file operations (these talk to vCenter) ------------------------------------------------------

def make_directory(session: VMwareSession, ds: Datastore, path: DatastorePath) -> None:
    """Create a folder (and its parents); an existing one is fine."""
    with ignoring("FileAlreadyExists"):
        session.invoke(session.content.fileManager, "MakeDirectory", str(path), ds.dc_ref, True)


def delete_path(session: VMwareSession, ds: Datastore, path: DatastorePath) -> None:
    """Delete a file or a folder with its contents; a missing one is fine."""
    with ignoring("FileNotFound"):
        session.call_task(session.content.fileManager, "DeleteDatastoreFile_Task", str(path),
                          ds.dc_ref)


def move_path(session: VMwareSession, ds: Datastore, source: DatastorePath,
              target: DatastorePath) -> None:
    """Move a file or folder within the datacenter."""
    session.call_task(session.content.fileManager, "MoveDatastoreFile_Task", str(source),
                      ds.dc_ref, str(target), ds.dc_ref, False)


def copy_disk(session: VMwareSession, ds: Datastore, source: DatastorePath,
              target: DatastorePath) -> None:
    """Copy a virtual disk (descriptor and extents)."""
    session.call_task(session.content.virtualDiskManager, "CopyVirtualDisk_Task",
                      sourceName=str(source), sourceDatacenter=ds.dc_ref, destName=str(target),
                      destDatacenter=ds.dc_ref, force=False)


def extend_disk(session: VMwareSession, ds: Datastore, path: DatastorePath,
                capacity_kb: int) -> None:
    """Grow a virtual disk to ``capacity_kb``."""
    session.call_task(session.content.virtualDiskManager, "ExtendVirtualDisk_Task",
                      name=str(path), datacenter=ds.dc_ref, newCapacityKb=capacity_kb,
                      eagerZero=False)


def delete_disk(session: VMwareSession, ds: Datastore, path: DatastorePath) -> None:
    """Delete a virtual disk; a missing one is fine."""
    with ignoring("FileNotFound"):
        session.call_task(session.content.virtualDiskManager, "DeleteVirtualDisk_Task",
                          name=str(path), datacenter=ds.dc_ref)


def list_folder(session: VMwareSession, ds: Datastore, path: DatastorePath) -> list[str]:
    """Names of the entries of a datastore folder (empty when it does not exist)."""
    browser = session.retrieve_one(ds.ref, ["browser"])["browser"]
    spec = vim.host.DatastoreBrowser.SearchSpec(matchPattern=["*"])
    try:
        result = session.call_task(browser, "SearchDatastore_Task", str(path), spec)
    except exceptions.BackendError as exc:
        if exc.code == "FileNotFound":
            return []
        raise
    return [f.path for f in (result.file or [])] if result else []


# -- datastore HTTP transfers, counted in the session's stats ---------------------------------

class DatastoreHTTP:
    """Datastore file transfers over ``/folder`` URLs with the session's cookie.

    Counted in the session's stats as ``HTTP <verb>`` so a caller sees every round trip.
    """

    CHUNK = 1024 * 1024
    MAX_IDLE = 4

    def __init__(self, session: VMwareSession) -> None:
        self.session = session
        self._context: ssl.SSLContext | None = None
        # idle kept-alive connections, lent one per request: a TLS handshake per HEAD
        # costs more than the HEAD itself
        self._idle: list[http.client.HTTPSConnection] = []
        self._idle_lock = threading.Lock()

    def _connection(self) -> http.client.HTTPSConnection:
        if self._context is None:
            self._context = self.session.ssl_context()
        return http.client.HTTPSConnection(self.session.host, self.session.port,
                                           context=self._context,
                                           timeout=self.session.call_timeout)

    def _url(self, dc_name: str, ds_name: str, path: str) -> str:
        return f"/folder/{quote(path)}?{urlencode({'dcPath': dc_name, 'dsName': ds_name})}"

    def request(self, verb: str, dc_name: str, ds_name: str, path: str,
                body: Any = None, size: int | None = None) -> tuple[int, bytes]:
        """One HTTP request on a datastore file; returns (status, body)."""
        headers = {"Cookie": self.session._stub.cookie}
        if size is not None:
            headers["Content-Length"] = str(size)
            headers["Content-Type"] = "application/octet-stream"
        start = time.monotonic()
        with self._idle_lock:
            # A PUT's body is a one-pass stream that cannot be sent twice: never on a
            # kept-alive connection the server may have dropped.
            kept = self._idle.pop() if self._idle and verb != "PUT" else None
        conn = kept or self._connection()
        retries = 0
        try:
            while True:
                try:
                    conn.request(verb, self._url(dc_name, ds_name, path), body=body,
                                 headers=headers)
                    response = conn.getresponse()
                    break
                except (ssl.SSLCertVerificationError, TimeoutError):
                    raise  # untrusted, or stalled past call_timeout: repeating cannot help
                except CONNECTION_ERRORS:
                    # Any error on a reused connection: once more at once, afresh; then
                    # the session's retry policy (a PUT's stream cannot be sent again).
                    conn.close()
                    if verb == "PUT":
                        raise
                    if kept is not None:
                        kept = None
                    elif retries < self.session.retry.attempts:
                        self.session.sleep(self.session.retry.wait(retries))
                        retries += 1
                    else:
                        raise
                    conn = self._connection()
            data = response.read()  # b"" for HEAD; reading frees the connection
            if not response.will_close:
                with self._idle_lock:
                    if len(self._idle) < self.MAX_IDLE:
                        self._idle.append(conn)
                        conn = None
            return response.status, data
        except ssl.SSLCertVerificationError as exc:
            raise exceptions.CertificateRejected(
                f"datastore transfer: certificate of {self.session.host} not trusted",
                code="CertificateRejected") from exc
        except CONNECTION_ERRORS as exc:
            raise exceptions.ConnectionFailed(f"datastore {verb} of [{ds_name}] {path} failed: "
                                              f"{type(exc).__name__}", code=type(exc).__name__
                                              ) from exc
        finally:
            if conn is not None:
                conn.close()
            self.session.stats.record(f"HTTP {verb}", time.monotonic() - start)

    def exists(self, dc_name: str, ds_name: str, path: str) -> bool:
        """Whether a datastore file exists (one HEAD)."""
        status, _ = self.request("HEAD", dc_name, ds_name, path)
        return status == 200

    def put(self, dc_name: str, ds_name: str, path: str, chunks: Iterable[bytes],
            size: int) -> None:
        """Upload ``size`` bytes given as chunks to a datastore file."""
        status, data = self.request("PUT", dc_name, ds_name, path, body=iter(chunks), size=size)
        if status not in (200, 201, 204):
            raise exceptions.BackendError(
                f"upload of [{ds_name}] {path}: HTTP {status} {data[:200]!r}", code=f"HTTP{status}")

    def stream(self, dc_name: str, ds_name: str, path: str) -> tuple[int, Iterator[bytes]]:
        """Download a datastore file as chunks: (size, chunks); the connection closes at the end.

        Counted as one ``HTTP GET`` when the download starts.
        """
        conn = self._connection()
        start = time.monotonic()
        try:
            conn.request("GET", self._url(dc_name, ds_name, path),
                         headers={"Cookie": self.session._stub.cookie})
            response = conn.getresponse()
        except CONNECTION_ERRORS as exc:
            conn.close()
            raise exceptions.ConnectionFailed(f"datastore GET of [{ds_name}] {path} failed: "
                                              f"{type(exc).__name__}",
                                              code=type(exc).__name__) from exc
        finally:
            self.session.stats.record("HTTP GET", time.monotonic() - start)
        if response.status != 200:
            conn.close()
            raise exceptions.BackendError(f"download of [{ds_name}] {path}: HTTP "
                                          f"{response.status}", code=f"HTTP{response.status}")

        def chunks() -> Iterator[bytes]:
            try:
                yield from iter(lambda: response.read(self.CHUNK), b"")
            finally:
                conn.close()
        return int(response.getheader("Content-Length") or 0), chunks()
