"""Fault and delay injection, consulted by the dispatcher for every call."""

from __future__ import annotations

import threading
from dataclasses import dataclass

from .errors import XapiError


@dataclass
class _Rule:
    method: str
    count: int
    error: list[str] | None = None
    seconds: float | None = None


class Faults:
    """Pending injected failures and delays, keyed by canonical method name (``VM.start``)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._rules: list[_Rule] = []

    def inject_fault(self, method: str, error: list[str], count: int = 1) -> None:
        """Make the next ``count`` calls of ``method`` fail with ``error`` ([code, params...])."""
        if not error:
            raise ValueError("error must be a non-empty list")
        XapiError(str(error[0]), *error[1:])  # ValueError now for a code a pool cannot send
        with self._lock:
            self._rules.append(_Rule(method, count, error=[str(e) for e in error]))

    def inject_delay(self, method: str, seconds: float, count: int = 1) -> None:
        """Make the next ``count`` calls of ``method`` take ``seconds``."""
        with self._lock:
            self._rules.append(_Rule(method, count, seconds=float(seconds)))

    def clear(self) -> None:
        """Drop every pending rule."""
        with self._lock:
            self._rules.clear()

    def _take(self, method: str, kind: str) -> _Rule | None:
        with self._lock:
            for rule in self._rules:
                if rule.method == method and getattr(rule, kind) is not None:
                    rule.count -= 1
                    if rule.count <= 0:
                        self._rules.remove(rule)
                    return rule
        return None

    def check(self, method: str) -> None:
        """Raise the injected error of ``method`` if one is pending."""
        rule = self._take(method, "error")
        if rule is not None and rule.error:
            raise XapiError(rule.error[0], *rule.error[1:])

    def take_delay(self, method: str) -> float | None:
        """The injected delay of ``method``, if one is pending."""
        rule = self._take(method, "seconds")
        return None if rule is None else rule.seconds
