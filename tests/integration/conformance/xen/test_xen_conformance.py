"""The VMOps contract on the Xen backend, against the XAPI simulator."""

from virtdriver.testing import ConformanceSuite


class TestXenConformance(ConformanceSuite):
    """Every promise of the contract, on XenVMOps."""
