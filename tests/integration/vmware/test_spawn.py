"""spawn and destroy against the launcher, asserting what the server holds."""

from __future__ import annotations

import io
import json
from typing import Any

import pycdlib
import pytest
from pyVmomi import vim

from tests.integration.vmware.helpers import (
    IMAGE_BYTES,
    datastore_files,
    devices,
    extra_config,
    image_store,
    inspector,
    make_instance,
    make_vif,
    ops,
)
from virtdriver.common import exceptions
from virtdriver.common.power_state import PowerState

__all__ = ["image_store", "inspector", "ops"]


def test_spawn_builds_the_vm_and_destroy_removes_it(ops: Any, image_store: Any,
                                                    inspector: Any, vcsim: Any) -> None:
    inst = make_instance(vcpus=2, memory_mb=512, root_gb=2, ephemeral_gb=1, swap=128,
                         extra_specs={"quota:cpu_limit": "2000", "quota:memory_reservation": "256",
                                      "quota:cpu_shares_level": "high", "hw:cpu_cores": "2"})
    inst.config_drive = True
    vifs = [make_vif(1), make_vif(2, network="DC0_DVPG0")]
    progress: list[int] = []
    ops.progress.callback = lambda i, pct, step: progress.append(pct)
    try:
        ops.spawn(None, inst, image_store.disk, [("/etc/motd", "hi")], "s3cret", vifs)
    finally:
        ops.progress.callback = None
    assert progress[-1] == 100 and len(progress) == 7  # one report per step
    vm = inspector.vm(inst.uuid)
    assert vm["runtime.powerState"] == "poweredOn"
    hw = vm["config.hardware"]
    assert (hw.numCPU, hw.memoryMB, hw.numCoresPerSocket) == (2, 512, 2)
    assert vm["config.guestId"] == "otherLinux64Guest"
    assert vm["config.cpuAllocation"].limit == 2000
    assert vm["config.cpuAllocation"].shares.level == "high"
    assert vm["config.memoryAllocation"].reservation == 256
    assert devices(vm, vim.vm.device.ParaVirtualSCSIController)
    nics = devices(vm, vim.vm.device.VirtualVmxnet3)
    assert sorted(n.macAddress for n in nics) == ["fa:16:3e:00:00:01", "fa:16:3e:00:00:02"]
    backings = {n.macAddress: n.backing for n in nics}
    assert backings["fa:16:3e:00:00:01"].deviceName == "VM Network"
    assert isinstance(backings["fa:16:3e:00:00:02"],
                      vim.vm.device.VirtualEthernetCard.DistributedVirtualPortBackingInfo)
    extra = extra_config(vm)
    assert extra["nvp.vm-uuid"] == inst.uuid
    assert extra["nvp.iface-id.0"] == vifs[0].id and extra["nvp.iface-id.1"] == vifs[1].id
    disks = sorted(devices(vm, vim.vm.device.VirtualDisk), key=lambda d: d.unitNumber)
    assert [d.capacityInKB for d in disks] == [2 * 1024 ** 2, 1024 ** 2, 128 * 1024]
    assert disks[0].backing.parent is not None  # linked clone of the sized cached image
    assert "_base/" + image_store.disk.id in disks[0].backing.parent.fileName
    cdroms = devices(vm, vim.vm.device.VirtualCdrom)
    assert [c.backing.fileName for c in cdroms] == [f"[LocalDS_0] {inst.uuid}/configdrive.iso"]
    ds_dir = vcsim.datastores["LocalDS_0"]
    cached = f"{ds_dir}/_base/{image_store.disk.id}/{image_store.disk.id}-flat.vmdk"
    with open(cached, "rb") as handle:
        assert handle.read() == IMAGE_BYTES
    iso = pycdlib.PyCdlib()
    iso.open(f"{ds_dir}/{inst.uuid}/configdrive.iso")
    out = io.BytesIO()
    iso.get_file_from_iso_fp(out, rr_path="/openstack/latest/meta_data.json")
    meta = json.loads(out.getvalue())
    assert meta["uuid"] == inst.uuid and meta["admin_pass"] == "s3cret"
    assert meta["files"] == [{"path": "/etc/motd", "content_path": "/content/0000"}]
    out = io.BytesIO()
    iso.get_file_from_iso_fp(out, rr_path="/openstack/latest/network_data.json")
    assert {link["ethernet_mac_address"] for link in json.loads(out.getvalue())["links"]} == \
        {"fa:16:3e:00:00:01", "fa:16:3e:00:00:02"}
    iso.close()
    assert inst.uuid in ops.list_instance_uuids()
    assert ops.get_info(inst).state == PowerState.RUNNING

    ops.destroy(inst)
    assert inst.uuid not in inspector.vms()
    assert not any(f.startswith(f"LocalDS_0/{inst.uuid}") for f in inspector.files())
    ops.destroy(inst)  # already gone: a no-op
    with pytest.raises(exceptions.InstanceNotFound):
        ops.get_info(inst)


def test_full_copy_grows_the_root_disk(vcsim: Any, image_store: Any, inspector: Any) -> None:
    import virtdriver
    from tests.integration.vmware.helpers import make_conf
    backend = virtdriver.load_backend("vmware", make_conf(vcsim, use_linked_clone=False),
                                      image_store=image_store)
    inst = make_instance(root_gb=3)
    backend.spawn(None, inst, image_store.disk, [], None, [make_vif(3)])
    vm = inspector.vm(inst.uuid)
    (disk,) = devices(vm, vim.vm.device.VirtualDisk)
    assert disk.backing.parent is None
    assert disk.backing.fileName == f"[LocalDS_0] {inst.uuid}/{inst.uuid}.vmdk"
    flat = f"{vcsim.datastores['LocalDS_0']}/{inst.uuid}/{inst.uuid}-flat.vmdk"
    # ExtendVirtualDisk_Task is a launcher stand-in (vcsim 0.24.2 lacks it)
    import os
    assert os.path.getsize(flat) == 3 * 1024 ** 3
    backend.destroy(inst)
    backend.close()


