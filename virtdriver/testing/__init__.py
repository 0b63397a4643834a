"""virtdriver.testing: the VMOps contract as a test suite any backend runs on its own server.

Nova's ``test_virt_drivers.py`` done once, for every backend: one abstract suite,
:class:`ConformanceSuite`, whose tests drive a backend only through the public
:class:`~virtdriver.common.base.VMOps` API and check the result on the server through a
client of the test's own. A backend supplies a small provider, a
:class:`ConformanceBackend`: its ops object from a configuration, a reading of the server's
view of a VM (:class:`VMView`: power state, vCPUs, memory, disks with sizes, NICs with MACs
and networks), a listing of what could be left behind (:class:`Leftovers`: VMs, disks or
files, tasks), an image it can spawn, a network name, and optionally a way to make a named
spawn step fail on the server.

Running it on a backend takes two files::

    # conftest.py
    import pytest
    from virtdriver.testing.plugin import *  # noqa: F403 - the fixture and the skip report

    @pytest.fixture(scope="module")
    def conformance_backend():
        provider = MyProvider(...)        # a virtdriver.testing.ConformanceBackend
        yield provider
        provider.close()

    # test_conformance.py
    from virtdriver.testing import ConformanceSuite

    class TestMyBackend(ConformanceSuite):
        pass

Tests of an operation a capability gates (``supports_pause``, ``supports_rescue``...; see
:data:`CAPABILITY_OPERATIONS`) first check the capability against the behaviour: when the
backend says it lacks it, each gated operation must raise
:class:`~virtdriver.common.exceptions.UnsupportedOperation` (anything else fails), and the
test then skips with a reason that starts with ``capability``; when it says it has it, an
UnsupportedOperation fails the test. The plugin lists those skips at the end of the run.

This package imports only :mod:`virtdriver.common` and pytest; nothing in the library
imports it.
"""

from virtdriver.testing.backend import ConformanceBackend, DiskView, Leftovers, NicView, VMView
from virtdriver.testing.helpers import CAPABILITY_OPERATIONS
from virtdriver.testing.suite import ConformanceSuite

__all__ = ["CAPABILITY_OPERATIONS", "ConformanceBackend", "ConformanceSuite", "DiskView",
           "Leftovers", "NicView", "VMView"]
