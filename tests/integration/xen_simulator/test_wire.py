"""Wire protocol at the HTTP level: compact XML, types, names, malformed requests."""

from __future__ import annotations

import http.client
import json
import re
import xmlrpc.client
from typing import Any
from urllib.parse import urlsplit

import pytest

from virtdriver.xen.simulator import Simulator

from .conftest import failure


def post(sim: Simulator, body: bytes, path: str = "/",
         headers: dict[str, str] | None = None) -> tuple[int, str, bytes]:
    """Raw POST; returns (status, content-type, body)."""
    parts = urlsplit(sim.url)
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=10)
    try:
        conn.request("POST", path, body, {"Content-Type": "text/xml", **(headers or {})})
        resp = conn.getresponse()
        return resp.status, resp.getheader("Content-Type") or "", resp.read()
    finally:
        conn.close()


def call(sim: Simulator, method: str, *params: Any, path: str = "/RPC2") -> Any:
    """One raw XML-RPC call, returning the decoded reply."""
    status, ctype, body = post(sim, xmlrpc.client.dumps(params, method).encode(), path)
    assert status == 200 and ctype == "text/xml"
    return xmlrpc.client.loads(body)[0][0]


def login(sim: Simulator) -> str:
    """A session ref over the raw wire."""
    reply = call(sim, "session.login_with_password", "root", "secret")
    assert reply["Status"] == "Success"
    return reply["Value"]


def test_compact_xml_and_untyped_strings(sim: Simulator) -> None:
    """No whitespace between tags, no newline after the declaration, strings untyped."""
    body = xmlrpc.client.dumps(("root", "secret"), "session.login_with_password").encode()
    status, ctype, reply = post(sim, body)
    assert status == 200 and ctype == "text/xml"
    text = reply.decode()
    assert text.startswith('<?xml version="1.0"?><methodResponse>')
    assert "\n" not in text and not re.search(r">\s+<", text)
    assert "<member><name>Status</name><value>Success</value></member>" in text
    assert "<string>" not in text


def test_types_on_the_wire(sim: Simulator) -> None:
    """Ints as strings, booleans, doubles, datetimes in XAPI's format, OpaqueRef refs."""
    ses = login(sim)
    assert re.fullmatch(r"OpaqueRef:[0-9a-f-]{36}", ses)
    host = call(sim, "host.get_all", ses)["Value"][0]
    body = xmlrpc.client.dumps((ses, host), "host.get_record").encode()
    text = post(sim, body)[2].decode()
    assert "<name>API_version_major</name><value>2</value>" in text
    assert "<name>enabled</name><value><boolean>1</boolean></value>" in text
    task = call(sim, "Async.VM.get_all", ses)
    assert task["Status"] == "Failure"  # getters are not async
    vm = call(sim, "VM.get_all_records_where", ses, 'field "is_control_domain"="true"')
    rec = next(iter(vm["Value"].values()))
    assert rec["domid"] == "0" and isinstance(rec["memory_static_max"], str)
    ev = post(sim, xmlrpc.client.dumps((ses, ["task"], "", 0.0), "event.from").encode())[2]
    assert "<name>task</name><value><i4>" in ev.decode()
    tcreate = call(sim, "task.create", ses, "t", "d")["Value"]
    text = post(sim, xmlrpc.client.dumps((ses, tcreate), "task.get_record").encode())[2].decode()
    assert re.search(r"<name>created</name><value><dateTime\.iso8601>\d{8}T\d\d:\d\d:\d\dZ<",
                     text)
    assert "<name>progress</name><value><double>0.0</double></value>" in text


def test_list_methods_is_a_bare_array(sim: Simulator) -> None:
    """system.listMethods needs no session and returns a plain array, no Async names."""
    methods = call(sim, "system.listMethods")
    assert isinstance(methods, list)
    assert "VM.get_all_records" in methods and "VM.start" in methods
    assert "event.from" in methods and not any(m.startswith("Async.") for m in methods)


def test_underscore_alias_and_any_path(sim: Simulator, xapi: Any) -> None:
    """Class_method works like Class.method; any path but /jsonrpc serves XML-RPC."""
    ses = login(sim)
    for path in ("/", "/RPC2", "/xmlrpc", "/anything"):
        assert call(sim, "VM_get_all", ses, path=path)["Status"] == "Success"
    assert call(sim, "VM_metrics_get_all", ses)["Status"] == "Success"
    assert call(sim, "event_from", ses, ["vm"], "", 0.0)["Status"] == "Success"


def jsonrpc(sim: Simulator, method: str, *params: Any) -> dict[str, Any]:
    """One JSON-RPC 2.0 call on /jsonrpc."""
    body = json.dumps({"jsonrpc": "2.0", "method": method, "params": list(params), "id": 7})
    status, ctype, reply = post(sim, body.encode(), "/jsonrpc",
                                {"Content-Type": "application/json"})
    assert status == 200 and ctype == "application/json"
    return json.loads(reply)


