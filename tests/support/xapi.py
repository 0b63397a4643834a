"""The XAPI simulator and a plain XenAPI client, as the tests start and read them.

``running_simulator`` starts one on a free loopback port (user ``root``, password
``secret``, the simulator's defaults) and stops it afterwards; ``client_session`` logs a
plain XenAPI client in to read what a simulator holds, never through the code under test.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import XenAPI

from virtdriver.xen.simulator import Simulator

USERNAME, PASSWORD = "root", "secret"


@contextlib.contextmanager
def running_simulator(**options: Any) -> Iterator[Simulator]:
    """A started XAPI simulator on a free loopback port (``options`` go to Simulator)."""
    simulator = Simulator(host="127.0.0.1", port=0, username=USERNAME, password=PASSWORD,
                          **options).start()
    try:
        yield simulator
    finally:
        simulator.stop()


@contextlib.contextmanager
def client_session(url: str) -> Iterator[XenAPI.Session]:
    """A plain XenAPI client session on ``url``, logged in as root, logged out after."""
    session = XenAPI.Session(url)
    session.xenapi.login_with_password(USERNAME, PASSWORD, "2.1", "tests")
    try:
        yield session
    finally:
        session.xenapi.session.logout()
