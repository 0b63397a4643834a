"""The guest agent: Nova's XenAPI agent protocol over xenstore, so a real guest agent works.

Requests go through the dom0 plugin ``agent.py`` (``host.call_plugin``): it writes
``{"name": <method>, "value": ...}`` to ``data/host/<id>`` in the guest's xenstore and waits
for ``{"returncode": ..., "message": ...}`` at ``data/guest/<id>``. XAPI itself has no verb
for talking to a guest, so this is the one place a plugin is unavoidable.

A password never travels in the clear: :class:`SimpleDH` agrees on a shared secret with the
agent (``key_init``), and the password is sent AES-128-CBC encrypted in OpenSSL's ``enc``
format (base64, no salt), which is what the agent decrypts with ``openssl enc -d``.
"""

from __future__ import annotations

import base64
import json
import os
import secrets
import subprocess
import uuid

from oslo_log import log as logging

from virtdriver.common import exceptions as exc
from virtdriver.xen.session import XenAPISession

LOG = logging.getLogger(__name__)

PLUGIN = "agent.py"
#: Success codes: key_init answers D0 (the agent's public key follows), resetnetwork may
#: answer 500 on older agents that still did the work.
SUCCESS = {"version": ("0",), "key_init": ("D0",), "password": ("0",),
           "inject_file": ("0",), "resetnetwork": ("0", "500")}
#: Digest of OpenSSL's key derivation: the default of openssl enc since 1.1.0, which
#: current guest agents decrypt with.
OPENSSL_MD = "sha256"


class SimpleDH:
    """Diffie-Hellman over the small group Nova's agent expects (prime and base fixed)."""

    prime = 162259276829213363391578010288127
    base = 5

    def __init__(self) -> None:
        self._private = secrets.randbelow(self.prime - 2) + 1
        self.public = pow(self.base, self._private, self.prime)
        self._shared: int | None = None

    def compute_shared(self, other_public: int) -> int:
        """Remember and return the secret shared with the holder of ``other_public``."""
        self._shared = pow(other_public, self._private, self.prime)
        return self._shared

    def encrypt(self, text: str) -> str:
        """``text`` encrypted with the shared secret, in ``openssl enc -a`` form."""
        return self._openssl(text + "\n", decrypt=False).strip()

    def decrypt(self, text: str) -> str:
        """The inverse of :meth:`encrypt` (tests and diagnostics)."""
        return self._openssl(text + "\n", decrypt=True)

    def _openssl(self, text: str, decrypt: bool) -> str:
        if self._shared is None:
            raise exc.AgentError("no shared key: run the key exchange first")
        # The secret goes through a pipe, never on the command line where ps shows it.
        read_fd, write_fd = os.pipe()
        try:
            os.write(write_fd, str(self._shared).encode() + b"\n")
            os.close(write_fd)
            write_fd = -1
            cmd = ["openssl", "enc", "-aes-128-cbc", "-a", "-A", "-nosalt", "-md", OPENSSL_MD,
                   "-pass", f"fd:{read_fd}"]
            if decrypt:
                cmd.append("-d")
            proc = subprocess.run(cmd, input=text.encode(), capture_output=True,
                                  pass_fds=(read_fd,), check=False)
        finally:
            os.close(read_fd)
            if write_fd >= 0:
                os.close(write_fd)
        if proc.returncode != 0:
            raise exc.AgentError(f"openssl failed: {proc.stderr.decode(errors='replace')[:200]}")
        return proc.stdout.decode()


class GuestAgent:
    """Talks to the agent of one running VM (by domid)."""

    def __init__(self, session: XenAPISession, vm_ref: str, instance_uuid: str,
                 timeout: float, resetnetwork_timeout: float) -> None:
        self.session = session
        self.vm_ref = vm_ref
        self.instance_uuid = instance_uuid
        self.timeout = timeout
        self.resetnetwork_timeout = resetnetwork_timeout
        self._domid: str | None = None

    def _current_domid(self) -> str:
        # One read per agent conversation: the domid changes only when the guest reboots.
        if self._domid is None:
            self._domid = str(self.session.call("VM.get_domid", self.vm_ref))
        return self._domid

    def call(self, method: str, args: dict[str, str] | None = None,
             timeout: float | None = None) -> str:
        """Send one request and return the agent's message; errors are AgentError types."""
        wait = self.timeout if timeout is None else timeout
        domid = self._current_domid()
        if domid in ("-1", ""):
            raise exc.AgentError(f"instance {self.instance_uuid} is not running")
        request = {"id": str(uuid.uuid4()), "dom_id": str(domid), "timeout": str(int(wait)),
                   **(args or {})}
        # the method only: its arguments may carry an (encrypted) password or file contents
        LOG.debug("guest agent %s (domid %s)", method, domid, instance_uuid=self.instance_uuid)
        try:
            raw = self.session.call("host.call_plugin", self.session.host_ref, PLUGIN,
                                    method, request, timeout=wait + 30.0)
        except exc.BackendError as error:
            last = (error.params[-1] if error.params else "").strip().splitlines()
            detail = last[-1] if last else error.code or ""
            if "TIMEOUT:" in detail:
                raise exc.AgentTimeout(
                    f"the guest agent of {self.instance_uuid} did not answer {method} in "
                    f"{int(wait)}s") from error
            if "NOT IMPLEMENTED:" in detail:
                raise exc.AgentError(f"the guest agent does not implement {method}") from error
            raise exc.AgentError(f"guest agent {method} failed: {detail}") from error
        try:
            reply = json.loads(raw)
            code, message = str(reply["returncode"]), str(reply.get("message", ""))
        except (ValueError, KeyError, TypeError):
            raise exc.AgentError(f"guest agent {method} gave an unreadable reply") from None
        if code not in SUCCESS.get(method, ("0",)):
            raise exc.AgentError(f"guest agent {method} failed with code {code}: "
                                 f"{message[:200]}")
        return message

    def version(self, timeout: float) -> str:
        """The agent's version; AgentTimeout when it does not come up in ``timeout`` s."""
        return self.call("version", timeout=timeout).strip()

    def set_password(self, password: str) -> None:
        """Key exchange, then the password encrypted with the shared key."""
        dh = SimpleDH()
        agent_public = self.call("key_init", {"pub": str(dh.public)})
        try:
            dh.compute_shared(int(agent_public.strip()))
        except ValueError:
            raise exc.AgentError("the guest agent sent an unreadable public key") from None
        self.call("password", {"enc_pass": dh.encrypt(password)})

    def inject_file(self, path: str, contents: bytes | str) -> None:
        """Write ``contents`` to ``path`` inside the guest."""
        data = contents.encode() if isinstance(contents, str) else bytes(contents)
        self.call("inject_file", {"b64_path": base64.b64encode(path.encode()).decode(),
                                  "b64_contents": base64.b64encode(data).decode()})

    def reset_network(self) -> None:
        """Ask the agent to re-read the network configuration from xenstore."""
        self.call("resetnetwork", timeout=self.resetnetwork_timeout)
