"""The guest: files and the admin password through the guest agent, and user metadata in
the VM's xenstore.
"""

from __future__ import annotations

import json
from typing import Any

from oslo_log import log as logging

from virtdriver.common import exceptions as exc
from virtdriver.common.model import field_of
from virtdriver.common.validation import require_guest_path, require_name
from virtdriver.xen import vm_utils
from virtdriver.xen.agent import GuestAgent
from virtdriver.xen.backend import XenBackend

LOG = logging.getLogger(__name__)


def agent(backend: XenBackend, instance: Any, operation: str = "guest agent") -> GuestAgent:
    """The guest agent of ``instance``'s VM; UnsupportedOperation naming ``operation`` when
    ``[xenserver] disable_agent`` is set."""
    xen = backend.xen
    if xen.disable_agent:
        raise backend.unsupported(operation, "the guest agent is disabled "
                                             "([xenserver] disable_agent)")
    return GuestAgent(backend.session, backend.vm_ref_of(instance),
                      str(field_of(instance, "uuid")), xen.agent_timeout,
                      xen.agent_resetnetwork_timeout)


def inject_file(backend: XenBackend, instance: Any, path: str, contents: bytes | str) -> None:
    """Write a file in the guest through the agent."""
    require_guest_path("path", path)
    if not isinstance(contents, (bytes, str)):
        raise exc.InvalidInput("contents", type(contents).__name__, "must be bytes or str")
    agent(backend, instance, "inject_file").inject_file(path, contents)
    LOG.info("file %s injected", path, instance=instance)


def set_admin_password(backend: XenBackend, instance: Any, new_pass: str) -> None:
    """Set the guest's password through the agent (DH key exchange, then encrypted)."""
    if not isinstance(new_pass, str) or not new_pass:
        raise exc.InvalidInput("new_pass", "<hidden>", "must be a non-empty string")
    agent(backend, instance, "set_admin_password").set_password(new_pass)
    LOG.info("admin password set", instance=instance)


def change_instance_metadata(backend: XenBackend, instance: Any,
                             diff: dict[str, list[Any]]) -> None:
    """Apply a ``{key: ['+', value] | ['-']}`` diff under ``vm-data/user-metadata``."""
    if not isinstance(diff, dict):
        raise exc.InvalidInput("diff", diff, "must be a mapping")
    changes: list[tuple[str, str | None]] = []
    for key, change in diff.items():
        require_name("diff key", key)  # a xenstore path: see require_metadata
        if not isinstance(change, (list, tuple)) or not change or change[0] not in "+-":
            raise exc.InvalidInput(f"diff[{key!r}]", change, "must be ['+', value] or ['-']")
        if change[0] == "+" and len(change) < 2:
            raise exc.InvalidInput(f"diff[{key!r}]", change, "'+' needs a value")
        value = json.dumps(change[1]) if change[0] == "+" else None
        changes.append((vm_utils.user_metadata_path(key), value))
    vm_ref = backend.vm_ref_of(instance)
    running = backend.vm_power_state(vm_ref) in ("running", "paused")
    for path, value in changes:
        vm_utils.write_xenstore(backend.session, vm_ref, path, value, running)
