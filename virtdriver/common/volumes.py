"""Cinder volumes as a compute service hands them over, parsed and checked once.

Nova passes a volume to a driver as ``connection_info``, the dict Cinder's
``initialize_connection`` (or ``attachment_update``) returned::

    {"driver_volume_type": "vmdk" | "iscsi" | "vstorageobject" | ...,
     "data": {...keys of that type...},
     "serial": "<volume id>",          # added by Nova if Cinder left it out
     "multiattach": False}             # only for multi-attach volumes

and the volumes of an instance inside ``block_device_info["block_device_mapping"]``, one
``DriverVolumeBlockDevice`` (a dict) each, with ``connection_info``, ``mount_device``,
``boot_index``, ``disk_bus``, ``device_type``, ``delete_on_termination``.

:func:`parse_connection_info` and :func:`parse_block_device_info` turn those into
:class:`ConnectionInfo` and :class:`BlockDevices`, refusing before any server call:

* a ``driver_volume_type`` the backend does not attach: :class:`UnsupportedOperation`
  naming the type (and the types it does attach);
* a multi-attach volume: :class:`UnsupportedOperation` (no backend shares a disk between
  VMs; ``supports_multiattach`` is False everywhere);
* a missing ``data`` key of the type (:data:`REQUIRED_DATA_KEYS`): :class:`InvalidInput`
  naming the key, e.g. ``connection_info.data.volume``;
* a malformed mapping field (``boot_index`` not an integer, two volumes on one
  ``mount_device``, two boot volumes): :class:`InvalidInput` naming the field.

Which types a backend attaches is plain data in its capabilities:
``supports_volume_type_<type>`` (see :func:`supported_volume_types`).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping
from typing import Any

from virtdriver.common.exceptions import InvalidInput, UnsupportedOperation
from virtdriver.common.model import field_of

#: The ``data`` keys each Cinder volume type must carry, as the attaching side reads them.
#: ``vmdk``: Cinder's VMDK driver (the shadow VM's moref value and the volume id);
#: ``iscsi``: Cinder's iSCSI targets (``target_lun`` is optional: the first LUN of the
#: target is used when it is absent); ``vstorageobject``: Cinder's First Class Disk driver.
REQUIRED_DATA_KEYS: dict[str, tuple[str, ...]] = {
    "vmdk": ("volume", "volume_id"),
    "iscsi": ("target_portal", "target_iqn"),
    "vstorageobject": ("id", "ds_ref_val"),
}

#: Capability-name prefix saying a backend attaches volumes of one type.
CAPABILITY_PREFIX = "supports_volume_type_"

#: ``data`` keys whose values are never printed (CHAP secrets, os-brick's vCenter config).
_SECRET_KEYS = ("password", "secret", "config", "auth_")

#: ``device_type`` values a volume can have; only disks are attached as volumes.
DEVICE_TYPES = frozenset({"disk", "cdrom", "floppy", "lun"})


def supported_volume_types(capabilities: Mapping[str, bool]) -> frozenset[str]:
    """The ``driver_volume_type`` values a backend's capabilities say it attaches."""
    return frozenset(name[len(CAPABILITY_PREFIX):] for name, value in capabilities.items()
                     if name.startswith(CAPABILITY_PREFIX) and value)


def _hidden(key: str) -> bool:
    return any(word in key.lower() for word in _SECRET_KEYS)


@dataclasses.dataclass(frozen=True)
class ConnectionInfo:
    """One volume's connection: its Cinder type, the type's data and the volume id.

    Build it with :func:`parse_connection_info`. ``volume_id`` is ``data['volume_id']``
    or else ``serial`` (Nova puts the volume id in both). ``repr`` hides secrets.
    """

    driver_volume_type: str
    data: Mapping[str, Any]
    serial: str | None = None
    multiattach: bool = False

    @property
    def volume_id(self) -> str | None:
        """The Cinder volume id, from ``data`` or ``serial``."""
        value = self.data.get("volume_id") or self.serial
        return str(value) if value else None

    def get(self, key: str, default: Any = None) -> Any:
        """One ``data`` value."""
        return self.data.get(key, default)

    def to_dict(self) -> dict[str, Any]:
        """Back to Cinder's dict shape (secrets included: for handing on, not for logs)."""
        out: dict[str, Any] = {"driver_volume_type": self.driver_volume_type,
                               "data": dict(self.data)}
        if self.serial is not None:
            out["serial"] = self.serial
        if self.multiattach:
            out["multiattach"] = True
        return out

    def __repr__(self) -> str:
        data = {k: ("<hidden>" if _hidden(k) else v) for k, v in self.data.items()}
        return (f"ConnectionInfo(driver_volume_type={self.driver_volume_type!r}, "
                f"data={data!r}, serial={self.serial!r})")


