"""Every ComputeDriver method our drivers override has the pinned Nova's signature.

Nova's compute manager calls driver methods with keyword arguments (``share_info=``,
``accel_info=``, ...); a parameter we lack is a TypeError in the middle of a resize, a
parameter Nova lacks is one it never passes. So each override must take exactly Nova's
parameters: same names, same kinds, same order, same defaults. No server is needed.
"""

from __future__ import annotations

import inspect
from typing import Any

from nova import test
from nova.virt import driver

from virtdriver.nova import VMwareDriver, XenDriver


def _shape(function: Any) -> list[tuple[str, Any, Any]]:
    return [(p.name, p.kind, p.default)
            for p in inspect.signature(function).parameters.values()]


def overridden(cls: type) -> dict[str, Any]:
    """The methods of ``cls`` (and its bases below ComputeDriver) that ComputeDriver has."""
    found: dict[str, Any] = {}
    for klass in cls.__mro__:
        if klass is driver.ComputeDriver or not issubclass(klass, driver.ComputeDriver):
            continue
        for name, value in vars(klass).items():
            if name in found or not inspect.isfunction(value):
                continue
            if inspect.isfunction(getattr(driver.ComputeDriver, name, None)):
                found[name] = value
    return found


def mismatches(cls: type) -> list[str]:
    """One line per override whose signature differs from Nova's."""
    out = []
    for name, ours in sorted(overridden(cls).items()):
        nova = getattr(driver.ComputeDriver, name)
        if _shape(ours) != _shape(nova):
            out.append(f"{cls.__name__}.{name}{inspect.signature(ours)} != "
                       f"Nova's {inspect.signature(nova)}")
    return out


class SignatureTestCase(test.NoDBTestCase):
    """inspect.signature of each override equals ComputeDriver's (names, kinds, defaults)."""

    def test_vmware_driver_matches_nova(self) -> None:
        self.assertGreater(len(overridden(VMwareDriver)), 40)
        self.assertEqual([], mismatches(VMwareDriver))

    def test_xen_driver_matches_nova(self) -> None:
        self.assertGreater(len(overridden(XenDriver)), 40)
        self.assertEqual([], mismatches(XenDriver))

    def test_a_wrong_signature_is_caught(self) -> None:
        """The check itself fails on a missing keyword, as on the share_info bug."""
        class Broken(VMwareDriver):
            def finish_revert_migration(self, context: Any, instance: Any,
                                        network_info: Any, migration: Any,
                                        block_device_info: Any = None,
                                        power_on: bool = True) -> None:
                """Lacks Nova 34's share_info."""

        self.assertEqual(1, len(mismatches(Broken)))
        self.assertIn("finish_revert_migration", mismatches(Broken)[0])
