"""ConformanceSuite: every promise of the VMOps contract, as tests any backend runs.

A backend's test module subclasses :class:`ConformanceSuite`; a ``conformance_backend``
fixture in its conftest returns the backend's :class:`~virtdriver.testing.ConformanceBackend`.
Tests drive the backend through the public VMOps API only and check what the server holds
through the provider's own client.

The promises live in one module per concern, each a class of tests this one gathers:
:mod:`~virtdriver.testing.lifecycle_suite` (spawn, destroy, power, snapshot, rescue),
:mod:`~virtdriver.testing.input_suite` (bad input and identity),
:mod:`~virtdriver.testing.migration_suite` (resize, live migration),
:mod:`~virtdriver.testing.operations_suite` (facts, consoles, network, guest, host) and
:mod:`~virtdriver.testing.volume_suite` (volumes). The fixtures they share are here.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from virtdriver.common.base import VMOps
from virtdriver.common.model import Instance
from virtdriver.testing.backend import ConformanceBackend
from virtdriver.testing.helpers import make_instance, make_vif
from virtdriver.testing.input_suite import InputPromises
from virtdriver.testing.lifecycle_suite import LifecyclePromises
from virtdriver.testing.migration_suite import MigrationPromises
from virtdriver.testing.operations_suite import OperationPromises
from virtdriver.testing.volume_suite import VolumePromises

__all__ = ["ConformanceSuite"]


class ConformanceSuite(LifecyclePromises, InputPromises, MigrationPromises, OperationPromises,
                       VolumePromises):
    """The VMOps contract as tests; subclass it once per backend (``class TestMine(...)``).

    The subclass needs nothing but a ``conformance_backend`` fixture in scope. Tests of an
    operation a capability gates skip, with the reason, when the backend lacks it, after
    checking that the operation raises UnsupportedOperation as ``capabilities`` says.
    """

    # -- fixtures -------------------------------------------------------------------------

    @pytest.fixture(scope="class")
    @classmethod
    def progress(cls) -> list[tuple[int, str]]:
        """(percent, step) reports of the class's ops object, in order."""
        return []

    @pytest.fixture(scope="class")
    @classmethod
    def ops(cls, conformance_backend: ConformanceBackend,
            progress: list[tuple[int, str]]) -> Iterator[VMOps]:
        """The backend's ops object, shared by the class, closed at its end."""
        backend = conformance_backend.make_ops(
            lambda instance, percent, step: progress.append((percent, step)))
        yield backend
        backend.close()

    @pytest.fixture
    def server(self, conformance_backend: ConformanceBackend) -> ConformanceBackend:
        """The provider, under a name that reads well in a test."""
        return conformance_backend

    @pytest.fixture
    def instance(self, ops: VMOps, server: ConformanceBackend) -> Iterator[Instance]:
        """A running instance with one NIC, destroyed after the test."""
        inst = make_instance()
        inst.vif = make_vif(server.network, "10.0.0.7")  # type: ignore[attr-defined]
        ops.spawn(None, inst, server.image, [], None, [inst.vif])  # type: ignore[attr-defined]
        yield inst
        ops.destroy(inst)
