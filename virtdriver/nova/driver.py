"""VirtDriver: a Nova ``ComputeDriver`` as a thin adapter over one virtdriver backend.

Each ComputeDriver method a backend can do maps onto the backend's VMOps operation with
Nova's arguments passed through (Instance, flavor, network_info are duck-typed by the
backends) or converted once (:mod:`virtdriver.nova.convert`); our errors become Nova's.
What the hypervisor cannot do stays NotImplementedError, which Nova's compute manager
expects and handles (soft_delete falls back to power_off, for instance).

The backend is built on first use, not in ``__init__``: Nova builds its driver before it
configures logging and before ``init_host``, and a driver must not talk to the server then.
Host facts (:meth:`get_available_resource`, :meth:`update_provider_tree`) come from the
backend-specific ``resources`` module, lifecycle events from its ``events`` module
(:class:`virtdriver.common.event_pump.EventPump`).
"""

from __future__ import annotations

import base64
import ipaddress
import threading
from typing import Any

import os_resource_classes as orc
from nova import conf as nova_conf
from nova import exception as nova_exc
from nova.virt import configdrive, driver
from nova.virt import node as nova_node
from oslo_log import log as logging

import virtdriver
from virtdriver.common import exceptions as vd_exc
from virtdriver.common.event_pump import EventPump
from virtdriver.common.model import field_of
from virtdriver.common.power_state import PowerState
from virtdriver.nova import config, convert
from virtdriver.nova import migrate_data as live_data
from virtdriver.nova.convert import translated
from virtdriver.nova.events import lifecycle_emitter
from virtdriver.nova.images import GlanceImageStore

LOG = logging.getLogger(__name__)
CONF = nova_conf.CONF


def nova_capabilities(backend_capabilities: dict[str, bool]) -> dict[str, bool]:
    """Nova's capability keys, each true only where the backend says so."""
    return {key: bool(backend_capabilities.get(key, False))
            for key in driver.ComputeDriver.capabilities}


