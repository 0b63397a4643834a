"""The project's vCenter simulator: govmomi's vcsim plus fault/delay injection and stand-ins.

The Go sources of the launcher are in ``launcher/``; ``vcsim`` builds and runs it.
"""

from .vcsim import (
    DEFAULT_USERNAME,
    FaultInjectionUnavailable,
    RemoteVcsim,
    Vcsim,
    VcsimError,
    build_vcsim,
)

__all__ = [
    "DEFAULT_USERNAME",
    "FaultInjectionUnavailable",
    "RemoteVcsim",
    "Vcsim",
    "VcsimError",
    "build_vcsim",
]
