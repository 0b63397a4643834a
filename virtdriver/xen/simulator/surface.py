"""The real XAPI API surface, as data: classes, messages, fields, enums and error codes.

Loaded from ``xapi_datamodel.json`` beside this module, a copy of the table extracted from
xen-api's own API description (provenance in ``xapi_datamodel.md`` and :data:`SOURCE`).  The
simulator's message table, parameter counts, Async set, settable fields, record shapes and
error declarations all derive from it; nothing here knows what the simulator models.

Messages and fields whose lifecycle ends in ``Removed_s`` are not part of the surface: a
current xapi does not serve them.
"""

from __future__ import annotations

import json
import pathlib
import re
from dataclasses import dataclass
from typing import Any

DATA_FILE = pathlib.Path(__file__).with_name("xapi_datamodel.json")
_DATA: dict[str, Any] = json.loads(DATA_FILE.read_text(encoding="utf-8"))

#: Where the table comes from: upstream repositories and commits.
SOURCE: dict[str, Any] = _DATA["source"]
REMOVED = "Removed_s"


@dataclass(frozen=True)
class Message:
    """One XAPI message, ``<cls>.<name>``; ``params`` exclude the session."""

    cls: str
    name: str
    params: tuple[tuple[str, str], ...]
    min_params: int
    is_async: bool
    implicit: bool
    session: bool
    result: str
    errors: tuple[str, ...]
    state: str

    @property
    def wire_name(self) -> str:
        """``Class.name`` as clients send it."""
        return f"{self.cls}.{self.name}"

    @property
    def max_params(self) -> int:
        """How many arguments (after the session) the message takes at most."""
        return len(self.params)


@dataclass(frozen=True)
class Field:
    """One field of a class: its type text (``int``, ``VM ref set``, ``enum vdi_type``...)
    and qualifier (``RW``, ``StaticRO`` set by the constructor, ``DynamicRO`` server-set)."""

    cls: str
    name: str
    type: str
    qualifier: str
    state: str
    has_default: bool

    @property
    def settable(self) -> bool:
        """Whether a client may write it (XAPI generates ``set_<field>`` for RW fields)."""
        return self.qualifier == "RW"

    @property
    def in_constructor(self) -> bool:
        """Whether ``<class>.create`` takes it from the client's record."""
        return self.qualifier in ("RW", "StaticRO")


def _messages() -> dict[str, Message]:
    out: dict[str, Message] = {}
    for cls, body in _DATA["classes"].items():
        for name, msg in body["messages"].items():
            if msg["state"] == REMOVED:
                continue
            out[f"{cls}.{name}"] = Message(
                cls=cls, name=name, params=tuple((t, n) for t, n in msg["params"]),
                min_params=int(msg["min_params"]), is_async=bool(msg["async"]),
                implicit=bool(msg["implicit"]), session=bool(msg["session"]),
                result=msg["result"], errors=tuple(msg["errors"]), state=msg["state"])
    return out


def _fields() -> dict[str, dict[str, Field]]:
    out: dict[str, dict[str, Field]] = {}
    for cls, body in _DATA["classes"].items():
        out[cls] = {name: Field(cls, name, f["type"], f["qualifier"], f["state"],
                                bool(f["default"]))
                    for name, f in body["fields"].items() if f["state"] != REMOVED}
    return out


#: ``Class.name`` -> message, for every message a current xapi serves.
MESSAGES: dict[str, Message] = _messages()
#: class -> field name -> field (removed fields left out).
FIELDS: dict[str, dict[str, Field]] = _fields()
#: every class name, canonical case.
CLASSES: tuple[str, ...] = tuple(_DATA["classes"])
#: enum name (``vm_power_state``) -> its values in canonical case.
ENUMS: dict[str, tuple[str, ...]] = {
    name: tuple(values) for body in _DATA["classes"].values()
    for name, values in body.get("enums", {}).items()}

#: error code -> parameter names, in the form xapi sends at runtime.
ERRORS: dict[str, tuple[str, ...]] = {code: tuple(params)
                                      for code, params in _DATA["errors"].items()}
ERRORS.update({code: tuple(body["params"]) for code, body in _DATA["runtime_errors"].items()})
#: codes that exist in xapi (``api_errors.ml``) with no declared parameters.
UNDOCUMENTED_ERRORS: frozenset[str] = frozenset(_DATA["undocumented_errors"])
_SR_BACKEND_FAILURE = re.compile(r"SR_BACKEND_FAILURE_\d+\Z")
SR_BACKEND_FAILURE_PARAMS: tuple[str, ...] = tuple(
    _DATA["dynamic_errors"]["SR_BACKEND_FAILURE_<n>"]["params"])


def error_params(code: str) -> tuple[str, ...] | None:
    """The parameter names xapi sends with ``code``; None for a code xapi does not have or
    one it declares without parameters (``UNDOCUMENTED_ERRORS``)."""
    if code in ERRORS:
        return ERRORS[code]
    if _SR_BACKEND_FAILURE.match(code):
        return SR_BACKEND_FAILURE_PARAMS
    return None


def is_error_code(code: str) -> bool:
    """Whether xapi can send ``code`` at all."""
    return error_params(code) is not None or code in UNDOCUMENTED_ERRORS


def canonical_class(name: str) -> str | None:
    """The class name in canonical case (``vm`` -> ``VM``), or None."""
    return _LOWER.get(name.lower())


_LOWER = {cls.lower(): cls for cls in CLASSES}


def enum_of(field: Field) -> tuple[str, ...] | None:
    """The values of an enum field (None when the field is not an enum)."""
    if field.type.startswith("enum "):
        return ENUMS.get(field.type[len("enum "):])
    return None
