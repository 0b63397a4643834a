"""The plugin functions (xenstore, agent, console, bandwidth, dom0_plugin_version)."""

from __future__ import annotations

from .dispatch import Context
from .plugins import plugin


@plugin("dom0_plugin_version", "get_version")
def get_version(ctx: Context, host: str, args: dict[str, str]) -> str:
    """The plugin API version Nova checks."""
    return "3.2"
