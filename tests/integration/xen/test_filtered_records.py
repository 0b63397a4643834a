"""The filtered records read (``XenAPISession.records_where``): the same VMs, names and
uuids as the full read against the XAPI simulator, in one call, only the wanted fields."""

from __future__ import annotations

import pytest

from tests.support.xapi import running_simulator
from virtdriver.xen import vm_utils
from virtdriver.xen.session import XenAPISession
from virtdriver.xen.vmops import XenVMOps

from .conftest import make_conf

VMS = 30


@pytest.fixture(scope="module")
def many_sim():
    with running_simulator(vms=VMS) as simulator:
        db = simulator.backend.db
        for index, (ref, record) in enumerate(sorted(db.all("VM").items())):
            if record.get("is_a_template") or record.get("is_control_domain"):
                continue
            other = {**(record.get("other_config") or {}), "nova_uuid": record["uuid"]}
            if index % 7 == 0:
                other["nova_rescue"] = "true"  # excluded from list_instances
            db.update("VM", ref, other_config=other)
        yield simulator


def test_filtered_read_keeps_the_same_records_and_only_the_fields(many_sim):
    session = XenAPISession(many_sim.url, "root", "secret")
    try:
        full = session.call("VM.get_all_records_where", vm_utils.MANAGED_EXPR)
        session.stats.reset()
        kept = session.records_where("VM", vm_utils.MANAGED_EXPR,
                                     ("name_label", "other_config"))
        assert session.stats.snapshot() == {"VM.get_all_records_where": 1}
    finally:
        session.close()
    assert len(full) >= VMS
    assert set(kept) == set(full)
    for ref, record in kept.items():
        assert set(record) == {"name_label", "other_config"}
        assert record["name_label"] == full[ref]["name_label"]
        assert record["other_config"] == full[ref]["other_config"]  # nested struct whole


def test_list_instances_and_uuids_match_the_full_read(many_sim):
    ops = XenVMOps(make_conf(many_sim.url))
    try:
        full = vm_utils.managed_vms(ops.session)
        names = sorted(rec["name_label"] for rec in full.values()
                       if not rec["other_config"].get("nova_rescue"))
        uuids = sorted({rec["other_config"]["nova_uuid"] for rec in full.values()})
        assert len(uuids) == VMS and 0 < len(names) < VMS
        ops.stats.reset()
        assert ops.list_instances() == names
        assert ops.list_instance_uuids() == uuids
        assert ops.stats.snapshot() == {"VM.get_all_records_where": 2}
    finally:
        ops.close()
