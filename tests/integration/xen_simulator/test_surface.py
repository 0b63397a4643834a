"""The simulator serves exactly the real XAPI surface (xapi_datamodel.json): no message,
parameter count, Async form, record field or error that the table does not have; and every
XAPI call the Xen backend makes exists in the table with the arity it uses."""

from __future__ import annotations

import ast
import json
import pathlib
import re
from typing import Any

import pytest

from virtdriver.xen import simulator as simpkg
from virtdriver.xen.simulator import Simulator, surface
from virtdriver.xen.simulator.context import HANDLERS
from virtdriver.xen.simulator.dispatch import method_names, served
from virtdriver.xen.simulator.errors import ERRORS, PLUGIN_ERRORS, UNDOCUMENTED, XapiError
from virtdriver.xen.simulator.schema import MODELLED

from .conftest import failure

PKG = pathlib.Path(simpkg.__file__).resolve().parent
BACKEND = PKG.parent  # virtdriver/xen: the backend's modules, whatever their names


@pytest.fixture
def ses(sim: Simulator) -> str:
    """A session ref for calls straight into the dispatcher."""
    return sim.backend.sessions.login("root", "pytest")


def dispatch(sim: Simulator, method: str, *params: Any) -> dict[str, Any]:
    """One call through the simulator's dispatch point (the wire layer's only entry)."""
    return sim.dispatcher.call(method, list(params))


# -- the table itself -----------------------------------------------------------------------
def test_table_carries_its_provenance() -> None:
    """The copy names upstream's repositories and commits; the note beside it says the same."""
    assert surface.SOURCE["ocaml"]["repository"] == "xapi-project/xen-api"
    assert re.fullmatch(r"[0-9a-f]{40}", surface.SOURCE["ocaml"]["commit"])
    assert re.fullmatch(r"[0-9a-f]{40}", surface.SOURCE["json"]["commit"])
    note = (PKG / "xapi_datamodel.md").read_text()
    assert surface.SOURCE["ocaml"]["commit"] in note and surface.SOURCE["json"]["commit"] in note
    raw = json.loads((PKG / "xapi_datamodel.json").read_text())
    assert len(raw["classes"]) == 72 and len(raw["errors"]) == 599


# -- messages -------------------------------------------------------------------------------
def test_served_messages_are_the_surface_and_handlers_take_its_arity() -> None:
    """Every served name is a current message; every modelled handler accepts exactly the
    message's parameter range (a handler with a wrong signature would fail on real calls)."""
    import inspect

    assert set(served()) <= set(surface.MESSAGES)
    assert set(HANDLERS) <= set(served())
    wrong = []
    for name, fn in HANDLERS.items():
        message = surface.MESSAGES[name]
        params = list(inspect.signature(fn).parameters.values())[1:]
        required = sum(1 for p in params if p.default is p.empty)
        if (required, len(params)) != (message.min_params, message.max_params):
            wrong.append((name, required, len(params), message.min_params, message.max_params))
    assert wrong == []


def test_list_methods_is_what_is_served(sim: Simulator) -> None:
    """system.listMethods lists exactly the served messages (and itself)."""
    assert dispatch(sim, "system.listMethods")["Value"] == method_names()
    assert set(method_names()) == {*served(), "system.listMethods"}


def test_every_message_has_xapi_parameter_count(sim: Simulator, ses: str) -> None:
    """Too many arguments: MESSAGE_PARAMETER_COUNT_MISMATCH [method, xapi's count, sent]; too
    few likewise, for every served message."""
    bad = []
    for name in served():
        message = surface.MESSAGES[name]
        extra = 1 if message.session else 0
        head = [ses] if message.session else []
        over = dispatch(sim, name, *head, *["x"] * (message.max_params + 1))
        expected = ["MESSAGE_PARAMETER_COUNT_MISMATCH", name, str(message.max_params + extra),
                    str(message.max_params + 1 + extra)]
        if over.get("ErrorDescription") != expected:
            bad.append((name, over))
        if message.min_params:
            under = dispatch(sim, name, *head, *["x"] * (message.min_params - 1))
            if under.get("ErrorDescription", [""])[0] != "MESSAGE_PARAMETER_COUNT_MISMATCH":
                bad.append((name, under))
    assert bad == []


