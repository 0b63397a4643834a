"""The power-state channel of a backend hears only its own cluster (two clusters of one
vCenter, one backend each, as two nova-computes): a VM of the other cluster is never
reported, one that live-migrates in arrives with its state, and the cluster it left reports
it gone (None). Each wait stays one WaitForUpdatesEx, and the server pushes the channel
nothing about the other cluster's VMs.

The filter reaches the VMs through each host's ``vm`` list, which vcsim 0.24.2 leaves stale
after a RelocateVM: the launcher's STAND-IN keeps those lists (hence ``stand_in`` in the
test's name)."""

from __future__ import annotations

import time
from typing import Any

import pytest

from tests.integration.vmware.helpers import (  # noqa: F401 (fixtures)
    TWO_CLUSTERS,
    image_store,
    make_conf,
    make_instance,
    make_vif,
    two_clusters_vcsim_flags,
)
from virtdriver.common.power_state import PowerState
from virtdriver.vmware.events import PowerStateChannel

pytestmark = pytest.mark.integration

CLUSTERS = TWO_CLUSTERS


def channel_of(ops: Any) -> PowerStateChannel:
    """The channel Nova's adapter opens for this backend: scoped to its cluster."""
    return PowerStateChannel(ops.session, ops.inventory.vm_folder, ops.inventory.cluster_ref)


def collect(channel: PowerStateChannel, until: Any,
            seconds: float = 10.0) -> list[tuple[str, PowerState | None]]:
    """Every change the channel reports until ``until(changes)`` holds (or the deadline);
    each wait must be exactly one server call."""
    changes: list[tuple[str, PowerState | None]] = []
    deadline = time.monotonic() + seconds
    while not until(changes) and time.monotonic() < deadline:
        before = channel.session.stats.total_calls
        changes += channel.wait(1)
        assert channel.session.stats.total_calls - before == 1
    return changes


def pushed_uuids(ops: Any, monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The instance uuids in every update the server pushes on ``ops``'s session (the list
    fills as the channel waits)."""
    seen: list[str] = []
    wait = ops.session.wait_for_updates

    def recording(*args: Any, **kwargs: Any) -> Any:
        update = wait(*args, **kwargs)
        for filter_update in getattr(update, "filterSet", None) or []:
            for obj_update in filter_update.objectSet or []:
                seen.extend(change.val for change in obj_update.changeSet or []
                            if change.name == "config.instanceUuid")
        return update

    monkeypatch.setattr(ops.session, "wait_for_updates", recording)
    return seen


def test_stand_in_host_vm_lists_channel_hears_its_cluster_only_and_a_vm_that_migrates_in(
        computes: Any, image_store: Any, monkeypatch: pytest.MonkeyPatch) -> None:  # noqa: F811
    source, dest = computes
    pushed = pushed_uuids(source, monkeypatch)
    mine, other = make_instance(root_gb=1), make_instance(root_gb=1)
    source.spawn(None, mine, image_store.disk, [], None, [make_vif(1, "DC0_DVPG0")])
    dest.spawn(None, other, image_store.disk, [], None, [make_vif(2, "DC0_DVPG0")])
    here, there = channel_of(source), channel_of(dest)
    try:
        first = dict(here.wait(5))
        assert first.get(mine.uuid) == PowerState.RUNNING
        assert other.uuid not in first
        assert dict(there.wait(5)).get(other.uuid) == PowerState.RUNNING

        # the other cluster's VM changes, then ours: only ours is heard here
        dest.power_off(other)
        source.power_off(mine)
        heard = collect(here, lambda c: (mine.uuid, PowerState.SHUTDOWN) in c)
        assert (mine.uuid, PowerState.SHUTDOWN) in heard
        assert other.uuid not in {uuid for uuid, _ in heard}
        assert (other.uuid, PowerState.SHUTDOWN) in collect(
            there, lambda c: (other.uuid, PowerState.SHUTDOWN) in c)
        assert mine.uuid in pushed and other.uuid not in pushed  # not even on the wire

        # the other cluster's VM live-migrates into ours: it arrives here, leaves there
        dest.power_on(other)
        data = source.check_can_live_migrate_destination(None, other)
        data = dest.check_can_live_migrate_source(None, other, data)
        calls: list[str] = []
        dest.live_migrate(None, other, "host1", lambda *a: calls.append("post"),
                          lambda *a: calls.append("recover"), migrate_data=data)
        assert calls == ["post"]
        assert other.uuid in source.list_instance_uuids()
        arrived = collect(here, lambda c: (other.uuid, PowerState.RUNNING) in c)
        assert (other.uuid, PowerState.RUNNING) in arrived
        left = collect(there, lambda c: (other.uuid, None) in c)
        assert (other.uuid, None) in left

        # and now it is ours: its changes are heard here, no longer there
        source.power_off(other)
        assert (other.uuid, PowerState.SHUTDOWN) in collect(
            here, lambda c: (other.uuid, PowerState.SHUTDOWN) in c)
        assert other.uuid not in {uuid for uuid, _ in collect(there, lambda c: False, 2)}
    finally:
        here.close()
        there.close()
        for instance in (mine, other):
            for backend in computes:
                backend.destroy(instance)
