"""Fixtures: one XAPI simulator per test module, a backend on it, and a plain XenAPI client
to check what the simulator holds (never the code under test)."""

from __future__ import annotations

import uuid

import pytest
from oslo_config import cfg

import virtdriver
from tests.support.xapi import client_session, running_simulator
from virtdriver.xen.vmops import XenVMOps

NETWORK = "xenbr0"
IMAGE_BYTES = bytes(range(256)) * 4096  # 1 MiB with a recognisable pattern


@pytest.fixture(scope="module")
def sim():
    with running_simulator() as simulator:
        yield simulator


def make_conf(url: str, **xen: object) -> cfg.ConfigOpts:
    conf = cfg.ConfigOpts()
    virtdriver.register_opts(conf)
    conf([])
    conf.set_override("connection_url", url, "xenserver")
    conf.set_override("connection_password", "secret", "xenserver")
    conf.set_override("agent_timeout", 5, "xenserver")
    conf.set_override("agent_version_timeout", 5, "xenserver")
    conf.set_override("api_retry_count", 1, "xenserver")
    for key, value in xen.items():
        conf.set_override(key, value, "xenserver")
    return conf


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    return virtdriver.LocalImageStore(tmp_path_factory.mktemp("images"))


@pytest.fixture(scope="module")
def image(store, tmp_path_factory):
    path = tmp_path_factory.mktemp("src") / "disk.raw"
    path.write_bytes(IMAGE_BYTES)
    return store.import_file(path, disk_format="raw", name="cirros")


@pytest.fixture(scope="module")
def progress():
    return []


@pytest.fixture(scope="module")
def ops(sim, store, progress):
    backend = XenVMOps(make_conf(sim.url), image_store=store,
                       progress_callback=lambda inst, pct, step: progress.append((pct, step)))
    yield backend
    backend.close()


@pytest.fixture(scope="module")
def xapi_session(sim):
    """A plain XenAPI client session, to read what the simulator holds."""
    with client_session(sim.url) as session:
        yield session


# -- a second pool, for modules that define a ``dest_sim`` fixture --------------------------

@pytest.fixture(scope="module")
def dest_ops(dest_sim, store):
    """The backend on the second pool, sharing the image store."""
    backend = XenVMOps(make_conf(dest_sim.url), image_store=store)
    yield backend
    backend.close()


@pytest.fixture(scope="module")
def dest_session(dest_sim):
    """A plain XenAPI client session on the second pool."""
    with client_session(dest_sim.url) as session:
        yield session


@pytest.fixture(scope="module")
def xapi(xapi_session):
    return xapi_session.xenapi


@pytest.fixture(scope="module")
def read_vdi(sim, xapi_session):
    """The bytes of a VDI, through the simulator's export handler."""
    return lambda vdi_ref, limit=None: vdi_bytes(sim, xapi_session._session, vdi_ref, limit)


_counter = iter(range(1, 10_000))


def make_instance(**overrides):
    flavor = overrides.pop("flavor", None) or virtdriver.Flavor(
        vcpus=1, memory_mb=256, root_gb=1)
    number = next(_counter)
    fields = {"uuid": str(uuid.uuid4()), "name": f"instance-{number:04d}", "flavor": flavor,
              "metadata": {"role": "test"}}
    fields.update(overrides)
    return virtdriver.Instance(**fields)


def make_vif(index: int = 1, network: str = NETWORK, **extra):
    return virtdriver.VIF(id=str(uuid.uuid4()), address=f"fa:16:3e:00:00:{index:02x}",
                          network=network, **extra)


def vm_of(xapi, instance, suffix: str = ""):
    """(ref, record) of the instance's VM as the simulator holds it, or None."""
    refs = xapi.VM.get_by_name_label(instance.name + suffix)
    if not refs:
        return None
    assert len(refs) == 1
    return refs[0], xapi.VM.get_record(refs[0])


def disks_of(xapi, vm_ref):
    """userdevice -> VDI record of the VM's disks."""
    out = {}
    for vbd in xapi.VM.get_VBDs(vm_ref):
        record = xapi.VBD.get_record(vbd)
        if record["VDI"] != "OpaqueRef:NULL":
            out[record["userdevice"]] = dict(xapi.VDI.get_record(record["VDI"]),
                                             ref=record["VDI"], vbd=record)
    return out


def vdi_bytes(sim, xapi_session_ref, vdi_ref, limit: int | None = None) -> bytes:
    import urllib.request

    url = f"{sim.url}/export_raw_vdi?session_id={xapi_session_ref}&vdi={vdi_ref}&format=raw"
    with urllib.request.urlopen(url) as response:
        return response.read() if limit is None else response.read(limit)


def instance_vdis(xapi, instance_uuid):
    """Every VDI the simulator holds that belongs to the instance."""
    return {ref: rec for ref, rec in xapi.VDI.get_all_records().items()
            if rec["other_config"].get("nova_instance_uuid") == instance_uuid}