def parse_connection_info(value: Any, backend: str, supported: Iterable[str],
                          field: str = "connection_info") -> ConnectionInfo:
    """Check Cinder's ``connection_info`` for a backend that attaches ``supported`` types.

    Raises InvalidInput for a malformed shape or a missing ``data`` key (naming it), and
    UnsupportedOperation for a type the backend does not attach or a multi-attach volume.
    """
    if isinstance(value, ConnectionInfo):
        info = value
    else:
        if not isinstance(value, Mapping):
            raise InvalidInput(field, value, "must be a mapping with driver_volume_type "
                                             "and data")
        volume_type = value.get("driver_volume_type")
        if not isinstance(volume_type, str) or not volume_type:
            raise InvalidInput(f"{field}.driver_volume_type", volume_type,
                               "must be a non-empty string")
        data = value.get("data")
        if data is None:
            data = {}
        if not isinstance(data, Mapping):
            raise InvalidInput(f"{field}.data", type(data).__name__, "must be a mapping")
        serial = value.get("serial")
        info = ConnectionInfo(driver_volume_type=volume_type, data=dict(data),
                              serial=str(serial) if serial else None,
                              multiattach=bool(value.get("multiattach")))
    supported = frozenset(supported)
    if info.driver_volume_type not in supported:
        known = ", ".join(sorted(supported)) or "none"
        raise UnsupportedOperation(f"driver_volume_type {info.driver_volume_type!r}", backend,
                                   f"the volume types it attaches are: {known}")
    if info.multiattach:
        raise UnsupportedOperation("multiattach volumes", backend,
                                   "a volume is attached to one instance at a time")
    for key in REQUIRED_DATA_KEYS.get(info.driver_volume_type, ()):
        if info.data.get(key) in (None, ""):
            raise InvalidInput(f"{field}.data.{key}", info.data.get(key),
                               f"is required for {info.driver_volume_type} volumes")
    return info


@dataclasses.dataclass(frozen=True)
class VolumeMapping:
    """One volume of an instance (Nova's ``DriverVolumeBlockDevice``), checked.

    ``boot_index`` 0 marks the boot volume; None means not bootable (Nova's -1 too).
    ``disk_bus`` and ``device_type`` are as Nova gives them (None: the backend chooses);
    each backend checks the values it can honour.
    """

    connection_info: ConnectionInfo
    mount_device: str | None = None
    boot_index: int | None = None
    disk_bus: str | None = None
    device_type: str | None = None
    delete_on_termination: bool = False
    guest_format: str | None = None
    attachment_id: str | None = None

    @property
    def is_boot(self) -> bool:
        """True for the volume the instance boots from."""
        return self.boot_index == 0

    @property
    def volume_id(self) -> str | None:
        """The Cinder volume id."""
        return self.connection_info.volume_id


@dataclasses.dataclass(frozen=True)
class BlockDevices:
    """The volume part of ``block_device_info``, checked: what backends act on.

    Falsy when there is no volume, so ``if devices:`` reads naturally.
    """

    root_device_name: str | None = None
    volumes: tuple[VolumeMapping, ...] = ()

    def __bool__(self) -> bool:
        return bool(self.volumes)

    @property
    def boot_volume(self) -> VolumeMapping | None:
        """The volume the instance boots from: ``boot_index`` 0, else the one mounted on
        ``root_device_name``; None for an instance booted from an image."""
        for volume in self.volumes:
            if volume.is_boot:
                return volume
        if self.root_device_name:
            for volume in self.volumes:
                if volume.mount_device == self.root_device_name and volume.boot_index is None:
                    return volume
        return None

    @property
    def data_volumes(self) -> tuple[VolumeMapping, ...]:
        """Every volume but the boot volume, in the order given."""
        boot = self.boot_volume
        return tuple(v for v in self.volumes if v is not boot)


#: No volumes (what None or a mapping without volumes parses to).
NO_VOLUMES = BlockDevices()


def _optional_str(field: str, value: Any) -> str | None:
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        raise InvalidInput(field, value, "must be a string")
    return value


