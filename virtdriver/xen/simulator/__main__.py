"""``python -m virtdriver.xen.simulator``: serve until SIGTERM/SIGINT."""

from __future__ import annotations

import argparse
import os
import signal
import sys
import time
from typing import Any

from .server import Server
from .simulator import Simulator

SIZE_SUFFIXES = {"": 1, "K": 1024, "M": 1024**2, "G": 1024**3, "T": 1024**4}


def parse_iscsi_target(text: str) -> dict[str, object]:
    """``PORTAL/IQN/LUN:SIZE[,LUN:SIZE...]`` (SIZE in bytes or with K/M/G/T), e.g.
    ``127.0.0.1:3260/iqn.2010-10.org.openstack:volume-1/1:1G``."""
    try:
        portal, iqn, luns = text.split("/")
        sizes = {}
        for item in luns.split(","):
            number, _, size = item.partition(":")
            size = size.strip().upper()
            unit = size[-1:] if size[-1:] in SIZE_SUFFIXES else ""
            sizes[int(number)] = int(size[: len(size) - len(unit)]) * SIZE_SUFFIXES[unit]
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not PORTAL/IQN/LUN:SIZE[,LUN:SIZE...]") from None
    if not iqn or not portal:
        raise argparse.ArgumentTypeError(f"{text!r} needs a portal and an IQN")
    return {"iqn": iqn, "portal": portal, "luns": sizes}


def positive(kind: type) -> Any:
    """An argparse type: a number of ``kind`` above zero."""

    def parse(text: str) -> Any:
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
        if value <= 0:
            raise argparse.ArgumentTypeError(f"{text!r} must be above zero")
        return value

    return parse


def main(argv: list[str] | None = None) -> int:
    """Parse flags, start, print the URL, wait for a signal, stop."""
    parser = argparse.ArgumentParser(prog="python -m virtdriver.xen.simulator",
                                     description="XAPI simulator")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--username", default="root")
    # Prefer the environment: a command line is visible to every local user (ps).
    parser.add_argument("--password", default=os.environ.get("XAPI_SIMULATOR_PASSWORD", "secret"),
                        help="login password (default: $XAPI_SIMULATOR_PASSWORD, else 'secret')")
    parser.add_argument("--hosts", type=int, default=1)
    parser.add_argument("--vms", type=int, default=0)
    parser.add_argument("--tls-cert")
    parser.add_argument("--tls-key")
    parser.add_argument("--session-idle-timeout", type=float)
    parser.add_argument("--coalesce-delay", type=float, default=0.0)
    parser.add_argument("--max-connections", type=positive(int), metavar="N",
                        help="connections served at once; more are refused at once with "
                             f"HTTP 503 (default {Server.max_connections})")
    parser.add_argument("--header-timeout", type=positive(float), metavar="SECONDS",
                        help="time a client has to send a request line and its headers, "
                             "counted from the connection's start for its first request "
                             "(slow-loris clients are cut there; default "
                             f"{Server.header_timeout:g})")
    parser.add_argument("--idle-timeout", type=positive(float), metavar="SECONDS",
                        help="time a kept-alive connection may sit idle between requests, "
                             "or a request body may stall (default "
                             f"{Server.idle_timeout:g})")
    parser.add_argument("--iscsi-target", action="append", type=parse_iscsi_target,
                        default=[], metavar="PORTAL/IQN/LUN:SIZE[,LUN:SIZE]",
                        help="export an iSCSI target (repeatable); CHAP targets through "
                             "POST /_sim/iscsi, so no secret is on the command line")
    args = parser.parse_args(argv)
    if bool(args.tls_cert) != bool(args.tls_key):
        parser.error("--tls-cert and --tls-key go together")
    # The handler only records the signal: setting a threading.Event from a handler can
    # deadlock when the signal lands while the main thread holds that Event's own lock.
    signals: list[int] = []
    signal.signal(signal.SIGTERM, lambda signum, _frame: signals.append(signum))
    signal.signal(signal.SIGINT, lambda signum, _frame: signals.append(signum))
    sim = Simulator(host=args.host, port=args.port, username=args.username,
                    password=args.password, hosts=args.hosts, vms=args.vms,
                    tls_cert=args.tls_cert, tls_key=args.tls_key,
                    session_idle_timeout=args.session_idle_timeout,
                    coalesce_delay=args.coalesce_delay,
                    iscsi_targets=args.iscsi_target, max_connections=args.max_connections,
                    header_timeout=args.header_timeout,
                    idle_timeout=args.idle_timeout).start()
    print(sim.url, flush=True)
    try:
        while not signals:
            time.sleep(0.2)
    finally:
        sim.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
