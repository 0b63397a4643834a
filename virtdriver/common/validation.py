"""Small named validators, one rule each: what every model and backend checks its input with.

Each takes the field's name (for the error) and the value, and returns the value as the
caller should keep it, or raises :class:`~virtdriver.common.exceptions.InvalidInput` naming
the field and the value. None of them calls a server; backends run them before the first
call.

Text a backend writes to the server verbatim is refused when it holds a control character
(C0, DEL or C1: ``\\x00``-``\\x1f``, ``\\x7f``-``\\x9f``; and the line and paragraph
separators U+2028 and U+2029): an instance's name, hostname and
project id, a metadata key, an injected file's path. Those land in line-structured places
(the VMware annotation's ``key:value`` lines, XAPI name labels, xenstore paths, the guest's
``/etc/hostname``, a file path in the guest), where a newline forges a line and a NUL
truncates, and no escape would keep the value what the caller meant. Metadata *values*,
file contents, SSH keys and passwords may hold any character: every place they go
(xenstore values, the config drive's JSON) stores them JSON-encoded, so they are escaped,
not refused.

Regular expressions validate with ``fullmatch``: ``$`` also matches before a trailing
newline, so ``re.match(r"...$")`` would let ``"fa:16:3e:00:00:0a\\n"`` through.
"""

from __future__ import annotations

import posixpath
import re
import uuid as uuid_module
from collections.abc import Mapping
from typing import Any

from virtdriver.common.exceptions import InvalidInput

__all__ = [
    "MAX_NAME_LENGTH",
    "has_control_character",
    "require_admin_password",
    "require_guest_path",
    "require_injected_files",
    "require_mac",
    "require_mapping",
    "require_metadata",
    "require_name",
    "require_non_negative_int",
    "require_positive_int",
    "require_text",
    "require_uuid",
]

#: Nova's limit for names, ids and metadata keys.
MAX_NAME_LENGTH = 255

# str.splitlines() also breaks at U+2028 and U+2029: they forge a line as a newline does
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]")
_MAC = re.compile(r"[0-9a-f]{2}(?::[0-9a-f]{2}){5}", re.IGNORECASE)
# A uuid already in the canonical form str(uuid.UUID(...)) gives: returned as it is.
_CANONICAL_UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")


def has_control_character(text: str) -> bool:
    """True when ``text`` holds a C0 or C1 control character, DEL, or U+2028/U+2029."""
    return _CONTROL.search(text) is not None


def require_uuid(field: str, value: Any) -> str:
    """A UUID in any form :class:`uuid.UUID` reads; returned in its canonical form."""
    if type(value) is str and _CANONICAL_UUID.fullmatch(value):
        return value  # what the parse below would return, at a tenth of its cost
    try:
        return str(uuid_module.UUID(str(value)))
    except (ValueError, TypeError, AttributeError):
        raise InvalidInput(field, value, "must be a UUID") from None


def require_positive_int(field: str, value: Any) -> int:
    """An int (not a bool) above 0."""
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise InvalidInput(field, value, "must be a positive integer")
    return value


def require_non_negative_int(field: str, value: Any) -> int:
    """An int (not a bool) of 0 or more."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise InvalidInput(field, value, "must be an integer of 0 or more")
    return value


def require_text(field: str, value: Any, max_length: int = MAX_NAME_LENGTH) -> str:
    """A string (possibly empty) of at most ``max_length`` characters, with no control
    character."""
    if not isinstance(value, str) or len(value) > max_length:
        raise InvalidInput(field, value, f"must be a string of at most {max_length} characters")
    if has_control_character(value):
        raise InvalidInput(field, value, "must not contain control characters "
                                         "(newline, NUL...)")
    return value


def require_name(field: str, value: Any) -> str:
    """A non-blank string of at most 255 characters, with no control character."""
    if not isinstance(value, str) or not value.strip() or len(value) > MAX_NAME_LENGTH:
        raise InvalidInput(field, value, "must be a non-empty string of at most "
                                         f"{MAX_NAME_LENGTH} characters")
    return require_text(field, value)


def require_mac(field: str, value: Any) -> str:
    """A unicast MAC address (``fa:16:3e:00:00:01``), returned in lower case."""
    if not isinstance(value, str) or not _MAC.fullmatch(value):
        raise InvalidInput(field, value, "must be a MAC address like fa:16:3e:00:00:01")
    mac = value.lower()
    if int(mac[:2], 16) & 1:
        raise InvalidInput(field, value, "must be a unicast MAC address")
    return mac


def require_mapping(field: str, value: Any) -> dict[str, Any]:
    """A mapping, copied into a dict; None is an empty one."""
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise InvalidInput(field, value, "must be a mapping")
    return dict(value)


def require_metadata(field: str, value: Any) -> dict[str, Any]:
    """Instance metadata: a mapping whose keys are names (:func:`require_name`).

    Keys become xenstore paths, where the characters xenstore refuses are replaced: a key
    with a control character would silently share its path with another key, so it is
    refused. Values are stored JSON-encoded wherever they go, so any value is kept.
    """
    metadata = require_mapping(field, value)
    for key in metadata:
        require_name(f"{field} key", key)
    return metadata


def require_guest_path(field: str, value: Any) -> str:
    """An absolute path in the guest with no control character and no ``..`` component.

    A relative path, or one that climbs with ``..``, means something else to each guest
    tool that writes it (cloud-init, the Xen agent, a mount-point join); refusing it keeps
    the file where the caller said.
    """
    if not isinstance(value, str) or not value.startswith("/"):
        raise InvalidInput(field, value, "must be an absolute path")
    if has_control_character(value):
        raise InvalidInput(field, value, "must not contain control characters "
                                         "(newline, NUL...)")
    if ".." in value.split("/"):
        raise InvalidInput(field, value, "must not contain '..' components")
    if posixpath.normpath(value) == "/":
        raise InvalidInput(field, value, "must name a file, not the root directory")
    return value


def require_injected_files(value: Any) -> list[tuple[str, bytes]]:
    """``injected_files`` (Nova's ``[(path, contents), ...]``), checked and with contents
    as bytes (a str is UTF-8 encoded). None is no files."""
    if value is None:
        return []
    if isinstance(value, (str, bytes, Mapping)):
        raise InvalidInput("injected_files", value, "must be a list of (path, contents) pairs")
    try:
        entries = list(value)
    except TypeError:
        raise InvalidInput("injected_files", value,
                           "must be a list of (path, contents) pairs") from None
    files = []
    for entry in entries:
        if isinstance(entry, (str, bytes)):
            raise InvalidInput("injected_files", entry, "entries must be (path, contents) pairs")
        try:
            path, contents = entry
        except (TypeError, ValueError):
            raise InvalidInput("injected_files", entry,
                               "entries must be (path, contents) pairs") from None
        require_guest_path("injected_files.path", path)
        if not isinstance(contents, (bytes, str)):
            raise InvalidInput("injected_files.contents", type(contents).__name__,
                               "must be bytes or str")
        files.append((path, contents.encode() if isinstance(contents, str) else contents))
    return files


def require_admin_password(field: str, value: Any) -> str | None:
    """A password: a string, or None (an empty string is none). Never shown in an error."""
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        raise InvalidInput(field, "<hidden>", "must be a string")
    return value
