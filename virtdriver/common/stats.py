"""Server-call accounting shared by every backend's session.

Each backend's session records every server call here, so a caller (the CLI, a benchmark,
a test) reads the same shape whichever backend ran: ``ops.stats.calls`` by method,
``total_calls``, ``seconds`` and ``total_seconds``.
"""

from __future__ import annotations

import collections
import threading


class CallStats:
    """Server calls per method and the time they took; thread-safe and resettable.

    ``calls`` maps a method name (``PowerOnVM_Task``, ``VM.start``) to its count and
    ``seconds`` to the wall time spent in it.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.calls: collections.Counter[str] = collections.Counter()
        self.seconds: collections.defaultdict[str, float] = collections.defaultdict(float)

    def record(self, method: str, elapsed: float) -> None:
        """Count one call of ``method`` that took ``elapsed`` seconds."""
        with self._lock:
            self.calls[method] += 1
            self.seconds[method] += elapsed

    @property
    def total_calls(self) -> int:
        """Every call counted since the last reset."""
        with self._lock:
            return sum(self.calls.values())

    @property
    def total_seconds(self) -> float:
        """Wall time of every call counted since the last reset."""
        with self._lock:
            return sum(self.seconds.values())

    def snapshot(self) -> dict[str, int]:
        """A copy of the per-method counts."""
        with self._lock:
            return dict(self.calls)

    def reset(self) -> None:
        """Forget every count."""
        with self._lock:
            self.calls.clear()
            self.seconds.clear()

    def __repr__(self) -> str:
        return f"CallStats(total_calls={self.total_calls}, calls={self.snapshot()!r})"
