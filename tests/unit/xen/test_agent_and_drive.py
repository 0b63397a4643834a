"""The guest agent protocol over a fake session (config drives: tests/unit/common)."""

import json

import pytest

from virtdriver.common import exceptions as exc
from virtdriver.xen.agent import GuestAgent, SimpleDH

from .fakes import FakeSession, failure

UUID = "11111111-2222-4333-8444-555555555555"


def test_dh_round_trip_through_openssl():
    ours, theirs = SimpleDH(), SimpleDH()
    assert ours.compute_shared(theirs.public) == theirs.compute_shared(ours.public)
    secret = ours.encrypt("pa55 word")
    assert "pa55" not in secret
    assert theirs.decrypt(secret) == "pa55 word\n"


class FakeAgent:
    """Plays the guest: answers key_init with its public key and decrypts the password."""

    def __init__(self):
        self.dh = SimpleDH()
        self.password = None
        self.requests = []

    def __call__(self, host, plugin, method, args):
        self.requests.append((method, args))
        if method == "key_init":
            self.dh.compute_shared(int(args["pub"]))
            return json.dumps({"returncode": "D0", "message": str(self.dh.public)})
        if method == "password":
            self.password = self.dh.decrypt(args["enc_pass"]).rstrip("\n")
        return json.dumps({"returncode": "0", "message": "ok"})


def agent_with(plugin):
    session = FakeSession({"VM.get_domid": "5", "host.call_plugin": plugin})
    return session, GuestAgent(session, "vm", UUID, timeout=3, resetnetwork_timeout=4)


def test_set_password_exchanges_keys_and_never_sends_plain_text():
    fake = FakeAgent()
    session, agent = agent_with(fake)
    agent.set_password("t0p-secret")
    assert fake.password == "t0p-secret"
    assert [m for m, _ in fake.requests] == ["key_init", "password"]
    assert all("t0p-secret" not in json.dumps(args) for _, args in fake.requests)
    assert session.methods().count("VM.get_domid") == 1
    assert fake.requests[0][1]["dom_id"] == "5" and fake.requests[0][1]["timeout"] == "3"


def test_inject_file_is_base64():
    fake = FakeAgent()
    _, agent = agent_with(fake)
    agent.inject_file("/etc/motd", "hi")
    args = fake.requests[0][1]
    assert args["b64_path"] == "L2V0Yy9tb3Rk" and args["b64_contents"] == "aGk="


def test_timeout_reply_is_agent_timeout():
    _, agent = agent_with(failure("XENAPI_PLUGIN_FAILURE", "version", "TimeoutError",
                                  "TIMEOUT: No response from agent within 3 seconds."))
    with pytest.raises(exc.AgentTimeout):
        agent.version(3)


def test_error_code_is_agent_error():
    _, agent = agent_with(lambda *a: json.dumps({"returncode": "500", "message": "nope"}))
    with pytest.raises(exc.AgentError):
        agent.inject_file("/x", b"y")
    agent.reset_network()  # 500 is success for resetnetwork (old agents)


def test_halted_vm_is_agent_error():
    session = FakeSession({"VM.get_domid": "-1"})
    agent = GuestAgent(session, "vm", UUID, 1, 1)
    with pytest.raises(exc.AgentError):
        agent.version(1)
