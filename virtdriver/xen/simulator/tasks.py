"""The one helper that runs a call inside a task (govmomi's ``CreateTask``): every
``Async.*`` call and every long synchronous call goes through :class:`TaskRunner`."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Any

from .backend import Backend
from .context import Context
from .errors import XapiError
from .models.task import create_record, finish_record

LOG = logging.getLogger(__name__)

Body = Callable[[Context], Any]


class TaskRunner:
    """Creates task records and runs bodies in them, on a thread or in the caller's."""

    def __init__(self, backend: Backend) -> None:
        self.backend = backend

    def _execute(self, task: str, method: str, session: str | None, body: Body) -> Any:
        ctx = Context(self.backend, method, session, task)
        try:
            result = body(ctx)
        except XapiError as err:
            finish_record(self.backend, task, error=err)
            raise
        except Exception as exc:
            err = XapiError("INTERNAL_ERROR", f"{type(exc).__name__}: {exc}")
            finish_record(self.backend, task, error=err)
            raise err from exc
        finish_record(self.backend, task, result=result)
        return result

    def spawn(self, name: str, session: str | None, body: Body, method: str) -> str:
        """Run ``body`` in a new task on a thread; return the task ref now."""
        backend = self.backend
        task = create_record(backend, name)
        backend.cancel_events[task] = threading.Event()

        def run() -> None:
            try:
                self._execute(task, method, session, body)
            except XapiError:
                pass  # already recorded in the task
            except BaseException as exc:
                # Whatever escapes (even from recording the result) must not leave the
                # task pending forever: a client waiting on it would hang.
                LOG.exception("task %s (%s) crashed", task, name)
                finish_record(backend, task, error=XapiError(
                    "INTERNAL_ERROR", f"{type(exc).__name__}: {exc}"))
            finally:
                with backend.threads_lock:
                    backend.threads.discard(threading.current_thread())

        thread = threading.Thread(target=run, name=f"xapi-task-{name}", daemon=True)
        with backend.threads_lock:
            backend.threads.add(thread)
        thread.start()
        return task

    def run_sync(self, method: str, session: str | None, body: Body) -> Any:
        """Run ``body`` in a task named ``method`` and delete the task afterwards."""
        backend = self.backend
        task = create_record(backend, method)
        backend.cancel_events[task] = threading.Event()
        try:
            return self._execute(task, method, session, body)
        finally:
            with backend.db.lock:
                if backend.db.exists("task", task):
                    backend.db.destroy("task", task)
