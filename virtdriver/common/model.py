"""The objects a compute service hands to a backend, and the facts a backend hands back.

Each model validates itself once, in its constructor: a malformed field raises
:class:`~virtdriver.common.exceptions.InvalidInput` naming the field and the value, before any
backend call. Backends also accept Nova's own objects with the same attributes (duck typing);
for those, :func:`validate_instance`, :func:`validate_image` and :func:`validate_vifs` apply
the same rules by attribute.
"""

from __future__ import annotations

import dataclasses
import datetime
from collections.abc import Iterable, Mapping
from typing import Any

from virtdriver.common.exceptions import InvalidInput
from virtdriver.common.power_state import PowerState
from virtdriver.common.validation import (
    require_mac,
    require_mapping,
    require_metadata,
    require_name,
    require_non_negative_int,
    require_positive_int,
    require_text,
    require_uuid,
)

DISK_FORMATS = frozenset(
    {"vmdk", "vhd", "vhdx", "raw", "qcow2", "iso", "ami", "ari", "aki", "vdi", "ploop"})
CONTAINER_FORMATS = frozenset({"bare", "ovf", "ova", "ami", "ari", "aki", "docker"})


def field_of(obj: Any, name: str, default: Any = None) -> Any:
    """Read ``name`` from a mapping or an object, so dicts and Nova objects both work."""
    if isinstance(obj, Mapping):
        return obj.get(name, default)
    return getattr(obj, name, default)


# -- what the caller gives ------------------------------------------------------------------

@dataclasses.dataclass
class Flavor:
    """An instance's size: CPU, memory (MiB), root and ephemeral disk (GiB), swap (MiB).

    ``extra_specs`` carries tuning keys such as ``quota:cpu_limit`` or ``hw:cpu_cores``;
    :class:`ExtraSpecs` reads them.
    """

    vcpus: int
    memory_mb: int
    root_gb: int
    ephemeral_gb: int = 0
    swap: int = 0
    name: str = ""
    flavorid: str = ""
    extra_specs: dict[str, str] = dataclasses.field(default_factory=dict)

    def __post_init__(self) -> None:
        validate_flavor(self)
        self.extra_specs = require_mapping("flavor.extra_specs", self.extra_specs)


