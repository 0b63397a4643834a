"""VMware volume pieces that do no I/O: bus choice, slots, what attach records."""

import pytest
from pyVmomi import vim

from virtdriver.common.exceptions import InvalidInput, VolumeError
from virtdriver.common.volumes import ConnectionInfo
from virtdriver.vmware import iscsi, volume_util

VMDK = ConnectionInfo("vmdk", {"volume": "vm-1", "volume_id": "v-1"})


def scsi(key=1000, bus=0, cls=vim.vm.device.VirtualLsiLogicController):
    return cls(key=key, busNumber=bus, scsiCtlrUnitNumber=7)


def ide(key):
    return vim.vm.device.VirtualIDEController(key=key, busNumber=key - 200)


def disk(key, controller, unit, path="[ds] a/a.vmdk", uuid=None):
    return vim.vm.device.VirtualDisk(
        key=key, controllerKey=controller, unitNumber=unit,
        backing=vim.vm.device.VirtualDisk.FlatVer2BackingInfo(fileName=path, uuid=uuid))


@pytest.mark.parametrize("bus,expected", [(None, None), ("scsi", "scsi"), ("ide", "ide"),
                                          ("paraVirtual", "paraVirtual")])
def test_requested_adapter(bus, expected):
    assert volume_util.requested_adapter(bus, "disk") == expected


@pytest.mark.parametrize("bus,device_type,field", [("virtio", None, "disk_bus"),
                                                   ("sata", "disk", "disk_bus"),
                                                   (None, "cdrom", "device_type")])
def test_buses_vsphere_lacks_are_invalid_input(bus, device_type, field):
    with pytest.raises(InvalidInput) as caught:
        volume_util.requested_adapter(bus, device_type)
    assert caught.value.field == field


def test_scsi_slot_skips_used_units_and_the_controllers_own():
    devices = [scsi(), ide(200), ide(201)] + [disk(2000 + u, 1000, u) for u in range(7)]
    slot = volume_util.choose_slot(devices, None)
    assert (slot.controller_key, slot.unit, slot.adapter) == (1000, 8, "lsiLogic")
    assert slot.new_controller is None and not slot.is_ide


def test_a_full_controller_gets_a_new_one_on_the_next_bus():
    devices = [scsi()] + [disk(2000 + u, 1000, u) for u in range(16) if u != 7]
    slot = volume_util.choose_slot(devices, "scsi")
    assert slot.controller_key < 0 and slot.unit == 0
    assert slot.new_controller.device.busNumber == 1


def test_a_named_adapter_gets_its_own_controller():
    slot = volume_util.choose_slot([scsi()], "paraVirtual")
    assert isinstance(slot.new_controller.device, vim.vm.device.ParaVirtualSCSIController)


def test_ide_slots_and_a_full_vm():
    devices = [ide(200), ide(201), disk(1, 200, 0), disk(2, 200, 1), disk(3, 201, 0)]
    slot = volume_util.choose_slot(devices, "ide")
    assert (slot.controller_key, slot.unit, slot.is_ide) == (201, 1, True)
    with pytest.raises(VolumeError):
        volume_util.choose_slot(devices + [disk(4, 201, 1)], "ide")
    full = [scsi(1000 + b, b) for b in range(4)] + [
        disk(5000 + 16 * b + u, 1000 + b, u) for b in range(4) for u in range(16) if u != 7]
    with pytest.raises(VolumeError):
        volume_util.choose_slot(full, None)


def test_the_last_record_wins_and_empty_means_detached():
    def option(value):
        return vim.option.OptionValue(key="volume-v-1", value=value)
    assert volume_util.recorded({"config.extraConfig": [option("u-1")]}, VMDK) == "u-1"
    assert volume_util.recorded({"config.extraConfig": [option("u-1"), option("")]},
                                VMDK) is None
    assert volume_util.recorded({}, VMDK) is None


def test_volume_disks_are_told_from_the_instances_own():
    devices = [scsi(), disk(1, 1000, 0, "[ds] inst/inst.vmdk"),
               disk(2, 1000, 1, "[ds] volume-v-1/volume-v-1.vmdk", uuid="u-1")]
    props = {"config.extraConfig": [vim.option.OptionValue(key="volume-v-1", value="u-1")]}
    assert volume_util.volume_disk_keys(devices, props) == {2}
    assert volume_util.own_root_disk(devices, props).key == 1
    # boot from volume: the first disk is the volume, and there is no own root disk
    assert volume_util.own_root_disk(devices[:1] + devices[2:], props) is None


@pytest.mark.parametrize("portal,expected", [("10.0.0.5:3260", ("10.0.0.5", 3260)),
                                             ("10.0.0.5", ("10.0.0.5", 3260)),
                                             ("[fd00::5]:3261", ("fd00::5", 3261)),
                                             ("fd00::5", ("fd00::5", 3260))])
def test_portals(portal, expected):
    assert iscsi._portal(portal) == expected
