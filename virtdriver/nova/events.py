"""Nova lifecycle events from the power-state changes a backend pushes.

:class:`virtdriver.common.event_pump.EventPump` runs a backend's push channel in one
thread and reports each change as ``(uuid, old, new)``; :func:`lifecycle_emitter` turns
those into Nova ``LifecycleEvent`` objects for the compute manager's ``emit_event``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from nova.virt import event as virtevent

from virtdriver.common.event_pump import ChangeCallback
from virtdriver.common.power_state import PowerState


def transition(old: PowerState | None, new: PowerState) -> str | None:
    """Nova's lifecycle transition for a power-state change, or None for no event."""
    if old == new:
        return None
    if new == PowerState.RUNNING:
        return virtevent.EVENT_LIFECYCLE_RESUMED if old == PowerState.PAUSED \
            else virtevent.EVENT_LIFECYCLE_STARTED
    if new == PowerState.PAUSED:
        return virtevent.EVENT_LIFECYCLE_PAUSED
    if new == PowerState.SUSPENDED:
        return virtevent.EVENT_LIFECYCLE_SUSPENDED
    if new in (PowerState.SHUTDOWN, PowerState.CRASHED):
        return virtevent.EVENT_LIFECYCLE_STOPPED
    return None


def lifecycle_emitter(emit: Callable[[Any], None]) -> ChangeCallback:
    """A pump callback that hands Nova's lifecycle event of each transition to ``emit``."""
    def on_change(uuid: str, old: PowerState | None, new: PowerState) -> None:
        name = transition(old, new)
        if name is not None:
            emit(virtevent.LifecycleEvent(uuid, name))
    return on_change
