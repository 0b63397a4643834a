"""Per-instance locks: operations on one instance are serialized, others never wait.

Built on oslo.concurrency's internal semaphores, which are ``threading`` primitives and so
become green under eventlet monkey-patching: the same code works under plain threads and
under eventlet.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

from oslo_concurrency import lockutils

from virtdriver.common.model import field_of, validate_instance_identity


@contextlib.contextmanager
def instance_lock(instance: Any) -> Iterator[None]:
    """Hold the lock of ``instance`` (by uuid) for the duration of the block.

    The instance's identity is checked first (InvalidInput, no lock taken): a face takes
    this lock before anything else, so that is every locked operation's first step, and
    a lock is never named by a malformed uuid.
    """
    validate_instance_identity(instance)
    with lockutils.lock(f"virtdriver-instance-{field_of(instance, 'uuid')}"):
        yield


@contextlib.contextmanager
def named_lock(name: str) -> Iterator[None]:
    """Hold a process-wide lock by name (e.g. one per cached image)."""
    with lockutils.lock(f"virtdriver-{name}"):
        yield
