"""Cinder volumes through Nova's whole stack: boot from volume, attach, detach, delete.

``_IntegratedTestBase`` runs Nova's API, conductor, scheduler, placement and one compute
service whose driver is ours, against a fresh simulator. Nova's ``CinderFixture`` plays
Cinder's API; the ``connection_info`` it returns for each volume is real: the backend's
volume made on the simulator as Cinder's driver makes it (VMware: a shadow VM holding a
VMDK; Xen: an iSCSI target and LUN on the XAPI simulator's storage network,
:mod:`tests.nova.cinder_volumes`). After each step the test reads the simulator with a
client of its own: which volumes the server's VM holds, and that the volume's own storage
still holds it.

One class per backend: a backend supplies :meth:`_ServerVolumes._new_volume`,
:meth:`~_ServerVolumes._attached` and :meth:`~_ServerVolumes._volume_kept`.
"""

from __future__ import annotations

import os
import sys
import unittest
from typing import Any

from nova import conf as nova_conf
from nova.tests.fixtures import CinderFixture, GlanceFixture, NeutronFixture
from nova.tests.functional import integrated_helpers
from pyVim.task import WaitForTask

from tests.nova import cinder_volumes
from tests.nova.simulators import IMAGE_BYTES, IMAGE_FORMATS, VcsimServer, XapiServer
from virtdriver.nova import config

CONF = nova_conf.CONF
#: The bridge NeutronFixture's ports plug into.
NEUTRON_BRIDGE = "br-int"


class _ServerVolumes(integrated_helpers._IntegratedTestBase):
    """Boot from a volume, attach and detach (running and stopped), delete: the volume
    survives every step on the simulator."""

    ADMIN_API = True
    microversion = "latest"
    server_class: type = VcsimServer
    driver_class = ""
    server: Any = None

    @classmethod
    def setUpClass(cls) -> None:
        super().setUpClass()
        cls.server = cls.server_class().start(network=NEUTRON_BRIDGE)

    @classmethod
    def tearDownClass(cls) -> None:
        cls.server.stop()
        super().tearDownClass()

    def setUp(self) -> None:
        config.register_opts(CONF)
        self.flags(compute_driver=f"virtdriver.{self.driver_class}")
        for group, values in self.server.flags().items():
            self.flags(group=group, **values)
        super().setUp()  # starts the services (and Nova's CinderFixture as self.cinder)
        disk_format, properties = IMAGE_FORMATS[self.server.backend]
        self.image_id = GlanceFixture.image4["id"]
        image = self.glance.images[self.image_id]
        image.update(disk_format=disk_format, container_format="bare", size=len(IMAGE_BYTES))
        image["properties"] = dict(properties)
        self.glance._imagedata[self.image_id] = IMAGE_BYTES
        # this test's volumes only: the fixture reads self.VOLUME_CONNECTION_INFO
        self.cinder.VOLUME_CONNECTION_INFO = dict(CinderFixture.VOLUME_CONNECTION_INFO)
        self.addCleanup(self.compute.manager.driver.cleanup_host, "compute")

    def _setup_services(self) -> None:
        # Nova's wheel installs api-paste.ini under <prefix>/etc/nova (see the functional test)
        self.flags(api_paste_config=os.path.join(sys.prefix, "etc", "nova", "api-paste.ini"))
        super()._setup_services()

    # -- what a backend supplies --------------------------------------------------------------

    def _new_volume(self, volume_id: str | None = None) -> str:
        """Make a volume on the simulator and have the fixture hand out its connection."""
        raise NotImplementedError

    def _attached(self, server: dict[str, Any]) -> set[str]:
        """Ids of the volumes the server's VM holds, read from the simulator."""
        raise NotImplementedError

    def _volume_kept(self, volume_id: str) -> bool:
        """Whether the volume's own storage still holds it."""
        raise NotImplementedError

    # -- the tests -----------------------------------------------------------------------------

    def _networks(self) -> list[dict[str, str]]:
        return [{"uuid": NeutronFixture.network_1["id"]}]

    def test_boot_from_volume_and_delete_keeps_the_volume(self) -> None:
        volume_id = self._new_volume(CinderFixture.IMAGE_BACKED_VOL)
        body = self._build_server(image_uuid="", flavor_id="1", networks=self._networks())
        body["block_device_mapping_v2"] = [{"boot_index": 0, "uuid": volume_id,
                                            "source_type": "volume",
                                            "destination_type": "volume"}]
        server = self.api.post_server({"server": body})
        server = self._wait_for_state_change(server, "ACTIVE")
        self.assertEqual({volume_id}, self._attached(server))
        self.assertEqual([volume_id], list(self.cinder.volume_ids_for_instance(server["id"])))

        self._delete_server(server)
        self.assertTrue(self._volume_kept(volume_id))

    def test_attach_and_detach_running_and_stopped(self) -> None:
        server = self._create_server(image_uuid=self.image_id, flavor_id="1",
                                     networks=self._networks())
        first, second = self._new_volume(), self._new_volume()

        self._attach_volume(server, first)
        self.assertEqual({first}, self._attached(server))

        self.api.delete_server_volume(server["id"], first)
        self._wait_for_volume_detach(server["id"], first)
        self.assertEqual(set(), self._attached(server))
        self.assertTrue(self._volume_kept(first))

        server = self._stop_server(server)
        self._attach_volume(server, second)
        self.assertEqual({second}, self._attached(server))
        server = self._start_server(server)
        self.assertEqual({second}, self._attached(server))

        # deleting the server detaches the volume and leaves it to Cinder
        self._delete_server(server)
        self.assertTrue(self._volume_kept(second))
        self.assertTrue(self._volume_kept(first))


