"""What the conformance tests share: fresh instances and VIFs, capability gates, recorders.

Kept apart from the ``*_suite`` modules so each reads as its list of promises.
"""

from __future__ import annotations

import contextlib
import types
import uuid as uuid_module
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from virtdriver.common import exceptions
from virtdriver.common.base import VMOps
from virtdriver.common.model import VIF, Flavor, Instance
from virtdriver.common.volumes import REQUIRED_DATA_KEYS, supported_volume_types
from virtdriver.testing.backend import ConformanceBackend, VMView

__all__ = ["CAPABILITY_OPERATIONS", "GiB", "MiB", "SKIP_PREFIX", "Recorder", "TaskStates", "gate",
           "instance_operations", "make_instance", "make_vif", "nova_like_instance",
           "supported", "vm_of"]

GiB = 1024 ** 3
MiB = 1024 ** 2

#: Every skip the suite makes starts with this, so a report can tell them from others.
SKIP_PREFIX = "capability"

#: The operations each capability gates. Where the contract has no key of its own for an
#: operation, it goes with the key of the mechanism it shares: set_bootable with soft_delete
#: (both keep the VM from starting), change_instance_metadata with inject_file (both put data
#: where the guest reads it).
CAPABILITY_OPERATIONS: dict[str, tuple[str, ...]] = {
    "supports_suspend": ("suspend", "resume"),
    "supports_pause": ("pause", "unpause"),
    "supports_soft_delete": ("soft_delete", "restore", "set_bootable"),
    "supports_rescue": ("rescue", "unrescue"),
    "supports_live_migration": ("check_can_live_migrate_destination",
                                "check_can_live_migrate_source", "pre_live_migration",
                                "live_migrate", "post_live_migration",
                                "post_live_migration_at_destination",
                                "rollback_live_migration_at_destination"),
    "supports_attach_interface": ("attach_interface", "detach_interface"),
    "supports_set_admin_password": ("set_admin_password",),
    "supports_inject_file": ("inject_file", "change_instance_metadata"),
    "supports_reset_network": ("reset_network",),
    "supports_console_output": ("get_console_output",),
    "supports_bandwidth_counters": ("get_all_bw_counters",),
    "supports_security_rules": ("refresh_instance_security_rules", "unfilter_instance"),
    "has_imagecache": ("manage_image_cache",),
    "supports_volume_attach": ("attach_volume", "detach_volume"),
    "supports_swap_volume": ("swap_volume",),
}

_macs = iter(range(1, 1 << 16))


def make_vif(network: str, fixed_ip: str | None = None) -> VIF:
    """A VIF with a MAC no other VIF of this test run has."""
    n = next(_macs)
    return VIF(id=str(uuid_module.uuid4()), address=f"fa:16:3e:c0:{n >> 8:02x}:{n & 0xff:02x}",
               network=network, fixed_ips=[fixed_ip] if fixed_ip else [])


def make_instance(vcpus: int = 1, memory_mb: int = 256, root_gb: int = 1,
                  **flavor: Any) -> Instance:
    """A fresh instance with its own uuid and name, and a small flavor by default."""
    uuid = str(uuid_module.uuid4())
    return Instance(uuid=uuid, name=f"conformance-{uuid[:8]}",
                    flavor=Flavor(vcpus=vcpus, memory_mb=memory_mb, root_gb=root_gb, **flavor))


def gate(ops: VMOps, capability: str, calls: dict[str, Callable[[], Any]]) -> None:
    """Skip the test when ``ops`` lacks ``capability``, after checking it says so honestly.

    Every operation in ``calls`` must then raise UnsupportedOperation; anything else
    (success, another error) fails the test, since a caller trusts ``capabilities``.
    """
    assert set(calls) <= set(CAPABILITY_OPERATIONS[capability]), (capability, calls)
    if ops.capabilities.get(capability, False):
        return
    for name, call in calls.items():
        try:
            call()
        except exceptions.UnsupportedOperation as error:
            # the error names the operation and the backend, as the contract says
            assert (error.operation, error.backend) == (name, ops.backend_name), error
            continue
        except Exception as error:  # noqa: BLE001 - any other outcome breaks the contract
            pytest.fail(f"capabilities[{capability!r}] is False, so {name} must raise "
                        f"UnsupportedOperation; it raised {error!r}")
        pytest.fail(f"capabilities[{capability!r}] is False, but {name} succeeded")
    verb = "raises" if len(calls) == 1 else "raise"
    pytest.skip(f"{SKIP_PREFIX} {capability} is False for {ops.backend_name}: "
                f"{', '.join(calls)} {verb} UnsupportedOperation, as declared")


@contextlib.contextmanager
def supported(capability: str) -> Iterator[None]:
    """An UnsupportedOperation here contradicts ``capabilities[capability]``: fail."""
    try:
        yield
    except exceptions.UnsupportedOperation as error:
        pytest.fail(f"capabilities[{capability!r}] is True, but {error}")