def test_json_rpc(sim: Simulator) -> None:
    """/jsonrpc: raw results, errors as {code, message: XAPI code, data: params}."""
    ses = jsonrpc(sim, "session.login_with_password", "root", "secret")["result"]
    assert ses.startswith("OpaqueRef:")
    reply = jsonrpc(sim, "VM.get_all_records", ses)
    assert reply["id"] == 7 and reply["jsonrpc"] == "2.0"
    assert any(r["is_control_domain"] for r in reply["result"].values())
    err = jsonrpc(sim, "VM.get_record", ses, "OpaqueRef:x")["error"]
    assert err["message"] == "HANDLE_INVALID" and err["data"] == ["VM", "OpaqueRef:x"]
    assert "VM.start" in jsonrpc(sim, "system.listMethods")["result"]
    ev = jsonrpc(sim, "event.from", ses, ["task"], "", 0.0)["result"]
    assert isinstance(ev["valid_ref_counts"]["task"], int)
    status, _, body = post(sim, b"{not json", "/jsonrpc")
    assert status == 200 and json.loads(body)["error"]["code"] == -32700


def test_enums_read_in_any_case(xapi: Any) -> None:
    """VBD type 'disk' and mode 'rw' are stored canonically."""
    vm = xapi.VM.create({"name_label": "enum"})
    vbd = xapi.VBD.create({"VM": vm, "VDI": "OpaqueRef:NULL", "userdevice": "3",
                           "type": "cd", "mode": "ro", "bootable": False, "empty": True,
                           "unpluggable": True, "other_config": {}})
    assert xapi.VBD.get_type(vbd) == "CD" and xapi.VBD.get_mode(vbd) == "RO"
    assert failure(xapi.VBD.set_mode, vbd, "sideways") == ["INVALID_VALUE", "mode", "sideways"]
    xapi.VM.destroy(vm)


def test_unknown_method_and_parameter_count(sim: Simulator) -> None:
    """MESSAGE_METHOD_UNKNOWN [method]; MESSAGE_PARAMETER_COUNT_MISMATCH [m, expected, got]."""
    ses = login(sim)
    assert call(sim, "VM.fly", ses)["ErrorDescription"] == ["MESSAGE_METHOD_UNKNOWN", "VM.fly"]
    assert call(sim, "Nope.get_all", ses)["ErrorDescription"][0] == "MESSAGE_METHOD_UNKNOWN"
    assert call(sim, "VM.get_record", ses)["ErrorDescription"] == [
        "MESSAGE_PARAMETER_COUNT_MISMATCH", "VM.get_record", "2", "1"]
    assert call(sim, "VM.get_record", ses, "a", "b")["ErrorDescription"][0] == \
        "MESSAGE_PARAMETER_COUNT_MISMATCH"


@pytest.mark.parametrize("body", [b"", b"not xml at all", b"<methodCall><methodName>",
                                  b"<?xml version='1.0'?><methodResponse></methodResponse>",
                                  b"\xff\xfe garbage"])
def test_malformed_requests_get_a_failure(sim: Simulator, body: bytes) -> None:
    """Malformed bodies get a Failure struct, never a crash; the server keeps serving."""
    status, ctype, reply = post(sim, body)
    assert ctype == "text/xml"
    assert xmlrpc.client.loads(reply)[0][0]["Status"] == "Failure"
    assert call(sim, "system.listMethods")


def test_oversized_request_is_refused(sim: Simulator) -> None:
    """A Content-Length above the cap is refused without reading the body."""
    parts = urlsplit(sim.url)
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=10)
    try:
        conn.putrequest("POST", "/")
        conn.putheader("Content-Type", "text/xml")
        conn.putheader("Content-Length", str(200 * 1024 * 1024))
        conn.endheaders()
        conn.send(b"<methodCall>")
        resp = conn.getresponse()
        assert resp.status == 413
        assert xmlrpc.client.loads(resp.read())[0][0]["Status"] == "Failure"
    finally:
        conn.close()
    assert call(sim, "system.listMethods")


def test_handle_invalid_and_uuid_invalid(xapi: Any) -> None:
    """HANDLE_INVALID [class, ref]; UUID_INVALID [class, uuid]."""
    assert failure(xapi.VM.get_record, "OpaqueRef:nope") == ["HANDLE_INVALID", "VM",
                                                             "OpaqueRef:nope"]
    assert failure(xapi.VM.start, "OpaqueRef:nope", False, False) == [
        "HANDLE_INVALID", "VM", "OpaqueRef:nope"]
    assert failure(xapi.SR.get_by_uuid, "x") == ["UUID_INVALID", "SR", "x"]


def test_control_characters_stay_well_formed(sim: Simulator) -> None:
    """Characters XML 1.0 cannot carry (settable over JSON-RPC) are replaced in XML replies."""
    ses = login(sim)
    vm = call(sim, "VM.create", ses, {"name_label": "ok"})["Value"]
    assert "result" in jsonrpc(sim, "VM.set_name_description", ses, vm, "a\x01b")
    assert call(sim, "VM.get_name_description", ses, vm)["Value"] == "a\ufffdb"
