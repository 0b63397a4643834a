"""Failure paths: an expired session is survived, Xen's own bad input never reaches the
server. (A fault at each spawn step is tests/integration/conformance's.)"""

from __future__ import annotations

import types
import uuid

import pytest

import virtdriver
from virtdriver.common import exceptions as exc
from virtdriver.xen.vmops import XenVMOps

from .conftest import make_conf, make_instance, make_vif, vm_of

pytestmark = pytest.mark.integration


@pytest.fixture(autouse=True)
def no_faults_left(sim):
    yield
    sim.clear_faults()


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


# memory, uuid, MACs and a root disk smaller than the image: tests/integration/conformance
@pytest.mark.parametrize("case", ["image_format", "file_path", "extra_spec", "vm_mode"])
def test_bad_input_never_reaches_the_server(sim, store, image, case):
    backend = fresh_backend(sim, store)
    instance = nova_like_instance()
    img = image
    vifs = [make_vif(1)]
    files = []
    if case == "image_format":
        img = virtdriver.ImageMeta(id=str(uuid.uuid4()), disk_format="vmdk")
    elif case == "file_path":
        files = [("relative/path", b"x")]
    elif case == "extra_spec":
        instance.flavor.extra_specs = {"quota:vcpu_cap": "lots"}
    elif case == "vm_mode":
        img = virtdriver.ImageMeta(id=str(uuid.uuid4()), disk_format="raw",
                                   properties={"vm_mode": "bogus"})
    try:
        with pytest.raises(exc.InvalidInput):
            backend.spawn(None, instance, img, files, None, vifs)
        assert backend.session.stats.total_calls == 0
    finally:
        backend.close()


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
