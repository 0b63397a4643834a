"""task: records of running and finished calls, cancel, and the client-owned task calls.

The runner that executes a call inside a task (``Async.*`` and long synchronous calls) is
``tasks.py``, in the dispatch layer; the records it keeps are made and finished here.
"""

from __future__ import annotations

from typing import Any

from ..backend import Backend
from ..context import Context, api
from ..db import now
from ..errors import XapiError
from ..wire import fragment
from .generic import set_field


def create_record(backend: Backend, name: str) -> str:
    """A pending task named ``name`` (the wire method name), resident on the master."""
    return backend.db.create("task", {
        "name_label": name, "status": "pending", "created": now(),
        "resident_on": backend.master(), "allowed_operations": ["cancel"], "progress": 0.0,
    })


def finish_record(backend: Backend, task: str, result: Any = None,
                  error: XapiError | None = None) -> None:
    """Record the outcome: success with the result as an XML-RPC fragment, cancelled, or
    failure with the error description."""
    db = backend.db
    with db.lock:
        if not db.exists("task", task):
            return
        fields: dict[str, Any] = {"finished": now(), "progress": 1.0, "allowed_operations": []}
        if error is None:
            fields.update(status="success", result=fragment(result))
        elif error.code == "TASK_CANCELLED":
            fields.update(status="cancelled", error_info=error.description)
        else:
            fields.update(status="failure", error_info=error.description)
        db.update("task", task, **fields)
    backend.cancel_events.pop(task, None)


@api("task.cancel")
def cancel(ctx: Context, task: str) -> None:
    """Cancel a pending task; it ends ``cancelled`` with TASK_CANCELLED."""
    db = ctx.db
    with db.lock:
        rec = db.get("task", task)
        if rec["status"] != "pending":
            raise XapiError("OPERATION_NOT_ALLOWED", f"task {task} is not pending")
        event = ctx.backend.cancel_events.get(task)
        if event is None:  # a client-created task: cancel it directly
            db.update("task", task, status="cancelled", finished=now(),
                      error_info=["TASK_CANCELLED", task], allowed_operations=[])
            return
        db.set("task", task, "status", "cancelling")
        event.set()


@api("task.create")
def create(ctx: Context, label: str, description: str) -> str:
    """A client-owned task (pending until destroyed or cancelled)."""
    with ctx.db.lock:
        return ctx.db.create("task", {"name_label": label, "name_description": description,
                                      "created": now(), "status": "pending",
                                      "resident_on": ctx.backend.master(),
                                      "allowed_operations": ["cancel"]})


@api("task.destroy")
def destroy(ctx: Context, task: str) -> None:
    """Delete a task record."""
    with ctx.db.lock:
        ctx.db.destroy("task", task)


@api("task.set_status")
def set_status(ctx: Context, task: str, status: str) -> None:
    """Set the status of a client-owned task."""
    set_field(ctx, "task", task, "status", status)
