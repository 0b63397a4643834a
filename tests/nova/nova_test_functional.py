"""Every everyday server action through Nova's whole stack, across two compute services.

``nova.tests.functional.integrated_helpers._IntegratedTestBase`` runs the API, conductor,
scheduler, placement and here two compute services (``host1``, ``host2``) in one process;
each compute loads our driver through the shim (``compute_driver = virtdriver.<Driver>``)
and drives its own site: a cluster of one vCenter (VMware: vcsim with two clusters) or a
XAPI pool (Xen: two simulators). Each test drives one action through Nova's REST API and,
after every step, reads the simulators with a client of its own (:mod:`tests.nova.sites`):
which site and host the VM is on, its power state, CPUs, memory and disks, and that
nothing of the instance is left where it no longer belongs.

Per-compute settings: a compute's driver logs in and reads its cluster or pool in
``init_host``, when the service starts, so each compute is started right after its site's
options are set (one process, one CONF: Nova's own multi-host functional tests do the same).
"""

from __future__ import annotations

import os
import sys
import threading
import unittest
import urllib.parse
from typing import Any

from nova import conf as nova_conf
from nova.tests.fixtures import GlanceFixture, NeutronFixture
from nova.tests.functional import integrated_helpers
from nova.virt import node as nova_node
from oslo_utils import uuidutils

from tests.nova.simulators import IMAGE_BYTES, IMAGE_FORMATS
from tests.nova.sites import VM, VcsimSites, XapiSites
from virtdriver.nova import config

CONF = nova_conf.CONF
#: The bridge NeutronFixture's ports plug into.
NEUTRON_BRIDGE = "br-int"
HOSTS = ("host1", "host2")


