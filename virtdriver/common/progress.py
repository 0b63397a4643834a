"""Step progress and rollback for long operations (spawn, snapshot, migrate, rescue).

A long operation is a series of steps. :func:`make_step_decorator` counts them: every
decoration raises the total, every completed run of a step raises the current count, and
progress is ``current / total * 100``. :class:`Rollback` undoes what finished steps made
when a later one fails. Both backends write their long operations this way, so a caller
sees the same progress shape whichever backend runs.
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Callable
from typing import Any, TypeVar

from oslo_log import log as logging

LOG = logging.getLogger(__name__)

F = TypeVar("F", bound=Callable[..., Any])
UpdateProgress = Callable[[Any, Any, int, int], None]
ProgressCallback = Callable[[Any, int, str], None]


def make_step_decorator(context: Any, instance: Any, update_instance_progress: UpdateProgress,
                        total_offset: int = 0) -> Callable[[F], F]:
    """Make a decorator that records ``instance``'s progress as a series of discrete steps.

    Each decoration adds one to the total step count; each run of a decorated step adds one
    to the current count and calls ``update_instance_progress(context, instance, current,
    total)``. ``total_offset`` counts steps taken elsewhere (for example by the source
    side of a migration). After decorating two steps and running one, progress is 50 %.
    """
    counts = {"total": total_offset, "current": 0}

    def step_decorator(step: F) -> F:
        counts["total"] += 1

        @functools.wraps(step)
        def run_step(*args: Any, **kwargs: Any) -> Any:
            result = step(*args, **kwargs)
            counts["current"] += 1
            if isinstance(update_instance_progress, ProgressReporter):
                update_instance_progress(context, instance, counts["current"], counts["total"],
                                         step_name=step.__name__)
            else:
                update_instance_progress(context, instance, counts["current"], counts["total"])
            return result

        return run_step  # type: ignore[return-value]

    return step_decorator


def percent_done(step: int, total_steps: int) -> int:
    """Progress as a whole percentage, capped at 100 (0 when there are no steps)."""
    if total_steps <= 0:
        return 0
    return min(100, round(step / total_steps * 100))


class ProgressReporter:
    """Turns step counts into ``instance.progress`` and the caller's progress callback.

    It is the ``update_instance_progress`` that backends pass to
    :func:`make_step_decorator`: it sets ``instance.progress``, calls ``instance.save()``
    when the instance has one (Nova's objects do), and calls ``callback(instance, percent,
    step_name)`` if a callback was given to :func:`~virtdriver.load_backend`.
    """

    def __init__(self, callback: ProgressCallback | None = None) -> None:
        self.callback = callback

    def __call__(self, context: Any, instance: Any, step: int, total_steps: int,
                 step_name: str = "") -> None:
        """Record that ``step`` of ``total_steps`` is done."""
        self.report(instance, percent_done(step, total_steps), step_name)

    def report(self, instance: Any, percent: int, step_name: str) -> None:
        """Set ``instance.progress`` to ``percent`` and tell the callback."""
        # A read-only or dict-like instance still gets its callback.
        with contextlib.suppress(AttributeError):
            instance.progress = percent
        save = getattr(instance, "save", None)
        if callable(save):
            save()
        if self.callback is not None:
            self.callback(instance, percent, step_name.lstrip("_"))


class Rollback:
    """Undo what finished steps made when a later step fails.

    Each step registers how to undo itself as soon as it succeeds; on an exception inside
    the ``with`` block the undo functions run in reverse order, each failure of an undo is
    logged (never masking the original error), and the original exception is re-raised::

        with Rollback() as undo:
            vm = create_vm()
            undo.push(destroy_vm, vm)
            attach_disks(vm)
    """

    def __init__(self, what: str = "operation") -> None:
        self.what = what
        self._undo: list[tuple[Callable[..., Any], tuple[Any, ...], dict[str, Any]]] = []

    def push(self, undo: Callable[..., Any], *args: Any, **kwargs: Any) -> None:
        """Register ``undo(*args, **kwargs)`` to run if a later step fails."""
        self._undo.append((undo, args, kwargs))

    def discard(self) -> None:
        """Forget the registered undo functions (the operation is committed)."""
        self._undo.clear()

    def rollback(self) -> None:
        """Run every registered undo function, newest first; log the ones that fail."""
        while self._undo:
            undo, args, kwargs = self._undo.pop()
            try:
                undo(*args, **kwargs)
            except Exception:  # keep unwinding: one failed undo must not stop the others
                LOG.exception("rollback of %s: %s failed",
                              self.what, getattr(undo, "__name__", undo))

    def __enter__(self) -> Rollback:
        return self

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        if exc_type is not None:
            LOG.warning("%s failed (%s); rolling back", self.what, exc_type.__name__)
            self.rollback()
        else:
            self.discard()
