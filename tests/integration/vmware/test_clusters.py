"""Two clusters of one vCenter, one backend each (as two nova-computes would drive them):
each sees only its own cluster's instances; a resize, cold migration or live migration
moves the VM into the other cluster's resource pool, onto a host and datastore of it; a
revert brings it back. Plus the MKS console and per-device diagnostics."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from typing import Any

import pytest
from pyVmomi import vim

import virtdriver
from tests.integration.vmware.helpers import (  # noqa: F401 (fixtures)
    TWO_CLUSTERS,
    devices,
    image_store,
    inspector,
    make_conf,
    make_instance,
    make_vif,
    two_clusters_vcsim_flags,
)
from virtdriver.common.model import Flavor

pytestmark = pytest.mark.integration

CLUSTERS = TWO_CLUSTERS


@pytest.fixture
def inst(computes: tuple[Any, Any], image_store: Any) -> Iterator[Any]:  # noqa: F811
    source, dest = computes
    instance = make_instance(root_gb=1)
    source.spawn(None, instance, image_store.disk, [], None, [make_vif(1, "DC0_DVPG0")])
    yield instance
    instance.task_state = None
    for backend in computes:
        backend.destroy(instance)


def cluster_of(inspector: Any, uuid: str) -> tuple[str, str]:  # noqa: F811
    """(cluster name, host name) of the instance's VM, read from its pool and host."""
    vm = inspector.vm(uuid)
    pools = inspector.objects(vim.ResourcePool, ["owner"])
    owner = pools[vm["resourcePool"]._moId][1]["owner"]
    return inspector.names([owner])[0], inspector.names([vm["runtime.host"]])[0]


def test_each_compute_lists_only_its_cluster(computes: Any, inst: Any) -> None:
    source, dest = computes
    assert inst.uuid in source.list_instance_uuids()
    assert inst.uuid not in dest.list_instance_uuids()
    assert inst.name in source.list_instances()
    assert inst.name not in dest.list_instances()


def test_resize_into_the_other_cluster_then_confirm(computes: Any, inst: Any,
                                                    inspector: Any,  # noqa: F811
                                                    vcsim: Any) -> None:
    source, dest = computes
    bigger = Flavor(vcpus=2, memory_mb=512, root_gb=2)
    disk_info = source.migrate_disk_and_power_off(None, inst, "", bigger)
    assert "password" not in repr(disk_info) and vcsim.password not in repr(disk_info)
    dest.finish_migration(None, None, inst, disk_info, [], None, True)
    cluster, host = cluster_of(inspector, inst.uuid)
    assert (cluster, host.startswith(CLUSTERS[1])) == (CLUSTERS[1], True)
    vm = inspector.vm(inst.uuid)
    assert vm["runtime.powerState"] == "poweredOn"
    assert (vm["config.hardware"].numCPU, vm["config.hardware"].memoryMB) == (2, 512)
    (disk,) = devices(vm, vim.vm.device.VirtualDisk)
    assert disk.capacityInKB == 2 * 1024 ** 2
    original = os.path.join(vcsim.datastores["LocalDS_0"], inst.uuid, "original.vmdk")
    assert os.path.exists(original)  # kept for a revert until the confirm
    assert inst.uuid in dest.list_instance_uuids()
    assert inst.uuid not in source.list_instance_uuids()
    source.confirm_migration(None, inst, [])
    assert not os.path.exists(original)
    assert cluster_of(inspector, inst.uuid)[0] == CLUSTERS[1]


