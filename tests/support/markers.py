"""Marks for whole test directories, applied from their conftest's collection hook."""

from __future__ import annotations

import pathlib

import pytest


def mark_integration_under(directory: pathlib.Path, items: list[pytest.Item]) -> None:
    """Mark every collected test under ``directory`` as an integration test (real servers
    over real sockets), so ``-m "not integration"`` leaves the whole directory out."""
    for item in items:
        if directory in pathlib.Path(str(item.fspath)).resolve().parents:
            item.add_marker(pytest.mark.integration)
