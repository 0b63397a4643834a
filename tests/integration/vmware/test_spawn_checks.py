"""Spawn's safety without its former look-ups: a foreign VM named after the instance uuid
is refused by CreateVM's DuplicateName, and a cached image that went away behind this
process's back is cached again."""

from __future__ import annotations

import os
import shutil
from typing import Any

import pytest
from pyVim.task import WaitForTask
from pyVmomi import vim

from tests.integration.vmware.helpers import image_store, inspector, make_instance, ops
from virtdriver.common import exceptions

__all__ = ["image_store", "inspector", "ops"]


def _datacenter_folder_and_pool(inspector: Any) -> tuple[Any, Any]:
    dc = inspector.content.rootFolder.childEntity[0]
    cluster = next(e for e in dc.hostFolder.childEntity
                   if isinstance(e, vim.ClusterComputeResource))
    return dc.vmFolder, cluster.resourcePool


def test_a_foreign_vm_with_the_instance_uuid_as_name_is_refused_and_left_alone(
        ops: Any, image_store: Any, inspector: Any) -> None:
    inst = make_instance()
    folder, pool = _datacenter_folder_and_pool(inspector)
    ds_name = next(iter(inspector.vcsim.datastores))
    task = folder.CreateVM_Task(vim.vm.ConfigSpec(
        name=inst.uuid, guestId="otherGuest64", numCPUs=1, memoryMB=64,
        files=vim.vm.FileInfo(vmPathName=f"[{ds_name}]")), pool)
    WaitForTask(task)
    foreign = task.info.result
    files_before = inspector.files()
    ops.session.stats.reset()
    with pytest.raises(exceptions.InstanceExists):
        ops.spawn(None, inst, image_store.disk, [], None, [])
    assert "FindByUuid" not in ops.session.stats.calls  # refused by CreateVM itself
    assert inspector.files() >= {f for f in files_before if f"/{inst.uuid}" in f}
    assert foreign.name == inst.uuid  # still there, untouched
    WaitForTask(foreign.Destroy_Task())


def test_a_cached_image_removed_behind_our_back_is_cached_again(
        ops: Any, image_store: Any, inspector: Any) -> None:
    first = make_instance()
    ops.spawn(None, first, image_store.disk, [], None, [])
    ops.destroy(first)
    # another compute sharing the datastore aged the image out of the cache
    image_id = image_store.disk.id
    removed = []
    for root in inspector.vcsim.datastores.values():
        for dirpath, dirnames, _ in os.walk(root):
            if os.path.basename(dirpath) == image_id:
                shutil.rmtree(dirpath)
                removed.append(dirpath)
                dirnames.clear()
    assert removed
    second = make_instance()
    ops.session.stats.reset()
    ops.spawn(None, second, image_store.disk, [], None, [])
    assert ops.session.stats.calls["HTTP PUT"] >= 1  # uploaded again
    assert inspector.vm(second.uuid)["runtime.powerState"] == "poweredOn"
    ops.destroy(second)
