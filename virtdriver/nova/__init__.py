"""virtdriver for OpenStack Nova: compute drivers over the virtdriver backends.

Install with ``pip install virtdriver[nova]`` and set in nova.conf::

    [DEFAULT]
    compute_driver = virtdriver.VMwareDriver      # or virtdriver.XenDriver

Nova imports ``compute_driver`` under ``nova.virt.``; the package ships the module
``nova.virt.virtdriver`` (``nova_shim/`` in the source tree) that re-exports these classes.
Only this package imports Nova; the rest of the library does not need it.
"""

from virtdriver.nova.backends import VMwareDriver, XenDriver

__all__ = ["VMwareDriver", "XenDriver"]
