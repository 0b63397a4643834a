"""Rescue, guest agent, network, xenstore, facts and host operations against the simulator."""

from __future__ import annotations

import io
import json

import pycdlib
import pytest

import virtdriver
from virtdriver.common import exceptions as exc
from virtdriver.common.model import Diagnostics

from .conftest import (
    IMAGE_BYTES,
    disks_of,
    instance_vdis,
    make_conf,
    make_instance,
    make_vif,
    vm_of,
)

pytestmark = pytest.mark.integration


@pytest.fixture
def spawned(ops, image):
    instance = make_instance()
    ops.spawn(None, instance, image, [], None, [make_vif(1, fixed_ips=["10.0.0.7"])])
    yield instance
    ops.destroy(instance)


def console_ref(console):
    from urllib.parse import parse_qs, urlsplit
    return parse_qs(urlsplit(console.internal_access_path).query)["ref"][0]


def guest(sim, xapi, instance, suffix=""):
    return sim.guest_state(vm_of(xapi, instance, suffix)[1]["uuid"])


# -- spawn through the agent, config drive ----------------------------------------------------

@pytest.fixture(scope="module")
def agent_image(store, tmp_path_factory):
    """An image whose guest says it runs the agent (``xenapi_use_agent``)."""
    path = tmp_path_factory.mktemp("agent") / "disk.raw"
    path.write_bytes(IMAGE_BYTES)
    return store.import_file(path, disk_format="raw", name="with-agent",
                             properties={"xenapi_use_agent": "true"})


def test_spawn_sets_password_files_and_network_through_the_agent(ops, agent_image, sim,
                                                                 xapi):
    instance = make_instance()
    ops.spawn(None, instance, agent_image,
              [("/etc/motd", b"welcome"), ("/root/a.txt", "text")], "s3cret!", [make_vif(1)])
    try:
        state = guest(sim, xapi, instance)
        assert state["password"] == "s3cret!"
        assert state["files"] == {"/etc/motd": b"welcome", "/root/a.txt": b"text"}
        assert state["network_resets"] == 1
    finally:
        ops.destroy(instance)


def test_spawn_asks_no_agent_of_an_image_without_one(ops, image, sim, xapi):
    """No files, no password and an image without the agent: spawn never waits on one."""
    instance = make_instance()
    ops.stats.reset()
    ops.spawn(None, instance, image, [], None, [make_vif(1)])
    try:
        assert "host.call_plugin" not in ops.stats.snapshot()
        assert guest(sim, xapi, instance)["network_resets"] == 0
        networking = vm_of(xapi, instance)[1]["xenstore_data"]
        assert any(key.startswith("vm-data/networking/") for key in networking)
    finally:
        ops.destroy(instance)


def test_spawn_with_config_drive(ops, image, xapi, read_vdi):
    instance = make_instance(config_drive=True, metadata={"k": "v"})
    ops.spawn(None, instance, image, [("/etc/motd", b"hi")], None, [make_vif(1)])
    try:
        disks = disks_of(xapi, vm_of(xapi, instance)[0])
        drive = disks["3"]
        assert drive["vbd"]["mode"] == "RO"
        iso = pycdlib.PyCdlib()
        iso.open_fp(io.BytesIO(read_vdi(drive["ref"])))
        out = io.BytesIO()
        iso.get_file_from_iso_fp(out, rr_path="/openstack/latest/meta_data.json")
        meta = json.loads(out.getvalue())
        assert meta["uuid"] == instance.uuid and meta["meta"] == {"k": "v"}
        assert iso.pvd.volume_identifier.strip() == b"config-2"
    finally:
        ops.destroy(instance)
    assert instance_vdis(xapi, instance.uuid) == {}


def test_agent_operations(ops, spawned, sim, xapi):
    ops.set_admin_password(spawned, "n3w-pass")
    ops.inject_file(spawned, "/etc/hosts", b"127.0.0.1 localhost\n")
    ops.reset_network(spawned)
    state = guest(sim, xapi, spawned)
    assert state["password"] == "n3w-pass"
    assert state["files"]["/etc/hosts"] == b"127.0.0.1 localhost\n"
    assert state["network_resets"] == 1  # ours: the image does not say it has an agent


def test_agent_silence_is_agent_timeout(ops, spawned, sim, xapi):
    sim.set_guest_agent(vm_of(xapi, spawned)[1]["uuid"], False)
    ops.xen.agent_timeout  # noqa: B018 - configured at 5 s by the fixture
    backend = type(ops)(make_conf(sim.url, agent_timeout=1), image_store=ops.image_store)
    try:
        with pytest.raises(exc.AgentTimeout):
            backend.set_admin_password(spawned, "x")
    finally:
        backend.close()
        sim.set_guest_agent(vm_of(xapi, spawned)[1]["uuid"], True)