def test_unserved_and_unknown_messages(sim: Simulator, ses: str) -> None:
    """A message of the surface the simulator does not model, and a name XAPI does not have,
    are both MESSAGE_METHOD_UNKNOWN [method], before any session or count check."""
    unserved = sorted(set(surface.MESSAGES) - set(served()))
    assert unserved  # the simulator does not model everything, and says so
    for name in unserved:
        assert dispatch(sim, name, ses)["ErrorDescription"] == ["MESSAGE_METHOD_UNKNOWN", name]
    # findings of issue 16: generic calls no XAPI serves
    for name in ("VM.set_power_state", "VBD.set_currently_attached", "PIF.create",
                 "VM.set_resident_on", "VM.add_VBDs", "host.create"):
        assert name not in surface.MESSAGES or name not in served(), name
        assert dispatch(sim, name, ses, "x", "y")["ErrorDescription"] == [
            "MESSAGE_METHOD_UNKNOWN", name]


def test_async_set_is_xapi(sim: Simulator, ses: str) -> None:
    """``Async.X.y`` exists exactly for the messages XAPI marks Async."""
    wrong = []
    for name in served():
        message = surface.MESSAGES[name]
        reply = dispatch(sim, "Async." + name, ses, *["x"] * (message.max_params + 1))
        expected = "MESSAGE_PARAMETER_COUNT_MISMATCH" if message.is_async \
            else "MESSAGE_METHOD_UNKNOWN"
        if reply.get("ErrorDescription", [""])[:2] != [expected, "Async." + name]:
            wrong.append(name)
    assert wrong == []
    # issue 16's findings: no Async.VM.query_data_source; these Async forms exist
    assert not surface.MESSAGES["VM.query_data_source"].is_async
    for name in ("task.cancel", "VM.set_memory_limits", "VDI.set_name_label",
                 "VIF.set_locking_mode", "VIF.set_ipv4_allowed", "VM.set_blocked_operations"):
        assert surface.MESSAGES[name].is_async, name


def test_arities_of_the_findings(xapi: Any) -> None:
    """The counts issue 16 found wrong now follow XAPI."""
    for name, lo, hi in (("VM.start", 3, 3), ("VM.resume", 3, 3), ("VM.start_on", 4, 4),
                         ("VM.resume_on", 4, 4), ("VM.assert_can_migrate", 6, 7),
                         ("VM.migrate_send", 6, 8), ("VDI.copy", 1, 4), ("SR.introduce", 6, 7),
                         ("VDI.introduce", 9, 18), ("host.set_power_on_mode", 3, 3)):
        message = surface.MESSAGES[name]
        assert (message.min_params, message.max_params) == (lo, hi), name
    vm = xapi.VM.create({"name_label": "arity"})
    details = failure(xapi.VM.start, vm)
    assert details == ["MESSAGE_PARAMETER_COUNT_MISMATCH", "VM.start", "4", "2"]
    sr = xapi.pool.get_default_SR(xapi.pool.get_all()[0])
    vdi = xapi.VDI.create({"SR": sr, "virtual_size": "4096", "type": "user",
                           "name_label": "one-arg", "other_config": {}})
    copy = xapi.VDI.copy(vdi)  # one argument: a copy on the VDI's own SR
    assert copy != vdi and xapi.VDI.get_SR(copy) == sr


def test_classes_listed_even_when_empty(xapi: Any) -> None:
    """Classes the simulator has no objects of answer as an empty pool's do."""
    assert xapi.VLAN.get_all_records() == {}
    assert xapi.Bond.get_all() == []
    assert xapi.PCI.get_all_records_where("true") == {}
    assert failure(xapi.VLAN.get_record, "OpaqueRef:x") == ["HANDLE_INVALID", "VLAN",
                                                            "OpaqueRef:x"]
    assert failure(xapi.VGPU.get_by_uuid, "u") == ["UUID_INVALID", "VGPU", "u"]


