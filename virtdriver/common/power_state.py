"""Power states, numbered as Nova numbers them (``nova.compute.power_state``)."""

from __future__ import annotations

import enum


class PowerState(enum.IntEnum):
    """The power state of an instance as the compute service sees it."""

    NOSTATE = 0
    RUNNING = 1
    PAUSED = 3
    SHUTDOWN = 4
    CRASHED = 6
    SUSPENDED = 7