def _boot_index(field: str, value: Any) -> int | None:
    if value is None or value == "":
        return None
    if isinstance(value, bool):
        raise InvalidInput(field, value, "must be an integer")
    try:
        index = int(value)
    except (TypeError, ValueError):
        raise InvalidInput(field, value, "must be an integer") from None
    if index < -1:
        raise InvalidInput(field, value, "must be -1 or more")
    return None if index == -1 else index


def parse_volume_mapping(value: Any, backend: str, supported: Iterable[str],
                         field: str = "block_device_mapping[0]") -> VolumeMapping:
    """Check one block-device mapping (a dict or an object with the same attributes)."""
    if value is None:
        raise InvalidInput(field, value, "must be a block-device mapping")
    device_type = _optional_str(f"{field}.device_type", field_of(value, "device_type"))
    if device_type is not None and device_type not in DEVICE_TYPES:
        raise InvalidInput(f"{field}.device_type", device_type,
                           f"must be one of {', '.join(sorted(DEVICE_TYPES))}")
    return VolumeMapping(
        connection_info=parse_connection_info(field_of(value, "connection_info"), backend,
                                              supported, f"{field}.connection_info"),
        mount_device=_optional_str(f"{field}.mount_device", field_of(value, "mount_device")),
        boot_index=_boot_index(f"{field}.boot_index", field_of(value, "boot_index")),
        disk_bus=_optional_str(f"{field}.disk_bus", field_of(value, "disk_bus")),
        device_type=device_type,
        delete_on_termination=bool(field_of(value, "delete_on_termination", False)),
        guest_format=_optional_str(f"{field}.guest_format", field_of(value, "guest_format")),
        attachment_id=_optional_str(f"{field}.attachment_id",
                                    field_of(value, "attachment_id")))


def parse_block_device_info(value: Any, backend: str,
                            supported: Iterable[str]) -> BlockDevices:
    """Check the volumes of ``block_device_info`` (None, Nova's dict or our dataclass).

    Ephemerals and swap are left to the flavor, as both backends size them from it.
    Two volumes on one ``mount_device``, one volume twice, or two boot volumes are
    InvalidInput.
    """
    if value is None:
        return NO_VOLUMES
    if not isinstance(value, Mapping) and not hasattr(value, "block_device_mapping"):
        raise InvalidInput("block_device_info", type(value).__name__,
                           "must be a mapping with block_device_mapping")
    mappings = field_of(value, "block_device_mapping") or []
    if isinstance(mappings, (str, bytes, Mapping)) or not isinstance(mappings, Iterable):
        raise InvalidInput("block_device_info.block_device_mapping", type(mappings).__name__,
                           "must be a list of mappings")
    supported = frozenset(supported)
    volumes = tuple(parse_volume_mapping(m, backend, supported,
                                         f"block_device_mapping[{i}]")
                    for i, m in enumerate(mappings))
    _check_distinct(volumes)
    root = _optional_str("block_device_info.root_device_name",
                         field_of(value, "root_device_name"))
    return BlockDevices(root_device_name=root, volumes=volumes)


def _check_distinct(volumes: tuple[VolumeMapping, ...]) -> None:
    devices: set[str] = set()
    ids: set[str] = set()
    boots = 0
    for i, volume in enumerate(volumes):
        field = f"block_device_mapping[{i}]"
        if volume.mount_device is not None:
            if volume.mount_device in devices:
                raise InvalidInput(f"{field}.mount_device", volume.mount_device,
                                   "is used by two volumes")
            devices.add(volume.mount_device)
        if volume.volume_id is not None:
            if volume.volume_id in ids:
                raise InvalidInput(f"{field}.connection_info.serial", volume.volume_id,
                                   "is mapped twice")
            ids.add(volume.volume_id)
        boots += volume.is_boot
        if boots > 1:
            raise InvalidInput(f"{field}.boot_index", volume.boot_index,
                               "only one volume can be the boot volume")


def connector_ip(conf: Any, default: str | None) -> str | None:
    """The address storage should reach this compute service on.

    ``[DEFAULT] my_block_storage_ip`` when the configuration has it (Nova registers it;
    a compute service embedding virtdriver may too), else ``default``.
    """
    # oslo.config's NoSuchOptError is an AttributeError, so getattr's default covers a
    # configuration without the option
    return getattr(conf, "my_block_storage_ip", None) or default
