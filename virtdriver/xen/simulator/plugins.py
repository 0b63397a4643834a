"""Simulated dom0 plugins for ``host.call_plugin``."""

from __future__ import annotations

from collections.abc import Callable

from .dispatch import Context
from .errors import XapiError

PluginFn = Callable[[Context, str, dict[str, str]], str]
PLUGINS: dict[str, dict[str, PluginFn]] = {}


def plugin(name: str, fn: str) -> Callable[[PluginFn], PluginFn]:
    """Register a plugin function."""

    def deco(f: PluginFn) -> PluginFn:
        PLUGINS.setdefault(name, {})[fn] = f
        return f

    return deco


def call(ctx: Context, host: str, name: str, fn: str, args: dict[str, str]) -> str:
    """Dispatch ``host.call_plugin``."""
    from . import plugin_impl  # noqa: F401  (registers the plugins)

    table = PLUGINS.get(name) or PLUGINS.get(name.removesuffix(".py"))
    if table is None:
        raise XapiError("XENAPI_MISSING_PLUGIN", name)
    func = table.get(fn)
    if func is None:
        raise XapiError("UNKNOWN_XENAPI_PLUGIN_FUNCTION", fn)
    return func(ctx, host, {str(k): str(v) for k, v in args.items()})
