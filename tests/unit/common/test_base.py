"""The VMOps contract: abstract, complete, with capabilities as plain data."""

import pytest

from virtdriver.common.base import DEFAULT_CAPABILITIES, VMOps
from virtdriver.common.exceptions import UnsupportedOperation

#: Every operation of both seeds, by DESIGN.md's table.
OPERATIONS = [
    "spawn", "destroy", "reboot", "power_off", "power_on", "suspend", "resume", "pause",
    "unpause", "soft_delete", "restore", "poll_rebooting_instances", "set_bootable", "rescue",
    "unrescue", "snapshot", "post_interrupted_snapshot_cleanup", "migrate_disk_and_power_off",
    "finish_migration", "confirm_migration", "finish_revert_migration",
    "check_can_live_migrate_destination", "check_can_live_migrate_source",
    "pre_live_migration", "live_migrate", "post_live_migration",
    "post_live_migration_at_destination", "rollback_live_migration_at_destination",
    "attach_interface", "detach_interface", "plug_vifs", "unplug_vifs", "inject_network_info",
    "reset_network", "refresh_instance_security_rules", "refresh_security_group_rules",
    "unfilter_instance", "inject_file", "set_admin_password", "change_instance_metadata",
    "get_info", "list_instances", "list_instance_uuids", "get_diagnostics",
    "get_instance_diagnostics", "get_all_bw_counters", "get_per_instance_usage",
    "get_console_output", "get_vnc_console", "manage_image_cache",
    "get_datacenter_ref_and_name", "check_cache_folder", "check_temp_folder",
    "attach_volume", "detach_volume", "swap_volume", "extend_volume", "get_volume_connector",
]


def test_every_operation_is_abstract():
    assert set(OPERATIONS) == set(VMOps.__abstractmethods__)


def test_every_operation_has_a_docstring():
    for name in OPERATIONS:
        assert getattr(VMOps, name).__doc__, name


def test_a_backend_missing_an_operation_cannot_be_built():
    partial = type("Partial", (VMOps,), {"spawn": lambda self, *a: None})
    with pytest.raises(TypeError, match="abstract"):
        partial(conf=None)


def test_unsupported_names_operation_and_backend():
    ops = [name for name in OPERATIONS]
    backend = type("Hv", (VMOps,), {"backend_name": "hv",
                                    **{name: lambda self, *a, **k: None for name in ops}})
    error = backend(conf=None).unsupported("pause", "no such thing")
    assert isinstance(error, UnsupportedOperation) and isinstance(error, NotImplementedError)
    assert (error.operation, error.backend) == ("pause", "hv")
    assert str(error) == "pause is not supported by the hv backend: no such thing"


def test_capabilities_are_plain_booleans_with_nova_names():
    assert all(isinstance(v, bool) for v in DEFAULT_CAPABILITIES.values())
    assert {"has_imagecache", "supports_attach_interface", "supports_evacuate",
            "supports_migrate_to_same_host"} <= set(DEFAULT_CAPABILITIES)


def test_call_stats_count_time_and_reset():
    from virtdriver.common.stats import CallStats

    stats = CallStats()
    stats.record("VM.start", 0.25)
    stats.record("VM.start", 0.5)
    stats.record("VM.get_record", 0.125)
    assert stats.snapshot() == {"VM.start": 2, "VM.get_record": 1}
    assert stats.total_calls == 3 and stats.total_seconds == 0.875
    assert stats.seconds["VM.start"] == 0.75
    stats.reset()
    assert stats.total_calls == 0 and stats.snapshot() == {}
