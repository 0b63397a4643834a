"""Per-class behaviour; importing this package registers every handler."""

from . import event, host, network, session, storage, task, vm, vm_copy  # noqa: F401
