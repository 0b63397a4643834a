"""The lifecycle-event thread on the VMware channel when vCenter goes away.

The pump is Nova-agnostic (``virtdriver.common.event_pump``). Before: the
channel's wait retried for minutes (api_retry_count with backoff), so ``stop()`` gave up
and the thread went on logging errors into whatever ran next, and after ``logout`` it
logged in again. Now: it stops within one short wait, and a closed session ends it.
"""

from __future__ import annotations

import logging
import time
from typing import Any

import pytest

from tests.integration.faults.test_vmware_faults import make_session
from tests.support.faultproxy import FaultProxy
from virtdriver.common.event_pump import EventPump
from virtdriver.vmware.events import PowerStateChannel


def channel_factory(session: Any) -> Any:
    def factory() -> PowerStateChannel:
        root = session.content.rootFolder
        datacenter = session.retrieve_one(root, ["childEntity"])["childEntity"][0]
        folder = session.retrieve_one(datacenter, ["vmFolder"])["vmFolder"]
        return PowerStateChannel(session, folder)
    return factory


def test_the_thread_stops_soon_after_the_server_went(vcsim: Any, vcsim_proxy: FaultProxy,
                                                     caplog: pytest.LogCaptureFixture) -> None:
    session = make_session(vcsim, vcsim_proxy, api_retry_count=10)
    pump = EventPump(channel_factory(session), lambda uuid, old, new: None, name="pump-under-test")
    pump.start()
    time.sleep(1.0)
    vcsim_proxy.refuse()
    time.sleep(1.0)
    start = time.monotonic()
    pump.stop(timeout=5)
    assert not pump.running and time.monotonic() - start < 5
    caplog.clear()
    time.sleep(1.0)
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]
    vcsim_proxy.forward()
    session.logout()


def test_a_closed_session_ends_the_thread_without_logging_in_again(
        vcsim: Any, vcsim_proxy: FaultProxy) -> None:
    session = make_session(vcsim, vcsim_proxy)
    pump = EventPump(channel_factory(session), lambda uuid, old, new: None, name="pump-under-test")
    pump.start()
    time.sleep(1.0)
    session.logout()
    session.stats.reset()
    deadline = time.monotonic() + 8
    while pump.running and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not pump.running  # ended by itself, nobody called stop()
    assert "Login" not in session.stats.calls
