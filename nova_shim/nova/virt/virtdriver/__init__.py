"""``nova.virt.virtdriver``: where Nova finds virtdriver's compute drivers.

Nova loads ``compute_driver`` only from under ``nova.virt.``, so ``virtdriver[nova]``
installs this one module into Nova's package; nova.conf then says
``compute_driver = virtdriver.VMwareDriver`` or ``compute_driver = virtdriver.XenDriver``.
It only re-exports the drivers from :mod:`virtdriver.nova`.
"""

from virtdriver.nova import VMwareDriver, XenDriver

__all__ = ["VMwareDriver", "XenDriver"]
