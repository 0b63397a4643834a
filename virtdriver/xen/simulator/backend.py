"""One simulator's whole state: configuration, registry, sessions, tasks, faults, storage."""

from __future__ import annotations

import itertools
import threading
from dataclasses import dataclass, field

from .db import Registry
from .faults import Faults


@dataclass
class Config:
    """Simulator settings (see :class:`virtdriver.xen.simulator.Simulator`)."""

    username: str = "root"
    password: str = "secret"
    hosts: int = 1
    vms: int = 0
    session_idle_timeout: float | None = None
    auth_failure_delay: float = 0.0
    task_delays: dict[str, float] = field(default_factory=dict)
    coalesce_delay: float = 0.0
    memory_mb_per_host: int = 65536
    disk_gb_per_sr: int = 1024
    pool_name: str = "pool0"
    address: str = "127.0.0.1"
    url: str = ""


class Backend:
    """Holds every piece of state; handlers reach it through their Context."""

    def __init__(self, config: Config, workdir: str) -> None:
        from .guest import Guests
        from .models.session import Sessions
        from .models.task import Tasks
        from .storage_bytes import Disks

        self.config = config
        self.workdir = workdir
        self.db = Registry()
        self.faults = Faults()
        self.sessions = Sessions(self)
        self.tasks = Tasks(self)
        self.disks = Disks(workdir)
        self.guests = Guests(self)
        self.cancel_events: dict[str, threading.Event] = {}
        self.stopping = threading.Event()
        self.timers: list[threading.Timer] = []
        self.domids = itertools.count(1)
        self.coalesce_due: dict[str, float] = {}

    def master(self) -> str:
        """The pool master's host ref."""
        pool = next(iter(self.db.all("pool").values()))
        return pool["master"]

    def pool_ref(self) -> str:
        """The one pool's ref."""
        return next(iter(self.db.all("pool")))
