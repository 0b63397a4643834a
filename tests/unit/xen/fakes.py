"""A fake XenAPISession: the one seam unit tests fake (no server, no sockets)."""

from __future__ import annotations

from typing import Any

from virtdriver.common import exceptions as exc
from virtdriver.common.stats import CallStats


class FakeSession:
    """Answers ``call``/``call_lasting``/``call_async`` from handlers and records every
    call."""

    url = "http://xapi.example"
    username = "root"

    def __init__(self, handlers: dict[str, Any] | None = None) -> None:
        self.handlers = dict(handlers or {})
        self.calls: list[tuple[str, tuple[Any, ...]]] = []
        self.host_ref = "OpaqueRef:host"
        self.stats = CallStats()

    def call(self, method: str, *args: Any, timeout: float | None = None) -> Any:
        self.calls.append((method, args))
        if method not in self.handlers:
            raise AssertionError(f"unexpected call {method}{args}")
        handler = self.handlers[method]
        result = handler(*args) if callable(handler) else handler
        if isinstance(result, Exception):
            raise result
        return result

    def call_lasting(self, method: str, *args: Any, timeout: float | None = None) -> Any:
        return self.call(method, *args)

    def call_async(self, method: str, *args: Any, timeout: float | None = None,
                   progress: Any = None) -> Any:
        return self.call(f"Async.{method}", *args)

    def methods(self) -> list[str]:
        return [method for method, _ in self.calls]

    def close(self) -> None:
        self.calls.append(("close", ()))


def failure(code: str, *params: str) -> exc.BackendError:
    return exc.BackendError(f"{code} {list(params)}", code, params)