@dataclasses.dataclass
class ImageMeta:
    """An image as the image store describes it.

    ``properties`` holds hypervisor hints (``vmware_adaptertype``, ``hw_vif_model``,
    ``vm_mode``, ``os_type``...). Ask :meth:`is_iso` rather than comparing strings.
    """

    id: str
    name: str = ""
    disk_format: str = "raw"
    container_format: str = "bare"
    size: int = 0
    status: str = "active"
    checksum: str = ""
    properties: dict[str, Any] = dataclasses.field(default_factory=dict)

    def __post_init__(self) -> None:
        validate_image(self)
        self.id = require_uuid("image.id", self.id)
        self.properties = require_mapping("image.properties", self.properties)

    @classmethod
    def from_dict(cls, record: Mapping[str, Any]) -> ImageMeta:
        """An image from an image service's record, checked (InvalidInput) like any other.

        A top-level key that is not a field of ImageMeta (``min_disk``, ``visibility``,
        ``hw_disk_bus``...) is kept as a property, as Glance's v2 API holds custom
        properties beside the core fields; a value under ``properties`` wins over one of
        the same name at the top.
        """
        if not isinstance(record, Mapping):
            raise InvalidInput("image", type(record).__name__, "must be a mapping")
        known = {name: value for name, value in record.items() if name in _IMAGE_FIELDS}
        extra = {str(name): value for name, value in record.items()
                 if name not in _IMAGE_FIELDS}
        if extra:
            properties = require_mapping("image.properties", known.get("properties"))
            known["properties"] = {**extra, **properties}
        return cls(**known)

    def is_iso(self) -> bool:
        """True when the image boots as a CD-ROM rather than a disk."""
        return self.disk_format == "iso"

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready copy, as the local image store writes it."""
        return dataclasses.asdict(self)


_IMAGE_FIELDS = frozenset(field.name for field in dataclasses.fields(ImageMeta))


@dataclasses.dataclass
class VIF:
    """One network interface: its port id, MAC and the network it plugs into.

    ``network`` is the network's name on the hypervisor (a portgroup or a XAPI network's
    name label); ``network_id`` optionally pins it by server id; ``type`` is ``bridge``,
    ``dvs`` or ``ovs`` as Neutron says.
    """

    id: str
    address: str
    network: str
    network_id: str = ""
    type: str = "bridge"
    fixed_ips: list[str] = dataclasses.field(default_factory=list)
    mtu: int | None = None
    details: dict[str, Any] = dataclasses.field(default_factory=dict)

    def __post_init__(self) -> None:
        self.id = require_uuid("vif.id", self.id)
        self.address = require_mac("vif.address", self.address)
        require_name("vif.network", self.network)
        if self.mtu is not None:
            require_positive_int("vif.mtu", self.mtu)
        self.fixed_ips = list(self.fixed_ips or [])
        self.details = require_mapping("vif.details", self.details)

    @classmethod
    def from_nova(cls, vif: Any) -> VIF:
        """Convert a Nova ``network_info`` entry (a dict-like VIF model) into a VIF."""
        if isinstance(vif, VIF):
            return vif
        network = field_of(vif, "network") or {}
        if isinstance(network, str):
            name, network_id, subnets, mtu = network, "", [], None
        else:
            name = field_of(network, "bridge") or field_of(network, "label") or ""
            network_id = field_of(network, "id") or ""
            subnets = field_of(network, "subnets") or []
            mtu = field_of(field_of(network, "meta") or {}, "mtu")
        ips = [field_of(ip, "address") for subnet in subnets
               for ip in (field_of(subnet, "ips") or [])]
        return cls(id=field_of(vif, "id"), address=field_of(vif, "address"), network=name,
                   network_id=network_id, type=field_of(vif, "type") or "bridge",
                   fixed_ips=[ip for ip in ips if ip], mtu=mtu,
                   details=dict(field_of(vif, "details") or {}))


@dataclasses.dataclass
class BlockDeviceInfo:
    """Nova's block_device_info: root device name, ephemerals, swap and volume mappings."""

    root_device_name: str | None = None
    ephemerals: list[dict[str, Any]] = dataclasses.field(default_factory=list)
    swap: dict[str, Any] | None = None
    block_device_mapping: list[dict[str, Any]] = dataclasses.field(default_factory=list)


@dataclasses.dataclass
class Instance:
    """The instance a compute service asks a backend to act on.

    ``uuid`` identifies it on every backend (the VM's instanceUuid on VMware,
    ``other_config['nova_uuid']`` on Xen); ``name`` is its hypervisor-side name.
    ``progress`` is updated by long operations.
    """

    uuid: str
    name: str
    flavor: Flavor
    image_ref: str = ""
    metadata: dict[str, str] = dataclasses.field(default_factory=dict)
    config_drive: bool = False
    project_id: str = ""
    user_id: str = ""
    hostname: str = ""
    key_data: str | None = None
    os_type: str | None = None
    task_state: str | None = None
    vm_state: str = "building"
    progress: int = 0
    host: str | None = None
    node: str | None = None
    updated_at: Any = None
    system_metadata: dict[str, str] = dataclasses.field(default_factory=dict)

    def __post_init__(self) -> None:
        validate_instance(self)
        self.uuid = require_uuid("instance.uuid", self.uuid)
        self.metadata = require_metadata("instance.metadata", self.metadata)
        self.system_metadata = require_mapping("instance.system_metadata",
                                                self.system_metadata)
        if not self.hostname:
            self.hostname = self.name

    def save(self) -> None:
        """Nova objects persist here; ours live in memory, so saving is a no-op."""

    def __getitem__(self, key: str) -> Any:
        """A field by name, as Nova's objects allow.

        oslo.log formats ``[instance: %(uuid)s]`` from the ``instance=`` of a log call by
        indexing; without this it would print the whole repr instead.
        """
        if key not in self.__dataclass_fields__:
            raise KeyError(key)
        return getattr(self, key)


# -- validation by attribute, for our models and for Nova's objects ---------------------------

