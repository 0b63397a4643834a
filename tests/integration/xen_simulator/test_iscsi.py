"""iSCSI SRs in the simulator, driven with the real XenAPI client: targets and LUNs, the PBD
and SR state rules with xapi's errors, backend failures, and LUN bytes that outlive the SR.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import urllib.request
import uuid as _uuid
from collections.abc import Iterator
from typing import Any

import pytest

from virtdriver.xen.simulator import Simulator
from virtdriver.xen.simulator.__main__ import parse_iscsi_target
from virtdriver.xen.simulator.iscsi_targets import Targets

from .conftest import failure, new_vm
from .test_storage import get, put

MIB = 1024 * 1024
IQN = "iqn.2010-10.org.openstack:volume-a"
CHAP_IQN = "iqn.2010-10.org.openstack:volume-chap"
PORTAL = "127.0.0.1:3260"


@pytest.fixture(scope="module")
def sim_options() -> dict[str, Any]:
    """Two targets: one open with LUNs 0 and 1, one behind CHAP."""
    return {"iscsi_targets": [
        {"iqn": IQN, "portal": PORTAL, "luns": {0: 8 * MIB, 1: 4 * MIB}},
        {"iqn": CHAP_IQN, "portal": PORTAL, "luns": {0: 2 * MIB},
         "chap_user": "user", "chap_password": "s3cret-chap"}]}


def introduce(xapi: Any, iqn: str = IQN, **extra: str) -> tuple[str, str]:
    """SR.introduce + PBD.create (not plugged), as Nova's XenAPI driver does."""
    sr = xapi.SR.introduce(str(_uuid.uuid4()), "tempSR", "", "iscsi", "", False, {})
    config = {"target": "127.0.0.1", "port": "3260", "targetIQN": iqn, **extra}
    pbd = xapi.PBD.create({"host": xapi.host.get_all()[0], "SR": sr,
                           "device_config": config})
    return sr, pbd


@pytest.fixture
def attached(xapi: Any) -> Iterator[tuple[str, str]]:
    """An iSCSI SR for IQN, plugged and scanned; forgotten afterwards."""
    sr, pbd = introduce(xapi)
    xapi.PBD.plug(pbd)
    xapi.SR.scan(sr)
    yield sr, pbd
    if xapi.SR.get_all_records_where(f'field "uuid" = "{xapi.SR.get_uuid(sr)}"'):
        xapi.PBD.unplug(pbd)
        xapi.SR.forget(sr)


def luns(xapi: Any, sr: str) -> dict[str, dict[str, Any]]:
    """LUNid -> VDI record."""
    return {rec["sm_config"]["LUNid"]: {**rec, "ref": ref}
            for ref, rec in xapi.VDI.get_all_records_where(f'field "SR" = "{sr}"').items()}


def test_scan_lists_one_managed_vdi_per_lun(sim: Simulator, xapi: Any,
                                            attached: tuple[str, str]) -> None:
    sr, _ = attached
    found = luns(xapi, sr)
    assert sorted(found) == ["0", "1"]
    target = next(t for t in sim.controls.iscsi_targets() if t["iqn"] == IQN)
    for lun in target["luns"]:
        rec = found[str(lun["lun"])]
        assert rec["uuid"] == lun["vdi_uuid"] and rec["managed"]
        assert rec["sm_config"]["SCSIid"] == lun["scsi_id"]
        assert int(rec["virtual_size"]) == lun["size"]
    assert xapi.SR.get_type(sr) == "iscsi"


def test_introduce_creates_only_the_record(xapi: Any) -> None:
    sr_uuid = str(_uuid.uuid4())
    sr = xapi.SR.introduce(sr_uuid, "x", "", "ISCSI", "", False, {})
    assert xapi.SR.get_type(sr) == "iscsi" and xapi.SR.get_PBDs(sr) == []
    assert failure(xapi.SR.introduce, sr_uuid, "y", "", "iscsi", "", False, {}) == \
        ["SR_UUID_EXISTS", sr_uuid]
    assert failure(xapi.SR.scan, sr) == ["SR_HAS_NO_PBDS", sr]
    xapi.SR.forget(sr)