class VirtDriver(driver.ComputeDriver):
    """The adapter; subclasses name the backend, hypervisor type and host-facts module."""

    #: Entry-point name of the backend (``virtdriver.load_backend``).
    backend_name = ""
    #: Nova's hypervisor type (``nova.objects.fields.HVType``).
    hypervisor_type = ""
    #: The backend's VMOps class, for capabilities known before any connection.
    backend_class: type = virtdriver.VMOps

    def __init__(self, virtapi: Any) -> None:
        super().__init__(virtapi)
        config.register_opts(CONF)
        self._ops_lock = threading.Lock()
        self._ops: Any = None
        self._events: EventPump | None = None
        self._node_uuid: str | None = None
        self.image_store = GlanceImageStore()

    # -- plumbing -------------------------------------------------------------------------------

    @property
    def ops(self) -> Any:
        """The backend, built from Nova's CONF on first use."""
        if self._ops is None:
            with self._ops_lock:
                if self._ops is None:
                    self._ops = virtdriver.load_backend(self.backend_name, CONF,
                                                        image_store=self.image_store,
                                                        progress_callback=self._progress)
        return self._ops

    @staticmethod
    def _progress(instance: Any, percent: int, step: str) -> None:
        # Nova shows instance.progress to users; the compute manager saves it with the
        # instance, so only the field is set here.
        if hasattr(instance, "progress"):
            instance.progress = int(percent)

    # Subclasses: the backend-specific host facts and event channel.
    def _read_resources(self) -> dict[str, Any]:
        raise NotImplementedError()

    def _event_channel(self) -> Any:
        raise NotImplementedError()

    def _nodename(self) -> str:
        raise NotImplementedError()

    # -- host -----------------------------------------------------------------------------------

    def init_host(self, host: str) -> None:
        """Log in, read the cluster or pool once, and start the lifecycle-event thread."""
        with translated():
            self._read_resources()
        if self._events is None:
            # the channel also feeds the backend's power states: get_info asks no server
            self._events = EventPump(lambda: self.ops.power_cache.feed(self._event_channel()),
                                     lifecycle_emitter(self.emit_event),
                                     name=f"virtdriver-{self.backend_name}-events")
            self._events.start()

    def cleanup_host(self, host: str) -> None:
        """Stop the event thread and log out."""
        events, self._events = self._events, None
        if events is not None:
            events.stop()
        ops, self._ops = self._ops, None
        if ops is not None:
            ops.close()

    def get_available_nodes(self, refresh: bool = False) -> list[str]:
        """One node: the cluster (VMware) or the pool (Xen)."""
        return [self._nodename()]

    def get_nodenames_by_uuid(self, refresh: bool = False) -> dict[str, str]:
        """This compute's node identity (Nova's local node uuid, read once per driver, as
        libvirt's Host keeps it) for its one node."""
        if self._node_uuid is None:
            self._node_uuid = nova_node.get_local_node_uuid()
        return {self._node_uuid: self._nodename()}

    def get_available_resource(self, nodename: str) -> dict[str, Any]:
        """The cluster's or pool's capacity and use, read from the server in one pass."""
        with translated():
            res = self._read_resources()
        return {
            "vcpus": res["vcpus"], "memory_mb": res["memory_mb"], "local_gb": res["disk_gb"],
            "vcpus_used": res.get("vcpus_used", 0),
            "memory_mb_used": res.get("memory_mb_used", 0),
            "local_gb_used": res.get("disk_gb_used", 0),
            "hypervisor_type": self.hypervisor_type,
            "hypervisor_version": int(res.get("hypervisor_version", 0)),
            "hypervisor_hostname": nodename or self._nodename(),
            "cpu_info": res.get("cpu_info", "{}"),
            "disk_available_least": res["disk_gb"] - res.get("disk_gb_used", 0),
            "supported_instances": self._supported_instances(),
            "numa_topology": None,
        }

    def _supported_instances(self) -> list[tuple[str, str, str]]:
        return [("x86_64", self.hypervisor_type, "hvm"), ("i686", self.hypervisor_type, "hvm")]

    def update_provider_tree(self, provider_tree: Any, nodename: str,
                             allocations: Any = None) -> None:
        """VCPU, MEMORY_MB and DISK_GB of the cluster or pool, with Nova's ratios."""
        with translated():
            res = self._read_resources()
        inventory = provider_tree.data(nodename).inventory
        ratios = self._get_allocation_ratios(inventory)
        totals = {orc.VCPU: (res["vcpus"], CONF.reserved_host_cpus),
                  orc.MEMORY_MB: (res["memory_mb"], CONF.reserved_host_memory_mb),
                  orc.DISK_GB: (res["disk_gb"], _gib(CONF.reserved_host_disk_mb))}
        result = {}
        for rc, (total, reserved) in totals.items():
            if total <= 0:
                continue
            result[rc] = {"total": total, "reserved": reserved, "min_unit": 1,
                          "max_unit": res.get("max_unit", {}).get(rc, total), "step_size": 1,
                          "allocation_ratio": ratios[rc]}
        provider_tree.update_inventory(nodename, result)

    def get_host_ip_addr(self) -> str:
        """The server's address when configured as an IP, else this host's ``my_ip``."""
        host = self._server_host()
        try:
            return str(ipaddress.ip_address(host))
        except ValueError:
            return CONF.my_ip

    def _server_host(self) -> str:
        raise NotImplementedError()

    # -- instances: facts -----------------------------------------------------------------------

    def list_instances(self) -> list[str]:
        with translated():
            return self.ops.list_instances()

    def list_instance_uuids(self) -> list[str]:
        with translated():
            return self.ops.list_instance_uuids()

    def instance_exists(self, instance: Any) -> bool:
        try:
            self.get_info(instance)
        except nova_exc.InstanceNotFound:
            return False
        return True

    def get_info(self, instance: Any, use_cache: bool = True) -> Any:
        with translated(instance):
            return convert.instance_info(self.ops.get_info(instance, use_cache=use_cache))

    def get_diagnostics(self, instance: Any) -> dict[str, Any]:
        with translated(instance):
            return self.ops.get_diagnostics(instance)

    def get_instance_diagnostics(self, instance: Any) -> Any:
        with translated(instance):
            return convert.diagnostics(self.ops.get_instance_diagnostics(instance))

    def get_console_output(self, context: Any, instance: Any) -> str:
        with translated(instance):
            output = self.ops.get_console_output(instance)
        return output.decode("utf-8", "replace") if isinstance(output, bytes) else output

    def get_vnc_console(self, context: Any, instance: Any) -> Any:
        with translated(instance):
            return convert.vnc_console(self.ops.get_vnc_console(instance))

    def get_mks_console(self, context: Any, instance: Any) -> Any:
        """An MKS ticket: VMware's console protocol, which only the VMware backend offers
        (it is not part of VMOps, so a backend without it is NotImplementedError)."""
        acquire = getattr(self.ops, "get_mks_console", None)
        if acquire is None:
            raise NotImplementedError(f"{self.backend_name}: no MKS console (a VMware "
                                      "protocol)")
        with translated(instance):
            return convert.mks_console(acquire(instance))

    def get_instance_disk_info(self, instance: Any, block_device_info: Any = None) -> None:
        """None: the backends move disks themselves; Nova needs no disk list from us."""
        return None

    def get_per_instance_usage(self) -> dict[str, dict[str, Any]]:
        with translated():
            return self.ops.get_per_instance_usage()

    def get_all_bw_counters(self, instances: Any) -> list[dict[str, Any]]:
        with translated():
            return self.ops.get_all_bw_counters(instances)

    # -- instances: lifecycle -------------------------------------------------------------------

    def spawn(self, context: Any, instance: Any, image_meta: Any, injected_files: Any,
              admin_password: Any, allocations: Any, network_info: Any = None,
              block_device_info: Any = None, power_on: bool = True,
              accel_info: Any = None) -> None:
        image = convert.image_meta(image_meta, field_of(instance, "image_ref"))
        if configdrive.required_by(instance):  # force_config_drive, img_config_drive=mandatory
            configdrive.update_instance(instance)
        if not self._can_deliver_password(instance):
            # Nova generates a password for every server; the backend refuses one it cannot
            # set, so it is withheld here, as Nova's own drivers ignore it
            admin_password = None
        with translated(instance):
            self.ops.spawn(context, instance, image, injected_files, admin_password,
                           network_info=network_info,
                           block_device_info=_volumes_or_none(block_device_info))
            if not power_on:
                self.ops.power_off(instance)

    def _can_deliver_password(self, instance: Any) -> bool:
        """Whether the backend can set an admin password: a config drive or a guest agent."""
        return bool(field_of(instance, "config_drive")) or bool(
            self.ops.capabilities.get("supports_set_admin_password"))

    def destroy(self, context: Any, instance: Any, network_info: Any,
                block_device_info: Any = None, destroy_disks: bool = True,
                destroy_secrets: bool = True) -> None:
        with translated(instance):
            self.ops.destroy(instance, network_info, _volumes_or_none(block_device_info),
                             destroy_disks)

    def cleanup(self, context: Any, instance: Any, network_info: Any,
                block_device_info: Any = None, destroy_disks: bool = True,
                migrate_data: Any = None, destroy_vifs: bool = True,
                destroy_secrets: bool = True) -> None:
        """Nothing is left on this host once destroy has run: the VM held everything."""

    def reboot(self, context: Any, instance: Any, network_info: Any, reboot_type: str,
               block_device_info: Any = None, bad_volumes_callback: Any = None,
               accel_info: Any = None, share_info: Any = None) -> None:
        with translated(instance):
            self.ops.reboot(instance, network_info, reboot_type, bad_volumes_callback)

    def power_off(self, instance: Any, timeout: int = 0, retry_interval: int = 0) -> None:
        with translated(instance):
            self.ops.power_off(instance, timeout, retry_interval)

    def power_on(self, context: Any, instance: Any, network_info: Any,
                 block_device_info: Any = None, accel_info: Any = None,
                 share_info: Any = None) -> None:
        with translated(instance):
            self.ops.power_on(instance)

    def resume_state_on_host_boot(self, context: Any, instance: Any, network_info: Any,
                                  share_info: Any, block_device_info: Any = None) -> None:
        """Bring the VM back to running from whatever the host's reboot left it in."""
        with translated(instance):
            state = self.ops.get_info(instance).state
            if state == PowerState.RUNNING:
                return
            if state == PowerState.SUSPENDED:
                self.ops.resume(instance)
            elif state == PowerState.PAUSED:
                self.ops.unpause(instance)
            else:
                self.ops.power_on(instance)

    def suspend(self, context: Any, instance: Any) -> None:
        with translated(instance):
            self.ops.suspend(instance)

    def resume(self, context: Any, instance: Any, network_info: Any,
               block_device_info: Any = None, share_info: Any = None) -> None:
        with translated(instance):
            if self.ops.get_info(instance).state == PowerState.RUNNING:
                return  # already where resume would take it
            self.ops.resume(instance)

    def pause(self, instance: Any) -> None:
        with translated(instance):
            self.ops.pause(instance)

    def unpause(self, instance: Any) -> None:
        with translated(instance):
            if self.ops.get_info(instance).state == PowerState.RUNNING:
                return  # already where unpause would take it
            self.ops.unpause(instance)

    def soft_delete(self, instance: Any) -> None:
        with translated(instance):
            self.ops.soft_delete(instance)

    def restore(self, instance: Any) -> None:
        with translated(instance):
            self.ops.restore(instance)

    def poll_rebooting_instances(self, timeout: int, instances: Any) -> None:
        with translated():
            self.ops.poll_rebooting_instances(timeout, instances)

    def rescue(self, context: Any, instance: Any, network_info: Any, image_meta: Any,
               rescue_password: Any, block_device_info: Any, share_info: Any) -> None:
        image = convert.image_meta(image_meta, field_of(instance, "image_ref"))
        with translated(instance):
            if image is not None and not convert.set_fields(image_meta).get("id"):
                image = self.image_store.show(context, image.id)  # the instance's own image
            self.ops.rescue(context, instance, network_info, image, rescue_password)

    def unrescue(self, context: Any, instance: Any) -> None:
        with translated(instance):
            try:
                self.ops.unrescue(instance)
            except vd_exc.InstanceNotInRescueMode:
                LOG.info("instance %s is not rescued; nothing to undo", instance.uuid)

    def snapshot(self, context: Any, instance: Any, image_id: str,
                 update_task_state: Any) -> None:
        try:
            with translated(instance):
                self.ops.snapshot(context, instance, image_id, update_task_state)
        except nova_exc.InstanceNotFound as error:
            # Nova's contract: no VM to copy is "not running", not "not found"
            cause = error.__cause__ if isinstance(error.__cause__, vd_exc.InstanceNotFound) \
                else error
            raise nova_exc.InstanceNotRunning(instance_id=instance.uuid) from cause

    def post_interrupted_snapshot_cleanup(self, context: Any, instance: Any) -> None:
        with translated(instance):
            self.ops.post_interrupted_snapshot_cleanup(context, instance)

    def set_admin_password(self, instance: Any, new_pass: str) -> None:
        with translated(instance):
            self.ops.set_admin_password(instance, new_pass)

    def inject_file(self, instance: Any, b64_path: str, b64_contents: str) -> None:
        with translated(instance):
            self.ops.inject_file(instance, base64.b64decode(b64_path).decode(),
                                 base64.b64decode(b64_contents))

    def change_instance_metadata(self, context: Any, instance: Any, diff: Any) -> None:
        with translated(instance):
            self.ops.change_instance_metadata(instance, diff)

    def inject_network_info(self, instance: Any, nw_info: Any) -> None:
        with translated(instance):
            self.ops.inject_network_info(instance, nw_info)

    # -- network --------------------------------------------------------------------------------

    def plug_vifs(self, instance: Any, network_info: Any) -> None:
        with translated(instance):
            self.ops.plug_vifs(instance, network_info)

    def unplug_vifs(self, instance: Any, network_info: Any) -> None:
        with translated(instance):
            self.ops.unplug_vifs(instance, network_info)

    def attach_interface(self, context: Any, instance: Any, image_meta: Any, vif: Any) -> None:
        with translated(instance):
            self.ops.attach_interface(instance, convert.image_meta(image_meta), vif)

    def detach_interface(self, context: Any, instance: Any, vif: Any) -> None:
        with translated(instance):
            self.ops.detach_interface(instance, vif)

    # -- resize and migration -------------------------------------------------------------------

    def migrate_disk_and_power_off(self, context: Any, instance: Any, dest: str, flavor: Any,
                                   network_info: Any, block_device_info: Any = None,
                                   timeout: int = 0, retry_interval: int = 0) -> Any:
        """Source side of a resize or cold migration; returns the backend's ``disk_info``.

        Nova's ``dest`` is the destination compute's ``get_host_ip_addr()``, which names no
        cluster or pool (two computes may share a vCenter, or reach their pools on one
        address). So the source only powers off and describes where the VM and its disks
        are (``disk_info``: names, uuids and a server URL, never a credential or session);
        the destination moves them into its own cluster or pool in finish_migration.
        """
        with translated(instance):
            return self.ops.migrate_disk_and_power_off(context, instance, "", flavor,
                                                       _volumes_or_none(block_device_info))

    def finish_migration(self, context: Any, migration: Any, instance: Any, disk_info: Any,
                         network_info: Any, image_meta: Any, resize_instance: bool,
                         allocations: Any, block_device_info: Any = None,
                         power_on: bool = True, share_info: Any = None) -> None:
        """Destination side: the backend brings the VM into this compute's cluster or pool."""
        with translated(instance):
            self.ops.finish_migration(context, migration, instance, disk_info, network_info,
                                      convert.image_meta(image_meta), resize_instance,
                                      _volumes_or_none(block_device_info), power_on)

    def confirm_migration(self, context: Any, migration: Any, instance: Any,
                          network_info: Any) -> None:
        with translated(instance):
            self.ops.confirm_migration(migration, instance, network_info)

    def finish_revert_migration(self, context: Any, instance: Any, network_info: Any,
                                migration: Any, block_device_info: Any = None,
                                power_on: bool = True, share_info: Any = None) -> None:
        """Source side: the original back here (the destination's ``destroy`` ran first,
        with ``task_state`` resize_reverting, and kept what this needs)."""
        with translated(instance):
            self.ops.finish_revert_migration(context, instance, network_info,
                                             _volumes_or_none(block_device_info), power_on)

    def check_can_live_migrate_destination(self, context: Any, instance: Any,
                                           src_compute_info: Any, dst_compute_info: Any,
                                           block_migration: bool = False,
                                           disk_over_commit: bool = False) -> Any:
        """This compute's cluster or pool, as the backend's LiveMigrateData object."""
        with translated(instance):
            data = self.ops.check_can_live_migrate_destination(context, instance,
                                                               bool(block_migration),
                                                               disk_over_commit)
        return live_data.to_object(self.backend_name, data)

    def cleanup_live_migration_destination_check(self, context: Any,
                                                 dest_check_data: Any) -> None:
        """Nothing to undo: the destination check changes nothing."""

    def check_can_live_migrate_source(self, context: Any, instance: Any,
                                      dest_check_data: Any, block_device_info: Any = None
                                      ) -> Any:
        with translated(instance):
            result = self.ops.check_can_live_migrate_source(
                context, instance, live_data.to_dict(dest_check_data))
        return live_data.merge(dest_check_data, result)

    def pre_live_migration(self, context: Any, instance: Any, block_device_info: Any,
                           network_info: Any, disk_info: Any, migrate_data: Any) -> Any:
        with translated(instance):
            result = self.ops.pre_live_migration(context, instance,
                                                 _volumes_or_none(block_device_info),
                                                 network_info, disk_info,
                                                 live_data.to_dict(migrate_data))
        return live_data.merge(migrate_data, result)

    def live_migration(self, context: Any, instance: Any, dest: str, post_method: Any,
                       recover_method: Any, block_migration: bool = False,
                       migrate_data: Any = None) -> None:
        """Move the running VM to ``dest`` (Nova's host name of the destination compute);
        the cluster or pool it goes to is the one ``migrate_data`` names. Nova's callbacks
        get Nova's object back."""
        def post(ctx: Any, inst: Any, dest_host: str, block: bool, _data: Any) -> Any:
            return post_method(ctx, inst, dest_host, block, migrate_data)

        def recover(ctx: Any, inst: Any, dest_host: str, _data: Any) -> Any:
            return recover_method(ctx, inst, dest_host, migrate_data=migrate_data)

        with translated(instance):
            self.ops.live_migrate(context, instance, dest, post, recover,
                                  bool(block_migration), live_data.to_dict(migrate_data))

    def live_migration_abort(self, instance: Any) -> None:
        """Cancel the running live migration (Xen: its XAPI task). Not in VMOps: a backend
        without it is NotImplementedError."""
        abort = getattr(self.ops, "live_migration_abort", None)
        if abort is None:
            raise NotImplementedError(f"{self.backend_name}: live_migration_abort")
        with translated(instance):
            abort(instance)

    def rollback_live_migration_at_destination(self, context: Any, instance: Any,
                                               network_info: Any, block_device_info: Any,
                                               destroy_disks: bool = True,
                                               migrate_data: Any = None) -> None:
        with translated(instance):
            self.ops.rollback_live_migration_at_destination(
                instance, _volumes_or_none(block_device_info))

    def post_live_migration(self, context: Any, instance: Any, block_device_info: Any,
                            migrate_data: Any = None) -> None:
        with translated(instance):
            self.ops.post_live_migration(context, instance, live_data.to_dict(migrate_data))

    def post_live_migration_at_source(self, context: Any, instance: Any,
                                      network_info: Any) -> None:
        """Nothing to unplug here: vCenter or XAPI moved the VM together with its VIFs, and
        a NIC is not plugged into anything that belongs to this compute (``unplug_vifs``
        would detach the NICs of the VM that now runs on the destination)."""

    def post_live_migration_at_destination(self, context: Any, instance: Any,
                                           network_info: Any, block_migration: bool = False,
                                           block_device_info: Any = None) -> None:
        with translated(instance):
            self.ops.post_live_migration_at_destination(
                context, instance, network_info, block_migration,
                _volumes_or_none(block_device_info))

    # -- image cache ----------------------------------------------------------------------------

    def manage_image_cache(self, context: Any, all_instances: Any) -> None:
        with translated():
            self.ops.manage_image_cache(context, all_instances)

    def cache_image(self, context: Any, image_id: str) -> bool:
        """Nova's image pre-caching: the image into the cache a spawn uses (a datastore's
        cache folder, an SR's base VDI); True if it was fetched, False if already there."""
        with translated():
            return bool(self.ops.cache_image(context, image_id))

    # -- volumes --------------------------------------------------------------------------------
    # connection_info passes through as Cinder made it; the backend checks it. A volume that
    # is not attached any more is Nova's DiskNotFound, which the compute manager logs and
    # moves past on detach.

    def attach_volume(self, context: Any, connection_info: Any, instance: Any,
                      mountpoint: str, disk_bus: Any = None, device_type: Any = None,
                      encryption: Any = None) -> None:
        with translated(instance):
            self.ops.attach_volume(context, connection_info, instance, mountpoint,
                                   disk_bus=disk_bus, device_type=device_type,
                                   encryption=encryption)

    def detach_volume(self, context: Any, connection_info: Any, instance: Any,
                      mountpoint: str, encryption: Any = None) -> None:
        with translated(instance):
            self.ops.detach_volume(context, connection_info, instance, mountpoint,
                                   encryption=encryption)

    def swap_volume(self, context: Any, old_connection_info: Any, new_connection_info: Any,
                    instance: Any, mountpoint: str, resize_to: int) -> None:
        with translated(instance):
            self.ops.swap_volume(context, old_connection_info, new_connection_info, instance,
                                 mountpoint, resize_to)

    def extend_volume(self, context: Any, connection_info: Any, instance: Any,
                      requested_size: int) -> None:
        with translated(instance):
            self.ops.extend_volume(context, connection_info, instance, requested_size)

    def get_volume_connector(self, instance: Any) -> dict[str, Any]:
        """The backend's connector; ``ip`` is ``my_block_storage_ip`` (Nova's CONF is the
        backend's configuration), ``host`` this compute service's host name."""
        with translated():
            connector = dict(self.ops.get_volume_connector(instance))
        connector["host"] = CONF.host
        return connector


def _gib(mb: int) -> int:
    return (int(mb or 0) + 1023) // 1024


def _volumes_or_none(block_device_info: Any) -> Any:
    """Nova always sends a block_device_info; the backends want None when it holds nothing
    they must act on (no volumes), and check the volumes themselves (a type they do not
    attach is UnsupportedOperation naming it)."""
    if not block_device_info:
        return None
    if field_of(block_device_info, "block_device_mapping"):
        return block_device_info
    return None