def validate_flavor(flavor: Any) -> None:
    """Check a flavor's sizes; raise InvalidInput naming the first bad field."""
    if flavor is None:
        raise InvalidInput("instance.flavor", flavor, "is required")
    require_positive_int("flavor.vcpus", field_of(flavor, "vcpus"))
    memory_mb = field_of(flavor, "memory_mb")
    require_positive_int("flavor.memory_mb", memory_mb)
    require_non_negative_int("flavor.root_gb", field_of(flavor, "root_gb", 0))
    require_non_negative_int("flavor.ephemeral_gb", field_of(flavor, "ephemeral_gb", 0) or 0)
    require_non_negative_int("flavor.swap", field_of(flavor, "swap", 0) or 0)


def validate_instance_identity(instance: Any) -> None:
    """Check what finding an instance's VM needs: its uuid and name (not its flavor)."""
    require_uuid("instance.uuid", field_of(instance, "uuid"))
    require_name("instance.name", field_of(instance, "name"))


def validate_instance(instance: Any) -> None:
    """Check an instance (ours or Nova's): uuid, name, flavor, and the text a backend writes
    to the server (hostname, project id, metadata keys: no control characters)."""
    validate_instance_identity(instance)
    validate_flavor(field_of(instance, "flavor"))
    for name in ("hostname", "project_id"):
        value = field_of(instance, name)
        if value:  # unset is fine: the name stands in for the hostname
            require_text(f"instance.{name}", value)
    require_metadata("instance.metadata", field_of(instance, "metadata"))


def stuck_rebooting(instances: Iterable[Any], timeout: float,
                    now: datetime.datetime | None = None) -> list[Any]:
    """The instances in a reboot task state not updated for ``timeout`` seconds.

    Anything else (another task state, a recent update, an entry that is no instance or
    has no valid uuid and name) is left out, so callers may pass whatever their database
    query returned.
    """
    now = now or datetime.datetime.now(datetime.timezone.utc)
    stuck = []
    for instance in instances:
        if not str(field_of(instance, "task_state") or "").startswith("reboot"):
            continue
        try:
            validate_instance_identity(instance)
        except InvalidInput:
            continue
        updated = field_of(instance, "updated_at")
        if isinstance(updated, datetime.datetime):
            if updated.tzinfo is None:
                updated = updated.replace(tzinfo=datetime.timezone.utc)
            if (now - updated).total_seconds() < timeout:
                continue
        stuck.append(instance)
    return stuck


def validate_image(image: Any) -> None:
    """Check an image's id and formats."""
    require_uuid("image.id", field_of(image, "id"))
    disk_format = field_of(image, "disk_format")
    if disk_format not in DISK_FORMATS:
        raise InvalidInput("image.disk_format", disk_format,
                           f"must be one of {', '.join(sorted(DISK_FORMATS))}")
    container_format = field_of(image, "container_format") or "bare"
    if container_format not in CONTAINER_FORMATS:
        raise InvalidInput("image.container_format", container_format,
                           f"must be one of {', '.join(sorted(CONTAINER_FORMATS))}")
    require_non_negative_int("image.size", field_of(image, "size", 0) or 0)


def validate_vifs(network_info: Iterable[Any] | None) -> list[VIF]:
    """Convert and check every VIF of ``network_info``; duplicate MACs or ports are refused."""
    vifs = [VIF.from_nova(vif) for vif in (network_info or [])]
    seen_macs: set[str] = set()
    seen_ids: set[str] = set()
    for vif in vifs:
        if vif.address in seen_macs:
            raise InvalidInput("vif.address", vif.address, "is used by two VIFs")
        if vif.id in seen_ids:
            raise InvalidInput("vif.id", vif.id, "is used by two VIFs")
        seen_macs.add(vif.address)
        seen_ids.add(vif.id)
    return vifs


def image_property(image: Any, key: str, default: Any = None) -> Any:
    """One image property, whether ``properties`` is a dict or Nova's ImageMetaProps."""
    properties = field_of(image, "properties") or {}
    value = field_of(properties, key, default)
    return default if value is None else value


# -- flavor tuning --------------------------------------------------------------------------

SHARES_LEVELS = ("low", "normal", "high", "custom")


