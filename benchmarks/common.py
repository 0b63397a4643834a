"""What every benchmark section shares: timing, medians, call counts, memory, errors.

A measurement is a plain dict (JSON-ready) so ``run.py`` can print it as a table and write it
as JSON without knowing which section made it. Counting is done in two ways:

* library runs read the backend session's own ``stats`` (every server call of a backend goes
  through its ``session.py``, which counts it by method);
* raw-client runs (floor and naive) count on the wire: :class:`CountingSoapStub` counts every
  pyvmomi SOAP request (property reads through attribute access included, as ``Fetch``) and
  :class:`CountingTransport` every XML-RPC request by ``methodName``.
"""

from __future__ import annotations

import contextlib
import re
import statistics
import time
import traceback
import tracemalloc
import xmlrpc.client
from collections.abc import Iterator
from typing import Any

from pyVmomi import SoapStubAdapter

from virtdriver.common.stats import CallStats

#: Floor of a ratio's denominator, so a 0-second measurement never divides by zero.
EPSILON = 1e-9


class Unavailable(Exception):
    """A measurement cannot be made (backend missing, operation unsupported, setup failed)."""


def _one_line(error: BaseException) -> str:
    # pyvmomi faults print as multi-line structures; their ``msg`` says it in one line.
    text = getattr(error, "msg", None) or str(error)
    return " ".join(str(text).split())[:300]


def unavailable_reason(error: BaseException) -> str:
    """One line saying why a measurement could not be made, for the table and the JSON."""
    name = type(error).__name__
    if name == "UnsupportedOperation":
        return f"backend operation not available: {_one_line(error)}"
    if isinstance(error, Unavailable):
        return _one_line(error)
    return f"backend operation not available: {name}: {_one_line(error)}"


def error_entry(error: BaseException) -> dict[str, Any]:
    """The JSON form of a failed measurement (reason plus the innermost frame for debugging)."""
    frames = traceback.extract_tb(error.__traceback__)
    where = f"{frames[-1].filename}:{frames[-1].lineno}" if frames else ""
    return {"error": unavailable_reason(error), "where": where}


# -- call counting on the wire ------------------------------------------------------------------

class CountedClient:
    """What every raw client (floor or naive) offers the harness: its call counts."""

    counter: CallStats

    def calls(self) -> dict[str, int]:
        """Calls counted since the last reset."""
        return self.counter.snapshot()

    def reset(self) -> None:
        """Start counting afresh."""
        self.counter.reset()


class CountingSoapStub(SoapStubAdapter):
    """A pyvmomi stub that counts every SOAP request it sends, by WSDL method name.

    Attribute reads on managed objects go through ``InvokeMethod`` as ``Fetch``, so the
    naive client's hidden round trips are counted too.
    """

    def __init__(self, *args: Any, counter: CallStats, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.counter = counter

    def InvokeMethod(self, mo: Any, info: Any, args: Any, outerStub: Any = None) -> Any:  # noqa: N802,N803
        """Send as pyvmomi does, counted and timed."""
        started = time.monotonic()
        try:
            return super().InvokeMethod(mo, info, args, outerStub)
        finally:
            self.counter.record(info.wsdlName, time.monotonic() - started)


_METHOD_NAME = re.compile(rb"<methodName>([^<]+)</methodName>")


class CountingTransport(xmlrpc.client.Transport):
    """An XML-RPC transport that counts every request by its ``methodName``."""

    def __init__(self, counter: CallStats) -> None:
        super().__init__()
        self.counter = counter

    def request(self, host: Any, handler: Any, request_body: Any, verbose: bool = False) -> Any:
        """Send, counted by method name and timed."""
        match = _METHOD_NAME.search(request_body if isinstance(request_body, bytes)
                                    else request_body.encode())
        started = time.monotonic()
        try:
            return super().request(host, handler, request_body, verbose)
        finally:
            self.counter.record(match.group(1).decode() if match else "?",
                                time.monotonic() - started)


# -- timing ----------------------------------------------------------------------------------------

def median(values: list[float]) -> float:
    """The median, or 0.0 for no values."""
    return float(statistics.median(values)) if values else 0.0


def summarize(seconds: list[float], calls: list[dict[str, int]]) -> dict[str, Any]:
    """Median wall time and the call counts of the median run, with every sample kept."""
    totals = [sum(c.values()) for c in calls]
    # The calls of one run are reported as a whole (the run whose total is the median), so
    # per-method counts always add up to the total shown.
    order = sorted(range(len(totals)), key=lambda i: totals[i])
    typical = calls[order[len(order) // 2]] if calls else {}
    return {
        "runs": len(seconds),
        "median_s": median(seconds),
        "min_s": min(seconds) if seconds else 0.0,
        "max_s": max(seconds) if seconds else 0.0,
        "samples_s": [round(s, 6) for s in seconds],
        "calls": int(sum(typical.values())),
        "calls_by_method": dict(sorted(typical.items())),
        "calls_min": min(totals) if totals else 0,
        "calls_max": max(totals) if totals else 0,
    }


def ratio(numerator: float | None, denominator: float | None) -> float | None:
    """``numerator / denominator``, or None when either is missing."""
    if numerator is None or denominator is None:
        return None
    return numerator / max(denominator, EPSILON)


# -- memory ----------------------------------------------------------------------------------------

@contextlib.contextmanager
def peak_memory() -> Iterator[dict[str, float]]:
    """Measure the Python heap the block added at its peak (tracemalloc), in MiB.

    tracemalloc sees every allocation of this process made through Python's allocators,
    which is where a client's parsed objects live; the simulators run in other processes,
    so their memory is not counted.
    """
    result: dict[str, float] = {}
    was_tracing = tracemalloc.is_tracing()
    if not was_tracing:
        tracemalloc.start()
    tracemalloc.reset_peak()
    base, _ = tracemalloc.get_traced_memory()
    try:
        yield result
    finally:
        current, peak = tracemalloc.get_traced_memory()
        if not was_tracing:
            tracemalloc.stop()
        result["peak_added_mib"] = max(0.0, (peak - base) / 2**20)
        result["retained_mib"] = max(0.0, (current - base) / 2**20)


def target(name: str, met: bool | None, figure: str, limit: str) -> dict[str, Any]:
    """One issue-8 target, judged from a measurement (None: could not be measured)."""
    return {"target": name, "met": met, "figure": figure, "limit": limit}


class SnapshotSink:
    """Where raw clients put a snapshot's bytes: a LocalImageStore, as the library does.

    A snapshot ends in the image store, so the floor and naive clients pay for the same
    atomic, fsynced write the library's snapshot makes. The store lives in a temporary
    directory that :meth:`close` removes.
    """

    def __init__(self, disk_format: str) -> None:
        import shutil
        import tempfile

        from virtdriver import LocalImageStore
        self._rmtree = shutil.rmtree
        self.directory = tempfile.mkdtemp(prefix="virtdriver-bench-sink-")
        self.store = LocalImageStore(self.directory)
        self.disk_format = disk_format

    def put(self, data: bytes) -> None:
        """Create an image, upload ``data`` into it, then delete it (keeps the disk empty)."""
        image = self.store.create(None, {"name": "bench-snapshot",
                                         "disk_format": self.disk_format})
        self.store.upload(None, image.id, [data])
        self.store.delete(image.id)

    def close(self) -> None:
        """Remove the store's directory."""
        self._rmtree(self.directory, ignore_errors=True)
