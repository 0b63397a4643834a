"""Hostile input to the Xen backend's guest operations (issue 14 rows 7-8 and 13), through
``virtdriver.load_backend`` against the XAPI simulator: refused with InvalidInput before any
XAPI call, and the VM's xenstore and the guest unchanged. (Spawn's share of these rows is
in the conformance suite, for every backend.)"""

from __future__ import annotations

import pytest

import virtdriver
from virtdriver.common import exceptions as exc

from .conftest import make_conf, make_instance, make_vif, vm_of

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def public_ops(sim, store):
    backend = virtdriver.load_backend("xen", make_conf(sim.url), image_store=store)
    yield backend
    backend.close()


@pytest.fixture(scope="module")
def running(public_ops, image):
    instance = make_instance()
    public_ops.spawn(None, instance, image, [], None, [make_vif(1)])
    yield instance
    public_ops.destroy(instance)


def guest_view(sim, xapi, instance):
    """What the guest and its xenstore hold, as the simulator has them."""
    record = vm_of(xapi, instance)[1]
    return sim.guest_state(record["uuid"]), dict(record["xenstore_data"])


@pytest.mark.parametrize("path", ["/etc/motd\0.bak", "/etc/motd\n", "etc/motd",
                                  "/etc/../../root/x"])
def test_inject_file_with_a_bad_path_makes_no_call(public_ops, running, sim, xapi, path):
    before = guest_view(sim, xapi, running)
    public_ops.stats.reset()
    with pytest.raises(exc.InvalidInput) as caught:
        public_ops.inject_file(running, path, b"x")
    assert caught.value.field == "path" and caught.value.value == path
    assert public_ops.stats.total_calls == 0, public_ops.stats.snapshot()
    assert guest_view(sim, xapi, running) == before


@pytest.mark.parametrize("key", ["role\nuuid", "role\0", ""])
def test_metadata_key_with_a_control_character_makes_no_call(public_ops, running, sim, xapi,
                                                             key):
    before = guest_view(sim, xapi, running)
    public_ops.stats.reset()
    with pytest.raises(exc.InvalidInput, match="diff key"):
        public_ops.change_instance_metadata(running, {"ok": ["+", "v"], key: ["+", "v"]})
    assert public_ops.stats.total_calls == 0, public_ops.stats.snapshot()
    assert guest_view(sim, xapi, running) == before  # not even the good key


def test_metadata_values_may_hold_anything_and_are_stored_escaped(public_ops, running, xapi):
    public_ops.change_instance_metadata(running, {"motd": ["+", "line 1\nline 2\0"]})
    stored = vm_of(xapi, running)[1]["xenstore_data"]["vm-data/user-metadata/motd"]
    assert stored == '"line 1\\nline 2\\u0000"'  # JSON: no raw newline or NUL reaches XAPI