def test_pbd_rules(xapi: Any) -> None:
    sr, pbd = introduce(xapi)
    host = xapi.host.get_all()[0]
    assert failure(xapi.PBD.create, {"host": host, "SR": sr, "device_config": {}}) == \
        ["PBD_EXISTS", sr, host, pbd]
    assert failure(xapi.PBD.create, {"host": host, "SR": sr,
                                     "device_config": {"SRmaster": "true"}})[:3] == \
        ["VALUE_NOT_SUPPORTED", "device_config", "SRmaster"]
    assert failure(xapi.SR.scan, sr) == ["SR_HAS_NO_PBDS", sr]
    xapi.PBD.plug(pbd)
    xapi.PBD.plug(pbd)  # already attached: nothing to do
    assert xapi.PBD.get_currently_attached(pbd)
    assert failure(xapi.SR.forget, sr) == ["SR_HAS_PBD", sr]
    assert failure(xapi.PBD.destroy, pbd) == ["OPERATION_NOT_ALLOWED",
                                              "PBD is currently attached"]
    xapi.PBD.unplug(pbd)
    xapi.PBD.unplug(pbd)  # already detached: nothing to do
    xapi.SR.forget(sr)
    assert failure(xapi.PBD.get_record, pbd)[0] == "HANDLE_INVALID"


@pytest.mark.parametrize(("config", "code"), [
    ({"targetIQN": IQN}, "SR_BACKEND_FAILURE_95"),
    ({"target": "127.0.0.1", "port": "3260"}, "SR_BACKEND_FAILURE_96"),
    ({"target": "127.0.0.9", "port": "3260", "targetIQN": IQN}, "SR_BACKEND_FAILURE_83"),
    ({"target": "127.0.0.1", "port": "3260", "targetIQN": "iqn.x:nope"},
     "SR_BACKEND_FAILURE_68"),
    ({"target": "127.0.0.1", "port": "3260", "targetIQN": CHAP_IQN},
     "SR_BACKEND_FAILURE_68"),
    ({"target": "127.0.0.1", "port": "3260", "targetIQN": CHAP_IQN, "chapuser": "user",
      "chappassword": "wrong"}, "SR_BACKEND_FAILURE_68"),
])
def test_plug_of_a_bad_target_fails_like_the_storage_manager(xapi: Any, config: dict[str, str],
                                                             code: str) -> None:
    sr = xapi.SR.introduce("", "bad", "", "iscsi", "", False, {})
    pbd = xapi.PBD.create({"host": xapi.host.get_all()[0], "SR": sr, "device_config": config})
    details = failure(xapi.PBD.plug, pbd)
    assert details[0] == code and len(details) == 4
    assert "wrong" not in json.dumps(details)  # a CHAP secret is never echoed
    assert not xapi.PBD.get_currently_attached(pbd)
    xapi.SR.forget(sr)


def test_chap_login(xapi: Any) -> None:
    sr, pbd = introduce(xapi, CHAP_IQN, chapuser="user", chappassword="s3cret-chap")
    xapi.PBD.plug(pbd)
    xapi.SR.scan(sr)
    assert list(luns(xapi, sr)) == ["0"]
    xapi.PBD.unplug(pbd)
    xapi.SR.forget(sr)


def test_unknown_driver(xapi: Any) -> None:
    sr = xapi.SR.introduce("", "odd", "", "nosuchdriver", "", False, {})
    pbd = xapi.PBD.create({"host": xapi.host.get_all()[0], "SR": sr, "device_config": {}})
    assert failure(xapi.PBD.plug, pbd) == ["SR_UNKNOWN_DRIVER", "nosuchdriver"]
    xapi.SR.forget(sr)


