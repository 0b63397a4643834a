"""The conformance suite (virtdriver.testing) on our backends, each against its simulator.

Each backend's directory holds a conftest whose ``conformance_backend`` fixture returns its
provider, and one test module subclassing ``ConformanceSuite``.
"""

from __future__ import annotations

import pathlib

import pytest

from tests.support.markers import mark_integration_under
from virtdriver.testing.plugin import *  # noqa: F403 - the default fixture and the skip report

HERE = pathlib.Path(__file__).resolve().parent


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Mark every test under this directory as an integration test (real servers)."""
    mark_integration_under(HERE, items)