@dataclasses.dataclass(frozen=True)
class ResourceAllocation:
    """Limit, reservation and shares of one resource (CPU in MHz, memory in MiB, IOPS...)."""

    limit: int | None = None
    reservation: int | None = None
    shares_level: str | None = None
    shares_share: int | None = None

    def is_set(self) -> bool:
        """True when any of the four values was given."""
        return any(v is not None for v in dataclasses.astuple(self))


@dataclasses.dataclass(frozen=True)
class ExtraSpecs:
    """The flavor extra specs a backend acts on, parsed and checked once.

    ``quota:<resource>_{limit,reservation,shares_level,shares_share}`` for cpu, memory,
    disk_io and vif; ``hw:cpu_cores``/``hw:cpu_sockets`` for topology;
    ``quota:vcpu_weight``/``quota:vcpu_cap`` for Xen's credit scheduler.
    """

    cpu: ResourceAllocation = ResourceAllocation()
    memory: ResourceAllocation = ResourceAllocation()
    disk_io: ResourceAllocation = ResourceAllocation()
    vif: ResourceAllocation = ResourceAllocation()
    cores_per_socket: int | None = None
    vcpu_weight: int | None = None
    vcpu_cap: int | None = None

    @classmethod
    def from_flavor(cls, flavor: Any) -> ExtraSpecs:
        """Parse ``flavor.extra_specs``; a malformed value is InvalidInput."""
        specs = require_mapping("flavor.extra_specs", field_of(flavor, "extra_specs"))
        parsed = {name: _allocation(specs, name) for name in ("cpu", "memory", "disk_io", "vif")}
        cores = _int_spec(specs, "hw:cpu_cores")
        sockets = _int_spec(specs, "hw:cpu_sockets")
        vcpus = field_of(flavor, "vcpus")
        if cores is None and sockets:
            cores = max(1, vcpus // sockets)
        if cores is not None and vcpus % cores:
            raise InvalidInput("flavor.extra_specs['hw:cpu_cores']", cores,
                               f"must divide the flavor's {vcpus} vcpus")
        return cls(cores_per_socket=cores, vcpu_weight=_int_spec(specs, "quota:vcpu_weight"),
                   vcpu_cap=_int_spec(specs, "quota:vcpu_cap"), **parsed)


def _int_spec(specs: Mapping[str, Any], key: str) -> int | None:
    if key not in specs:
        return None
    try:
        value = int(specs[key])
    except (TypeError, ValueError):
        raise InvalidInput(f"flavor.extra_specs[{key!r}]", specs[key],
                           "must be an integer") from None
    if value < 0:
        raise InvalidInput(f"flavor.extra_specs[{key!r}]", specs[key], "must not be negative")
    return value


def _allocation(specs: Mapping[str, Any], resource: str) -> ResourceAllocation:
    level_key = f"quota:{resource}_shares_level"
    level = specs.get(level_key)
    if level is not None and level not in SHARES_LEVELS:
        raise InvalidInput(f"flavor.extra_specs[{level_key!r}]", level,
                           f"must be one of {', '.join(SHARES_LEVELS)}")
    share = _int_spec(specs, f"quota:{resource}_shares_share")
    if level == "custom" and share is None:
        raise InvalidInput(f"flavor.extra_specs['quota:{resource}_shares_share']", None,
                           "is required when the shares level is custom")
    return ResourceAllocation(limit=_int_spec(specs, f"quota:{resource}_limit"),
                              reservation=_int_spec(specs, f"quota:{resource}_reservation"),
                              shares_level=level, shares_share=share)


@dataclasses.dataclass
class VMConfigInfo:
    """What one VM needs to be created and configured, gathered and validated once.

    Both backends build their VM from it: ``storage`` is the datastore (VMware) or SR
    (Xen) chosen for the disks, ``extra_specs`` the parsed flavor tuning, ``metadata`` the
    text that identifies the instance on the server. Nova calls the VMware flavour of this
    ``VirtualMachineInstanceConfigInfo``.
    """

    instance: Any
    image: Any
    storage: Any
    extra_specs: ExtraSpecs
    vifs: list[VIF]
    metadata: str
    root_gb: int
    ephemeral_gb: int
    swap_mb: int
    storage_info: Any = None

    @classmethod
    def build(cls, instance: Any, image: Any, network_info: Iterable[Any] | None,
              storage: Any = None, storage_info: Any = None) -> VMConfigInfo:
        """Validate every input and collect it; raises InvalidInput on the first bad field."""
        validate_instance(instance)
        if image is not None:
            validate_image(image)
        flavor = field_of(instance, "flavor")
        return cls(instance=instance, image=image, storage=storage,
                   extra_specs=ExtraSpecs.from_flavor(flavor),
                   vifs=validate_vifs(network_info),
                   metadata=instance_metadata_text(instance),
                   root_gb=field_of(flavor, "root_gb", 0) or 0,
                   ephemeral_gb=field_of(flavor, "ephemeral_gb", 0) or 0,
                   swap_mb=field_of(flavor, "swap", 0) or 0,
                   storage_info=storage_info)


def instance_metadata_text(instance: Any) -> str:
    """The annotation that tells an operator which instance a VM belongs to."""
    flavor = field_of(instance, "flavor")
    return (f"name:{field_of(instance, 'name')}\n"
            f"uuid:{field_of(instance, 'uuid')}\n"
            f"flavor:vcpus={field_of(flavor, 'vcpus')},memory_mb={field_of(flavor, 'memory_mb')},"
            f"root_gb={field_of(flavor, 'root_gb', 0)}\n"
            f"project_id:{field_of(instance, 'project_id', '') or ''}")


def instance_name_from_metadata(text: str | None) -> str | None:
    """The instance name that :func:`instance_metadata_text` wrote, or None."""
    for line in (text or "").splitlines():
        key, sep, value = line.partition(":")
        if sep and key == "name" and value:
            return value
    return None


# -- what a backend gives back ----------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class InstanceInfo:
    """The power state of one instance (Nova's ``hardware.InstanceInfo``)."""

    state: PowerState
    internal_id: str | None = None


@dataclasses.dataclass
class CpuDiagnostics:
    """One virtual CPU: cumulative time (ns) and utilisation (percent)."""

    id: int
    time: int | None = None
    utilisation: float | None = None


@dataclasses.dataclass
class NicDiagnostics:
    """One NIC's counters."""

    mac_address: str
    rx_octets: int | None = None
    rx_errors: int | None = None
    rx_drop: int | None = None
    rx_packets: int | None = None
    rx_rate: float | None = None
    tx_octets: int | None = None
    tx_errors: int | None = None
    tx_drop: int | None = None
    tx_packets: int | None = None
    tx_rate: float | None = None


@dataclasses.dataclass
class DiskDiagnostics:
    """One disk's counters."""

    read_bytes: int | None = None
    read_requests: int | None = None
    write_bytes: int | None = None
    write_requests: int | None = None
    errors_count: int | None = None


@dataclasses.dataclass
class MemoryDiagnostics:
    """Memory in MiB: the VM's maximum and what the guest uses."""

    maximum: int | None = None
    used: int | None = None


@dataclasses.dataclass
class Diagnostics:
    """Nova's common diagnostics shape, the same whichever backend answers."""

    state: str
    driver: str
    hypervisor: str | None = None
    hypervisor_os: str | None = None
    uptime: int | None = None
    config_drive: bool = False
    num_cpus: int = 0
    num_nics: int = 0
    num_disks: int = 0
    cpu_details: list[CpuDiagnostics] = dataclasses.field(default_factory=list)
    nic_details: list[NicDiagnostics] = dataclasses.field(default_factory=list)
    disk_details: list[DiskDiagnostics] = dataclasses.field(default_factory=list)
    memory_details: MemoryDiagnostics = dataclasses.field(default_factory=MemoryDiagnostics)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready copy."""
        return dataclasses.asdict(self)


@dataclasses.dataclass(frozen=True)
class ConsoleInfo:
    """Where a console can be reached: host, port and an optional path or ticket."""

    host: str
    port: int
    internal_access_path: str | None = None
    type: str = "vnc"

    def __repr__(self) -> str:
        # A console path may carry a session id or ticket; never print it.
        hidden = "<hidden>" if self.internal_access_path else None
        return (f"ConsoleInfo(host={self.host!r}, port={self.port!r}, "
                f"internal_access_path={hidden!r}, type={self.type!r})")