def test_disabled_agent_is_unsupported(sim, store, spawned):
    backend = type_of_ops()(make_conf(sim.url, disable_agent=True), image_store=store)
    try:
        with pytest.raises(exc.UnsupportedOperation):
            backend.inject_file(spawned, "/x", b"y")
    finally:
        backend.close()


def type_of_ops():
    from virtdriver.xen.vmops import XenVMOps
    return XenVMOps


# -- rescue ------------------------------------------------------------------------------------

def test_rescue_and_unrescue(ops, image, spawned, xapi, sim):
    original_root = disks_of(xapi, vm_of(xapi, spawned)[0])["0"]["uuid"]
    ops.rescue(None, spawned, [make_vif(1)], image, rescue_password="rescue-pw")
    ref, vm = vm_of(xapi, spawned)
    assert vm["power_state"] == "Halted"
    assert set(vm["blocked_operations"]) >= {"start", "start_on"}
    rescue_ref, rescue = vm_of(xapi, spawned, "-rescue")
    assert rescue["power_state"] == "Running"
    rescue_disks = disks_of(xapi, rescue_ref)
    assert rescue_disks["1"]["uuid"] == original_root
    assert rescue_disks["0"]["uuid"] != original_root
    assert rescue["xenstore_data"]["vm-data/hostname"].startswith("RESCUE-")
    assert guest(sim, xapi, spawned, "-rescue")["password"] == "rescue-pw"
    assert spawned.name in ops.list_instances()
    assert spawned.name + "-rescue" not in ops.list_instances()
    with pytest.raises(exc.InstanceInvalidState):
        ops.rescue(None, spawned, [], image)

    console = ops.get_vnc_console(spawned)
    assert console_ref(console) in xapi.VM.get_consoles(rescue_ref)

    ops.unrescue(spawned)
    assert vm_of(xapi, spawned, "-rescue") is None
    _, vm = vm_of(xapi, spawned)
    assert vm["power_state"] == "Running"
    assert vm["blocked_operations"] == {}
    assert disks_of(xapi, vm_of(xapi, spawned)[0])["0"]["uuid"] == original_root
    with pytest.raises(exc.InstanceNotInRescueMode):
        ops.unrescue(spawned)


def test_failed_rescue_rolls_back(ops, image, spawned, xapi, sim):
    sim.inject_fault("VM.create", ["INTERNAL_ERROR", "injected"])
    with pytest.raises(exc.BackendError):
        ops.rescue(None, spawned, [], image)
    _, vm = vm_of(xapi, spawned)
    assert vm["power_state"] == "Running"
    assert vm["blocked_operations"] == {}
    assert vm_of(xapi, spawned, "-rescue") is None


# -- network -----------------------------------------------------------------------------------

def test_attach_and_detach_interface_hot_plugs(ops, image, spawned, xapi):
    vif = make_vif(9, fixed_ips=["10.0.0.9"])
    ops.attach_interface(spawned, image, vif)
    ref, vm = vm_of(xapi, spawned)
    vifs = {xapi.VIF.get_MAC(v): xapi.VIF.get_record(v) for v in vm["VIFs"]}
    assert vifs["fa:16:3e:00:00:09"]["currently_attached"] is True
    assert vifs["fa:16:3e:00:00:09"]["device"] == "1"
    ops.detach_interface(spawned, vif)
    assert "fa:16:3e:00:00:09" not in {xapi.VIF.get_MAC(v) for v in xapi.VM.get_VIFs(ref)}
    with pytest.raises(exc.InvalidInput):
        ops.detach_interface(spawned, vif)


def test_inject_network_info_writes_param_and_live_xenstore(ops, spawned, xapi, sim):
    vif = make_vif(1, fixed_ips=["10.0.0.77"])
    ops.inject_network_info(spawned, [vif])
    _, vm = vm_of(xapi, spawned)
    blob = json.loads(vm["xenstore_data"]["vm-data/networking/fa163e000001"])
    assert blob["ips"][0]["ip"] == "10.0.0.77"
    live = guest(sim, xapi, spawned)["xenstore"]
    domid = vm["domid"]
    assert "10.0.0.77" in live[f"/local/domain/{domid}/vm-data/networking/fa163e000001"]


def test_change_instance_metadata(ops, spawned, xapi, sim):
    ops.change_instance_metadata(spawned, {"role": ["-"], "new key": ["+", "value"]})
    _, vm = vm_of(xapi, spawned)
    assert "vm-data/user-metadata/role" not in vm["xenstore_data"]
    assert json.loads(vm["xenstore_data"]["vm-data/user-metadata/new_key"]) == "value"
    live = guest(sim, xapi, spawned)["xenstore"]
    assert f"/local/domain/{vm['domid']}/vm-data/user-metadata/new_key" in live
    assert f"/local/domain/{vm['domid']}/vm-data/user-metadata/role" not in live
    with pytest.raises(exc.InvalidInput):
        ops.change_instance_metadata(spawned, {"x": ["?"]})


