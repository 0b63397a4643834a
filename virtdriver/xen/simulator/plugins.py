"""The simulated dom0 plugins for ``host.call_plugin``: dom0_plugin_version, xenstore, agent,
console, bandwidth.

Behaviour follows Nova's dom0 plugins (read for behaviour, written anew): xenstore paths are
relative to ``/local/domain/<dom_id>``; the agent plugin writes a JSON request to
``data/host/<id>``, waits up to ``timeout`` seconds for ``data/guest/<id>`` and returns the
agent's JSON reply.  Failures are what xen-api's plugin boilerplate
(``scripts/examples/python/XenAPIPlugin.py``) prints and ``xapi_plugins.ml`` passes through
unchanged: ``XENAPI_PLUGIN_FAILURE [fn, exception class, message]`` for an exception,
``UNKNOWN_XENAPI_PLUGIN_FUNCTION [fn]`` for a function the plugin does not have.
"""

from __future__ import annotations

import base64
import json
import time
import zlib
from collections.abc import Callable

from .agent import handle_request
from .context import Context
from .errors import XapiError

PLUGIN_VERSION = "3.2"


def plugin_failure(fn: str, exc: str, msg: str) -> XapiError:
    """The error a failing plugin function produces."""
    return XapiError("XENAPI_PLUGIN_FAILURE", fn, exc, msg)


def get_version(ctx: Context, host: str, args: dict[str, str]) -> str:
    """The plugin API version Nova checks."""
    return PLUGIN_VERSION


def _store(ctx: Context, fn: str, dom_id: str) -> dict[str, str]:
    found = ctx.backend.guests.by_domid(dom_id)
    if found is None:
        raise plugin_failure(fn, "XenstoreError", f"domain {dom_id} does not exist")
    return found[1].xenstore


def _abs(dom_id: str, path: str) -> str:
    return path if path.startswith("/") else f"/local/domain/{dom_id}/{path}"


def read_record(ctx: Context, host: str, args: dict[str, str]) -> str:
    """JSON of the value at ``path`` ('"None"' when missing and ignore_missing_path)."""
    guests = ctx.backend.guests
    with guests.lock:
        store = _store(ctx, "read_record", args.get("dom_id", "-1"))
        key = _abs(args["dom_id"], args.get("path", ""))
        if key in store:
            return store[key]
    if args.get("ignore_missing_path", "false").lower() in ("true", "1"):
        return '"None"'
    raise plugin_failure("read_record", "XenstoreError", f"path {key} not found")


def write_record(ctx: Context, host: str, args: dict[str, str]) -> str:
    """Write ``value`` at ``path``; the simulated agent notices requests under data/host."""
    guests = ctx.backend.guests
    dom_id, path, value = args.get("dom_id", "-1"), args.get("path", ""), args.get("value", "")
    with guests.lock:
        _store(ctx, "write_record", dom_id)[_abs(dom_id, path)] = value
    if path.startswith("data/host/"):
        handle_request(ctx.backend.guests, dom_id, path[len("data/host/"):])
    return value


def delete_record(ctx: Context, host: str, args: dict[str, str]) -> str:
    """Delete ``path`` and everything under it."""
    guests = ctx.backend.guests
    with guests.lock:
        store = _store(ctx, "delete_record", args.get("dom_id", "-1"))
        key = _abs(args["dom_id"], args.get("path", ""))
        for k in [k for k in store if k == key or k.startswith(key + "/")]:
            del store[k]
    return ""


def list_records(ctx: Context, host: str, args: dict[str, str]) -> str:
    """JSON map of the keys under ``path`` (relative names) to their values."""
    guests = ctx.backend.guests
    with guests.lock:
        store = _store(ctx, "list_records", args.get("dom_id", "-1"))
        key = _abs(args["dom_id"], args.get("path", "")).rstrip("/") + "/"
        out = {k[len(key):]: v for k, v in store.items() if k.startswith(key)}
    return json.dumps(out)


def _agent_call(ctx: Context, fn: str, args: dict[str, str], name: str, value: object) -> str:
    request_id = args.get("id") or "req"
    dom_id = args.get("dom_id", "-1")
    timeout = float(args.get("timeout", "30"))
    write_record(ctx, "", {"dom_id": dom_id, "path": f"data/host/{request_id}",
                           "value": json.dumps({"name": name, "value": value})})
    deadline = time.monotonic() + timeout
    reply_key = _abs(dom_id, f"data/guest/{request_id}")
    guests = ctx.backend.guests
    while True:
        with guests.lock:
            store = _store(ctx, fn, dom_id)
            if reply_key in store:
                reply = store.pop(reply_key)
                return reply
        if time.monotonic() >= deadline or ctx.backend.stopping.is_set():
            delete_record(ctx, "", {"dom_id": dom_id, "path": f"data/host/{request_id}"})
            raise plugin_failure(fn, "TimeoutError",
                                 f"TIMEOUT: No response from agent within {timeout:g} seconds.")
        time.sleep(0.02)


