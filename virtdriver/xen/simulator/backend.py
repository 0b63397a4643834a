"""One simulator's whole state: configuration, registry, sessions, guests, faults, disks.

State only: no XAPI rule lives here.  Models change it through a
:class:`~virtdriver.xen.simulator.context.Context`; the task runner and the timers that
background work starts are tracked here so that ``stop()`` can end them.
"""

from __future__ import annotations

import itertools
import os
import threading
from dataclasses import dataclass, field

from .db import Registry
from .faults import Faults
from .guest import Guests
from .iscsi_targets import Targets
from .sessions import Sessions
from .storage_bytes import Disks


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
    #: iSCSI targets to export at start: ``{"iqn", "portal", "luns": {n: bytes},
    #: "chap_user", "chap_password"}`` each (see ``iscsi_targets.Targets.add_target``).
    iscsi_targets: list[dict] = field(default_factory=list)


class Backend:
    """Holds every piece of state; handlers reach it through their Context."""

    def __init__(self, config: Config, workdir: str, iscsi: Targets | None = None) -> None:
        self.config = config
        self.workdir = workdir
        self.db = Registry()
        self.faults = Faults()
        self.sessions = Sessions(config.session_idle_timeout)
        #: the iSCSI storage network this pool reaches (may be shared with other pools)
        self.iscsi = iscsi if iscsi is not None else Targets(os.path.join(workdir, "iscsi"))
        self.disks = Disks(workdir, external=self.iscsi.path_of_vdi)
        self.guests = Guests(self.db)
        #: task ref -> set when the task is asked to stop (cancel, hard_shutdown, stop()).
        self.cancel_events: dict[str, threading.Event] = {}
        self.stopping = threading.Event()
        self.timers: list[threading.Timer] = []
        self.threads: set[threading.Thread] = set()
        self.threads_lock = threading.Lock()
        self.domids = itertools.count(1)
        self.coalesce_due: dict[str, float] = {}

    def master(self) -> str:
        """The pool master's host ref."""
        pool = next(iter(self.db.all("pool").values()))
        return pool["master"]

    def pool_ref(self) -> str:
        """The one pool's ref."""
        return next(iter(self.db.all("pool")))

    def shut_down(self, timeout: float = 5.0) -> None:
        """Stop background work: wake long polls, cancel tasks and timers, join threads."""
        self.stopping.set()
        with self.db.changed:
            self.db.changed.notify_all()
        for event in list(self.cancel_events.values()):
            event.set()
        for timer in list(self.timers):
            timer.cancel()
        with self.threads_lock:
            threads = list(self.threads)
        for thread in threads:
            thread.join(timeout)
        for timer in list(self.timers):
            timer.join(2)
