"""What a message handler sees (:class:`Context`) and how a model module declares one.

Model modules mark the function that serves an XAPI message with :func:`api`; the dispatcher
(``dispatch.py``) looks names up in :data:`HANDLERS` and is the only caller.  This module sits
below the models and above the state (``backend.py``), so imports go one way:
state <- context <- models <- dispatch <- wire.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

from .backend import Backend
from .db import new_ref
from .errors import XapiError

Handler = Callable[..., Any]
#: XAPI message name (``VM.start``) -> the model function that serves it.
HANDLERS: dict[str, Handler] = {}
#: messages that run inside a task even when called synchronously, and take their delay.
LONG: set[str] = set()


def api(name: str, long: bool = False) -> Callable[[Handler], Handler]:
    """Declare ``fn(ctx, *params)`` as the handler of XAPI message ``name``.

    ``long`` marks lifecycle-style calls: they run as a task (synchronously too) and take
    their configured delay.
    """

    def deco(fn: Handler) -> Handler:
        HANDLERS[name] = fn
        if long:
            LONG.add(name)
        return fn

    return deco


class Context:
    """What a handler sees: the backend, the caller's session and the task it runs in."""

    def __init__(self, backend: Backend, method: str, session: str | None,
                 task: str | None = None) -> None:
        self.backend = backend
        self.db = backend.db
        self.method = method
        self.session = session
        self.task = task
        self.ops: list[tuple[str, str, str]] = []

    def wait(self) -> None:
        """Sleep the configured delay of this method; raises TASK_CANCELLED if cancelled."""
        seconds = self.backend.faults.take_delay(self.method)
        if seconds is None:
            seconds = float(self.backend.config.task_delays.get(self.method, 0.0))
        if self.task is None:
            if seconds:
                time.sleep(seconds)
            return
        cancel = self.backend.cancel_events.setdefault(self.task, threading.Event())
        if self.db.exists("task", self.task):
            self.db.set("task", self.task, "progress", 0.5)
        if cancel.wait(seconds) or cancel.is_set():
            raise XapiError("TASK_CANCELLED", self.task)

    def begin_op(self, cls: str, ref: str, op: str) -> None:
        """Mark ``op`` in the object's current_operations for the duration of the call."""
        key = self.task or new_ref()
        with self.db.lock:
            ops = dict(self.db.get(cls, ref)["current_operations"])
            ops[key] = op
            self.db.set(cls, ref, "current_operations", ops)
            self.ops.append((cls, ref, key))

    def end_ops(self) -> None:
        """Remove this call's entries from current_operations."""
        if not self.ops:
            return  # most calls mark nothing: they need not wait for a writer
        with self.db.lock:
            for cls, ref, key in self.ops:
                if self.db.exists(cls, ref):
                    ops = dict(self.db.get(cls, ref)["current_operations"])
                    if ops.pop(key, None) is not None:
                        self.db.set(cls, ref, "current_operations", ops)
            self.ops.clear()