def test_security_rules_use_vif_locking(ops, spawned, xapi):
    ref, vm = vm_of(xapi, spawned)
    vif_ref = vm["VIFs"][0]
    assert xapi.VIF.get_locking_mode(vif_ref) == "locked"
    ops.unfilter_instance(spawned, [make_vif(1, fixed_ips=["10.0.0.7"])])
    assert xapi.VIF.get_locking_mode(vif_ref) == "network_default"
    assert xapi.VIF.get_ipv4_allowed(vif_ref) == []
    ops.refresh_instance_security_rules(spawned)
    assert xapi.VIF.get_locking_mode(vif_ref) == "locked"
    assert xapi.VIF.get_ipv4_allowed(vif_ref) == ["10.0.0.7"]
    with pytest.raises(exc.UnsupportedOperation):
        ops.refresh_security_group_rules("sg-1")


# -- facts -------------------------------------------------------------------------------------

def test_diagnostics(ops, spawned):
    flat = ops.get_diagnostics(spawned)
    assert "cpu0" in flat and "memory" in flat
    diags = ops.get_instance_diagnostics(spawned)
    assert isinstance(diags, Diagnostics)
    assert diags.state == "running" and diags.num_cpus == 1
    assert diags.nic_details[0].mac_address == "fa:16:3e:00:00:01"
    assert diags.memory_details.maximum == 256


def test_usage_and_bandwidth(ops, spawned):
    usage = ops.get_per_instance_usage()
    assert usage[spawned.uuid]["memory_mb"] == 256
    counters = ops.get_all_bw_counters([spawned])
    assert counters == [{"uuid": spawned.uuid, "mac_address": "fa:16:3e:00:00:01",
                         "bw_in": 1000, "bw_out": 2000}]


def test_console_output_and_vnc(ops, spawned, xapi):
    output = ops.get_console_output(spawned)
    assert isinstance(output, bytes) and output
    console = ops.get_vnc_console(spawned)
    assert console.host == "127.0.0.1"
    ref = console_ref(console)
    assert ref in xapi.VM.get_consoles(vm_of(xapi, spawned)[0])
    assert xapi.console.get_protocol(ref) == "rfb"
    assert "session_id=" in console.internal_access_path
    assert "session" not in repr(console)


def test_poll_rebooting_instances_hard_reboots_stale(ops, spawned, xapi):
    import datetime as dt

    domid = vm_of(xapi, spawned)[1]["domid"]
    spawned.updated_at = dt.datetime.now(dt.timezone.utc) - dt.timedelta(hours=1)
    assert ops.poll_rebooting_instances(60, [spawned]) == []  # not in a reboot task state
    assert vm_of(xapi, spawned)[1]["domid"] == domid
    spawned.task_state = "reboot_started"
    assert ops.poll_rebooting_instances(60, [spawned, ("not", "an instance")]) == [spawned]
    assert vm_of(xapi, spawned)[1]["domid"] != domid


# -- host ---------------------------------------------------------------------------------------

def test_host_operations(ops, image, xapi, store, tmp_path):
    path = tmp_path / "old.raw"
    path.write_bytes(b"old" * 100)
    old = store.import_file(path, disk_format="raw", name="old")
    instance = make_instance()
    ops.spawn(None, instance, old, [], None, [])
    ops.destroy(instance)
    ops.conf.set_override("remove_unused_original_minimum_age_seconds", 0)
    try:
        ops.manage_image_cache(None, [make_instance(image_ref=image.id)])
    finally:
        ops.conf.clear_override("remove_unused_original_minimum_age_seconds")
    ids = {rec["other_config"].get("image-id") for rec in xapi.VDI.get_all_records().values()}
    assert old.id not in ids
    ops.check_cache_folder("sr", None)
    ops.check_temp_folder("sr", None)
    with pytest.raises(exc.InvalidInput):
        ops.check_cache_folder("sr", "OpaqueRef:nope")
    with pytest.raises(exc.UnsupportedOperation):
        ops.get_datacenter_ref_and_name(None)
    assert virtdriver.load_backend("xen", ops.conf).backend_name == "xen"


def test_cache_image_imports_the_base_vdi_once_and_spawn_uses_it(ops, xapi, store, tmp_path):
    """Nova's image pre-caching: the base VDI a spawn clones, made ahead of any spawn."""
    path = tmp_path / "precached.raw"
    path.write_bytes(b"pre" * 1000)
    image = store.import_file(path, disk_format="raw", name="precached")

    def cached():
        return [ref for ref, rec in xapi.VDI.get_all_records().items()
                if rec["other_config"].get("image-id") == image.id]

    assert cached() == []
    assert ops.cache_image(None, image.id) is True
    (base,) = cached()
    assert ops.cache_image(None, image.id) is False  # already there: nothing fetched
    instance = make_instance()
    ops.spawn(None, instance, image, [], None, [])
    try:
        assert cached() == [base]  # the spawn cloned it, fetched nothing again
    finally:
        ops.destroy(instance)