def test_luns_cannot_be_created_deleted_cloned_or_resized(xapi: Any,
                                                          attached: tuple[str, str]) -> None:
    sr, _ = attached
    vdi = luns(xapi, sr)["0"]["ref"]
    refused = ["SR_OPERATION_NOT_SUPPORTED", sr]
    assert failure(xapi.VDI.destroy, vdi) == refused
    assert failure(xapi.VDI.clone, vdi, {}) == refused
    assert failure(xapi.VDI.snapshot, vdi, {}) == refused
    assert failure(xapi.VDI.resize, vdi, str(64 * MIB)) == refused
    assert failure(xapi.VDI.create, {"SR": sr, "virtual_size": str(MIB), "type": "user",
                                     "name_label": "n", "sharable": False, "read_only": False,
                                     "other_config": {}}) == refused


def test_lun_bytes_outlive_the_sr(sim: Simulator, session: Any, xapi: Any) -> None:
    """Bytes written through the VDI are the LUN's: after forget and a fresh SR they are
    read back, and the storage side sees them."""
    sr, pbd = introduce(xapi)
    xapi.PBD.plug(pbd)
    xapi.SR.scan(sr)
    vdi = luns(xapi, sr)["1"]["ref"]
    data = os.urandom(4096) + bytes(4 * MIB - 8192) + os.urandom(4096)
    assert put(sim, session._session, vdi, data) == 200
    xapi.PBD.unplug(pbd)
    xapi.SR.forget(sr)
    assert sim.controls.read_iscsi_lun(IQN, 1) == data
    sr, pbd = introduce(xapi)
    xapi.PBD.plug(pbd)
    xapi.SR.scan(sr)
    assert get(sim, session._session, luns(xapi, sr)["1"]["ref"]) == data
    xapi.PBD.unplug(pbd)
    xapi.SR.forget(sr)


def test_scan_shows_a_grown_lun_and_drops_a_deleted_one(sim: Simulator, xapi: Any) -> None:
    sim.controls.add_iscsi_lun(IQN, 5, MIB)
    sr, pbd = introduce(xapi)
    xapi.PBD.plug(pbd)
    xapi.SR.scan(sr)
    assert luns(xapi, sr)["5"]["virtual_size"] == str(MIB)
    sim.controls.resize_iscsi_lun(IQN, 5, 3 * MIB)
    xapi.SR.scan(sr)
    assert luns(xapi, sr)["5"]["virtual_size"] == str(3 * MIB)
    sim.controls.remove_iscsi_lun(IQN, 5)
    xapi.SR.scan(sr)
    assert "5" not in luns(xapi, sr)
    xapi.PBD.unplug(pbd)
    xapi.SR.forget(sr)


def test_attached_lun_blocks_unplug_and_an_offline_target_fails(sim: Simulator, xapi: Any,
                                                                attached: tuple[str, str]) -> None:
    sr, pbd = attached
    vdi = luns(xapi, sr)["0"]["ref"]
    vm = new_vm(xapi, "iscsi-user")
    vbd = xapi.VBD.create({"VM": vm, "VDI": vdi, "userdevice": "1", "bootable": False,
                           "mode": "RW", "type": "Disk", "unpluggable": True, "empty": False,
                           "other_config": {}, "qos_algorithm_type": "",
                           "qos_algorithm_params": {}})
    xapi.VM.start(vm, False, False)
    assert xapi.VBD.get_currently_attached(vbd)
    assert failure(xapi.PBD.unplug, pbd) == ["VDI_IN_USE", vdi, "PBD.unplug"]
    xapi.VBD.unplug(vbd)
    sim.controls.set_iscsi_target_online(IQN, False)
    try:
        assert failure(xapi.VBD.plug, vbd)[0] == "SR_BACKEND_FAILURE_46"
        assert failure(xapi.SR.scan, sr)[0] == "SR_BACKEND_FAILURE_40"
    finally:
        sim.controls.set_iscsi_target_online(IQN, True)
    xapi.VBD.plug(vbd)
    xapi.VM.hard_shutdown(vm)
    xapi.VBD.destroy(vbd)
    xapi.VM.destroy(vm)


