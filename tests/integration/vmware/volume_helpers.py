"""Cinder's side of a volume, played by the test with its own pyvmomi connection.

:class:`Cinder` does what Cinder's VMDK driver does for a ``vmdk`` volume: a powered-off
*shadow VM* named ``volume-<id>`` with ``instanceUuid`` = the volume id, one disk whose
``backing.uuid`` is the volume id, and the ``connection_info`` Cinder hands Nova. Volume
bytes go in and out through the datastore's HTTP ``/folder`` URL, as any vSphere client's.
"""

from __future__ import annotations

import http.client
import ssl
import urllib.parse
import uuid as uuid_module
from typing import Any

from pyVim.task import WaitForTask
from pyVmomi import vim

from tests.integration.vmware.helpers import Inspector


class Cinder:
    """Makes shadow VMs and reads/writes their disks' data."""

    def __init__(self, inspector: Inspector) -> None:
        self.inspector = inspector
        content = inspector.content
        (self.cluster, props), = inspector.objects(vim.ClusterComputeResource,
                                                   ["resourcePool", "parent"]).values()
        self.pool = props["resourcePool"]
        dcs = inspector.objects(vim.Datacenter, ["name", "vmFolder"])
        (self.dc, dc), = [v for v in dcs.values()][:1]
        self.dc_name, self.folder = dc["name"], dc["vmFolder"]
        self.content = content

    def create_volume(self, size_kb: int = 1024, datastore: str = "LocalDS_0",
                      adapter: type = vim.vm.device.VirtualLsiLogicController
                      ) -> tuple[str, dict[str, Any], Any]:
        """A shadow VM with one disk: (volume id, connection_info, shadow VM ref)."""
        volume_id = str(uuid_module.uuid4())
        name = f"volume-{volume_id}"
        controller = adapter(key=-100, busNumber=0, sharedBus="noSharing")
        disk = vim.vm.device.VirtualDisk(
            key=-101, controllerKey=-100, unitNumber=0, capacityInKB=size_kb,
            backing=vim.vm.device.VirtualDisk.FlatVer2BackingInfo(
                fileName="", diskMode="persistent", thinProvisioned=True, uuid=volume_id))
        spec = vim.vm.ConfigSpec(
            name=name, guestId="otherGuest", numCPUs=1, memoryMB=128,
            files=vim.vm.FileInfo(vmPathName=f"[{datastore}]"), instanceUuid=volume_id,
            extraConfig=[vim.option.OptionValue(key="cinder.volume.id", value=volume_id)],
            managedBy=vim.ext.ManagedByInfo(extensionKey="org.openstack.storage",
                                            type="volume"),
            deviceChange=[
                vim.vm.device.VirtualDeviceSpec(operation="add", device=controller),
                vim.vm.device.VirtualDeviceSpec(operation="add", fileOperation="create",
                                                device=disk)])
        task = self.folder.CreateVM_Task(spec, self.pool)
        WaitForTask(task)
        ref = task.info.result
        info = {"driver_volume_type": "vmdk", "serial": volume_id,
                "data": {"volume": ref._moId, "volume_id": volume_id, "name": name,
                         "profile_id": None}}
        return volume_id, info, ref

    def disk(self, ref: Any) -> Any:
        """The shadow VM's disk (None if it has none)."""
        devices = ref.config.hardware.device
        return next((d for d in devices if isinstance(d, vim.vm.device.VirtualDisk)), None)

    def delete(self, ref: Any) -> None:
        """Cinder deleting a volume: the shadow VM and its disk file."""
        WaitForTask(ref.Destroy_Task())

    # -- bytes, through the datastore's /folder URL -------------------------------------------

    def _request(self, verb: str, path: str, body: bytes | None = None) -> tuple[int, bytes]:
        ds, rel = path[1:].split("] ", 1)
        vcsim = self.inspector.vcsim
        query = urllib.parse.urlencode({"dcPath": self.dc_name, "dsName": ds})
        conn = http.client.HTTPSConnection(
            vcsim.host, vcsim.port, context=ssl.create_default_context(cafile=vcsim.ca_file))
        try:
            conn.request(verb, f"/folder/{urllib.parse.quote(rel)}?{query}", body=body,
                         headers={"Cookie": self.content.sessionManager._stub.cookie})
            response = conn.getresponse()
            return response.status, response.read()
        finally:
            conn.close()

    @staticmethod
    def flat(path: str) -> str:
        """The data extent (``-flat.vmdk``) of a disk descriptor path."""
        return path[:-len(".vmdk")] + "-flat.vmdk"

    def write(self, disk_path: str, data: bytes) -> None:
        """Put ``data`` into the disk's data extent."""
        status, body = self._request("PUT", self.flat(disk_path), data)
        assert status in (200, 201, 204), (status, body)

    def read(self, disk_path: str) -> bytes:
        """The bytes of the disk's data extent."""
        status, body = self._request("GET", self.flat(disk_path))
        assert status == 200, (status, body)
        return body


class Array:
    """The iSCSI storage array, played through the launcher's loopback control
    ``/_vcsim/iscsi-targets`` (vcsim 0.24.2 has no iSCSI model: STAND-IN)."""

    def __init__(self, vcsim: Any) -> None:
        self.vcsim = vcsim

    def add_target(self, portal: str, iqn: str, luns: dict[int, int]) -> dict[str, Any]:
        """Serve ``iqn`` at ``portal`` with LUN number -> capacity (MiB); returns the target
        with each LUN's uuid and canonicalName."""
        # the launcher's control API has no public wrapper in Vcsim: its own helper
        return self.vcsim._control("POST", "/_vcsim/iscsi-targets", {
            "portal": portal, "iqn": iqn,
            "luns": [{"lun": n, "capacityMB": mb} for n, mb in luns.items()]})

    def remove_target(self, portal: str, iqn: str) -> None:
        """Stop serving a target."""
        query = urllib.parse.urlencode({"portal": portal, "iqn": iqn})
        self.vcsim._control("DELETE", f"/_vcsim/iscsi-targets?{query}")


def iscsi_info(portal: str, iqn: str, lun: int | None = 1) -> dict[str, Any]:
    """Cinder's iSCSI connection_info for one LUN."""
    volume_id = str(uuid_module.uuid4())
    data: dict[str, Any] = {"target_portal": portal, "target_iqn": iqn,
                            "target_discovered": False, "volume_id": volume_id}
    if lun is not None:
        data["target_lun"] = lun
    return {"driver_volume_type": "iscsi", "serial": volume_id, "data": data}


def create_fcd(inspector: Inspector, name: str, capacity_mb: int = 8,
               datastore: str = "LocalDS_0") -> tuple[str, Any]:
    """A First Class Disk (vcsim's VStorageObjectManager): (its id, the datastore ref)."""
    content = inspector.content
    ds = next(ref for ref, props in inspector.objects(vim.Datastore, ["name"]).values()
              if props["name"] == datastore)
    spec = vim.vslm.CreateSpec(
        name=name, capacityInMB=capacity_mb,
        backingSpec=vim.vslm.CreateSpec.DiskFileBackingSpec(datastore=ds,
                                                            provisioningType="thin"))
    task = content.vStorageObjectManager.CreateDisk_Task(spec)
    WaitForTask(task)
    return task.info.result.config.id.id, ds
