"""virtdriver: pluggable virtualization drivers in the style of OpenStack Nova.

A compute service registers the options, picks a backend and calls its operations::

    conf = cfg.ConfigOpts()
    virtdriver.register_opts(conf)
    ops = virtdriver.load_backend("vmware", conf, image_store=virtdriver.LocalImageStore(d))
    ops.spawn(None, instance, image, injected_files=[], admin_password=None, network_info=[vif])
"""

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
