"""Per-class behaviour; importing this package registers every handler."""

from . import event, host, migrate, network, session, storage, task, vm, vm_copy  # noqa: F401
