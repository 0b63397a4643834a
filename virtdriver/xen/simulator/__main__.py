"""``python -m virtdriver.xen.simulator``: serve until SIGTERM/SIGINT."""

from __future__ import annotations

import argparse
import os
import signal
import sys
import threading

from .simulator import Simulator


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
    args = parser.parse_args(argv)
    if bool(args.tls_cert) != bool(args.tls_key):
        parser.error("--tls-cert and --tls-key go together")
    done = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: done.set())
    signal.signal(signal.SIGINT, lambda *_: done.set())
    sim = Simulator(host=args.host, port=args.port, username=args.username,
                    password=args.password, hosts=args.hosts, vms=args.vms,
                    tls_cert=args.tls_cert, tls_key=args.tls_key,
                    session_idle_timeout=args.session_idle_timeout,
                    coalesce_delay=args.coalesce_delay).start()
    print(sim.url, flush=True)
    try:
        while not done.wait(0.5):
            pass
    finally:
        sim.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
