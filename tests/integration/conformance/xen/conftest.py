"""The Xen backend's conformance provider: the XAPI simulator, read with a plain XenAPI client."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import pytest
import XenAPI

import virtdriver
from tests.integration.xen.conftest import IMAGE_BYTES, make_conf
from tests.integration.xen.volume_helpers import Volume, new_target, volume_vbds
from tests.support.xapi import running_simulator
from virtdriver.common.power_state import PowerState
from virtdriver.testing import ConformanceBackend, DiskView, Leftovers, NicView, VMView
from virtdriver.xen.simulator import Simulator

NULL = "OpaqueRef:NULL"
MiB = 1024 ** 2
#: how much of a new volume's LUN volume_exists compares (new_target writes a mark there)
VOLUME_MARK_BYTES = 4096

POWER_STATES = {"Running": PowerState.RUNNING, "Halted": PowerState.SHUTDOWN,
                "Paused": PowerState.PAUSED, "Suspended": PowerState.SUSPENDED}

#: spawn's steps and the XAPI call each makes first, where a fault is injected.
FAILURE_STEPS = {
    "check_no_vm": "VM.get_all_records_where",
    "clone_root_disk": "VDI.clone",
    "resize_root_disk": "VDI.resize",
    "create_disks": "VDI.create",
    "create_vm_record": "VM.create",
    "attach_devices": "VBD.create",
    "setup_network": "VIF.create",
    "boot_instance": "VM.start",
    "configure_booted_instance": "host.call_plugin",
}


class XenConformanceBackend(ConformanceBackend):
    """XenVMOps on a XAPI simulator with two hosts (so live migration has a destination)."""

    failure_steps = tuple(FAILURE_STEPS)

    def __init__(self, sim: Simulator, store: Any, image: Any) -> None:
        self.sim = sim
        self._store = store
        self._image = image
        self.session = XenAPI.Session(sim.url)
        self.session.xenapi.login_with_password("root", "secret", "2.1", "conformance")
        self.xapi = self.session.xenapi
        #: the volumes make_volume made, by their id (``serial``), and the bytes each was
        #: made with, to tell that its LUN still holds them
        self._volumes: dict[str, tuple[Volume, bytes]] = {}

    @property
    def image(self) -> Any:
        return self._image

    @property
    def image_store(self) -> Any:
        return self._store

    @property
    def network(self) -> str:
        return "xenbr0"

    def make_ops(self, progress_callback: Any = None) -> Any:
        return virtdriver.load_backend("xen", make_conf(self.sim.url), image_store=self._store,
                                       progress_callback=progress_callback)

    def read_vm(self, instance: Any) -> VMView | None:
        refs = self.xapi.VM.get_by_name_label(instance.name)
        if not refs:
            return None
        assert len(refs) == 1, f"{len(refs)} VMs named {instance.name}"
        vm = self.xapi.VM.get_record(refs[0])
        disks = []
        for vbd in vm["VBDs"]:
            record = self.xapi.VBD.get_record(vbd)
            if record["type"] == "Disk" and record["VDI"] != NULL:
                size = int(self.xapi.VDI.get_virtual_size(record["VDI"]))
                disks.append((int(record["userdevice"]), DiskView(size)))
        nics = []
        for vif in vm["VIFs"]:
            record = self.xapi.VIF.get_record(vif)
            nics.append((int(record["device"]), NicView(
                record["MAC"].lower(), self.xapi.network.get_bridge(record["network"]))))
        host = (self.xapi.host.get_name_label(vm["resident_on"])
                if vm["resident_on"] != NULL else None)
        return VMView(power_state=POWER_STATES[vm["power_state"]],
                      vcpus=int(vm["VCPUs_at_startup"]),
                      memory_mb=int(vm["memory_static_max"]) // MiB,
                      disks=tuple(d for _, d in sorted(disks, key=lambda pair: pair[0])),
                      nics=tuple(n for _, n in sorted(nics, key=lambda pair: pair[0])),
                      host=host)

    def leftovers(self) -> Leftovers:
        vms = {rec["uuid"] for rec in self.xapi.VM.get_all_records().values()
               if not rec["is_a_template"] and not rec["is_control_domain"]}
        records = self.xapi.VDI.get_all_records().values()
        # A base copy a live VHD chain still hangs from is part of that disk (the SR
        # coalesces it in its own time); the image cache may stay (the contract allows it).
        parents = {rec["sm_config"].get("vhd-parent") for rec in records}
        vdis = {rec["uuid"] for rec in records if "image-id" not in rec["other_config"]
                and not (not rec["managed"] and rec["uuid"] in parents)}
        tasks = {rec["uuid"] for rec in self.xapi.task.get_all_records().values()}
        devices = ({f"VBD/{rec['uuid']}" for rec in self.xapi.VBD.get_all_records().values()}
                   | {f"VIF/{rec['uuid']}" for rec in self.xapi.VIF.get_all_records().values()})
        return Leftovers(frozenset(vms), frozenset(vdis), frozenset(tasks), frozenset(devices))

    @contextlib.contextmanager
    def inject_failure(self, step: str) -> Iterator[str]:
        self.sim.inject_fault(FAILURE_STEPS[step], ["INTERNAL_ERROR", f"injected into {step}"])
        try:
            yield "INTERNAL_ERROR"
        finally:
            self.sim.clear_faults()

    def make_volume(self) -> dict[str, Any]:
        """A Cinder iSCSI volume: a LUN of a new target the simulator exports."""
        volume, = new_target(self.sim)
        self._volumes[volume.id] = (volume, volume.read(VOLUME_MARK_BYTES))
        return volume.connection_info()

    def _volume(self, connection_info: dict[str, Any]) -> tuple[Volume, bytes]:
        return self._volumes[connection_info["serial"]]

    def volume_attached(self, connection_info: dict[str, Any], instance: Any) -> bool:
        """A volume VBD of the instance's VM shows the LUN, plugged if the VM runs (the
        guest has the volume only then)."""
        volume, _ = self._volume(connection_info)
        refs = self.xapi.VM.get_by_name_label(instance.name)
        if not refs:
            return False
        running = self.xapi.VM.get_power_state(refs[0]) == "Running"
        return any(vbd["vdi_uuid"] == volume.vdi_uuid
                   and (vbd["currently_attached"] or not running)
                   for vbd in volume_vbds(self.xapi, refs[0]).values())

    def volume_exists(self, connection_info: dict[str, Any]) -> bool:
        """The target still exports the LUN, with the bytes it was made with."""
        volume, mark = self._volume(connection_info)
        exported = any(lun["lun"] == volume.lun
                       for target in self.sim.controls.iscsi_targets()
                       if target["iqn"] == volume.iqn for lun in target["luns"])
        return exported and volume.read(len(mark)) == mark

    def delete_volume(self, connection_info: dict[str, Any]) -> None:
        """Remove the LUN from its target, as the volume service deletes a volume."""
        volume, _ = self._volumes.pop(connection_info["serial"])
        self.sim.controls.remove_iscsi_lun(volume.iqn, volume.lun)

    def live_migration_destination(self, instance: Any) -> str:
        here = self.read_vm(instance).host  # type: ignore[union-attr]
        names = sorted(self.xapi.host.get_name_label(h) for h in self.xapi.host.get_all())
        return next(name for name in names if name != here)

    def close(self) -> None:
        self.xapi.session.logout()


@pytest.fixture(scope="module")
def conformance_backend(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ConformanceBackend]:
    """The XAPI simulator (two hosts), an image store with one raw image, the provider."""
    root = tmp_path_factory.mktemp("xen-conformance")
    store = virtdriver.LocalImageStore(root / "images")
    (root / "disk.raw").write_bytes(IMAGE_BYTES)
    image = store.import_file(root / "disk.raw", disk_format="raw", name="cirros")
    with running_simulator(hosts=2) as sim:
        provider = XenConformanceBackend(sim, store, image)
        try:
            yield provider
        finally:
            provider.close()
