"""Backends by name, found through the ``virtdriver.backends`` entry-point group.

The built-in backends (``vmware``, ``xen``) are declared in pyproject.toml; another
package adds its own by declaring an entry point in the same group. Modules are imported
only when their backend is loaded.
"""

from __future__ import annotations

from importlib import metadata
from typing import Any

from virtdriver.common.base import VMOps
from virtdriver.common.exceptions import InvalidInput
from virtdriver.common.progress import ProgressCallback

ENTRY_POINT_GROUP = "virtdriver.backends"


def available_backends() -> list[str]:
    """Names of every installed backend, sorted."""
    return sorted({ep.name for ep in metadata.entry_points(group=ENTRY_POINT_GROUP)})


def load_backend(name: str, conf: Any, image_store: Any = None,
                 progress_callback: ProgressCallback | None = None) -> VMOps:
    """Build the backend called ``name`` with ``conf``; an unknown name is InvalidInput.

    ``progress_callback(instance, percent, step)`` hears every step of a long operation.
    """
    matches = [ep for ep in metadata.entry_points(group=ENTRY_POINT_GROUP) if ep.name == name]
    if not matches:
        installed = ", ".join(available_backends()) or "none"
        raise InvalidInput("backend", name, f"is not installed (installed: {installed})")
    try:
        backend_class = matches[0].load()
    except ImportError as error:
        raise InvalidInput("backend", name, f"could not be imported: {error}") from error
    if not (isinstance(backend_class, type) and issubclass(backend_class, VMOps)):
        raise InvalidInput("backend", name,
                           f"entry point {matches[0].value} is not a VMOps subclass")
    return backend_class(conf, image_store=image_store, progress_callback=progress_callback)
