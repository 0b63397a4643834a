"""The VMOps contract on the VMware backend, against vcsim (our launcher)."""

from virtdriver.testing import ConformanceSuite


class TestVMwareConformance(ConformanceSuite):
    """Every promise of the contract, on VMwareVMOps."""