def test_revert_brings_the_original_back(computes: Any, inst: Any,
                                         inspector: Any, vcsim: Any) -> None:  # noqa: F811
    source, dest = computes
    here = cluster_of(inspector, inst.uuid)
    disk_info = source.migrate_disk_and_power_off(None, inst,
                                                  "", Flavor(vcpus=2, memory_mb=512,
                                                             root_gb=2))
    dest.finish_migration(None, None, inst, disk_info, [], None, True)
    # Nova's revert: destroy on the destination first, with the task state set
    inst.task_state = "resize_reverting"
    dest.destroy(inst)
    assert cluster_of(inspector, inst.uuid)[0] == CLUSTERS[1]  # the one VM is kept
    inst.task_state = None
    source.finish_revert_migration(None, inst, [])
    assert cluster_of(inspector, inst.uuid) == here
    vm = inspector.vm(inst.uuid)
    assert vm["runtime.powerState"] == "poweredOn"
    assert (vm["config.hardware"].numCPU, vm["config.hardware"].memoryMB) == (1, 256)
    (disk,) = devices(vm, vim.vm.device.VirtualDisk)
    assert disk.capacityInKB == 1024 ** 2
    assert not os.path.exists(os.path.join(vcsim.datastores["LocalDS_0"], inst.uuid,
                                           "original.vmdk"))


def test_live_migration_into_the_other_cluster(computes: Any, inst: Any,
                                               inspector: Any) -> None:  # noqa: F811
    source, dest = computes
    data = dest.check_can_live_migrate_destination(None, inst)
    assert data["cluster_name"] == CLUSTERS[1]
    data = source.check_can_live_migrate_source(None, inst, data)
    data = dest.pre_live_migration(None, inst, None, [], None, data)
    calls: list[str] = []
    source.live_migrate(None, inst, "host2", lambda *a: calls.append("post"),
                        lambda *a: calls.append("recover"), migrate_data=data)
    assert calls == ["post"]
    cluster, host = cluster_of(inspector, inst.uuid)
    assert cluster == CLUSTERS[1] and host.startswith(CLUSTERS[1])
    assert inspector.vm(inst.uuid)["runtime.powerState"] == "poweredOn"
    assert inst.uuid in dest.list_instance_uuids()
    assert inst.uuid not in source.list_instance_uuids()
    with pytest.raises(virtdriver.common.exceptions.MigrationPreCheckError):
        source.check_can_live_migrate_source(None, inst, {"cluster_name": "elsewhere",
                                                          "datastore_regex": ""})


def test_mks_console_is_a_ticket_kept_out_of_reprs(computes: Any, inst: Any) -> None:
    console = computes[0].get_mks_console(inst)
    assert console.type == "mks" and console.port > 0 and console.host
    ticket = json.loads(console.internal_access_path)
    assert set(ticket) == {"ticket", "cfgFile", "thumbprint"}
    assert ticket["ticket"] not in repr(console)


def test_diagnostics_have_each_cpu_nic_and_disk(computes: Any, inst: Any) -> None:
    diags = computes[0].get_instance_diagnostics(inst)
    assert diags.num_cpus == len(diags.cpu_details) == 1
    assert [nic.mac_address for nic in diags.nic_details] == ["fa:16:3e:00:00:01"]
    assert diags.num_disks == len(diags.disk_details) == 1
    assert diags.memory_details.maximum == 256


def test_revert_of_an_image_sized_root_disk(computes: Any, image_store: Any,  # noqa: F811
                                            inspector: Any) -> None:  # noqa: F811
    """A flavor with root_gb 0 keeps the image's size: the revert restores that size."""
    source, dest = computes
    instance = make_instance(root_gb=0)
    source.spawn(None, instance, image_store.disk, [], None, [])
    try:
        (disk,) = devices(inspector.vm(instance.uuid), vim.vm.device.VirtualDisk)
        before = disk.capacityInKB
        disk_info = source.migrate_disk_and_power_off(
            None, instance, "", Flavor(vcpus=1, memory_mb=256, root_gb=1))
        dest.finish_migration(None, None, instance, disk_info, [], None, True)
        source.finish_revert_migration(None, instance, [])
        (disk,) = devices(inspector.vm(instance.uuid), vim.vm.device.VirtualDisk)
        assert disk.capacityInKB == before
        assert cluster_of(inspector, instance.uuid)[0] == CLUSTERS[0]
    finally:
        source.destroy(instance)
