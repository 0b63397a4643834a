"""A server's life through Nova's whole stack on each backend.

``nova.tests.functional.integrated_helpers._IntegratedTestBase`` runs the API, conductor,
scheduler, placement and a compute service in one process; the compute service loads our
driver through the shim (``compute_driver = virtdriver.<Driver>``) against a fresh
simulator. The test boots a server, stops, starts, reboots, snapshots and deletes it, and
after each step reads the simulator with a client of its own to check it holds what Nova
says.
"""

from __future__ import annotations

import os
import sys
import unittest
from typing import Any

from nova import conf as nova_conf
from nova.tests.fixtures import GlanceFixture, NeutronFixture
from nova.tests.functional import integrated_helpers

from tests.nova.simulators import IMAGE_BYTES, IMAGE_FORMATS, VcsimServer, XapiServer
from virtdriver.nova import config

CONF = nova_conf.CONF
#: The bridge NeutronFixture's ports plug into.
NEUTRON_BRIDGE = "br-int"


class _ServerLifecycle(integrated_helpers._IntegratedTestBase):
    """Boot, stop, start, reboot, snapshot, delete; the simulator agrees at every step."""

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
        super().setUp()  # starts the services; the compute service logs in (init_host)
        disk_format, properties = IMAGE_FORMATS[self.server.backend]
        self.image_id = GlanceFixture.image4["id"]
        image = self.glance.images[self.image_id]
        image.update(disk_format=disk_format, container_format="bare", size=len(IMAGE_BYTES))
        image["properties"] = dict(properties)
        self.glance._imagedata[self.image_id] = IMAGE_BYTES
        # stop the driver's event thread before the simulator goes (cleanups run LIFO)
        self.addCleanup(self.compute.manager.driver.cleanup_host, "compute")

    def _setup_services(self) -> None:
        # Nova's wheel installs api-paste.ini under <prefix>/etc/nova; its test config
        # looks for it beside the sources, where only a git checkout has it.
        self.flags(api_paste_config=os.path.join(sys.prefix, "etc", "nova", "api-paste.ini"))
        super()._setup_services()

    def _held(self, server: dict[str, Any]) -> str | None:
        """What the simulator says about the server's VM: running, shutdown or None."""
        state = self.server.power_states().get(server["id"])
        return {"halted": "shutdown"}.get(state, state)

    def test_server_lifecycle(self) -> None:
        server = self._create_server(image_uuid=self.image_id, flavor_id="1",
                                     networks=[{"uuid": NeutronFixture.network_1["id"]}])
        self.assertEqual("ACTIVE", server["status"])
        self.assertEqual("running", self._held(server))

        server = self._stop_server(server)
        self.assertEqual("shutdown", self._held(server))

        server = self._start_server(server)
        self.assertEqual("running", self._held(server))

        server = self._reboot_server(server)
        self.assertEqual("running", self._held(server))

        self._snapshot_server(server, "snap-of-lifecycle")
        server = self._wait_for_server_parameter(server, {"OS-EXT-STS:task_state": None})
        snaps = [i for i in self.glance.images.values() if i.get("name") == "snap-of-lifecycle"]
        self.assertEqual(1, len(snaps))
        self.assertEqual("active", snaps[0]["status"])
        self.assertEqual("running", self._held(server))

        self._delete_server(server)
        self.assertIsNone(self._held(server))


class VMwareServerLifecycleTestCase(_ServerLifecycle):
    """Through Nova's stack on vcsim."""

    server_class = VcsimServer
    driver_class = "VMwareDriver"


class XenServerLifecycleTestCase(_ServerLifecycle):
    """Through Nova's stack on the XAPI simulator."""

    server_class = XapiServer
    driver_class = "XenDriver"


def load_tests(loader: Any, standard_tests: Any, pattern: Any) -> Any:
    """Only the two backends' classes: the shared base is not a test of its own."""
    suite = unittest.TestSuite()
    for case in (VMwareServerLifecycleTestCase, XenServerLifecycleTestCase):
        suite.addTests(loader.loadTestsFromTestCase(case))
    return suite
