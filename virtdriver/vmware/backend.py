"""VMwareBackend: what every VMware operation module needs, and no operation logic.

The conf, the vCenter session (opened on first use), the image store and datastore image
cache, the progress reporter, the call statistics, and the ways to find an instance's VM,
its datastores and the cluster's hosts and networks. The concern modules (spawn, power,
snapshot, ...) receive it as their first argument; it imports none of them.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from virtdriver.common import exceptions
from virtdriver.common.model import field_of
from virtdriver.common.progress import ProgressReporter
from virtdriver.common.stats import CallStats
from virtdriver.vmware import ds_util, vm_util
from virtdriver.vmware import vif as vif_util
from virtdriver.vmware.ds_util import Datastore, DatastorePath
from virtdriver.vmware.images import ImageCache
from virtdriver.vmware.session import VMwareSession

#: The properties :meth:`VMwareBackend.read_devices` reads: what disk operations look at.
DEVICE_PATHS = ["config.hardware.device", "config.files.vmPathName", "runtime.powerState",
                "config.guestId", "runtime.host", "config.extraConfig"]


class VMwareBackend:
    """One vCenter cluster (``[vmware] cluster_name``) as the operation modules see it.

    VMs are found by instance uuid (``instanceUuid``) and their references cached; a stale
    cached reference is looked up again.
    """

    def __init__(self, conf: Any, image_store: Any, progress: ProgressReporter,
                 stats: CallStats, session: VMwareSession | None = None) -> None:
        self.conf = conf
        self.image_store = image_store
        self.progress = progress
        self.stats = stats
        self._session = session
        self._inventory: vm_util.Inventory | None = None
        self._networks: dict[str, vif_util.NetworkRef] | None = None
        self._image_cache: ImageCache | None = None
        self._datastore_refs: dict[str, Any] | None = None
        self._host_names: dict[str, str | None] | None = None
        self.vm_refs = vm_util.VMRefCache()

    @property
    def session(self) -> VMwareSession:
        """The vCenter session, logged in on first use."""
        if self._session is None:
            self._session = VMwareSession.from_conf(self.conf, stats=self.stats)
        return self._session

    @property
    def inventory(self) -> vm_util.Inventory:
        """The cluster, datacenter and folder this backend uses (read once)."""
        if self._inventory is None:
            self._inventory = vm_util.load_inventory(self.session, self.conf.vmware.cluster_name)
        return self._inventory

    @property
    def image_cache(self) -> ImageCache:
        """The datastore image cache."""
        if self._image_cache is None:
            self._image_cache = ImageCache(self.session, self.image_store,
                                           ds_util.cache_folder_name(self.conf),
                                           self.conf.vmware.temp_folder)
        return self._image_cache

    def close(self) -> None:
        """Log out of vCenter, if a session was opened."""
        if self._session is not None:
            self._session.logout()

    # -- VMs ---------------------------------------------------------------------------------

    def vm(self, instance: Any) -> Any:
        """The reference of the instance's VM; InstanceNotFound when there is none."""
        uuid = field_of(instance, "uuid")
        ref = self.vm_refs.find(self.session, uuid)
        if ref is None:
            raise exceptions.InstanceNotFound(uuid, "no VM with this instanceUuid")
        return ref

    def read(self, instance: Any, paths: list[str]) -> tuple[Any, dict[str, Any]]:
        """The VM and the given properties; a stale cached reference is looked up again."""
        return self.vm_refs.call(self.session, instance,
                                 lambda ref: (ref, self.session.retrieve_one(ref, paths)))

    def read_devices(self, instance: Any) -> tuple[Any, list[Any], dict[str, Any]]:
        """The VM, its devices, and the properties of :data:`DEVICE_PATHS` (one call)."""
        vm, props = self.read(instance, DEVICE_PATHS)
        return vm, list(props.get("config.hardware.device") or []), props

    def power_state(self, instance: Any) -> tuple[Any, str]:
        """The VM and its ``runtime.powerState`` (``poweredOff`` when unset)."""
        vm, props = self.read(instance, ["runtime.powerState"])
        return vm, props.get("runtime.powerState", "poweredOff")

    # -- networks, datastores, hosts ----------------------------------------------------------

    def networks_for(self, vifs: Iterable[Any]) -> dict[str, vif_util.NetworkRef]:
        """The cluster's networks by name; InvalidInput if a VIF names one it lacks."""
        names = {vif.network for vif in vifs}
        if self._networks is None or not names <= set(self._networks):
            # read once; again only when a VIF names a network we have not seen
            self._networks = vif_util.find_networks(self.session, self.inventory.networks)
        missing = names - set(self._networks)
        if missing:
            raise exceptions.InvalidInput("vif.network", sorted(missing)[0],
                                          f"is not a network of cluster "
                                          f"{self.inventory.cluster_name}")
        return self._networks

    def datastore(self, ds_ref: Any, props: dict[str, Any] | None = None) -> Datastore:
        """A datastore of the cluster, from its reference (and its properties if read)."""
        props = props or self.session.retrieve_one(ds_ref, ds_util.DATASTORE_PATHS)
        inv = self.inventory
        return Datastore(ds_ref, props["summary.name"], props.get("summary.freeSpace", 0),
                         props.get("summary.capacity", 0), inv.dc_ref, inv.dc_name)

    def datastore_props(self) -> dict[Any, dict[str, Any]]:
        """Every datastore of the cluster with its :data:`ds_util.DATASTORE_PATHS`."""
        found = self.session.retrieve(self.inventory.datastores, ds_util.DATASTORE_PATHS)
        return {ref: found[ref._moId] for ref in self.inventory.datastores if ref._moId in found}

    def vm_datastore(self, vm_path: str) -> Datastore:
        """The datastore of a ``[ds] path``; names are read once and kept."""
        name = DatastorePath.parse(vm_path).datastore
        if self._datastore_refs is None or name not in self._datastore_refs:
            names = self.session.retrieve(self.inventory.datastores, ["summary.name"])
            self._datastore_refs = {names[ref._moId]["summary.name"]: ref
                                    for ref in self.inventory.datastores if ref._moId in names}
        if name not in self._datastore_refs:
            raise exceptions.BackendError(f"datastore {name} is not in cluster "
                                          f"{self.inventory.cluster_name}", code="NotFound")
        inv = self.inventory
        return Datastore(self._datastore_refs[name], name, 0, 0, inv.dc_ref, inv.dc_name)

    def host_named(self, name: str | None) -> Any:
        """The cluster's host called ``name``, or None (also for an empty name)."""
        if not name:
            return None
        # names are read once and kept; a name not among them is looked up again (a host
        # added or renamed since)
        if self._host_names is None or name not in self._host_names.values():
            names = self.session.retrieve(self.inventory.hosts, ["name"])
            self._host_names = {h._moId: names.get(h._moId, {}).get("name")
                                for h in self.inventory.hosts}
        return next((h for h in self.inventory.hosts
                     if self._host_names.get(h._moId) == name), None)
