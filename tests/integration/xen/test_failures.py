"""Failure paths: a fault at each spawn step leaves nothing behind, an expired session is
survived, bad input never reaches the server."""

from __future__ import annotations

import types
import uuid

import pytest

import virtdriver
from virtdriver.common import exceptions as exc
from virtdriver.xen.vmops import XenVMOps

from .conftest import instance_vdis, make_conf, make_instance, make_vif, vm_of

pytestmark = pytest.mark.integration


def leftovers(xapi, instance):
    """What the simulator still holds for the instance: VMs, VDIs, VBDs and VIFs."""
    vms = [ref for ref, rec in xapi.VM.get_all_records().items()
           if rec["other_config"].get("nova_uuid") == instance.uuid]
    return {"vms": vms, "vdis": list(instance_vdis(xapi, instance.uuid)),
            "vbds": len(xapi.VBD.get_all()), "vifs": len(xapi.VIF.get_all())}


@pytest.fixture(autouse=True)
def no_faults_left(sim):
    yield
    sim.clear_faults()


@pytest.mark.parametrize("method, step", [
    ("VM.get_all_records_where", "check_no_vm"),
    ("VDI.clone", "create_disks"),
    ("VDI.resize", "create_disks"),
    ("VDI.create", "create_disks"),
    ("VM.create", "create_vm_record"),
    ("VBD.create", "attach_devices"),
    ("VIF.create", "setup_network"),
    ("VM.start", "boot_instance"),
    ("host.call_plugin", "configure_booted_instance"),
])
def test_fault_at_each_spawn_step_leaves_nothing(ops, image, xapi, sim, method, step):
    flavor = virtdriver.Flavor(vcpus=1, memory_mb=256, root_gb=2, ephemeral_gb=1, swap=32)
    warm = make_instance()
    ops.spawn(None, warm, image, [], None, [])  # warm the image cache: faults hit the step
    ops.destroy(warm)
    instance = make_instance(flavor=flavor, config_drive=True)
    before = leftovers(xapi, instance)
    sim.inject_fault(method, ["INTERNAL_ERROR", f"injected into {step}"])
    with pytest.raises(exc.VirtDriverError) as caught:
        ops.spawn(None, instance, image, [("/etc/motd", b"hello")], "pw", [make_vif(1)])
    assert caught.value.__cause__ is not None or isinstance(caught.value, exc.BackendError)
    assert leftovers(xapi, instance) == before
    assert vm_of(xapi, instance) is None


def test_session_expiry_mid_operation_is_survived(ops, image, xapi, sim):
    instance = make_instance()
    sim.inject_fault("VM.create", ["SESSION_INVALID", "OpaqueRef:expired"])
    ops.spawn(None, instance, image, [], None, [make_vif(1)])
    try:
        assert vm_of(xapi, instance)[1]["power_state"] == "Running"
        sim.expire_sessions()
        ops.power_off(instance)
        assert vm_of(xapi, instance)[1]["power_state"] == "Halted"
    finally:
        ops.destroy(instance)


def fresh_backend(sim, store):
    return XenVMOps(make_conf(sim.url), image_store=store)


def nova_like_instance(**fields):
    flavor = types.SimpleNamespace(vcpus=1, memory_mb=256, root_gb=1, ephemeral_gb=0,
                                   swap=0, extra_specs={})
    base = {"uuid": str(uuid.uuid4()), "name": "nova-style", "flavor": flavor,
            "metadata": {}, "config_drive": False}
    base.update(fields)
    return types.SimpleNamespace(**base)


@pytest.mark.parametrize("case", ["memory", "uuid", "mac", "image_format", "file_path",
                                  "extra_spec", "vm_mode", "root_too_small"])
def test_bad_input_never_reaches_the_server(sim, store, image, case):
    backend = fresh_backend(sim, store)
    instance = nova_like_instance()
    img = image
    vifs = [make_vif(1)]
    files = []
    if case == "memory":
        instance.flavor.memory_mb = -1
    elif case == "uuid":
        instance.uuid = "not-a-uuid"
    elif case == "mac":
        vifs = [{"id": str(uuid.uuid4()), "address": "01:00:5e:00:00:01", "network": "x"}]
    elif case == "image_format":
        img = virtdriver.ImageMeta(id=str(uuid.uuid4()), disk_format="vmdk")
    elif case == "file_path":
        files = [("relative/path", b"x")]
    elif case == "extra_spec":
        instance.flavor.extra_specs = {"quota:vcpu_cap": "lots"}
    elif case == "vm_mode":
        img = virtdriver.ImageMeta(id=str(uuid.uuid4()), disk_format="raw",
                                   properties={"vm_mode": "bogus"})
    elif case == "root_too_small":
        img = virtdriver.ImageMeta(id=str(uuid.uuid4()), disk_format="raw", size=2 * 1024 ** 3)
    try:
        with pytest.raises(exc.InvalidInput):
            backend.spawn(None, instance, img, files, None, vifs)
        assert backend.session.stats.total_calls == 0
    finally:
        backend.close()


def test_unknown_network_fails_before_anything_is_made(ops, image, xapi):
    instance = make_instance()
    before = leftovers(xapi, instance)
    with pytest.raises(exc.InvalidInput):
        ops.spawn(None, instance, image, [], None, [make_vif(1, network="no-such-net")])
    assert leftovers(xapi, instance) == before


def test_bad_credentials_are_authentication_failed(sim, store):
    conf = make_conf(sim.url)
    conf.set_override("connection_password", "wrong", "xenserver")
    backend = XenVMOps(conf, image_store=store)
    with pytest.raises(exc.AuthenticationFailed) as caught:
        backend.list_instances()
    assert "wrong" not in str(caught.value)
    assert caught.value.code == "SESSION_AUTHENTICATION_FAILED"


def test_unreachable_server_is_connection_failed(store):
    conf = make_conf("http://127.0.0.1:9")
    conf.set_override("api_retry_count", 0, "xenserver")
    backend = XenVMOps(conf, image_store=store)
    with pytest.raises(exc.ConnectionFailed):
        backend.list_instances()
