"""Live-migration data as Nova's versioned objects, and the conversion to the backends' dicts.

Nova's compute manager hands ``migrate_data`` between the destination and the source over
RPC as a ``LiveMigrateData`` object and sets its own fields on it (``is_volume_backed``,
``migration``, ``vifs``, ...). The backends speak plain dicts, so the adapter converts once
in each direction: :func:`to_object` wraps what a backend's destination check returns,
:func:`to_dict` gives a backend the fields it set (Nova's own fields ride along, ignored),
and :func:`merge` writes a backend's additions back onto Nova's object so nothing Nova set
is lost.

VMware uses Nova's own ``VMwareLiveMigrateData``. Xen has none in Nova since Victoria, so
:class:`VirtdriverXenLiveMigrateData` is ours, registered with Nova's object registry as
out-of-tree drivers register theirs: a compute service that imports this module can
deserialize it. Only what the hypervisors need travels: a server URL, host/SR/network
uuids. Never a credential or a session id: the source logs in to the destination pool with
its own configured credentials when it needs to (``host.migrate_receive``).
"""

from __future__ import annotations

from typing import Any

from nova.objects import base as obj_base
from nova.objects import fields
from nova.objects import migrate_data as nova_migrate_data


@obj_base.NovaObjectRegistry.register
class VirtdriverXenLiveMigrateData(nova_migrate_data.LiveMigrateData):
    """What a Xen live migration needs, from the destination pool's checks."""

    # Version 1.0: Initial version
    VERSION = "1.0"

    fields = {
        "block_migration": fields.BooleanField(default=False),
        #: the destination pool's XAPI URL (no credentials in it)
        "destination_url": fields.StringField(),
        "destination_host_uuid": fields.StringField(),
        #: where the disks go when the VM changes pool
        "destination_sr_uuid": fields.StringField(nullable=True),
        #: the management network a cross-pool migration streams over
        "destination_network_uuid": fields.StringField(nullable=True),
        #: destination network uuid for each VIF, by MAC (pre_live_migration)
        "vif_networks": fields.DictOfStringsField(),
    }


def _kind(backend: str) -> type[nova_migrate_data.LiveMigrateData]:
    return {"vmware": nova_migrate_data.VMwareLiveMigrateData,
            "xen": VirtdriverXenLiveMigrateData}[backend]


def to_object(backend: str, data: dict[str, Any]) -> nova_migrate_data.LiveMigrateData:
    """The backend's destination-check dict as Nova's LiveMigrateData for that backend.

    A key the object has no field for is a programming error (the backend and the object
    disagree), so it raises rather than being dropped silently.
    """
    kind = _kind(backend)
    unknown = sorted(set(data) - set(kind.fields))
    if unknown:
        raise ValueError(f"{kind.__name__} has no field(s) {unknown}")
    obj = kind()
    for name, value in data.items():
        if value is None and not kind.fields[name].nullable:
            value = ""  # e.g. VMware's datastore_regex when none is configured
        setattr(obj, name, value)
    return obj


def to_dict(data: Any) -> dict[str, Any]:
    """A LiveMigrateData (or a dict, or None) as the plain dict the backends take: the
    fields that are set."""
    if data is None:
        return {}
    if isinstance(data, dict):
        return dict(data)
    return {name: getattr(data, name) for name in data.fields if data.obj_attr_is_set(name)}


def merge(obj: Any, data: dict[str, Any] | None) -> Any:
    """Nova's object with the backend's returned values set on it (fields it has only)."""
    if obj is None or isinstance(obj, dict) or not data:
        return obj
    for name, value in data.items():
        if name in obj.fields and value is not None and (
                not obj.obj_attr_is_set(name) or getattr(obj, name) != value):
            setattr(obj, name, value)
    return obj
