"""A XAPI (XenServer / XCP-ng) simulator: XML-RPC over HTTP, state machine, tasks, events.

Standalone: imports only the standard library (and ``cryptography`` for the guest agent).
See IMPLEMENTATION_COVERAGE.md for what is modelled.
"""

from .simulator import Simulator

__all__ = ["Simulator"]
