"""Running-instance promises of VMOps, part of :class:`~virtdriver.testing.ConformanceSuite`.

Facts and consoles, networking, the guest (password, files, metadata) and the host's image
cache; each gated by its capability where a backend may lack it.
"""

from __future__ import annotations

import pytest

from virtdriver.common import exceptions
from virtdriver.common.power_state import PowerState
from virtdriver.testing.helpers import (
    gate,
    make_instance,
    make_vif,
    supported,
    vm_of,
)

__all__ = ["OperationPromises"]


class OperationPromises:
    """Facts, consoles, network, guest and host operations on a running instance."""

    # -- facts and consoles ---------------------------------------------------------------

    def test_diagnostics_describe_the_vm(self, ops, server, instance):
        diags = ops.get_instance_diagnostics(instance)
        assert diags.state == "running"
        assert diags.num_cpus == 1 and diags.memory_details.maximum == 256
        assert diags.driver
        flat = ops.get_diagnostics(instance)
        assert isinstance(flat, dict) and flat
        assert instance.uuid in ops.get_per_instance_usage()

    def test_bandwidth_counters_name_each_nic(self, ops, instance):
        gate(ops, "supports_bandwidth_counters",
             {"get_all_bw_counters": lambda: ops.get_all_bw_counters([instance])})
        with supported("supports_bandwidth_counters"):
            counters = ops.get_all_bw_counters([instance])
        assert [(c["uuid"], c["mac_address"]) for c in counters] == [
            (instance.uuid, instance.vif.address)]

    def test_vnc_console_is_reachable_and_stable(self, ops, instance):
        console = ops.get_vnc_console(instance)
        assert console.host and isinstance(console.port, int) and console.port > 0
        again = ops.get_vnc_console(instance)
        assert (again.host, again.port) == (console.host, console.port)

    def test_console_output_is_bytes(self, ops, instance):
        gate(ops, "supports_console_output",
             {"get_console_output": lambda: ops.get_console_output(instance)})
        with supported("supports_console_output"):
            output = ops.get_console_output(instance)
        assert isinstance(output, bytes) and output

    # -- network --------------------------------------------------------------------------

    def test_attach_and_detach_interface(self, ops, server, instance):
        vif = make_vif(server.network, "10.0.0.9")
        gate(ops, "supports_attach_interface", {
            "attach_interface": lambda: ops.attach_interface(instance, server.image, vif),
            "detach_interface": lambda: ops.detach_interface(instance, vif)})
        with supported("supports_attach_interface"):
            ops.attach_interface(instance, server.image, vif)
            nics = {n.mac: n.network for n in vm_of(server, instance).nics}
            assert nics == {instance.vif.address: server.network, vif.address: server.network}
            ops.detach_interface(instance, vif)
        assert vm_of(server, instance).macs == {instance.vif.address}

    def test_plug_and_unplug_vifs(self, ops, server, instance):
        extra = make_vif(server.network)
        ops.plug_vifs(instance, [instance.vif, extra])
        ops.plug_vifs(instance, [instance.vif, extra])  # plugged already: nothing changes
        nics = vm_of(server, instance).nics
        assert sorted(n.mac for n in nics) == sorted([instance.vif.address, extra.address])
        ops.unplug_vifs(instance, [extra])
        assert vm_of(server, instance).macs == {instance.vif.address}
        ops.unplug_vifs(instance, [instance.vif])
        assert vm_of(server, instance).nics == ()

    def test_inject_network_info_keeps_the_vm_as_it_is(self, ops, server, instance):
        vm_before = vm_of(server, instance)
        ops.inject_network_info(instance, [instance.vif])
        assert vm_of(server, instance) == vm_before

    def test_security_rules(self, ops, server, instance):
        gate(ops, "supports_security_rules", {
            "refresh_instance_security_rules":
                lambda: ops.refresh_instance_security_rules(instance),
            "unfilter_instance": lambda: ops.unfilter_instance(instance, [instance.vif])})
        with supported("supports_security_rules"):
            ops.unfilter_instance(instance, [instance.vif])
            ops.refresh_instance_security_rules(instance)
        assert vm_of(server, instance).macs == {instance.vif.address}

    # -- guest ----------------------------------------------------------------------------

    def test_set_admin_password(self, ops, server, instance):
        gate(ops, "supports_set_admin_password",
             {"set_admin_password": lambda: ops.set_admin_password(instance, "n3w-pass")})
        with supported("supports_set_admin_password"):
            ops.set_admin_password(instance, "n3w-pass")
        assert vm_of(server, instance).power_state == PowerState.RUNNING

    def test_inject_file_and_change_instance_metadata(self, ops, server, instance):
        gate(ops, "supports_inject_file", {
            "inject_file": lambda: ops.inject_file(instance, "/etc/hosts", b"127.0.0.1\n"),
            "change_instance_metadata":
                lambda: ops.change_instance_metadata(instance, {"role": ["+", "db"]})})
        with supported("supports_inject_file"):
            ops.inject_file(instance, "/etc/hosts", b"127.0.0.1 localhost\n")
            ops.change_instance_metadata(instance, {"role": ["+", "db"]})
            ops.change_instance_metadata(instance, {"role": ["-"]})
            with pytest.raises(exceptions.InvalidInput):
                ops.change_instance_metadata(instance, {"x": ["?"]})
        assert vm_of(server, instance).power_state == PowerState.RUNNING

    def test_reset_network(self, ops, server, instance):
        gate(ops, "supports_reset_network",
             {"reset_network": lambda: ops.reset_network(instance)})
        with supported("supports_reset_network"):
            ops.reset_network(instance)
        assert vm_of(server, instance).power_state == PowerState.RUNNING

    # -- host -----------------------------------------------------------------------------

    def test_manage_image_cache_keeps_images_in_use(self, ops, server, instance):
        gate(ops, "has_imagecache",
             {"manage_image_cache": lambda: ops.manage_image_cache(None, [instance])})
        instance.image_ref = server.image.id
        with supported("has_imagecache"):
            ops.manage_image_cache(None, [instance])
        # the image it uses is still there: another instance spawns from it
        other = make_instance()
        ops.spawn(None, other, server.image, [], None, [])
        try:
            assert vm_of(server, other).power_state == PowerState.RUNNING
        finally:
            ops.destroy(other)
