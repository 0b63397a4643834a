"""pool and host calls: memory accounting, plugins, migration receive."""

from __future__ import annotations

from typing import Any

from ..context import Context, api
from ..db import now
from ..plugins import call
from .vm import free_memory


@api("host.compute_free_memory")
def compute_free_memory(ctx: Context, host: str) -> str:
    """Free bytes on the host, as a string."""
    with ctx.db.lock:
        return str(free_memory(ctx, host))


@api("host.compute_memory_overhead")
def compute_memory_overhead(ctx: Context, host: str) -> str:
    """Host memory overhead (0 here)."""
    ctx.db.get("host", host)
    return "0"


@api("host.get_servertime")
def get_servertime(ctx: Context, host: str) -> Any:
    """Now, as a datetime."""
    ctx.db.get("host", host)
    return now()


@api("host.call_plugin", long=True)
def call_plugin(ctx: Context, host: str, plugin: str, fn: str, args: dict[str, str]) -> str:
    """Run a simulated dom0 plugin (see plugins.py)."""
    ctx.db.get("host", host)
    return call(ctx, host, plugin, fn, args or {})
