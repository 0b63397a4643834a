"""virtdriver: pluggable virtualization drivers in the style of OpenStack Nova.

A compute service registers the options, picks a backend and calls its operations::

    conf = cfg.ConfigOpts()
    virtdriver.register_opts(conf)
    ops = virtdriver.load_backend("vmware", conf, image_store=virtdriver.LocalImageStore(d))
    ops.spawn(None, instance, image, injected_files=[], admin_password=None, network_info=[vif])
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

# The public names are imported on first use (PEP 562), so that a part that stands alone,
# such as the XAPI simulator (``python -m virtdriver.xen.simulator``, standard library and
# cryptography only), does not drag oslo and the rest of the library in with the package.
_LAZY = {
    "exceptions": ("virtdriver.common.exceptions", None),
    "VMOps": ("virtdriver.common.base", "VMOps"),
    "list_opts": ("virtdriver.common.config", "list_opts"),
    "register_opts": ("virtdriver.common.config", "register_opts"),
    "UnsupportedOperation": ("virtdriver.common.exceptions", "UnsupportedOperation"),
    "ImageStore": ("virtdriver.common.images", "ImageStore"),
    "LocalImageStore": ("virtdriver.common.images", "LocalImageStore"),
    "VIF": ("virtdriver.common.model", "VIF"),
    "BlockDeviceInfo": ("virtdriver.common.model", "BlockDeviceInfo"),
    "ConsoleInfo": ("virtdriver.common.model", "ConsoleInfo"),
    "Diagnostics": ("virtdriver.common.model", "Diagnostics"),
    "Flavor": ("virtdriver.common.model", "Flavor"),
    "ImageMeta": ("virtdriver.common.model", "ImageMeta"),
    "Instance": ("virtdriver.common.model", "Instance"),
    "InstanceInfo": ("virtdriver.common.model", "InstanceInfo"),
    "VMConfigInfo": ("virtdriver.common.model", "VMConfigInfo"),
    "PowerState": ("virtdriver.common.power_state", "PowerState"),
    "make_step_decorator": ("virtdriver.common.progress", "make_step_decorator"),
    "available_backends": ("virtdriver.common.registry", "available_backends"),
    "load_backend": ("virtdriver.common.registry", "load_backend"),
}

if TYPE_CHECKING:  # what type checkers and readers see; at run time __getattr__ imports
    from virtdriver.common import exceptions
    from virtdriver.common.base import VMOps
    from virtdriver.common.config import list_opts, register_opts
    from virtdriver.common.exceptions import UnsupportedOperation
    from virtdriver.common.images import ImageStore, LocalImageStore
    from virtdriver.common.model import (
        VIF,
        BlockDeviceInfo,
        ConsoleInfo,
        Diagnostics,
        Flavor,
        ImageMeta,
        Instance,
        InstanceInfo,
        VMConfigInfo,
    )
    from virtdriver.common.power_state import PowerState
    from virtdriver.common.progress import make_step_decorator
    from virtdriver.common.registry import available_backends, load_backend


def __getattr__(name: str) -> Any:
    """Import a public name on first use and keep it on the package."""
    if name not in _LAZY:
        raise AttributeError(f"module 'virtdriver' has no attribute {name!r}")
    module, attr = _LAZY[name]
    value = importlib.import_module(module)
    if attr is not None:
        value = getattr(value, attr)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_LAZY})


__all__ = [
    "BlockDeviceInfo",
    "ConsoleInfo",
    "Diagnostics",
    "Flavor",
    "ImageMeta",
    "ImageStore",
    "Instance",
    "InstanceInfo",
    "LocalImageStore",
    "PowerState",
    "UnsupportedOperation",
    "VIF",
    "VMConfigInfo",
    "VMOps",
    "available_backends",
    "exceptions",
    "list_opts",
    "load_backend",
    "make_step_decorator",
    "register_opts",
]
