"""What a backend hands the conformance suite: :class:`ConformanceBackend` and its views.

The suite drives the backend only through the public :class:`~virtdriver.common.base.VMOps`
API, and checks the result only through the backend's provider, which reads the server with a
client of its own (never through the library under test). The views are plain values so a
test can compare them.
"""

from __future__ import annotations

import abc
import contextlib
import dataclasses
from collections.abc import Iterator
from typing import Any

from virtdriver.common.base import VMOps
from virtdriver.common.model import ImageMeta
from virtdriver.common.power_state import PowerState
from virtdriver.common.progress import ProgressCallback

__all__ = ["ConformanceBackend", "DiskView", "Leftovers", "NicView", "VMView"]


@dataclasses.dataclass(frozen=True)
class DiskView:
    """One disk of a VM as the server holds it."""

    #: Virtual size in bytes.
    size_bytes: int


@dataclasses.dataclass(frozen=True)
class NicView:
    """One NIC of a VM as the server holds it."""

    #: MAC address, lower case with colons (``fa:16:3e:00:00:01``).
    mac: str
    #: The name of the network it is connected to, as a VIF's ``network`` names it.
    network: str


@dataclasses.dataclass(frozen=True)
class VMView:
    """The server's own view of one instance's VM."""

    power_state: PowerState
    vcpus: int
    memory_mb: int
    #: Disks in the server's device order (the root disk first).
    disks: tuple[DiskView, ...]
    nics: tuple[NicView, ...]
    #: The name of the host the VM runs on (a hostname a live migration can be sent to).
    host: str | None = None

    @property
    def macs(self) -> set[str]:
        """The MAC addresses of every NIC."""
        return {nic.mac for nic in self.nics}


@dataclasses.dataclass(frozen=True)
class Leftovers:
    """What the server holds that an operation could leave behind.

    Each field is a set of server-side identifiers (VM ids, disk or file paths, task ids);
    the suite compares two readings, so only their difference matters. An image cache is
    not part of it: the contract lets a failed spawn keep a cached image.
    """

    vms: frozenset[str] = frozenset()
    #: Disks, or the files on a datastore that hold them.
    disks: frozenset[str] = frozenset()
    #: Tasks still pending or kept on the server (finished ones a server forgets do not count).
    tasks: frozenset[str] = frozenset()
    #: Device attachments the server lists apart from its VMs (XAPI's VBDs and VIFs).
    devices: frozenset[str] = frozenset()

    def __sub__(self, before: Leftovers) -> Leftovers:
        return Leftovers(self.vms - before.vms, self.disks - before.disks,
                         self.tasks - before.tasks, self.devices - before.devices)

    def __bool__(self) -> bool:
        return bool(self.vms or self.disks or self.tasks or self.devices)


class ConformanceBackend(abc.ABC):
    """A backend as the conformance suite sees it; one subclass per backend under test.

    The ``conformance_backend`` fixture returns an instance. Everything it reads from the
    server, it reads with its own client, so a bug in the backend cannot hide itself.
    """

    #: Steps of spawn at which :meth:`inject_failure` can make the server fail. Empty when
    #: the server cannot inject faults (the failure test then skips and says so).
    failure_steps: tuple[str, ...] = ()

    @property
    @abc.abstractmethod
    def image(self) -> ImageMeta:
        """An image in :attr:`image_store` that the backend can spawn and rescue from."""

    @property
    @abc.abstractmethod
    def image_store(self) -> Any:
        """The image store the ops object reads images from and uploads snapshots to."""

    @property
    @abc.abstractmethod
    def network(self) -> str:
        """A network name a VIF can be plugged into (``VIF.network``)."""

    @abc.abstractmethod
    def make_ops(self, progress_callback: ProgressCallback | None = None) -> VMOps:
        """A new ops object on the server under test, built from its configuration."""

    @abc.abstractmethod
    def read_vm(self, instance: Any) -> VMView | None:
        """The server's view of the instance's VM, or None when the server has none."""

    @abc.abstractmethod
    def leftovers(self) -> Leftovers:
        """Every VM, disk (or datastore file) and task the server holds right now."""

    @contextlib.contextmanager
    def inject_failure(self, step: str) -> Iterator[str]:
        """Make the server fail the next call of spawn's ``step`` while the block runs.

        Yields the error code the server will answer with, so the test can find it in the
        raised error. Only the names in :attr:`failure_steps` are asked for.
        """
        raise NotImplementedError(f"{type(self).__name__} injects no failure at {step!r}")
        yield ""  # pragma: no cover - makes this a generator for contextmanager

    def make_volume(self) -> dict[str, Any]:
        """A new volume, made as the volume service makes it, with the provider's own
        client: its ``connection_info`` (Cinder's shape, of a type the backend attaches).
        Asked only when the backend attaches volumes; not implemented: those tests skip."""
        raise NotImplementedError(f"{type(self).__name__} makes no volume")

    def volume_attached(self, connection_info: dict[str, Any], instance: Any) -> bool:
        """Whether the instance's VM holds the volume, as the server says."""
        raise NotImplementedError(f"{type(self).__name__} reads no volume")

    def volume_exists(self, connection_info: dict[str, Any]) -> bool:
        """Whether the volume's own storage still holds it (never deleted by the backend)."""
        raise NotImplementedError(f"{type(self).__name__} reads no volume")

    def delete_volume(self, connection_info: dict[str, Any]) -> None:
        """Delete a volume :meth:`make_volume` made (the volume service's job)."""

    def live_migration_destination(self, instance: Any) -> str:
        """A host the instance can be live-migrated to (asked only when supported)."""
        raise NotImplementedError(f"{type(self).__name__} names no live-migration destination")

    def close(self) -> None:
        """Release the provider's own client (the suite calls it once, at the end)."""