def agent_version(ctx: Context, host: str, args: dict[str, str]) -> str:
    """Ask the agent for its version."""
    return _agent_call(ctx, "version", args, "version", "agent")


def agent_key_init(ctx: Context, host: str, args: dict[str, str]) -> str:
    """Diffie-Hellman: send our public number, get the agent's (returncode D0)."""
    return _agent_call(ctx, "key_init", args, "keyinit", int(args["pub"]))


def agent_password(ctx: Context, host: str, args: dict[str, str]) -> str:
    """Send the AES-encrypted password."""
    return _agent_call(ctx, "password", args, "password", args["enc_pass"])


def agent_inject_file(ctx: Context, host: str, args: dict[str, str]) -> str:
    """Send a file (base64 path and contents)."""
    req = f"{args['b64_path']},{args['b64_contents']}"
    return _agent_call(ctx, "inject_file", args, "injectfile",
                       base64.b64encode(req.encode()).decode())


def agent_resetnetwork(ctx: Context, host: str, args: dict[str, str]) -> str:
    """Ask the agent to reconfigure networking from vm-data/networking."""
    return _agent_call(ctx, "resetnetwork", args, "resetnetwork", "")


def agent_update(ctx: Context, host: str, args: dict[str, str]) -> str:
    """Ask the agent to update itself."""
    return _agent_call(ctx, "agentupdate", args, "agentupdate",
                       f"{args.get('url', '')},{args.get('md5sum', '')}")


def get_console_log(ctx: Context, host: str, args: dict[str, str]) -> str:
    """base64(zlib(boot log)) of a domain."""
    guests = ctx.backend.guests
    with guests.lock:
        found = guests.by_domid(args.get("dom_id", "-1"))
        if found is None:
            raise plugin_failure("get_console_log", "IOError", "no console log")
        text = "\n".join(found[1].boot_log) + "\n"
    return base64.b64encode(zlib.compress(text.encode())).decode()


def fetch_all_bandwidth(ctx: Context, host: str, args: dict[str, str]) -> str:
    """JSON {domid: {vif device: {bw_in, bw_out}}} for running domains."""
    db = ctx.db
    out: dict[str, dict[str, dict[str, int]]] = {}
    with db.lock:
        for rec in db.all("VM").values():
            if rec["power_state"] != "Running" or rec["is_control_domain"]:
                continue
            vifs = {}
            for vif in rec["VIFs"]:
                dev = db.get("VIF", vif)["device"]
                vifs[dev] = {"bw_in": 1000 * (int(dev) + 1), "bw_out": 2000 * (int(dev) + 1)}
            out[rec["domid"]] = vifs
    return json.dumps(out)


PluginFn = Callable[[Context, str, dict[str, str]], str]
#: plugin name -> function name -> implementation (Nova's plugins are named ``<name>.py``).
PLUGINS: dict[str, dict[str, PluginFn]] = {
    "dom0_plugin_version": {"get_version": get_version},
    "xenstore": {"read_record": read_record, "write_record": write_record,
                 "delete_record": delete_record, "list_records": list_records},
    "agent": {"version": agent_version, "key_init": agent_key_init,
              "password": agent_password, "inject_file": agent_inject_file,
              "resetnetwork": agent_resetnetwork, "agentupdate": agent_update},
    "console": {"get_console_log": get_console_log},
    "bandwidth": {"fetch_all_bandwidth": fetch_all_bandwidth},
}


def call(ctx: Context, host: str, name: str, fn: str, args: dict[str, str]) -> str:
    """Run ``fn`` of plugin ``name``: XENAPI_MISSING_PLUGIN when xapi finds no such plugin,
    UNKNOWN_XENAPI_PLUGIN_FUNCTION when the plugin has no such function."""
    table = PLUGINS.get(name) or PLUGINS.get(name.removesuffix(".py"))
    if table is None:
        raise XapiError("XENAPI_MISSING_PLUGIN", name)
    func = table.get(fn)
    if func is None:
        raise XapiError("UNKNOWN_XENAPI_PLUGIN_FUNCTION", fn)
    return func(ctx, host, {str(k): str(v) for k, v in args.items()})
