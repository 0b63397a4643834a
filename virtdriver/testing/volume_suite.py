"""The volume promises of the VMOps contract, part of :class:`~virtdriver.testing.ConformanceSuite`.

Volumes come from the provider (:meth:`ConformanceBackend.make_volume`), which plays the
volume service with its own client and tells whether a volume is attached to an instance's
VM and whether its storage still holds it. Gated by ``supports_volume_attach`` and
``supports_swap_volume``; a provider that makes no volume skips them, saying so.
"""

from __future__ import annotations

import uuid as uuid_module
from typing import Any

import pytest

from virtdriver.common import exceptions
from virtdriver.common.power_state import PowerState
from virtdriver.common.volumes import REQUIRED_DATA_KEYS, supported_volume_types
from virtdriver.testing.backend import ConformanceBackend
from virtdriver.testing.helpers import gate, make_instance, supported

__all__ = ["VolumePromises"]


class VolumePromises:
    """Attach and detach in any power state, destroy keeps volumes, swap, bad volumes."""

    @staticmethod
    def _new_volume(server: ConformanceBackend, request: Any) -> dict[str, Any]:
        """A new volume's connection_info from the provider, deleted after the test."""
        try:
            info = server.make_volume()
        except NotImplementedError as error:
            pytest.skip(f"provider: {error}")
        request.addfinalizer(lambda: server.delete_volume(info))
        return info

    @staticmethod
    def _gate(ops: Any, instance: Any) -> None:
        info = {"driver_volume_type": "vmdk", "serial": "x", "data": {}}
        gate(ops, "supports_volume_attach", {
            "attach_volume": lambda: ops.attach_volume(None, info, instance, "/dev/sdb"),
            "detach_volume": lambda: ops.detach_volume(None, info, instance, "/dev/sdb")})

    def test_attach_and_detach_a_volume_in_any_power_state(self, ops, server, instance,
                                                           request):
        self._gate(ops, instance)
        volume = self._new_volume(server, request)
        with supported("supports_volume_attach"):
            ops.attach_volume(None, volume, instance, "/dev/sdb")
            assert server.volume_attached(volume, instance)
            ops.power_off(instance)
            ops.detach_volume(None, volume, instance, "/dev/sdb")
            assert not server.volume_attached(volume, instance)
            assert server.volume_exists(volume)
            ops.attach_volume(None, volume, instance, "/dev/sdb")  # stopped
            ops.power_on(instance)
            assert server.read_vm(instance).power_state == PowerState.RUNNING
            assert server.volume_attached(volume, instance)
            ops.detach_volume(None, volume, instance, "/dev/sdb")
        with pytest.raises(exceptions.VolumeNotFound):
            ops.detach_volume(None, volume, instance, "/dev/sdb")
        assert server.volume_exists(volume)

    def test_destroy_detaches_volumes_and_keeps_them(self, ops, server, request):
        instance = make_instance()
        self._gate(ops, instance)
        volume = self._new_volume(server, request)
        ops.spawn(None, instance, server.image, [], None, [])
        try:
            with supported("supports_volume_attach"):
                ops.attach_volume(None, volume, instance, "/dev/sdb")
        finally:
            ops.destroy(instance, None, {"block_device_mapping": [
                {"connection_info": volume, "mount_device": "/dev/sdb",
                 "delete_on_termination": True}]}, destroy_disks=True)
        assert server.read_vm(instance) is None
        assert server.volume_exists(volume)

    def test_swap_volume_puts_the_new_one_in_place(self, ops, server, instance, request):
        self._gate(ops, instance)
        old, new = self._new_volume(server, request), self._new_volume(server, request)
        gate(ops, "supports_swap_volume", {
            "swap_volume": lambda: ops.swap_volume(None, old, new, instance, "/dev/sdb", 0)})
        with supported("supports_swap_volume"):
            ops.attach_volume(None, old, instance, "/dev/sdb")
            ops.swap_volume(None, old, new, instance, "/dev/sdb", 0)
        assert server.volume_attached(new, instance)
        assert not server.volume_attached(old, instance)
        assert server.volume_exists(old)
        ops.detach_volume(None, new, instance, "/dev/sdb")

    def test_bad_volumes_are_refused_before_any_call(self, ops, server, instance):
        self._gate(ops, instance)
        kinds = supported_volume_types(ops.capabilities)
        ops.stats.reset()
        unknown = f"conformance-{uuid_module.uuid4().hex[:6]}"
        with pytest.raises(exceptions.UnsupportedOperation, match=unknown):
            ops.attach_volume(None, {"driver_volume_type": unknown, "data": {}}, instance,
                              "/dev/sdb")
        for kind in sorted(kinds):
            for missing in REQUIRED_DATA_KEYS.get(kind, ()):
                data = {key: "x" for key in REQUIRED_DATA_KEYS[kind] if key != missing}
                with pytest.raises(exceptions.InvalidInput, match=missing):
                    ops.attach_volume(None, {"driver_volume_type": kind, "data": data},
                                      instance, "/dev/sdb")
        with pytest.raises(exceptions.UnsupportedOperation, match="multiattach"):
            kind = min(kinds, default="vmdk")
            ops.attach_volume(None, {"driver_volume_type": kind, "multiattach": True,
                                     "data": dict.fromkeys(REQUIRED_DATA_KEYS.get(kind, ()),
                                                           "x")},
                              instance, "/dev/sdb")
        assert ops.stats.total_calls == 0, ops.stats.snapshot()
