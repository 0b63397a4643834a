"""State behind the HTTP transfer endpoints (``/import_raw_vdi``, ``/export_raw_vdi``,
``/vm_rrd``): session and VDI checks, the task a client may pass, usage after an upload.

The wire layer streams the bytes; it asks these functions everything about state.
"""

from __future__ import annotations

from typing import Any

from ..backend import Backend
from ..context import Context
from ..db import now
from ..errors import XapiError
from .vm import get_data_sources


def session_valid(backend: Backend, session: str) -> bool:
    """Whether ``session`` is a live session (refreshing its idle clock)."""
    try:
        backend.sessions.check(session)
    except XapiError:
        return False
    return True


def find_vdi(backend: Backend, vdi: str) -> tuple[str, str, int] | None:
    """(ref, uuid, virtual size) of a VDI named by ref or uuid, or None."""
    db = backend.db
    with db.lock:
        if not db.exists("VDI", vdi):
            vdi = db.by_uuid["VDI"].get(vdi, "")
        if not db.exists("VDI", vdi):
            return None
        rec = db.get("VDI", vdi)
        return vdi, rec["uuid"], int(rec["virtual_size"])


def uploaded(backend: Backend, vdi: str, uuid: str) -> None:
    """Refresh the VDI's physical utilisation after its bytes were replaced."""
    with backend.db.lock:
        if backend.db.exists("VDI", vdi):
            backend.db.set("VDI", vdi, "physical_utilisation", str(backend.disks.used(uuid)))


def finish_task(backend: Backend, task: str, ok: bool, msg: str = "") -> None:
    """End the client's task of a transfer (if it passed one) as success or failure."""
    with backend.db.lock:
        if backend.db.exists("task", task):
            backend.db.update("task", task, status="success" if ok else "failure",
                              progress=1.0, finished=now(),
                              error_info=[] if ok else ["INTERNAL_ERROR", msg])


def rrd_sources(backend: Backend, vm_uuid: str) -> list[dict[str, Any]]:
    """The data sources of a VM by uuid (UUID_INVALID when there is none)."""
    vm = backend.db.ref_of_uuid("VM", vm_uuid)
    return get_data_sources(Context(backend, "vm_rrd", None), vm)
