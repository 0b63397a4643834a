"""The conformance suite on the toy backend (an in-memory VMOps defined in toy.py)."""

from virtdriver.testing import ConformanceSuite


class TestToyConformance(ConformanceSuite):
    """Every promise of the contract, on ToyVMOps."""
