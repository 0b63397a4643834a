"""Nova's objects into the backends' terms: image properties and live-migration data.

Nova normalises an image's properties (``ImageMetaProps.from_dict``: legacy names to
current ones, values lower-cased); the backends read vSphere's and XAPI's own names and
values, so the adapter maps them back. Live-migration data travels between computes as
versioned objects and must survive Nova's RPC serialization.
"""

from __future__ import annotations

from nova import objects, test
from nova.objects import base as obj_base
from nova.objects import migrate_data as nova_migrate_data

from virtdriver.nova import convert
from virtdriver.nova import migrate_data as live_data


def _props(**glance: str) -> dict[str, object]:
    """What the backends see for a Glance image with these properties."""
    meta = objects.ImageMeta.from_dict({"id": "7b5e7c2c-0000-4000-8000-000000000001",
                                        "disk_format": "vmdk", "properties": glance})
    return convert.image_meta(meta).properties


class ImagePropertiesTestCase(test.NoDBTestCase):
    def test_scsi_models_become_vsphere_adapter_types(self) -> None:
        for nova_value, vsphere in (("lsilogic", "lsiLogic"), ("lsisas1068", "lsiLogicsas"),
                                    ("buslogic", "busLogic"), ("vmpvscsi", "paraVirtual")):
            props = _props(hw_disk_bus="scsi", hw_scsi_model=nova_value)
            self.assertEqual(vsphere, props["vmware_adaptertype"], nova_value)

    def test_a_snapshots_legacy_adapter_type_comes_back_unchanged(self) -> None:
        """A VMware snapshot writes vmware_adaptertype=lsiLogic; Nova turns it into
        hw_scsi_model=lsilogic; unshelve must hand vSphere lsiLogic again."""
        props = _props(vmware_adaptertype="lsiLogic", vmware_ostype="otherLinux64Guest")
        self.assertEqual("lsiLogic", props["vmware_adaptertype"])
        self.assertEqual("otherLinux64Guest", props["vmware_ostype"])

    def test_ide_and_renamed_properties(self) -> None:
        props = _props(hw_disk_bus="ide", vmware_disktype="thin", xenapi_use_agent="true",
                       vm_mode="hvm")
        self.assertEqual("ide", props["vmware_adaptertype"])
        self.assertEqual("thin", props["vmware_disktype"])
        self.assertTrue(props["xenapi_use_agent"])
        self.assertEqual("hvm", props["vm_mode"])

    def test_a_scsi_model_vsphere_lacks_is_left_to_the_backend(self) -> None:
        self.assertNotIn("vmware_adaptertype", _props(hw_disk_bus="scsi",
                                                      hw_scsi_model="virtio-scsi"))


class LiveMigrateDataTestCase(test.NoDBTestCase):
    def test_vmware_data_is_novas_object(self) -> None:
        data = live_data.to_object("vmware", {"cluster_name": "C1", "datastore_regex": None})
        self.assertIsInstance(data, nova_migrate_data.VMwareLiveMigrateData)
        self.assertEqual("", data.datastore_regex)  # non-nullable in Nova's object
        data.is_volume_backed = False  # what Nova's manager sets on it
        self.assertEqual({"cluster_name": "C1", "datastore_regex": "",
                          "is_volume_backed": False}, live_data.to_dict(data))

    def test_xen_data_is_registered_and_survives_rpc_serialization(self) -> None:
        data = live_data.to_object("xen", {
            "block_migration": True, "destination_url": "https://pool-b.example:443",
            "destination_host_uuid": "h", "destination_sr_uuid": "s",
            "destination_network_uuid": "n"})
        data.is_volume_backed = False
        self.assertIn("VirtdriverXenLiveMigrateData",
                      obj_base.NovaObjectRegistry.obj_classes())
        back = obj_base.NovaObject.obj_from_primitive(data.obj_to_primitive())
        self.assertIsInstance(back, live_data.VirtdriverXenLiveMigrateData)
        self.assertEqual(live_data.to_dict(data), live_data.to_dict(back))
        merged = live_data.merge(back, {"vif_networks": {"fa:16:3e:00:00:01": "n"},
                                        "not_a_field": 1})
        self.assertEqual({"fa:16:3e:00:00:01": "n"}, merged.vif_networks)
        self.assertFalse(merged.is_volume_backed)  # what Nova set is kept

    def test_a_key_the_object_lacks_is_an_error(self) -> None:
        self.assertRaises(ValueError, live_data.to_object, "xen", {"session_id": "x"})
