"""Server calls and wall time of one VMware spawn and destroy, cold and warm image cache.

Run: ``.venv/bin/python benchmarks/vmware_calls.py`` (starts the project's vcsim launcher;
or set VCSIM_URL, VCSIM_USERNAME, VCSIM_PASSWORD and VCSIM_CA_FILE to measure another
server). Prints the calls by method, from ``session.stats``, and the wall time of each run.
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


def _conf(server: Any) -> cfg.ConfigOpts:
    conf = cfg.ConfigOpts()
    virtdriver.register_opts(conf)
    conf([])
    for key, value in {"host_ip": server.host, "host_port": server.port,
                       "host_username": server.username, "host_password": server.password,
                       "ca_file": server.ca_file}.items():
        conf.set_override(key, value, group="vmware")
    return conf


def _measure(ops: Any, label: str, action: Any) -> None:
    ops.session.stats.reset()
    start = time.perf_counter()
    action()
    elapsed = time.perf_counter() - start
    stats = ops.session.stats
    print(f"\n{label}: {stats.total_calls} server calls, {elapsed * 1000:.0f} ms wall "
          f"({stats.total_seconds * 1000:.0f} ms in calls)")
    for method, count in sorted(stats.calls.items(), key=lambda item: (-item[1], item[0])):
        print(f"  {method:<32} {count:>3}  {stats.seconds[method] * 1000:8.1f} ms")


def run(server: Any) -> None:
    """Spawn and destroy one instance with a cold, then a warm, image cache."""
    with tempfile.TemporaryDirectory() as tmp:
        store = virtdriver.LocalImageStore(os.path.join(tmp, "images"))
        disk = pathlib.Path(tmp, "disk.vmdk")
        disk.write_bytes(os.urandom(4 * 1024 * 1024))
        image = store.import_file(disk, disk_format="vmdk", name="bench")
        ops = virtdriver.load_backend("vmware", _conf(server), image_store=store)
        ops.inventory  # noqa: B018 - log in and read the cluster before measuring
        print(f"image: 4 MiB vmdk; linked clone: {ops.conf.vmware.use_linked_clone}")
        for label in ("cold cache", "warm cache"):
            inst = Instance(uuid=str(uuid.uuid4()), name="bench",
                            flavor=Flavor(vcpus=1, memory_mb=256, root_gb=1))
            vif = VIF(id=str(uuid.uuid4()), address="fa:16:3e:00:10:01", network="VM Network")
            _measure(ops, f"spawn, {label}",
                     lambda i=inst, v=vif: ops.spawn(None, i, image, [], None, [v]))
            _measure(ops, f"destroy ({label} run)", lambda i=inst: ops.destroy(i))
        ops.close()


def main() -> None:
    """Start the launcher (unless VCSIM_URL is set) and run the measurement."""
    from virtdriver.vmware.simulator import RemoteVcsim, Vcsim
    if os.environ.get("VCSIM_URL"):
        run(RemoteVcsim.from_env())
        return
    with Vcsim() as server:
        run(server)


if __name__ == "__main__":
    main()
