"""XAPI objects and their rules, one module per class family; importing this package
declares every message handler (see ``context.api``)."""

from . import (  # noqa: F401
    event,
    generic,
    host,
    migrate,
    network,
    provision,
    session,
    sr,
    task,
    transfer,
    vbd,
    vdi,
    vm,
    vm_copy,
)