def test_vdi_introduce_needs_a_plugged_pbd_and_a_unique_location(xapi: Any,
                                                                 attached: tuple[str, str]
                                                                 ) -> None:
    sr, pbd = attached
    lun = luns(xapi, sr)["0"]
    args = ["", "x", "", sr, "user", False, False, {}, lun["location"]]
    assert failure(xapi.VDI.introduce, str(_uuid.uuid4()), *args[1:]) == \
        ["LOCATION_NOT_UNIQUE", sr, lun["location"]]
    other, other_pbd = introduce(xapi, CHAP_IQN)
    assert failure(xapi.VDI.introduce, "", "x", "", other, "user", False, False, {},
                   "somewhere") == ["SR_HAS_NO_PBDS", other]
    xapi.SR.forget(other)


def test_injected_backend_failure(sim: Simulator, xapi: Any) -> None:
    sr, pbd = introduce(xapi)
    sim.inject_fault("PBD.plug", ["SR_BACKEND_FAILURE_68", "", "injected", ""])
    assert failure(xapi.PBD.plug, pbd)[:3] == ["SR_BACKEND_FAILURE_68", "", "injected"]
    xapi.PBD.plug(pbd)
    xapi.PBD.unplug(pbd)
    xapi.SR.forget(sr)


def test_http_control_and_no_secret(sim: Simulator) -> None:
    def post(body: dict[str, Any]) -> Any:
        req = urllib.request.Request(f"{sim.url}/_sim/iscsi", data=json.dumps(body).encode(),
                                     method="POST")
        with urllib.request.urlopen(req, timeout=10) as resp:
            return json.loads(resp.read())

    added = post({"action": "add_target", "iqn": "iqn.x:http", "portal": "127.0.0.1:3261",
                  "luns": {"2": MIB}, "chap_user": "u", "chap_password": "pw-http"})
    assert added["luns"][0]["lun"] == 2 and "pw-http" not in json.dumps(added)
    post({"action": "write", "iqn": "iqn.x:http", "lun": 2, "data": "aGVsbG8=", "offset": 10})
    assert post({"action": "read", "iqn": "iqn.x:http", "lun": 2, "offset": 10,
                 "length": 5})["data"] == "aGVsbG8="
    listed = post({"action": "list"})
    assert "pw-http" not in json.dumps(listed)
    assert any(t["iqn"] == "iqn.x:http" for t in listed)
    assert "pw-http" not in repr(sim.backend.iscsi.target("iqn.x:http"))


def test_two_simulators_share_one_storage_network(tmp_path: Any) -> None:
    """Two pools given the same Targets see the same LUN: the same VDI uuid and bytes."""
    import XenAPI

    targets = Targets(str(tmp_path / "array"))
    targets.add_target(IQN, PORTAL, {0: MIB})
    targets.write(IQN, 0, b"shared")
    uuids = []
    for _ in range(2):
        with Simulator(iscsi=targets) as one:
            ses = XenAPI.Session(one.url)
            ses.xenapi.login_with_password("root", "secret", "2.1", "t")
            sr, pbd = introduce(ses.xenapi)
            ses.xenapi.PBD.plug(pbd)
            ses.xenapi.SR.scan(sr)
            uuids.append(luns(ses.xenapi, sr)["0"]["uuid"])
            ses.xenapi.session.logout()
    assert uuids[0] == uuids[1]
    assert targets.read(IQN, 0, 0, 6) == b"shared"


def test_cli_flag() -> None:
    assert parse_iscsi_target("127.0.0.1:3260/iqn.2010-10.org.openstack:v1/1:1G,2:512K") == {
        "iqn": "iqn.2010-10.org.openstack:v1", "portal": "127.0.0.1:3260",
        "luns": {1: 1024**3, 2: 512 * 1024}}
    proc = subprocess.Popen(
        [sys.executable, "-m", "virtdriver.xen.simulator", "--port", "0",
         "--iscsi-target", f"{PORTAL}/iqn.x:cli/0:1M"],
        stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        url = proc.stdout.readline().strip()
        with urllib.request.urlopen(f"{url}/_sim/iscsi", timeout=30) as resp:
            listed = json.loads(resp.read())
        assert listed[0]["iqn"] == "iqn.x:cli" and listed[0]["luns"][0]["size"] == MIB
    finally:
        proc.terminate()
        try:  # a loaded CI machine may take a while to join the server's threads
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)
        if proc.stdout is not None:
            proc.stdout.close()
