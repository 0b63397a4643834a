"""The loader: ``compute_driver`` in Nova's config, ComputeManager loads our driver.

Nova imports ``nova.virt.<compute_driver>``; these tests go through the installed shim
(``nova.virt.virtdriver``) exactly as nova-compute does, with no simulator: loading a
driver must not talk to any server.
"""

from __future__ import annotations

from nova import test
from nova.compute import manager
from nova.virt import driver

import virtdriver.nova
from virtdriver.vmware.vmops import VMwareVMOps
from virtdriver.xen.vmops import XenVMOps


class LoaderTestCase(test.NoDBTestCase):
    """ComputeManager() with compute_driver = virtdriver.<Driver>."""

    def _load(self, name: str) -> driver.ComputeDriver:
        self.flags(compute_driver=name)
        return manager.ComputeManager().driver

    def test_loads_vmware_driver(self) -> None:
        loaded = self._load("virtdriver.VMwareDriver")
        self.assertIsInstance(loaded, virtdriver.nova.VMwareDriver)
        self.assertIsInstance(loaded, driver.ComputeDriver)

    def test_loads_xen_driver(self) -> None:
        loaded = self._load("virtdriver.XenDriver")
        self.assertIsInstance(loaded, virtdriver.nova.XenDriver)

    def test_shim_is_inside_nova_virt(self) -> None:
        import nova.virt.virtdriver as shim
        self.assertIs(shim.VMwareDriver, virtdriver.nova.VMwareDriver)
        self.assertIs(shim.XenDriver, virtdriver.nova.XenDriver)

    def test_capabilities_are_the_backends(self) -> None:
        for cls, backend in ((virtdriver.nova.VMwareDriver, VMwareVMOps),
                             (virtdriver.nova.XenDriver, XenVMOps)):
            caps = cls.capabilities
            self.assertEqual(set(driver.ComputeDriver.capabilities), set(caps))
            for key, value in caps.items():
                self.assertEqual(bool(backend.capabilities.get(key, False)), value, key)
        self.assertTrue(virtdriver.nova.VMwareDriver.capabilities["supports_image_type_vmdk"])
        self.assertFalse(virtdriver.nova.XenDriver.capabilities["supports_image_type_vmdk"])

    def test_our_options_registered_on_nova_conf(self) -> None:
        self._load("virtdriver.XenDriver")
        from nova import conf
        self.assertIn("connection_url", conf.CONF.xenserver)
        self.assertIn("temp_folder", conf.CONF.vmware)
        # Nova's own [vmware] options are kept, not replaced
        self.assertIn("host_ip", conf.CONF.vmware)

    def test_unknown_driver_exits(self) -> None:
        import sys
        from unittest import mock
        with mock.patch.object(sys, "exit", side_effect=test.TestingException()):
            self.assertRaises(test.TestingException, self._load, "virtdriver.NoSuchDriver")
