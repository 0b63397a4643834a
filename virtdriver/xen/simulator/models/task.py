"""Tasks: every long call runs inside one; ``Async.*`` calls return its ref at once."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from .. import wire
from ..dispatch import Context, api, now
from ..errors import XapiError

LOG = logging.getLogger(__name__)

if TYPE_CHECKING:
    from ..backend import Backend

Body = Callable[[Context], Any]


class Tasks:
    """Creates task records and runs bodies in them (the CreateTask helper)."""

    def __init__(self, backend: Backend) -> None:
        self.backend = backend
        self.threads: set[threading.Thread] = set()
        self.lock = threading.Lock()

    def _create(self, name: str, session: str | None) -> str:
        return self.backend.db.create("task", {
            "name_label": name, "status": "pending", "created": now(),
            "resident_on": self.backend.master(), "allowed_operations": ["cancel"],
            "progress": 0.0,
        })

    def _finish(self, task: str, result: Any = None, error: XapiError | None = None) -> None:
        db = self.backend.db
        with db.lock:
            if not db.exists("task", task):
                return
            fields: dict[str, Any] = {"finished": now(), "progress": 1.0,
                                      "allowed_operations": []}
            if error is None:
                fields.update(status="success", result=wire.fragment(result))
            elif error.code == "TASK_CANCELLED":
                fields.update(status="cancelled", error_info=error.description)
            else:
                fields.update(status="failure", error_info=error.description)
            db.update("task", task, **fields)
        self.backend.cancel_events.pop(task, None)

    def _execute(self, task: str, method: str, session: str | None, body: Body) -> Any:
        ctx = Context(self.backend, method, session, task)
        try:
            result = body(ctx)
        except XapiError as err:
            self._finish(task, error=err)
            raise
        except Exception as exc:
            err = XapiError("INTERNAL_ERROR", f"{type(exc).__name__}: {exc}")
            self._finish(task, error=err)
            raise err from exc
        self._finish(task, result=result)
        return result

    def spawn(self, name: str, session: str | None, body: Body, method: str) -> str:
        """Run ``body`` in a new task on a thread; return the task ref now."""
        task = self._create(name, session)
        self.backend.cancel_events[task] = threading.Event()

        def run() -> None:
            try:
                self._execute(task, method, session, body)
            except XapiError:
                pass  # already recorded in the task
            except BaseException as exc:
                # Whatever escapes (even from recording the result) must not leave the
                # task pending forever: a client waiting on it would hang.
                LOG.exception("task %s (%s) crashed", task, name)
                self._finish(task, error=XapiError("INTERNAL_ERROR",
                                                   f"{type(exc).__name__}: {exc}"))
            finally:
                with self.lock:
                    self.threads.discard(threading.current_thread())

        thread = threading.Thread(target=run, name=f"xapi-task-{name}", daemon=True)
        with self.lock:
            self.threads.add(thread)
        thread.start()
        return task

    def run_sync(self, method: str, session: str | None, body: Body) -> Any:
        """Run ``body`` in a task named ``method`` and delete the task afterwards."""
        task = self._create(method, session)
        self.backend.cancel_events[task] = threading.Event()
        try:
            return self._execute(task, method, session, body)
        finally:
            with self.backend.db.lock:
                if self.backend.db.exists("task", task):
                    self.backend.db.destroy("task", task)

    def cancel(self, task: str) -> None:
        """Ask a pending task to stop."""
        db = self.backend.db
        with db.lock:
            rec = db.get("task", task)
            if rec["status"] != "pending":
                raise XapiError("OPERATION_NOT_ALLOWED", f"task {task} is not pending")
            event = self.backend.cancel_events.get(task)
            if event is None:  # a client-created task: cancel it directly
                db.update("task", task, status="cancelled", finished=now(),
                          error_info=["TASK_CANCELLED", task], allowed_operations=[])
                return
            db.set("task", task, "status", "cancelling")
            event.set()

    def join(self, timeout: float = 5.0) -> None:
        """Wait for running task threads (used at stop)."""
        for event in list(self.backend.cancel_events.values()):
            event.set()
        with self.lock:
            threads = list(self.threads)
        for thread in threads:
            thread.join(timeout)


@api("task.cancel")
def cancel(ctx: Context, task: str) -> None:
    """Cancel a pending task; it ends ``cancelled`` with TASK_CANCELLED."""
    ctx.backend.tasks.cancel(task)


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
    from ..dispatch import set_field

    set_field(ctx, "task", task, "status", status)
