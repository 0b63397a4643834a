"""The one exception hierarchy every backend raises.

Callers catch these types, never pyvmomi or XenAPI faults. A server fault that caused an
error is kept as ``__cause__`` (raise ... from fault), and its code travels as data on
:class:`BackendError`.

::

    VirtDriverError
    ├── InvalidInput (also ValueError)          bad argument, caught before any server call
    ├── UnsupportedOperation (also NotImplementedError)
    ├── InstanceNotFound
    ├── InstanceExists
    ├── InstanceInvalidState
    │   └── InstanceNotInRescueMode
    ├── ImageNotFound
    ├── ImageError                              an image's data or metadata is unusable
    ├── MigrationError
    │   └── MigrationPreCheckError
    ├── VolumeError                             a volume could not be attached or detached
    │   └── VolumeNotFound                      the volume is not (or no longer) there
    ├── AgentError                              the guest agent refused or failed a request
    │   └── AgentTimeout
    └── BackendError                            the server said no (code and params kept)
        ├── ConnectionFailed                    the server could not be reached
        │   └── CertificateRejected             its TLS certificate is not trusted
        ├── AuthenticationFailed                wrong credentials
        ├── SessionExpired                      the session died and could not be renewed
        ├── TaskFailed                          an asynchronous server task ended in error
        └── TaskTimeout                         a server task outlived its deadline
"""

from __future__ import annotations

from typing import Any


class VirtDriverError(Exception):
    """Root of every error virtdriver raises."""


class InvalidInput(VirtDriverError, ValueError):
    """An argument is malformed; raised before anything reaches the server.

    ``field`` names the offending field (``flavor.memory_mb``), ``value`` holds what was
    given; both are also in the message.
    """

    def __init__(self, field: str, value: Any, reason: str) -> None:
        self.field = field
        self.value = value
        self.reason = reason
        super().__init__(f"invalid {field}={value!r}: {reason}")


class UnsupportedOperation(VirtDriverError, NotImplementedError):
    """The hypervisor behind a backend cannot perform this operation."""

    def __init__(self, operation: str, backend: str, reason: str = "") -> None:
        self.operation = operation
        self.backend = backend
        message = f"{operation} is not supported by the {backend} backend"
        super().__init__(f"{message}: {reason}" if reason else message)


class InstanceNotFound(VirtDriverError):
    """No VM on the server belongs to the instance."""

    def __init__(self, instance_id: str, detail: str = "") -> None:
        self.instance_id = instance_id
        message = f"instance {instance_id} could not be found"
        super().__init__(f"{message}: {detail}" if detail else message)


class InstanceExists(VirtDriverError):
    """A VM for the instance (or a name it needs) already exists on the server."""

    def __init__(self, name: str) -> None:
        self.name = name
        super().__init__(f"instance {name} already exists")


class InstanceInvalidState(VirtDriverError):
    """The VM is in a state that does not allow the operation."""

    def __init__(self, instance_id: str, operation: str, state: str) -> None:
        self.instance_id = instance_id
        self.operation = operation
        self.state = state
        super().__init__(f"cannot {operation} instance {instance_id} while it is {state}")


class InstanceNotInRescueMode(InstanceInvalidState):
    """Unrescue was asked of an instance that is not rescued."""

    def __init__(self, instance_id: str) -> None:
        super().__init__(instance_id, "unrescue", "not in rescue mode")


class ImageNotFound(VirtDriverError):
    """The image store holds no image with that id."""

    def __init__(self, image_id: str) -> None:
        self.image_id = image_id
        super().__init__(f"image {image_id} could not be found")


class ImageError(VirtDriverError):
    """An image's data or metadata cannot be used (wrong format, truncated, not active)."""


class MigrationError(VirtDriverError):
    """A resize or migration failed; what it changed has been rolled back."""


class MigrationPreCheckError(MigrationError):
    """A live-migration check refused the move before anything was changed."""


class VolumeError(VirtDriverError):
    """A volume could not be attached, detached, swapped or extended.

    The storage behind it is unreachable (no iSCSI adapter, target or LUN), the VM has no
    free slot, or the server refused the change; the VM is left as it was. ``volume_id``
    names the Cinder volume.
    """

    def __init__(self, volume_id: str | None, reason: str) -> None:
        self.volume_id = volume_id
        self.reason = reason
        super().__init__(f"volume {volume_id}: {reason}")


class VolumeNotFound(VolumeError):
    """The volume is not attached to the instance, or its storage is gone.

    On detach this means there is nothing left to detach: Nova's DiskNotFound, which the
    compute manager logs and moves past.
    """


class AgentError(VirtDriverError):
    """The guest agent refused or failed a request."""


class AgentTimeout(AgentError):
    """The guest agent did not answer in time."""


class BackendError(VirtDriverError):
    """The server refused a call.

    ``code`` is the server's fault name (``InvalidPowerState``, ``VM_BAD_POWER_STATE``) and
    ``params`` its parameters; the original fault is ``__cause__``.
    """

    def __init__(self, message: str, code: str | None = None,
                 params: tuple[str, ...] | list[str] = ()) -> None:
        self.code = code
        self.params = tuple(params)
        super().__init__(message)


class ConnectionFailed(BackendError):
    """The server could not be reached (after the configured retries)."""


class CertificateRejected(ConnectionFailed):
    """The server's TLS certificate is not trusted.

    Set ``ca_file`` to the CA that signed it (or, knowingly, ``insecure``).
    """


class AuthenticationFailed(BackendError):
    """The server refused the configured credentials."""


class SessionExpired(BackendError):
    """The session died and logging in again did not help."""


class TaskFailed(BackendError):
    """An asynchronous server task ended in error."""


class TaskTimeout(BackendError):
    """A server task did not finish before its deadline."""
