"""The project's vCenter simulator: govmomi's vcsim plus fault/delay injection and stand-ins.

The launcher's Go sources ship in ``launcher/``; ``build`` compiles them into the user's
cache on first use (``python -m virtdriver.vmware.simulator build`` prints the path);
``vcsim`` starts, stops and controls it, or a stock vcsim binary.
"""

from .build import LauncherUnavailable, VcsimError, build_launcher, cache_dir
from .certs import make_private_dir, write_private_file
from .vcsim import (
    DEFAULT_USERNAME,
    FaultInjectionUnavailable,
    RemoteVcsim,
    Vcsim,
    is_project_launcher,
)

__all__ = [
    "DEFAULT_USERNAME",
    "FaultInjectionUnavailable",
    "LauncherUnavailable",
    "RemoteVcsim",
    "Vcsim",
    "VcsimError",
    "build_launcher",
    "cache_dir",
    "is_project_launcher",
    "make_private_dir",
    "write_private_file",
]
