"""The simulated guest agent (Nova's XenAPI agent protocol over xenstore).

Requests arrive as JSON ``{"name", "value"}`` at ``data/host/<id>``; replies are written to
``data/guest/<id>`` as ``{"returncode", "message"}``.  Passwords use Diffie-Hellman
(Nova's SimpleDH prime and base) and ``openssl enc -aes-128-cbc -nosalt -a`` (EVP_BytesToKey
with SHA-256, falling back to MD5 for old OpenSSL).  Needs ``cryptography`` for AES.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import secrets
from typing import Any

from .guest import Guests

PRIME = 162259276829213363391578010288127
BASE = 5
AGENT_VERSION = "1.0.0-sim"


def evp_bytes_to_key(password: bytes, digest: str) -> tuple[bytes, bytes]:
    """OpenSSL's EVP_BytesToKey without salt: 16-byte key and 16-byte IV."""
    out, block = b"", b""
    while len(out) < 32:
        block = hashlib.new(digest, block + password).digest()
        out += block
    return out[:16], out[16:32]


def decrypt_password(enc: str, shared: int) -> str:
    """Decrypt ``openssl aes-128-cbc -A -a -nosalt -pass pass:<shared>`` output."""
    from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

    data = base64.b64decode(enc)
    for digest in ("sha256", "md5"):
        key, iv = evp_bytes_to_key(str(shared).encode(), digest)
        dec = Cipher(algorithms.AES(key), modes.CBC(iv)).decryptor()
        plain = dec.update(data) + dec.finalize()
        pad = plain[-1] if plain else 0
        if 1 <= pad <= 16 and plain.endswith(bytes([pad]) * pad):
            try:
                return plain[:-pad].decode()
            except UnicodeDecodeError:
                continue
    raise ValueError("cannot decrypt password")


def _reply(guests: Guests, dom_id: str, request_id: str, code: str, message: str) -> None:
    with guests.lock:
        found = guests.by_domid(dom_id)
        if found is None:
            return
        store = found[1].xenstore
        store.pop(f"/local/domain/{dom_id}/data/host/{request_id}", None)
        store[f"/local/domain/{dom_id}/data/guest/{request_id}"] = json.dumps(
            {"returncode": code, "message": message})


def handle_request(guests: Guests, dom_id: str, request_id: str) -> None:
    """Answer one request, if the domain's agent is running."""
    with guests.lock:
        found = guests.by_domid(dom_id)
        if found is None:
            return
        vm, state = found
        if not guests.agent_enabled(vm):
            return
        raw = state.xenstore.get(f"/local/domain/{dom_id}/data/host/{request_id}", "")
    try:
        request: dict[str, Any] = json.loads(raw)
        name, value = request["name"], request.get("value")
    except (ValueError, KeyError, TypeError):
        _reply(guests, dom_id, request_id, "500", "malformed request")
        return
    with guests.lock:
        if name == "version":
            _reply(guests, dom_id, request_id, "0", AGENT_VERSION)
        elif name == "keyinit":
            private = int(binascii.hexlify(secrets.token_bytes(10)), 16)
            state.dh = pow(int(value), private, PRIME)
            _reply(guests, dom_id, request_id, "D0", str(pow(BASE, private, PRIME)))
        elif name == "password":
            if state.dh is None:
                _reply(guests, dom_id, request_id, "D1", "key_init first")
                return
            try:
                password = decrypt_password(str(value), state.dh)
            except (ValueError, ImportError) as exc:
                _reply(guests, dom_id, request_id, "D1", str(exc))
                return
            state.password = password.rstrip("\n")
            _reply(guests, dom_id, request_id, "0", "")
        elif name == "injectfile":
            try:
                b64_path, b64_contents = base64.b64decode(str(value)).decode().split(",", 1)
                path = base64.b64decode(b64_path).decode()
                state.files[path] = base64.b64decode(b64_contents)
            except (ValueError, binascii.Error) as exc:
                _reply(guests, dom_id, request_id, "500", str(exc))
                return
            _reply(guests, dom_id, request_id, "0", "")
        elif name == "resetnetwork":
            state.network_resets += 1
            prefix = f"/local/domain/{dom_id}/vm-data/networking/"
            state.networking = {k[len(prefix):]: v for k, v in state.xenstore.items()
                                if k.startswith(prefix)}
            _reply(guests, dom_id, request_id, "0", "")
        elif name == "agentupdate":
            _reply(guests, dom_id, request_id, "0", "")
        else:
            _reply(guests, dom_id, request_id, "404", f"NOT IMPLEMENTED: {name}")
