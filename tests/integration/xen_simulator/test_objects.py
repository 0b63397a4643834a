"""Generic object calls: records, where-grammar, lookups, setters, maps, sets, inventory."""

from __future__ import annotations

import time
from typing import Any

import XenAPI

from virtdriver.xen.simulator import Simulator
from virtdriver.xen.simulator.templates import TEMPLATES

from .conftest import failure, new_vm


def test_inventory(xapi: Any) -> None:
    """Pool, host, metrics, management PIF on xenbr0, local ext SR with PBD, ISO SR."""
    pool = xapi.pool.get_record(xapi.pool.get_all()[0])
    host = xapi.host.get_record(pool["master"])
    assert host["software_version"]["product_version"]
    assert int(xapi.host_metrics.get_memory_total(host["metrics"])) == 65536 * 1024**2
    sr = xapi.SR.get_record(pool["default_SR"])
    assert sr["type"] == "ext" and sr["content_type"] == "user"
    assert [xapi.PBD.get_host(p) for p in sr["PBDs"]] == [pool["master"]]
    isos = xapi.SR.get_all_records_where('field "content_type" = "iso"')
    assert len(isos) == 1
    pifs = xapi.PIF.get_all_records_where(
        f'field "management" = "true" and field "host" = "{pool["master"]}"')
    (pif,) = pifs.values()
    assert xapi.network.get_bridge(pif["network"]) == "xenbr0"


def test_every_record_has_the_full_field_set(xapi: Any) -> None:
    """All records of a class have identical keys (XO builds shapes from the first)."""
    new_vm(xapi, "shape", disk=4096, vif=True)
    for cls in ("VM", "VBD", "VDI", "SR", "VIF", "network", "host", "PIF", "PBD"):
        records = getattr(xapi, cls).get_all_records()
        shapes = {frozenset(r) for r in records.values()}
        assert len(shapes) == 1, cls


def test_where_grammar(xapi: Any) -> None:
    """and / or / not, parentheses, true/false, name__label, booleans as strings."""
    a = new_vm(xapi, "where-a")
    b = new_vm(xapi, "where-b")
    xapi.VM.add_to_other_config(b, "nova_uuid", "u-b")
    q = xapi.VM.get_all_records_where
    assert set(q('field "name__label" = "where-a"')) == {a}
    assert set(q('field "name__label" = "where-a" or field "name__label" = "where-b"')) == {a, b}
    assert set(q('(field "name__label" = "where-a" or field "name__label" = "where-b") '
                 'and not field "name__label" = "where-a"')) == {b}
    assert set(q('field "other_config__nova_uuid" = "u-b"')) == {b}
    assert len(q("true")) == len(xapi.VM.get_all())
    assert q("false") == {}
    assert a in q('field "is_a_template"="false" and field "is_control_domain"="false"')
    assert failure(q, 'field "name__label" =')[0] == "INVALID_VALUE"


def test_lookups_and_setters(xapi: Any) -> None:
    """get_by_uuid, get_by_name_label (a list), getters, setters, type errors."""
    vm = new_vm(xapi, "lookup-me")
    uuid = xapi.VM.get_uuid(vm)
    assert xapi.VM.get_by_uuid(uuid) == vm
    assert xapi.VM.get_by_name_label("lookup-me") == [vm]
    assert xapi.VM.get_by_name_label("nobody") == []
    xapi.VM.set_name_label(vm, "renamed")
    assert xapi.VM.get_name_label(vm) == "renamed"
    xapi.VM.set_VCPUs_max(vm, "4")
    assert xapi.VM.get_VCPUs_max(vm) == "4"
    assert failure(xapi.VM.set_VCPUs_max, vm, "many") == ["FIELD_TYPE_ERROR", "VCPUs_max"]
    assert failure(xapi.VM.set_other_config, vm, "x") == ["FIELD_TYPE_ERROR", "other_config"]


def test_maps_and_sets(xapi: Any) -> None:
    """add_to_ (MAP_DUPLICATE_KEY), remove_from_ (absent key is fine), add_/remove_ sets."""
    vm = new_vm(xapi, "maps")
    uuid = xapi.VM.get_uuid(vm)
    xapi.VM.add_to_xenstore_data(vm, "vm-data/hostname", "h1")
    assert failure(xapi.VM.add_to_xenstore_data, vm, "vm-data/hostname", "h2") == [
        "MAP_DUPLICATE_KEY", "VM", "xenstore_data", uuid, "vm-data/hostname"]
    xapi.VM.remove_from_xenstore_data(vm, "vm-data/hostname")
    xapi.VM.remove_from_xenstore_data(vm, "vm-data/hostname")
    assert xapi.VM.get_xenstore_data(vm) == {}
    xapi.VM.add_tags(vm, "t1")
    xapi.VM.add_tags(vm, "t1")
    xapi.VM.add_tags(vm, "t2")
    assert xapi.VM.get_tags(vm) == ["t1", "t2"]
    xapi.VM.remove_tags(vm, "t1")
    assert xapi.VM.get_tags(vm) == ["t2"]


def test_create_destroy_and_links(xapi: Any) -> None:
    """create fills defaults and reverse links; destroy removes them; bad refs refused."""
    net = xapi.network.create({"name_label": "net-x", "other_config": {}})
    assert xapi.network.get_bridge(net).startswith("xapi")
    vm = new_vm(xapi, "links")
    vif = xapi.VIF.create({"VM": vm, "network": net, "device": "2", "MAC": "",
                           "MTU": "1500", "other_config": {}})
    assert xapi.VM.get_VIFs(vm) == [vif] and xapi.network.get_VIFs(net) == [vif]
    assert len(xapi.VIF.get_MAC(vif)) == 17
    assert failure(xapi.VIF.create, {"VM": vm, "network": net, "device": "2"}) == [
        "DEVICE_ALREADY_EXISTS", "2"]
    assert failure(xapi.VIF.create, {"VM": "OpaqueRef:x", "network": net})[0] == \
        "HANDLE_INVALID"
    xapi.VIF.destroy(vif)
    assert xapi.VM.get_VIFs(vm) == [] and xapi.network.get_VIFs(net) == []
    xapi.network.destroy(net)
    assert failure(xapi.network.get_record, net) == ["HANDLE_INVALID", "network", net]


def test_ten_thousand_vms() -> None:
    """--vms 10000: creation is fast and get_all_records_where stays efficient."""
    start = time.monotonic()
    with Simulator(vms=10000) as sim:
        created = time.monotonic() - start
        ses = XenAPI.Session(sim.url)
        ses.xenapi.login_with_password("root", "secret", "2.1", "t")
        t0 = time.monotonic()
        hits = ses.xenapi.VM.get_all_records_where('field "name__label" = "vm9999"')
        where = time.monotonic() - t0
        assert len(hits) == 1
        assert len(ses.xenapi.VM.get_all()) == 10001 + len(TEMPLATES)  # and dom0
        ses.xenapi.session.logout()
    assert created < 10 and where < 2