class _TwoComputes(integrated_helpers._IntegratedTestBase):
    """Nova's stack with one compute per site; helpers that check the simulators."""

    ADMIN_API = True
    microversion = "latest"
    sites_class: type = VcsimSites
    driver_class = ""
    sites: Any = None

    @classmethod
    def setUpClass(cls) -> None:
        super().setUpClass()
        cls.sites = cls.sites_class().start(network=NEUTRON_BRIDGE)

    @classmethod
    def tearDownClass(cls) -> None:
        cls.sites.stop()
        super().tearDownClass()

    def setUp(self) -> None:
        config.register_opts(CONF)
        self.flags(compute_driver=f"virtdriver.{self.driver_class}")
        self.flags(enabled=True, group="mks")
        self.addCleanup(self.sites.clean)  # runs last: after the computes stopped
        super().setUp()
        # Stop the drivers' event threads before the services stop (cleanups run LIFO): a
        # compute's graceful shutdown runs in a thread of its own and ends by shutting the
        # process's thread pools, which must happen while Nova's fixture still stubs that.
        self.addCleanup(self._cleanup_hosts)
        disk_format, properties = IMAGE_FORMATS[self.sites.backend]
        self.image_id = GlanceFixture.image4["id"]
        image = self.glance.images[self.image_id]
        image.update(disk_format=disk_format, container_format="bare", size=len(IMAGE_BYTES))
        image["properties"] = dict(properties)
        self.glance._imagedata[self.image_id] = IMAGE_BYTES
        self._keep_uploaded_bytes()
        # a root disk of the image's own size (root_gb 0): a VM moved to another pool by
        # XAPI's migrate_send carries its disk's full virtual size
        self.small = self._create_flavor(name="vd.small", memory_mb=256, vcpu=1, disk=0,
                                         ephemeral=0)
        self.large = self._create_flavor(name="vd.large", memory_mb=512, vcpu=2, disk=2,
                                         ephemeral=0)
        self.flavors = {self.small: (1, 256, 0), self.large: (2, 512, 2)}

    def _cleanup_hosts(self) -> None:
        """Both drivers' cleanup_host at once: each waits for its event thread's server
        call to return, so side by side they take one wait, not two."""
        threads = [threading.Thread(target=compute.manager.driver.cleanup_host, args=(host,))
                   for host, compute in self.computes.items()]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=60)

    def _keep_uploaded_bytes(self) -> None:
        """GlanceFixture.update drops the data it is given; Glance keeps it, and unshelve
        boots from the bytes shelve uploaded, so the fixture keeps them here."""
        update = self.glance.update

        def update_keeping_data(context: Any, image_id: str, metadata: Any, data: Any = None,
                                **kwargs: Any) -> Any:
            if data is not None:  # Glance stores the bytes and sets the size from them
                blob = b"".join(iter(lambda: data.read(65536), b""))
                self.glance._imagedata[image_id] = blob
                metadata = {**metadata, "size": len(blob)}
            return update(context, image_id, metadata, **kwargs)

        self.glance.update = update_keeping_data  # this test's fixture only

    def _setup_services(self) -> None:
        # Nova's wheel installs api-paste.ini under <prefix>/etc/nova; its test config
        # looks for it beside the sources, where only a git checkout has it.
        self.flags(api_paste_config=os.path.join(sys.prefix, "etc", "nova", "api-paste.ini"))
        super()._setup_services()

    def _setup_compute_service(self) -> Any:
        for site, host in enumerate(HOSTS):
            for group, values in self.sites.flags(site).items():
                self.flags(group=group, **values)
            # each compute its own node identity, as separate processes would have
            # (ComputeNodeIdFixture keeps it in memory, one for the whole process)
            nova_node.LOCAL_NODE_UUID = None
            self._start_compute(host)
        return self.computes[HOSTS[0]]

    # -- what the simulators hold --------------------------------------------------------

    def _site(self, host: str) -> str:
        return self.sites.names[HOSTS.index(host)]

    def _the_vm(self, server: dict[str, Any], host: str, flavor: str,
                power: str = "running") -> VM:
        """The instance has exactly one VM, on ``host``'s site, with ``flavor``'s CPUs,
        memory and root disk, in ``power`` state; nothing is left on the other site."""
        vms = self.sites.vms(server["id"])
        self.assertEqual(1, len(vms), vms)
        vm = vms[0]
        self.assertEqual(self._site(host), vm.site, vm)
        self.assertEqual(power, vm.power, vm)
        vcpus, memory_mb, root_gb = self.flavors[flavor]
        self.assertEqual((vcpus, memory_mb), (vm.vcpus, vm.memory_mb), vm)
        self.assertAlmostEqual(root_gb, vm.root_gb, places=2, msg=str(vm))
        other = self._site(HOSTS[1 - HOSTS.index(host)])
        self.assertEqual([], self.sites.leftovers(other, server["id"]))
        self.assertEqual([], [x for x in self.sites.leftovers(vm.site, server["id"])
                              if not x.startswith("VM ")])
        return vm

    def _boot(self, host: str = HOSTS[0], flavor: str | None = None) -> dict[str, Any]:
        server = self._create_server(image_uuid=self.image_id, flavor_id=flavor or self.small,
                                     networks=[{"port": NeutronFixture.port_1["id"]}],
                                     host=host)
        self.assertEqual(host, server["OS-EXT-SRV-ATTR:host"])
        self._the_vm(server, host, flavor or self.small)
        return server

    def _gone(self, server: dict[str, Any]) -> None:
        self.assertEqual([], self.sites.vms(server["id"]))
        for site in self.sites.names:
            self.assertEqual([], self.sites.leftovers(site, server["id"]))

    # -- the actions ----------------------------------------------------------------------

    def test_lifecycle(self) -> None:
        """Boot, stop, start, reboot, snapshot, delete."""
        server = self._boot()
        # each compute lists only its own cluster's or pool's instances (a second
        # nova-compute on one vCenter would otherwise refuse to start: foreign instances)
        drivers = [self.computes[host].manager.driver for host in HOSTS]
        self.assertIn(server["id"], drivers[0].list_instance_uuids())
        self.assertNotIn(server["id"], drivers[1].list_instance_uuids())
        name = server["OS-EXT-SRV-ATTR:instance_name"]
        self.assertEqual(([name], []), tuple(
            [n for n in driver.list_instances() if n == name] for driver in drivers))
        server = self._stop_server(server)
        self._the_vm(server, HOSTS[0], self.small, "shutdown")
        server = self._start_server(server)
        self._the_vm(server, HOSTS[0], self.small)
        server = self._reboot_server(server)
        self._the_vm(server, HOSTS[0], self.small)
        self._snapshot_server(server, "snap-of-lifecycle")
        server = self._wait_for_server_parameter(server, {"OS-EXT-STS:task_state": None})
        snaps = [i for i in self.glance.images.values() if i.get("name") == "snap-of-lifecycle"]
        self.assertEqual(["active"], [s["status"] for s in snaps])
        self._the_vm(server, HOSTS[0], self.small)
        self._delete_server(server)
        self._wait_until_deleted(server)
        self._gone(server)

    def test_resize_confirm(self) -> None:
        """Resize onto the other compute, confirm: the VM is in the other site, grown."""
        server = self._boot()
        server = self._resize_server(server, self.large)
        self.assertEqual(HOSTS[1], server["OS-EXT-SRV-ATTR:host"])
        vms = [vm for vm in self.sites.vms(server["id"]) if vm.power == "running"]
        self.assertEqual([self._site(HOSTS[1])], [vm.site for vm in vms])
        server = self._confirm_resize(server)
        self._the_vm(server, HOSTS[1], self.large)

    def test_resize_revert(self) -> None:
        """Resize onto the other compute, revert: the original is back where it was."""
        server = self._boot()
        server = self._resize_server(server, self.large)
        self.assertEqual(HOSTS[1], server["OS-EXT-SRV-ATTR:host"])
        server = self._revert_resize(server)
        self.assertEqual(HOSTS[0], server["OS-EXT-SRV-ATTR:host"])
        self._the_vm(server, HOSTS[0], self.small)

    def test_cold_migrate(self) -> None:
        """Cold migration: same flavor, the other compute's site, nothing left behind."""
        server = self._boot()
        server = self._migrate_server(server)
        self.assertEqual(HOSTS[1], server["OS-EXT-SRV-ATTR:host"])
        server = self._confirm_resize(server)
        self._the_vm(server, HOSTS[1], self.small)

    def test_live_migrate(self) -> None:
        """Live migration to the other compute: running all along, in the other site."""
        server = self._boot()
        server = self._live_migrate(server, host=HOSTS[1])
        self.assertEqual(HOSTS[1], server["OS-EXT-SRV-ATTR:host"])
        self._the_vm(server, HOSTS[1], self.small)

    def test_delete_mid_resize(self) -> None:
        """Deleting a server waiting for resize confirmation removes it from both sites."""
        server = self._boot()
        server = self._resize_server(server, self.large)
        self._delete_server(server)
        self._wait_until_deleted(server)
        self._gone(server)

    def test_shelve_offload_unshelve(self) -> None:
        """Shelve (snapshot, offload: no VM anywhere), unshelve: a VM again, running."""
        server = self._boot()
        server = self._shelve_server(server)  # shelved_offload_time = 0: offloaded at once
        self.assertIsNone(server["OS-EXT-SRV-ATTR:host"])
        self._gone(server)
        server = self._unshelve_server(server)
        self._the_vm(server, server["OS-EXT-SRV-ATTR:host"], self.small)
        shelved = [i for i in self.glance.images.values()
                   if i.get("name", "").endswith("-shelved")]
        self.assertEqual([], shelved)  # unshelve deletes the shelve snapshot

    def test_rescue(self) -> None:
        """Rescue boots a rescue disk; unrescue brings the instance back as it was."""
        server = self._boot()
        server = self._rescue_server(server)
        rescued = self.sites.vms(server["id"])
        self.assertTrue(any(vm.power == "running" for vm in rescued), rescued)
        server = self._unrescue_server(server)
        self._the_vm(server, HOSTS[0], self.small)

    def test_suspend_resume(self) -> None:
        server = self._boot()
        server = self._suspend_server(server)
        self._the_vm(server, HOSTS[0], self.small, "suspended")
        server = self._resume_server(server)
        self._the_vm(server, HOSTS[0], self.small)

    def test_pause_unpause(self) -> None:
        """Where the hypervisor pauses (Xen); vSphere has no pause, so Nova refuses it."""
        server = self._boot()
        backend = self.computes[HOSTS[0]].manager.driver.backend_class
        if not backend.capabilities.get("supports_pause", False):
            self.skipTest(f"{self.driver_class}: the hypervisor has no pause")
        self.api.post_server_action(server["id"], {"pause": {}})
        server = self._wait_for_state_change(server, "PAUSED")
        self._the_vm(server, HOSTS[0], self.small, "paused")
        self.api.post_server_action(server["id"], {"unpause": {}})
        server = self._wait_for_state_change(server, "ACTIVE")
        self._the_vm(server, HOSTS[0], self.small)

    def test_interfaces(self) -> None:
        """Attach a second port, then detach it: the VM's NICs follow."""
        server = self._boot()
        first = NeutronFixture.port_1["mac_address"]
        self.assertEqual([first], self.sites.nics(server["id"]))
        self.neutron.create_port({"port": self.neutron.port_2})  # a port to attach
        self._attach_interface(server, NeutronFixture.port_2["id"])
        self.assertEqual(sorted([first, NeutronFixture.port_2["mac_address"]]),
                         self.sites.nics(server["id"]))
        self._detach_interface(server, NeutronFixture.port_2["id"])
        self.assertEqual([first], self.sites.nics(server["id"]))
        self._the_vm(server, HOSTS[0], self.small)

    def test_consoles(self) -> None:
        """A VNC console for both; an MKS (webmks) console on VMware."""
        server = self._boot()
        vnc = self.api.api_post(f"/servers/{server['id']}/remote-consoles",
                                {"remote_console": {"protocol": "vnc", "type": "novnc"}}
                                ).body["remote_console"]
        self.assertEqual("vnc", vnc["protocol"])
        self.assertIn("token", urllib.parse.unquote(vnc["url"]))
        if self.sites.backend == "vmware":
            mks = self.api.api_post(f"/servers/{server['id']}/remote-consoles",
                                    {"remote_console": {"protocol": "mks", "type": "webmks"}}
                                    ).body["remote_console"]
            self.assertEqual("mks", mks["protocol"])
            self.assertIn("token", urllib.parse.unquote(mks["url"]))

    def test_diagnostics(self) -> None:
        """Nova's diagnostics carry CPU, NIC, disk and memory figures."""
        server = self._boot(flavor=self.large)
        diag = self.api.api_get(f"/servers/{server['id']}/diagnostics").body
        vm = self._the_vm(server, HOSTS[0], self.large)
        self.assertEqual("running", diag["state"])
        self.assertEqual(vm.vcpus, diag["num_cpus"])
        self.assertEqual(vm.vcpus, len(diag["cpu_details"]))
        self.assertEqual(1, diag["num_nics"])
        self.assertEqual([NeutronFixture.port_1["mac_address"]],
                         [nic["mac_address"] for nic in diag["nic_details"]])
        self.assertEqual(len(vm.disks), diag["num_disks"])
        self.assertEqual(len(vm.disks), len(diag["disk_details"]))
        self.assertEqual(vm.memory_mb, diag["memory_details"]["maximum"])

    def test_image_precache(self) -> None:
        """An aggregate's images pre-cached (Nova's cache-images API, 2.81): the image is in
        the cache of the site of the aggregate's compute, before any server boots."""
        image = dict(self.glance.images[self.image_id], id=str(uuidutils.generate_uuid()),
                     name="precached")
        self.glance.create(None, image)
        self.glance._imagedata[image["id"]] = IMAGE_BYTES
        aggregate = self._create_aggregate("precache")
        self.api.api_post(f"/os-aggregates/{aggregate}/action",
                          {"add_host": {"host": HOSTS[0]}})
        self.assertEqual([], self.sites.cached_images(self._site(HOSTS[0]), image["id"]))
        self.api.api_post(f"/os-aggregates/{aggregate}/images",
                          {"cache": [{"id": image["id"]}]}, check_response_status=[202])
        self._wait_for_assert(lambda: self.assertNotEqual(
            [], self.sites.cached_images(self._site(HOSTS[0]), image["id"])))
        if self.sites.backend == "xen":  # the other pool fetched nothing
            self.assertEqual([], self.sites.cached_images(self._site(HOSTS[1]), image["id"]))

    def test_rebuild(self) -> None:
        """Rebuild onto the same image: still one VM, same site, running."""
        server = self._boot()
        server = self._rebuild_server(server, self.image_id)
        self._the_vm(server, HOSTS[0], self.small)


class VMwareTwoClustersTestCase(_TwoComputes):
    """Two computes on two clusters of one vcsim."""

    sites_class = VcsimSites
    driver_class = "VMwareDriver"


class XenTwoPoolsTestCase(_TwoComputes):
    """Two computes on two XAPI simulators (two pools)."""

    sites_class = XapiSites
    driver_class = "XenDriver"


def load_tests(loader: Any, standard_tests: Any, pattern: Any) -> Any:
    """Only the two backends' classes: the shared base is not a test of its own."""
    suite = unittest.TestSuite()
    for case in (VMwareTwoClustersTestCase, XenTwoPoolsTestCase):
        suite.addTests(loader.loadTestsFromTestCase(case))
    return suite
