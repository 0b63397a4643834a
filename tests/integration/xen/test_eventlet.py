"""The Xen backend under eventlet monkey-patching: concurrent green spawns against a
simulator running in its own process."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

pytestmark = pytest.mark.integration

SCRIPT = textwrap.dedent("""
    import eventlet
    eventlet.monkey_patch()

    import sys, tempfile, uuid
    import virtdriver
    from oslo_config import cfg
    from virtdriver.xen.vmops import XenVMOps

    url = sys.argv[1]
    conf = cfg.ConfigOpts()
    virtdriver.register_opts(conf)
    conf([])
    conf.set_override("connection_url", url, "xenserver")
    conf.set_override("connection_password", "secret", "xenserver")
    conf.set_override("connection_concurrent", 2, "xenserver")
    store = virtdriver.LocalImageStore(tempfile.mkdtemp())
    path = tempfile.mktemp()
    open(path, "wb").write(b"x" * 65536)
    image = store.import_file(path, disk_format="raw")
    ops = XenVMOps(conf, image_store=store)
    instances = [virtdriver.Instance(uuid=str(uuid.uuid4()), name=f"green-{i}",
                 flavor=virtdriver.Flavor(vcpus=1, memory_mb=128, root_gb=0))
                 for i in range(3)]
    pool = eventlet.GreenPool()
    for inst in instances:
        pool.spawn(ops.spawn, None, inst, image, [], None, [])
    pool.waitall()
    states = [ops.get_info(inst).state for inst in instances]
    for inst in instances:
        ops.destroy(inst)
    ops.close()
    print("STATES", [int(s) for s in states])
""")


def test_concurrent_spawns_under_eventlet(tmp_path):
    server = subprocess.Popen([sys.executable, "-m", "virtdriver.xen.simulator", "--port", "0"],
                              stdout=subprocess.PIPE, text=True)
    try:
        url = server.stdout.readline().strip()
        script = tmp_path / "green.py"
        script.write_text(SCRIPT)
        done = subprocess.run([sys.executable, str(script), url], capture_output=True,
                              text=True, timeout=120)
        assert done.returncode == 0, done.stderr[-2000:]
        assert "STATES [1, 1, 1]" in done.stdout
    finally:
        server.terminate()
        server.wait(10)