# -- records --------------------------------------------------------------------------------
def test_records_have_exactly_the_surface_fields(xapi: Any) -> None:
    """A record of each modelled class holds every current field and no removed one."""
    for cls in MODELLED:
        records = getattr(xapi, cls).get_all_records()
        if not records:
            continue
        keys = set(next(iter(records.values())))
        assert keys == set(surface.FIELDS[cls]), cls
    metrics = xapi.host_metrics.get_all_records()
    assert all("memory_free" not in rec for rec in metrics.values())
    vm = xapi.VM.create({"name_label": "fields"})
    assert "is_snapshot_from_vmpp" not in xapi.VM.get_record(vm)
    assert failure(xapi.host_metrics.get_memory_free, next(iter(metrics)))[0] == \
        "MESSAGE_METHOD_UNKNOWN"


def test_session_record_and_getters(session: Any, xapi: Any) -> None:
    """Sessions live outside the registry, yet answer as XAPI's session class does."""
    ref = session._session
    rec = xapi.session.get_record(ref)
    assert set(rec) == set(surface.FIELDS["session"])
    assert xapi.session.get_originator(ref) == "pytest"
    assert xapi.session.get_auth_user_name(ref) == "root"
    assert xapi.session.get_by_uuid(rec["uuid"]) == ref
    assert str(xapi.session.get_last_active(ref)) >= str(rec["validation_time"])
    assert failure(xapi.session.get_by_uuid, "nope") == ["UUID_INVALID", "session", "nope"]


def test_only_rw_fields_have_setters() -> None:
    """A served ``set_<field>`` that is a plain field write is on an RW field, or is a
    message XAPI itself declares (explicit setters such as VM.set_VCPUs_max)."""
    for name in served():
        message = surface.MESSAGES[name]
        if message.implicit and message.name.startswith("set_"):
            field = surface.FIELDS[message.cls][message.name[4:]]
            assert field.settable, name


def test_event_records_follow_the_event_class() -> None:
    """event.from's events carry the fields of XAPI's event class (xapi_event.ml's wire
    record: no obj_uuid, which only the legacy event.next adds)."""
    from virtdriver.xen.simulator.models.event import EVENT_FIELDS

    assert set(EVENT_FIELDS) <= set(surface.FIELDS["event"])
    assert set(surface.FIELDS["event"]) - set(EVENT_FIELDS) == {"obj_uuid"}


# -- errors ---------------------------------------------------------------------------------
def test_declared_errors_are_xapi_codes_with_xapi_parameters() -> None:
    """Each raised code is XAPI's (or a plugin's pass-through) with XAPI's parameter names."""
    for code, params in ERRORS.items():
        if code in UNDOCUMENTED:
            assert code in surface.UNDOCUMENTED_ERRORS
        elif code in PLUGIN_ERRORS:
            assert not surface.is_error_code(code)
        else:
            assert surface.error_params(code) == params, code
    assert ERRORS["UUID_INVALID"] == ("type", "uuid")
    assert ERRORS["VM_IS_TEMPLATE"] == ("vm", "operation")
    assert ERRORS["SESSION_AUTHENTICATION_FAILED"] == ("uname", "msg")


def test_every_raise_site_has_xapi_parameter_count() -> None:
    """Each ``XapiError("CODE", ...)`` in the sources passes the declared number of
    parameters (a site with ``*args`` is checked when it runs, by XapiError itself)."""
    wrong = []
    for path in sorted(PKG.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Name)
                    and node.func.id == "XapiError" and node.args
                    and isinstance(node.args[0], ast.Constant)):
                continue
            if any(isinstance(a, ast.Starred) for a in node.args):
                continue
            code = node.args[0].value
            if len(node.args) - 1 != len(ERRORS[code]):
                wrong.append(f"{path.name}:{node.lineno} {code}")
    assert wrong == []


def test_xapi_error_refuses_what_xapi_cannot_send(sim: Simulator) -> None:
    """A code xapi lacks or a wrong count is a ValueError, also when injected."""
    with pytest.raises(ValueError):
        XapiError("NOT_A_CODE")
    with pytest.raises(ValueError):
        XapiError("HANDLE_INVALID", "VM")
    with pytest.raises(ValueError):
        sim.inject_fault("VM.start", ["VM_BAD_POWER_STATE", "vm"])
    sim.inject_fault("VM.get_all", ["SR_BACKEND_FAILURE_46", "", "reason", "stderr"])
    sim.clear_faults()


# -- the backend's calls --------------------------------------------------------------------
_NAME = re.compile(r"(Async\.)?([A-Za-z_]+)\.([A-Za-z_]+)\Z")


