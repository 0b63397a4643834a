"""XML-RPC encoding the way xapi writes it: compact, untyped strings, ints as strings.

Only the wire layer uses this module; models deal in plain Python values.
"""

from __future__ import annotations

import datetime as _dt
import re
import xmlrpc.client
from typing import Any
from xml.sax.saxutils import escape

MAX_REQUEST_BYTES = 64 * 1024 * 1024
INT32 = 2**31
_NOT_XML = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff]")


class Fragment(str):
    """A pre-serialized ``<value>`` fragment (used for ``task.result``)."""


def fmt_datetime(value: _dt.datetime) -> str:
    """XAPI's datetime text: ``YYYYMMDDTHH:MM:SSZ``."""
    return value.strftime("%Y%m%dT%H:%M:%SZ")


def value_xml(value: Any, out: list[str]) -> None:
    """Append the compact XML-RPC ``<value>`` of ``value`` to ``out``."""
    if isinstance(value, bool):
        out.append(f"<value><boolean>{int(value)}</boolean></value>")
    elif isinstance(value, str):
        out.append("<value>" + escape(_NOT_XML.sub("\ufffd", value)) + "</value>")
    elif isinstance(value, int):
        if -INT32 <= value < INT32:
            out.append(f"<value><i4>{value}</i4></value>")
        else:
            out.append(f"<value>{value}</value>")
    elif isinstance(value, float):
        out.append("<value><double>" + repr(value) + "</double></value>")
    elif isinstance(value, _dt.datetime):
        out.append(f"<value><dateTime.iso8601>{fmt_datetime(value)}</dateTime.iso8601></value>")
    elif isinstance(value, dict):
        out.append("<value><struct>")
        for key, item in value.items():
            out.append("<member><name>" + escape(str(key)) + "</name>")
            value_xml(item, out)
            out.append("</member>")
        out.append("</struct></value>")
    elif isinstance(value, (list, tuple, set, frozenset)):
        out.append("<value><array><data>")
        for item in value:
            value_xml(item, out)
        out.append("</data></array></value>")
    elif value is None:
        out.append("<value></value>")
    else:
        out.append("<value>" + escape(str(value)) + "</value>")


def fragment(value: Any) -> str:
    """The ``<value>...</value>`` text of one value ("" for None/void)."""
    if value is None or value == "":
        return ""
    out: list[str] = []
    value_xml(value, out)
    return "".join(out)


def response(value: Any) -> bytes:
    """A whole ``methodResponse`` document, compact, no newline after the declaration."""
    out = ['<?xml version="1.0"?><methodResponse><params><param>']
    value_xml(value, out)
    out.append("</param></params></methodResponse>")
    return "".join(out).encode("utf-8")


def success(value: Any) -> dict[str, Any]:
    """Wrap a result as xapi does."""
    return {"Status": "Success", "Value": "" if value is None else value}


def failure(description: list[str]) -> dict[str, Any]:
    """Wrap an error description as xapi does."""
    return {"Status": "Failure", "ErrorDescription": [str(d) for d in description]}


def _plain(value: Any) -> Any:
    if isinstance(value, xmlrpc.client.DateTime):
        return value.value
    if isinstance(value, (bytes, bytearray)):
        return bytes(value).decode("utf-8", "replace")
    if isinstance(value, xmlrpc.client.Binary):
        return value.data.decode("utf-8", "replace")
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return value


def parse_request(body: bytes) -> tuple[str, list[Any]]:
    """Decode a ``methodCall``; raises ValueError when it is not one."""
    try:
        params, method = xmlrpc.client.loads(body, use_builtin_types=False)
    except Exception as exc:  # expat errors, ResponseError, etc.
        raise ValueError(f"malformed XML-RPC request: {exc}") from exc
    if not method:
        raise ValueError("not a methodCall")
    return method, [_plain(p) for p in params]