class TaskStates:
    """An ``update_task_state`` callback that records what it was told."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, str | None]] = []

    def __call__(self, task_state: str, expected_state: str | None = None) -> None:
        self.calls.append((task_state, expected_state))


class Recorder:
    """A post_method / recover_method that records its calls."""

    def __init__(self) -> None:
        self.calls: list[tuple[Any, ...]] = []

    def __call__(self, *args: Any, **kwargs: Any) -> None:
        self.calls.append(args)


def vm_of(server: ConformanceBackend, instance: Any) -> VMView:
    """The server's view of the instance's VM, which must exist."""
    view = server.read_vm(instance)
    assert view is not None, f"the server holds no VM for {instance.name}"
    return view


def nova_like_instance() -> Any:
    """A valid instance as a plain object, so a test can make any field bad."""
    flavor = types.SimpleNamespace(vcpus=1, memory_mb=256, root_gb=1, ephemeral_gb=0, swap=0,
                                   extra_specs={})
    return types.SimpleNamespace(uuid=str(uuid_module.uuid4()), name="conformance-bad-input",
                                 flavor=flavor, metadata={}, config_drive=False)


def instance_operations(ops: VMOps, image: Any, network: str,
                        instance: Any) -> dict[str, Callable[[], Any]]:
    """Every operation of the contract that acts on one instance, by name, as a call on
    ``instance`` with well-formed other arguments (so only the instance can be wrong).

    Not get_volume_connector: it describes the host, and Nova calls it with a stub
    instance (``{"id": "fake"}`` in its own driver tests).
    """
    vif = make_vif(network)
    flavor = Flavor(vcpus=1, memory_mb=256, root_gb=1)
    # a well-formed volume of a type the backend attaches (vmdk when it attaches none)
    kind = min(supported_volume_types(ops.capabilities), default="vmdk")
    volume = {"driver_volume_type": kind, "serial": str(uuid_module.uuid4()),
              "data": dict.fromkeys(REQUIRED_DATA_KEYS.get(kind, ()), "x")}
    return {
        "spawn": lambda: ops.spawn(None, instance, image, [], None, [vif]),
        "destroy": lambda: ops.destroy(instance),
        "reboot": lambda: ops.reboot(instance, reboot_type="HARD"),
        "power_off": lambda: ops.power_off(instance),
        "power_on": lambda: ops.power_on(instance),
        "suspend": lambda: ops.suspend(instance),
        "resume": lambda: ops.resume(instance),
        "pause": lambda: ops.pause(instance),
        "unpause": lambda: ops.unpause(instance),
        "soft_delete": lambda: ops.soft_delete(instance),
        "restore": lambda: ops.restore(instance),
        "set_bootable": lambda: ops.set_bootable(instance, True),
        "rescue": lambda: ops.rescue(None, instance, [vif], image),
        "unrescue": lambda: ops.unrescue(instance),
        "snapshot": lambda: ops.snapshot(None, instance, str(uuid_module.uuid4()),
                                         TaskStates()),
        "post_interrupted_snapshot_cleanup":
            lambda: ops.post_interrupted_snapshot_cleanup(None, instance),
        "migrate_disk_and_power_off":
            lambda: ops.migrate_disk_and_power_off(None, instance, "", flavor),
        "finish_migration": lambda: ops.finish_migration(None, None, instance, {}, [vif],
                                                         image),
        "confirm_migration": lambda: ops.confirm_migration(None, instance, [vif]),
        "finish_revert_migration": lambda: ops.finish_revert_migration(None, instance),
        "check_can_live_migrate_destination":
            lambda: ops.check_can_live_migrate_destination(None, instance),
        "check_can_live_migrate_source":
            lambda: ops.check_can_live_migrate_source(None, instance, {}),
        "pre_live_migration":
            lambda: ops.pre_live_migration(None, instance, None, [vif], None, {}),
        "live_migrate": lambda: ops.live_migrate(None, instance, "elsewhere", Recorder(),
                                                 Recorder()),
        "post_live_migration": lambda: ops.post_live_migration(None, instance),
        "post_live_migration_at_destination":
            lambda: ops.post_live_migration_at_destination(None, instance, [vif]),
        "rollback_live_migration_at_destination":
            lambda: ops.rollback_live_migration_at_destination(instance),
        "attach_interface": lambda: ops.attach_interface(instance, image, vif),
        "detach_interface": lambda: ops.detach_interface(instance, vif),
        "plug_vifs": lambda: ops.plug_vifs(instance, [vif]),
        "unplug_vifs": lambda: ops.unplug_vifs(instance, [vif]),
        "inject_network_info": lambda: ops.inject_network_info(instance, [vif]),
        "reset_network": lambda: ops.reset_network(instance),
        "refresh_instance_security_rules":
            lambda: ops.refresh_instance_security_rules(instance),
        "unfilter_instance": lambda: ops.unfilter_instance(instance, [vif]),
        "inject_file": lambda: ops.inject_file(instance, "/etc/motd", b"hi"),
        "set_admin_password": lambda: ops.set_admin_password(instance, "pw"),
        "change_instance_metadata":
            lambda: ops.change_instance_metadata(instance, {"role": ["+", "db"]}),
        "get_info": lambda: ops.get_info(instance),
        "get_diagnostics": lambda: ops.get_diagnostics(instance),
        "get_instance_diagnostics": lambda: ops.get_instance_diagnostics(instance),
        "get_console_output": lambda: ops.get_console_output(instance),
        "get_vnc_console": lambda: ops.get_vnc_console(instance),
        "attach_volume": lambda: ops.attach_volume(None, volume, instance, "/dev/sdb"),
        "detach_volume": lambda: ops.detach_volume(None, volume, instance, "/dev/sdb"),
        "swap_volume": lambda: ops.swap_volume(None, volume, volume, instance, "/dev/sdb", 1),
        "extend_volume": lambda: ops.extend_volume(None, volume, instance, 2 * 1024 ** 3),
    }
