"""The pytest side of the conformance suite: the fixture a backend overrides, and a report.

Load it from the conftest that provides ``conformance_backend``, by importing its names
(``from virtdriver.testing.plugin import *``) or, in a root conftest, with
``pytest_plugins = ["virtdriver.testing.plugin"]``. At the end of a run it prints every test
the suite skipped by capability, with the reason, so a skip is never mistaken for a pass.
"""

from __future__ import annotations

from typing import Any

import pytest

from virtdriver.testing.helpers import SKIP_PREFIX

__all__ = ["conformance_backend", "pytest_terminal_summary"]

_REPORTED = pytest.StashKey[bool]()


@pytest.fixture(scope="module")
def conformance_backend() -> Any:
    """The backend under test; a backend's conftest overrides this fixture."""
    raise pytest.UsageError(
        "define a 'conformance_backend' fixture returning your "
        "virtdriver.testing.ConformanceBackend (see the virtdriver.testing docstring)")


def pytest_terminal_summary(terminalreporter: Any, exitstatus: int, config: Any) -> None:
    """List the conformance tests skipped by capability, each with its reason."""
    # several conftests may import this hook; the list is printed once
    if config.stash.get(_REPORTED, False):
        return
    config.stash[_REPORTED] = True
    lines = []
    for report in terminalreporter.stats.get("skipped", []):
        if not isinstance(report.longrepr, tuple):
            continue
        reason = str(report.longrepr[2]).removeprefix("Skipped: ")
        if reason.startswith(SKIP_PREFIX):
            lines.append(f"{report.nodeid}: {reason}")
    if lines:
        terminalreporter.write_sep("-", f"virtdriver conformance: {len(lines)} skipped by "
                                        "capability")
        for line in lines:
            terminalreporter.write_line(line)