class VMwareServerVolumesTestCase(_ServerVolumes):
    """vmdk volumes (Cinder's shadow VMs) on vcsim."""

    server_class = VcsimServer
    driver_class = "VMwareDriver"

    def _new_volume(self, volume_id: str | None = None) -> str:
        content = self.server.content
        volume_id, info = cinder_volumes.vmdk_volume(content, volume_id)
        del info["data"]["volume_id"]  # the fixture sets it, as Cinder does
        self.cinder.VOLUME_CONNECTION_INFO[volume_id] = info
        self.addCleanup(lambda: WaitForTask(
            cinder_volumes.shadow_vm(content, volume_id).Destroy_Task()))
        return volume_id

    def _attached(self, server: dict[str, Any]) -> set[str]:
        content = self.server.content
        files = set(cinder_volumes.attached_volume_files(content, server["id"]))
        return {volume_id for volume_id in self.cinder.VOLUME_CONNECTION_INFO
                if cinder_volumes.shadow_vm(content, volume_id) is not None
                and cinder_volumes.shadow_disk_path(content, volume_id) in files}

    def _volume_kept(self, volume_id: str) -> bool:
        path = cinder_volumes.shadow_disk_path(self.server.content, volume_id)
        return path is not None and f"volume-{volume_id}" in path


class XenServerVolumesTestCase(_ServerVolumes):
    """iSCSI volumes (a target and LUN each) on the XAPI simulator."""

    server_class = XapiServer
    driver_class = "XenDriver"

    def _new_volume(self, volume_id: str | None = None) -> str:
        volume_id, info = cinder_volumes.iscsi_volume(self.server.url, volume_id)
        del info["data"]["volume_id"]  # the fixture sets it, as Cinder does
        self.cinder.VOLUME_CONNECTION_INFO[volume_id] = info
        return volume_id

    def _attached(self, server: dict[str, Any]) -> set[str]:
        vdis = set(cinder_volumes.xen_attached_vdis(self.server.client.xenapi,
                                                    server["id"]).values())
        return {volume_id for volume_id in self.cinder.VOLUME_CONNECTION_INFO
                if cinder_volumes.iscsi_vdi_uuid(self.server.url, volume_id) in vdis}

    def _volume_kept(self, volume_id: str) -> bool:
        return cinder_volumes.iscsi_lun_head(self.server.url, volume_id) == \
            cinder_volumes.head_of(volume_id)


def load_tests(loader: Any, standard_tests: Any, pattern: Any) -> Any:
    """Only the backends' classes: the shared base is not a test of its own."""
    suite = unittest.TestSuite()
    for case in (VMwareServerVolumesTestCase, XenServerVolumesTestCase):
        suite.addTests(loader.loadTestsFromTestCase(case))
    return suite