def backend_calls() -> list[tuple[str, str, int | None, bool]]:
    """(file:line, ``Class.method``, arguments after the session or None, async) for every
    XAPI call site in the backend's modules: ``<x>.call("C.m", ...)``,
    ``<x>.call_async("C.m", ...)``, ``<x>.xenapi.C.m(...)``, and any other call that passes a
    literal ``C.m`` naming a real class in its own case (arity then unknown)."""
    found: list[tuple[str, str, int | None, bool]] = []
    for path in sorted(BACKEND.glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if not isinstance(node, ast.Call):
                continue
            where = f"{path.name}:{node.lineno}"
            func = node.func
            starred = any(isinstance(a, ast.Starred) for a in node.args)
            if isinstance(func, ast.Attribute) and func.attr in ("call", "call_async") \
                    and node.args and isinstance(node.args[0], ast.Constant) \
                    and isinstance(node.args[0].value, str):
                match = _NAME.match(node.args[0].value)
                if match and surface.canonical_class(match.group(2)):
                    asynced = func.attr == "call_async" or bool(match.group(1))
                    found.append((where, f"{match.group(2)}.{match.group(3)}",
                                  None if starred else len(node.args) - 1, asynced))
                continue
            if isinstance(func, ast.Attribute) and isinstance(func.value, ast.Attribute) \
                    and isinstance(func.value.value, ast.Attribute) \
                    and func.value.value.attr == "xenapi":
                found.append((where, f"{func.value.attr}.{func.attr}",
                              None if starred else len(node.args), False))
                continue
            for arg in node.args:
                if isinstance(arg, ast.Constant) and isinstance(arg.value, str):
                    match = _NAME.match(arg.value)
                    # XAPI names are written in the class's own case ("session.x",
                    # "VM.y"); "vif.address" is an attribute path, not a call
                    if match and surface.canonical_class(match.group(2)) == match.group(2):
                        found.append((where, f"{match.group(2)}.{match.group(3)}", None,
                                      bool(match.group(1))))
    return found


def test_backend_calls_exist_with_their_arity() -> None:
    """Every XAPI message the backend calls is a current message of the real surface, takes
    the number of arguments the call site passes, and has an Async form where the backend
    uses one. Checked against the table, not against the simulator."""
    calls = backend_calls()
    assert len(calls) > 50  # the scan finds the backend's call sites
    wrong = []
    for where, name, count, asynced in calls:
        message = surface.MESSAGES.get(name)
        if message is None:
            wrong.append(f"{where} {name}: not in the surface")
        elif count is not None and not message.min_params <= count <= message.max_params:
            wrong.append(f"{where} {name}: {count} arguments, XAPI takes "
                         f"{message.min_params}-{message.max_params}")
        elif asynced and not message.is_async:
            wrong.append(f"{where} Async.{name}: XAPI has no Async form")
    assert wrong == []


def test_backend_reads_no_removed_field() -> None:
    """No string literal in the backend names a field XAPI removed from its class, where
    the literal is read from a record (``rec["f"]``, ``rec.get("f")``, ``get_f`` calls)."""
    removed = {(cls, name) for cls, body in json.loads(
        (PKG / "xapi_datamodel.json").read_text())["classes"].items()
        for name, field in body["fields"].items() if field["state"] == "Removed_s"}
    removed_names = {name for _, name in removed}
    current = {name for fields in surface.FIELDS.values() for name in fields}
    # a name removed in one class but current in another cannot be told apart by text
    only_removed = removed_names - current
    hits = []
    for path in sorted(BACKEND.glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            key = None
            if isinstance(node, ast.Subscript) and isinstance(node.slice, ast.Constant):
                key = node.slice.value
            elif isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) \
                    and node.func.attr == "get" and node.args \
                    and isinstance(node.args[0], ast.Constant):
                key = node.args[0].value
            if isinstance(key, str) and key in only_removed:
                hits.append(f"{path.name}:{node.lineno} {key}")
    assert "memory_free" in only_removed
    assert hits == []
    for _, name, _, _ in backend_calls():
        cls, _, method = name.partition(".")
        assert not (method.startswith("get_") and (cls, method[4:]) in removed), name
