"""XenBackend: what every operation module of the Xen backend needs.

The configuration, the XAPI session (it logs in on first use), the image store, the
progress reporter, the call statistics, and the way to find an instance's VM (one lookup,
then a cache) and the SR for its disks. No operation logic lives here: the concern modules
(:mod:`~virtdriver.xen.spawn`, :mod:`~virtdriver.xen.power`...) take a ``XenBackend`` as
their first argument, and :class:`~virtdriver.xen.vmops.XenVMOps` holds one.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from virtdriver.common import exceptions as exc
from virtdriver.common.exceptions import UnsupportedOperation
from virtdriver.common.model import field_of
from virtdriver.common.progress import ProgressReporter
from virtdriver.common.stats import CallStats
from virtdriver.xen import disks, vm_utils
from virtdriver.xen import vif as vif_utils
from virtdriver.xen.session import XenAPISession, is_handle_invalid

BACKEND_NAME = "xen"


class XenBackend:
    """The shared state of one Xen backend: conf, session, image store, progress, stats,
    and the instance -> VM ref cache.

    ``session`` may be given (tests, sharing); its statistics are then the backend's.
    """

    def __init__(self, conf: Any, image_store: Any, progress: ProgressReporter,
                 stats: CallStats, session: XenAPISession | None = None) -> None:
        self.conf = conf
        self.xen = conf.xenserver
        self.image_store = image_store
        self.progress = progress
        if session is None:
            session = XenAPISession.from_conf(conf, stats=stats)
        self.session = session
        self.stats = session.stats
        self._vm_refs: dict[str, str] = {}
        self._kept_vbds: dict[str, dict[str, dict[str, Any]]] = {}
        self._sr_ref: str | None = None
        # looked up once, then kept: network refs by name, cached image VDIs by (SR, image);
        # a ref that went stale is looked up again by the step that used it
        self._networks: dict[str, str] = {}
        self._image_vdis: dict[tuple[str, str], tuple[str, int]] = {}
        self._hosts: dict[str, dict[str, Any]] | None = None
        #: facts about this pool read once for live migration (uuids of this host, SR and
        #: management network; of networks by ref): uuids never change
        self.uuids: dict[str, str] = {}
        self._management_networks: dict[str, str] = {}
        #: the SR of each instance disk made or looked up here: a VDI never changes SR
        self._vdi_srs: dict[str, str] = {}

    def close(self) -> None:
        """Log every XAPI session out."""
        self.session.close()

    @staticmethod
    def unsupported(operation: str, reason: str = "") -> UnsupportedOperation:
        """The error for an operation this backend cannot do (with this configuration)."""
        return UnsupportedOperation(operation, BACKEND_NAME, reason)

    # -- the SR for instance disks --------------------------------------------------------

    def sr_ref(self) -> str:
        """The SR for instance disks (chosen by sr_matching_filter once, then cached)."""
        if self._sr_ref is None:
            self._sr_ref = disks.find_sr(self.session, self.xen.sr_matching_filter)
        return self._sr_ref

    def forget_sr(self) -> None:
        """Choose the SR again next time (the cached one went away)."""
        self._sr_ref = None

    # -- networks and cached images -------------------------------------------------------

    def networks_for(self, vifs: list[Any]) -> dict[str, str]:
        """Network refs by name for every VIF's network (InvalidInput for a missing one);
        one call for names not seen before, none otherwise."""
        missing = [vif for vif in vifs if vif.network not in self._networks]
        if missing:
            self._networks.update(vif_utils.find_networks(self.session, missing))
        return {vif.network: self._networks[vif.network] for vif in vifs}

    def forget_networks(self) -> None:
        """Look the networks up again next time (a cached ref went stale)."""
        self._networks.clear()

    def cached_image(self, context: Any, sr_ref: str, image: Any) -> tuple[str, int]:
        """The cached base VDI of ``image`` on ``sr_ref`` and its size: found or imported
        once, then kept (no call)."""
        key = (sr_ref, str(field_of(image, "id")))
        if key not in self._image_vdis:
            self._image_vdis[key] = disks.cached_image(
                self.session, self.image_store, context, sr_ref, image,
                self.conf.image_cache_subdirectory_name)
        return self._image_vdis[key]

    def forget_image(self, sr_ref: str, image_id: str) -> None:
        """Look the cached image up again next time (its VDI went away)."""
        self._image_vdis.pop((sr_ref, image_id), None)

    def pool_hosts(self, refresh: bool = False) -> dict[str, dict[str, Any]]:
        """Every host of the pool with its record, read once (again when ``refresh``: a
        host the caller looks for is not among them)."""
        if self._hosts is None or refresh:
            self._hosts = dict(self.session.call("host.get_all_records"))
        return self._hosts

    #: instance disks whose SR is kept (the oldest forgotten first: refs of deleted disks
    #: are never reused, so an old entry is only memory)
    VDI_SRS_KEPT = 4096

    def sr_of(self, vdi_ref: str) -> str:
        """The SR ``vdi_ref`` is on: ``VDI.get_SR`` unless this backend made or read it."""
        if vdi_ref not in self._vdi_srs:
            self.note_sr_of(vdi_ref, str(self.session.call("VDI.get_SR", vdi_ref)))
        return self._vdi_srs[vdi_ref]

    def note_sr_of(self, vdi_ref: str, sr_ref: str) -> None:
        """Keep the SR of a disk this backend just made there."""
        self._vdi_srs[vdi_ref] = sr_ref
        while len(self._vdi_srs) > self.VDI_SRS_KEPT:
            del self._vdi_srs[next(iter(self._vdi_srs))]

    def management_network(self, host: str) -> str:
        """The network of ``host``'s management PIF (read once, then kept);
        MigrationPreCheckError when it has none."""
        if host not in self._management_networks:
            pifs = self.session.call("PIF.get_all_records_where",
                                     f'field "management" = "true" and field "host" = '
                                     f'{vm_utils.where_literal(host)}')
            if not pifs:
                raise exc.MigrationPreCheckError(f"host {host} has no management PIF")
            self._management_networks[host] = next(iter(pifs.values()))["network"]
        return self._management_networks[host]

    def uuid_of(self, xapi_class: str, ref: str) -> str:
        """The uuid of ``ref`` (``<class>.get_uuid`` once, then kept)."""
        if ref not in self.uuids:
            self.uuids[ref] = str(self.session.call(f"{xapi_class}.get_uuid", ref))
        return self.uuids[ref]

    # -- finding an instance's VM ---------------------------------------------------------

    @staticmethod
    def _key(instance: Any, name_label: str | None) -> str:
        return f"{field_of(instance, 'uuid')}/{name_label or field_of(instance, 'name')}"

    def cached_ref(self, instance: Any) -> str | None:
        """The cached VM ref of ``instance``, without a server call; None if not cached."""
        return self._vm_refs.get(self._key(instance, None))

    def lookup(self, instance: Any, name_label: str | None = None) -> str | None:
        """The VM ref of ``instance`` (or of its VM called ``name_label``): one call, then
        cached; None when there is no such VM."""
        key = self._key(instance, name_label)
        if key in self._vm_refs:
            return self._vm_refs[key]
        found = vm_utils.find_vm(self.session, name_label or field_of(instance, "name"),
                                 str(field_of(instance, "uuid")))
        if found is None:
            return None
        self._vm_refs[key] = found[0]
        return found[0]

    def forget_vm(self, instance: Any, name_label: str | None = None) -> None:
        """Drop the cached VM ref of ``instance`` (or of its VM called ``name_label``)."""
        key = self._key(instance, name_label)
        self._vm_refs.pop(key, None)
        self._kept_vbds.pop(key, None)

    def remember_vm(self, instance: Any, vm_ref: str, name_label: str | None = None,
                    vbds: dict[str, dict[str, Any]] | None = None) -> None:
        """Cache ``vm_ref`` as the VM of ``instance`` (or its VM called ``name_label``);
        ``vbds``: its VBD records, for a VM this backend halted and leaves untouched (a
        resize's ``-orig``), so deleting it later reads nothing."""
        key = self._key(instance, name_label)
        self._vm_refs[key] = vm_ref
        if vbds is not None:
            self._kept_vbds[key] = vbds

    def kept_vm(self, instance: Any, name_label: str) -> tuple[str, Any] | None:
        """The cached ref of the VM of ``instance`` called ``name_label`` and the VBD records
        remembered with it (None if none were), without a server call; None if not cached."""
        key = self._key(instance, name_label)
        if key not in self._vm_refs:
            return None
        return self._vm_refs[key], self._kept_vbds.get(key)

    def vm_ref_of(self, instance: Any) -> str:
        """The VM ref of ``instance``; InstanceNotFound when it has none. (The face checked
        the instance's identity before calling.)"""
        ref = self.lookup(instance)
        if ref is None:
            raise exc.InstanceNotFound(str(field_of(instance, "uuid")))
        return ref

    def on_vm(self, instance: Any, action: Callable[[str], Any]) -> Any:
        """Run ``action(vm_ref)``; a VM that vanished since it was cached is InstanceNotFound
        after one fresh lookup."""
        ref = self.vm_ref_of(instance)
        try:
            return action(ref)
        except exc.BackendError as error:
            if not (is_handle_invalid(error, "VM") and ref in error.params):
                raise
        self.forget_vm(instance)
        ref = self.vm_ref_of(instance)
        try:
            return action(ref)
        except exc.BackendError as error:
            if is_handle_invalid(error, "VM") and ref in error.params:
                self.forget_vm(instance)
                raise exc.InstanceNotFound(str(field_of(instance, "uuid"))) from error
            raise

    def vm_power_state(self, vm_ref: str) -> str:
        """The VM's XAPI power state, lower case (``halted``, ``running``...)."""
        return str(self.session.call("VM.get_power_state", vm_ref)).lower()


__all__ = ["XenBackend"]