def test_bad_input_never_reaches_the_server(ops: Any, image_store: Any) -> None:
    ops.session.stats.reset()
    bad = [
        (make_instance(), image_store.disk, [make_vif(1), make_vif(1)]),  # duplicate MAC
        (make_instance(extra_specs={"quota:cpu_limit": "lots"}), image_store.disk, []),
        (make_instance(root_gb=0, vcpus=3, extra_specs={"hw:cpu_cores": "2"}),
         image_store.disk, []),
    ]
    for inst, image, vifs in bad:
        with pytest.raises(exceptions.InvalidInput):
            ops.spawn(None, inst, image, [], None, vifs)
    meta = image_store.disk.to_dict()
    meta["properties"] = {"vmware_adaptertype": "floppy"}
    from virtdriver.common.model import ImageMeta
    with pytest.raises(exceptions.InvalidInput):
        ops.spawn(None, make_instance(), ImageMeta(**meta), [], None, [])
    assert ops.session.stats.total_calls == 0


def test_list_instances_is_one_view_pass(ops: Any, image_store: Any) -> None:
    insts = [make_instance() for _ in range(2)]
    for inst in insts:
        ops.spawn(None, inst, image_store.disk, [], None, [])
    ops.session.stats.reset()
    uuids = ops.list_instance_uuids()
    assert {i.uuid for i in insts} <= set(uuids)
    assert ops.session.stats.calls["RetrievePropertiesEx"] == 1
    assert ops.session.stats.total_calls == 3  # CreateContainerView, Retrieve, DestroyView
    ops.session.stats.reset()
    names = ops.list_instances()
    assert {i.name for i in insts} <= set(names)  # instance names, from the annotation
    assert ops.session.stats.calls["RetrievePropertiesEx"] == 1
    for inst in insts:
        ops.destroy(inst)


def test_lookup_is_cached_and_refreshed_when_stale(ops: Any, image_store: Any,
                                                   inspector: Any) -> None:
    inst = make_instance()
    ops.spawn(None, inst, image_store.disk, [], None, [])
    ops.session.stats.reset()
    ops.get_info(inst)
    assert ops.session.stats.calls == {"RetrievePropertiesEx": 1}
    ops.vm_refs.forget(inst.uuid)
    ops.session.stats.reset()
    ops.get_info(inst)
    assert ops.session.stats.calls["FindByUuid"] == 1
    # a reference that went stale (VM re-created elsewhere) is looked up again
    ops.vm_refs.remember(inst.uuid, vim.VirtualMachine("vm-999999", ops.session._stub))
    assert ops.get_info(inst).state == PowerState.RUNNING
    ops.destroy(inst)


def test_iso_image_boots_from_a_cdrom_with_a_blank_root_disk(ops: Any, image_store: Any,
                                                             inspector: Any, vcsim: Any) -> None:
    inst = make_instance(root_gb=1)
    ops.spawn(None, inst, image_store.iso, [], None, [make_vif(9)])
    vm = inspector.vm(inst.uuid)
    (cdrom,) = devices(vm, vim.vm.device.VirtualCdrom)
    assert cdrom.backing.fileName == \
        f"[LocalDS_0] _base/{image_store.iso.id}/{image_store.iso.id}.iso"
    (disk,) = devices(vm, vim.vm.device.VirtualDisk)
    assert disk.backing.parent is None and disk.capacityInKB == 1024 ** 2
    nic = devices(vm, vim.vm.device.VirtualEthernetCard)[0]
    assert isinstance(nic, vim.vm.device.VirtualE1000)  # the default NIC model
    assert vm["runtime.powerState"] == "poweredOn"
    ops.destroy(inst)


def test_unknown_network_is_refused_before_anything_is_made(ops: Any, image_store: Any,
                                                            inspector: Any) -> None:
    before = (set(inspector.vms()), datastore_files(inspector))
    ops.session.stats.reset()
    with pytest.raises(exceptions.InvalidInput, match="no-such-net"):
        ops.spawn(None, make_instance(), image_store.disk, [], None,
                  [make_vif(4, network="no-such-net")])
    assert "CreateVM_Task" not in ops.session.stats.calls
    assert (set(inspector.vms()), datastore_files(inspector)) == before


def test_spawn_without_an_image_store_is_invalid_input(vcsim: Any, image_store: Any) -> None:
    import virtdriver
    from tests.integration.vmware.helpers import make_conf
    backend = virtdriver.load_backend("vmware", make_conf(vcsim))
    with pytest.raises(exceptions.InvalidInput, match="image_store"):
        backend.spawn(None, make_instance(), image_store.disk, [], None, [])
    assert backend._backend._session is None  # not even logged in


def test_no_secret_reaches_a_log_line(ops: Any, image_store: Any, vcsim: Any,
                                      caplog: pytest.LogCaptureFixture) -> None:
    import logging

    inst = make_instance()
    inst.config_drive = True
    with caplog.at_level(logging.DEBUG):
        vcsim.expire_sessions()  # a re-login happens too
        ops.spawn(None, inst, image_store.disk, [], "adm1n-s3cret", [make_vif(5)])
        ops.destroy(inst)
    cookie = ops.session._stub.cookie
    assert cookie and cookie.split("=", 1)[-1].strip('"') not in caplog.text
    assert vcsim.password not in caplog.text and "adm1n-s3cret" not in caplog.text
    assert vcsim.password not in repr(ops.session) and cookie not in repr(ops.session)
