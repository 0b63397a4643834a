"""Conversions at the boundary between Nova and virtdriver, each done once.

Nova hands the driver its versioned objects; most pass straight through to a backend
(``Instance`` and ``Flavor`` answer the same attribute names as our models). Two do not:

* ``nova.objects.ImageMeta``: an unset field raises instead of answering ``None``, and the
  properties carry Nova's current names (``hw_scsi_model``, ``os_distro``) where the backends
  read the legacy Glance names Nova translated (``vmware_adaptertype``, ``vmware_ostype``).
  :func:`image_meta` turns it into our :class:`~virtdriver.common.model.ImageMeta`.
* errors: :func:`translated` turns :mod:`virtdriver.common.exceptions` into the
  ``nova.exception`` types the compute manager catches.

And back the other way: our InstanceInfo, Diagnostics and ConsoleInfo become Nova's.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

from nova import exception as nova_exc
from nova import objects
from nova.console import type as ctype
from nova.virt import hardware

from virtdriver.common import exceptions as vd_exc
from virtdriver.common.model import ImageMeta, field_of

#: Nova's current property names -> the legacy names our backends read. Nova turns the
#: legacy names a Glance image may carry into these (``ImageMetaProps.from_dict``).
_LEGACY_NAMES = {
    "hw_disk_type": "vmware_disktype",
    "img_linked_clone": "vmware_linked_clone",
    "hw_vm_mode": "vm_mode",
    "img_use_agent": "xenapi_use_agent",
    "hw_auto_disk_config": "auto_disk_config",
    "hw_device_id": "xenapi_device_id",
}

#: Nova's SCSI models (``fields.SCSIModel``, lower case) -> vSphere's adapter types, as
#: Nova's own VMware driver maps them; other models have no vSphere adapter.
_VSPHERE_SCSI = {
    "lsilogic": "lsiLogic",
    "lsisas1068": "lsiLogicsas",
    "buslogic": "busLogic",
    "vmpvscsi": "paraVirtual",
}


def set_fields(obj: Any) -> dict[str, Any]:
    """The fields of a Nova object that are set, as a plain dict (unset ones skipped)."""
    if obj is None:
        return {}
    if isinstance(obj, dict):
        return dict(obj)
    return {name: getattr(obj, name) for name in getattr(obj, "fields", {})
            if obj.obj_attr_is_set(name)}


def image_properties(props: Any) -> dict[str, Any]:
    """Image properties under both Nova's names and the legacy names the backends read.

    Values are mapped too where Nova normalised them: ``hw_scsi_model=lsilogic`` (Nova
    lower-cases the legacy ``vmware_adaptertype=lsiLogic``) is vSphere's ``lsiLogic``.
    A legacy name already present wins.
    """
    out = set_fields(props)
    for current, legacy in _LEGACY_NAMES.items():
        if current in out:
            out.setdefault(legacy, out[current])
    bus = out.get("hw_disk_bus")
    if bus == "ide":
        out.setdefault("vmware_adaptertype", "ide")
    elif bus in (None, "scsi") and "hw_scsi_model" in out:
        adapter = _VSPHERE_SCSI.get(str(out["hw_scsi_model"]).lower())
        if adapter is not None:
            out.setdefault("vmware_adaptertype", adapter)
    elif bus == "scsi":
        out.setdefault("vmware_adaptertype", _VSPHERE_SCSI["lsilogic"])
    distro = out.get("os_distro")
    if isinstance(distro, str) and distro.endswith("Guest"):
        # a vSphere guest id that Nova moved from vmware_ostype
        out.setdefault("vmware_ostype", distro)
    return out


def image_meta(meta: Any, default_id: str | None = None) -> ImageMeta | None:
    """Our ImageMeta for Nova's ImageMeta object (or a Glance dict); None for no image.

    ``default_id`` fills a missing id (Nova passes an empty ImageMeta to rescue when the
    instance's own image is meant).
    """
    if meta is None or isinstance(meta, ImageMeta):
        return meta
    fields = set_fields(meta)
    image_id = fields.get("id") or default_id
    if not image_id:
        return None
    return ImageMeta(id=str(image_id), name=fields.get("name") or "",
                     disk_format=fields.get("disk_format") or "raw",
                     container_format=fields.get("container_format") or "bare",
                     size=int(fields.get("size") or 0),
                     status=fields.get("status") or "active",
                     checksum=fields.get("checksum") or "",
                     properties=image_properties(fields.get("properties")))


def image_meta_from_glance(record: dict[str, Any]) -> ImageMeta:
    """Our ImageMeta for a Glance image dict (what ``nova.image.glance.API.show`` returns)."""
    return ImageMeta(id=str(record["id"]), name=record.get("name") or "",
                     disk_format=record.get("disk_format") or "raw",
                     container_format=record.get("container_format") or "bare",
                     size=int(record.get("size") or 0), status=record.get("status") or "active",
                     checksum=record.get("checksum") or "",
                     properties=dict(record.get("properties") or {}))


# -- errors -----------------------------------------------------------------------------------

@contextlib.contextmanager
def translated(instance: Any = None) -> Iterator[None]:
    """Raise Nova's exception types for ours; UnsupportedOperation stays NotImplementedError.

    The original error is kept as ``__cause__``.
    """
    uuid = field_of(instance, "uuid") if instance is not None else None
    try:
        yield
    except vd_exc.UnsupportedOperation:
        raise  # already a NotImplementedError, which is what Nova expects
    except vd_exc.InstanceNotFound as error:
        raise nova_exc.InstanceNotFound(instance_id=uuid or error.instance_id) from error
    except vd_exc.InstanceExists as error:
        raise nova_exc.InstanceExists(name=error.name) from error
    except vd_exc.InstanceNotInRescueMode as error:
        raise nova_exc.InstanceNotRescuable(instance_id=error.instance_id,
                                            reason=str(error)) from error
    except vd_exc.InstanceInvalidState as error:
        raise nova_exc.InstanceInvalidState(attr="power_state", instance_uuid=uuid
                                            or error.instance_id, state=error.state,
                                            method=error.operation) from error
    except vd_exc.VolumeNotFound as error:
        raise nova_exc.DiskNotFound(location=error.volume_id or "?") from error
    except vd_exc.VolumeError as error:
        raise nova_exc.StorageError(reason=str(error)) from error
    except vd_exc.ImageNotFound as error:
        raise nova_exc.ImageNotFound(image_id=error.image_id) from error
    except vd_exc.ImageError as error:
        raise nova_exc.ImageUnacceptable(image_id="?", reason=str(error)) from error
    except vd_exc.InvalidInput as error:
        raise nova_exc.InvalidInput(reason=str(error)) from error
    except vd_exc.MigrationPreCheckError as error:
        raise nova_exc.MigrationPreCheckError(reason=str(error)) from error
    except vd_exc.MigrationError as error:
        raise nova_exc.MigrationError(reason=str(error)) from error
    except vd_exc.ConnectionFailed as error:
        raise nova_exc.HypervisorUnavailable(host=str(error)) from error
    except vd_exc.VirtDriverError as error:
        raise nova_exc.NovaException(message=f"{type(error).__name__}: {error}") from error


# -- facts back to Nova -------------------------------------------------------------------------

def instance_info(info: Any) -> hardware.InstanceInfo:
    """Nova's InstanceInfo (our PowerState uses Nova's numbering)."""
    return hardware.InstanceInfo(state=int(info.state),
                                 internal_id=getattr(info, "internal_id", None))


def diagnostics(ours: Any) -> Any:
    """Nova's Diagnostics object from ours (the fields share Nova's names)."""
    memory = getattr(ours, "memory_details", None)
    diag = objects.Diagnostics(
        state=ours.state, driver=ours.driver, hypervisor=ours.hypervisor,
        hypervisor_os=ours.hypervisor_os, uptime=ours.uptime,
        config_drive=bool(ours.config_drive),
        memory_details=objects.MemoryDiagnostics(maximum=getattr(memory, "maximum", None),
                                                 used=getattr(memory, "used", None)))
    for cpu in getattr(ours, "cpu_details", None) or []:
        diag.add_cpu(id=getattr(cpu, "id", None), time=getattr(cpu, "time", None),
                     utilisation=getattr(cpu, "utilisation", None))
    for nic in getattr(ours, "nic_details", None) or []:
        diag.add_nic(mac_address=getattr(nic, "mac_address", None),
                     rx_octets=getattr(nic, "rx_octets", None),
                     tx_octets=getattr(nic, "tx_octets", None))
    for disk in getattr(ours, "disk_details", None) or []:
        diag.add_disk(read_bytes=getattr(disk, "read_bytes", None),
                      write_bytes=getattr(disk, "write_bytes", None))
    return diag


def vnc_console(console: Any) -> ctype.ConsoleVNC:
    """Nova's ConsoleVNC from our ConsoleInfo."""
    return ctype.ConsoleVNC(host=console.host, port=console.port,
                            internal_access_path=getattr(console, "internal_access_path", None))


def mks_console(console: Any) -> ctype.ConsoleMKS:
    """Nova's ConsoleMKS from our ConsoleInfo; the ticket stays in the access path."""
    return ctype.ConsoleMKS(host=console.host, port=console.port,
                            internal_access_path=getattr(console, "internal_access_path", None))
