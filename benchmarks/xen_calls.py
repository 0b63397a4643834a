"""Server calls and wall time of one Xen spawn and destroy, cold and warm image cache.

Run: ``.venv/bin/python benchmarks/xen_calls.py`` (starts the XAPI simulator in-process; set
XAPI_URL, XAPI_USERNAME and XAPI_PASSWORD to measure another server, whose network
XAPI_NETWORK the VIF joins). Prints the calls by method, from ``ops.stats`` (the session
counts into it), and the wall time of each run. Spawn includes the guest agent
conversation (files, password, network).
"""

from __future__ import annotations

import os
import pathlib
import sys
import tempfile
import time
import uuid
from typing import Any

ROOT = pathlib.Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from oslo_config import cfg  # noqa: E402

import virtdriver  # noqa: E402
from virtdriver.common.model import VIF, Flavor, Instance  # noqa: E402

IMAGE_MB = 4


def _conf(url: str, username: str, password: str) -> cfg.ConfigOpts:
    conf = cfg.ConfigOpts()
    virtdriver.register_opts(conf)
    conf([])
    for key, value in {"connection_url": url, "connection_username": username,
                       "connection_password": password}.items():
        conf.set_override(key, value, group="xenserver")
    return conf


def _measure(ops: Any, label: str, action: Any) -> None:
    ops.stats.reset()
    start = time.perf_counter()
    action()
    elapsed = time.perf_counter() - start
    stats = ops.stats
    seconds = stats.seconds
    print(f"\n{label}: {stats.total_calls} server calls, {elapsed * 1000:.0f} ms wall "
          f"({sum(seconds.values()) * 1000:.0f} ms in calls)")
    for method, count in sorted(stats.snapshot().items(),
                                key=lambda item: (-item[1], item[0])):
        print(f"  {method:<32} {count:>3}  {seconds[method] * 1000:8.1f} ms")


def run(url: str, username: str, password: str, network: str) -> None:
    """Spawn and destroy one instance with a cold, then a warm, image cache."""
    with tempfile.TemporaryDirectory() as tmp:
        store = virtdriver.LocalImageStore(os.path.join(tmp, "images"))
        disk = pathlib.Path(tmp, "disk.raw")
        disk.write_bytes(os.urandom(IMAGE_MB * 1024 * 1024))
        image = store.import_file(disk, disk_format="raw", name="bench")
        ops = virtdriver.load_backend("xen", _conf(url, username, password), image_store=store)
        ops.session.host_ref  # noqa: B018 - log in before measuring
        print(f"image: {IMAGE_MB} MiB raw; flavor 1 vCPU, 256 MiB, root 1 GiB; one VIF; "
              "one injected file and an admin password through the guest agent")
        for label in ("cold cache", "warm cache"):
            inst = Instance(uuid=str(uuid.uuid4()), name=f"bench-{label.split()[0]}",
                            flavor=Flavor(vcpus=1, memory_mb=256, root_gb=1))
            vif = VIF(id=str(uuid.uuid4()), address="fa:16:3e:00:10:01", network=network)
            _measure(ops, f"spawn, {label}",
                     lambda i=inst, v=vif: ops.spawn(None, i, image, [("/etc/motd", b"hi")],
                                                     "bench-password", [v]))
            _measure(ops, f"destroy ({label} run)", lambda i=inst: ops.destroy(i))
        ops.close()


def main() -> None:
    """Start the simulator (unless XAPI_URL is set) and run the measurement."""
    if os.environ.get("XAPI_URL"):
        run(os.environ["XAPI_URL"], os.environ.get("XAPI_USERNAME", "root"),
            os.environ.get("XAPI_PASSWORD", ""), os.environ.get("XAPI_NETWORK", "xenbr0"))
        return
    from virtdriver.xen.simulator import Simulator

    with Simulator(host="127.0.0.1", port=0) as sim:
        run(sim.url, "root", "secret", "xenbr0")


if __name__ == "__main__":
    main()
