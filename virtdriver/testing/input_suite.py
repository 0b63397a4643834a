"""Bad-input promises of the VMOps contract, part of :class:`~virtdriver.testing.ConformanceSuite`.

Malformed instances, VIFs, files and images, and instance identities that could forge a log
line or a path, are refused with InvalidInput before any server call and leave nothing
behind; an unknown instance is InstanceNotFound.
"""

from __future__ import annotations

import uuid as uuid_module
from typing import Any

import pytest

from virtdriver.common import exceptions
from virtdriver.testing.helpers import (
    SKIP_PREFIX,
    GiB,
    instance_operations,
    make_instance,
    make_vif,
    nova_like_instance,
)

__all__ = ["InputPromises"]


class InputPromises:
    """Bad input and bad identities refused before any server call."""

    # -- bad input and identity: refused before any server call ---------------------------

    @pytest.mark.parametrize("case", [
        "memory", "vcpus", "uuid", "duplicate_mac", "multicast_mac", "root_too_small",
        "mac_newline", "name_newline", "name_nul", "hostname_newline", "metadata_key_newline",
        "file_relative", "file_dotdot", "file_nul", "file_not_a_pair", "file_contents_int"])
    def test_bad_input_makes_no_server_call(self, ops, server, case):
        instance = nova_like_instance()
        image = server.image
        vifs = [make_vif(server.network)]
        files: list[Any] = []
        before = server.leftovers()
        if case.startswith("file_"):
            # where the backend has a config drive the files could go there: only the bad
            # file is the reason to refuse
            instance.config_drive = bool(ops.capabilities.get("supports_config_drive"))
            files = {"file_relative": [("../../etc/passwd", b"x")],
                     "file_dotdot": [("/etc/../../x", b"x")],
                     "file_nul": [("/etc/motd\0.d", b"x")],
                     "file_not_a_pair": [("/etc/motd",)],
                     "file_contents_int": [("/etc/motd", 7)]}[case]
        elif case == "mac_newline":  # `$` matches before a trailing newline: not enough
            vifs = [{"id": str(uuid_module.uuid4()), "address": "fa:16:3e:00:00:0a\n",
                     "network": server.network}]
        elif case in ("name_newline", "name_nul", "hostname_newline"):
            field = "hostname" if case == "hostname_newline" else "name"
            char = "\0" if case == "name_nul" else "\n"
            setattr(instance, field, f"x{char}uuid:{uuid_module.uuid4()}")  # a forged line
        elif case == "metadata_key_newline":
            instance.metadata = {"a\nb": "v"}
        elif case == "memory":
            instance.flavor.memory_mb = -1
        elif case == "vcpus":
            instance.flavor.vcpus = 0
        elif case == "uuid":
            instance.uuid = "not-a-uuid"
        elif case == "duplicate_mac":
            vifs = vifs * 2
        elif case == "multicast_mac":
            vifs = [{"id": str(uuid_module.uuid4()), "address": "01:00:5e:00:00:01",
                     "network": server.network}]
        elif case == "root_too_small":
            image = type(image)(**{**image.to_dict(), "size": 2 * GiB})
        ops.stats.reset()
        try:
            with pytest.raises(exceptions.InvalidInput):
                ops.spawn(None, instance, image, files, None, vifs)
            assert ops.stats.total_calls == 0, ops.stats.snapshot()
            assert not (left := server.leftovers() - before), left
        finally:
            # a spawn that wrongly succeeded must not outlive the test
            if case not in ("uuid", "name_nul") and server.read_vm(instance) is not None:
                ops.destroy(instance)

    @pytest.mark.parametrize("identity", ["uuid_path", "name_newline", "name_nul"])
    def test_a_bad_identity_is_refused_by_every_operation_before_any_call(self, ops, server,
                                                                          identity):
        instance = nova_like_instance()
        if identity == "uuid_path":
            instance.uuid = "../x"
        else:
            char = "\0" if identity == "name_nul" else "\n"
            instance.name = f"x{char}uuid:{uuid_module.uuid4()}"
        before = server.leftovers()
        for name, call in instance_operations(ops, server.image, server.network,
                                              instance).items():
            ops.stats.reset()
            try:
                call()
            except exceptions.InvalidInput as error:
                assert error.field.startswith("instance."), (name, error)
            except exceptions.UnsupportedOperation as error:  # it does nothing at all
                assert error.operation == name, (name, error)
            except Exception as error:  # noqa: BLE001 - the wrong error is the finding
                pytest.fail(f"{name} of an instance with a bad identity raised {error!r}")
            else:
                pytest.fail(f"{name} accepted an instance with a bad identity")
            assert ops.stats.total_calls == 0, (name, ops.stats.snapshot())
        assert not (left := server.leftovers() - before), left

    def test_files_no_mechanism_can_deliver_are_refused(self, ops, server):
        if ops.capabilities.get("supports_inject_file"):
            pytest.skip(f"{SKIP_PREFIX}: {ops.backend_name} injects files without a config "
                        "drive (supports_inject_file)")
        before = server.leftovers()
        instance = make_instance()  # no config drive, and no guest agent
        ops.stats.reset()
        with pytest.raises(exceptions.InvalidInput, match="injected_files"):
            ops.spawn(None, instance, server.image, [("/etc/motd", b"hi")], None, [])
        assert ops.stats.total_calls == 0, ops.stats.snapshot()
        assert server.read_vm(instance) is None
        assert not (left := server.leftovers() - before), left

    def test_unknown_network_is_refused_before_anything_is_made(self, ops, server):
        before = server.leftovers()
        inst = make_instance()
        with pytest.raises(exceptions.InvalidInput, match="no-such-net"):
            ops.spawn(None, inst, server.image, [], None, [make_vif("no-such-net")])
        assert not (left := server.leftovers() - before), left
        assert server.read_vm(inst) is None

    def test_an_unknown_instance_is_instance_not_found(self, ops):
        inst = make_instance()
        for name, call in [("get_info", lambda: ops.get_info(inst)),
                           ("power_off", lambda: ops.power_off(inst)),
                           ("power_on", lambda: ops.power_on(inst)),
                           ("reboot", lambda: ops.reboot(inst, reboot_type="HARD")),
                           ("get_instance_diagnostics",
                            lambda: ops.get_instance_diagnostics(inst))]:
            try:
                call()
            except exceptions.InstanceNotFound:
                continue
            except Exception as error:  # noqa: BLE001 - the wrong error is the finding
                pytest.fail(f"{name} of an unknown instance raised {error!r}")
            pytest.fail(f"{name} of an unknown instance succeeded")
