"""The session over real sockets: TLS verification, HTTP transfers over TLS, concurrency,
task waits by event.from, session expiry."""

from __future__ import annotations

import threading
import time

import pytest
import trustme

from tests.support.xapi import running_simulator
from virtdriver.common import exceptions as exc
from virtdriver.xen.session import XenAPISession
from virtdriver.xen.vmops import XenVMOps

from .conftest import make_conf, make_instance, make_vif, vm_of

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def ca():
    return trustme.CA()


@pytest.fixture(scope="module")
def tls_sim(ca, tmp_path_factory):
    directory = tmp_path_factory.mktemp("tls")
    cert = ca.issue_cert("127.0.0.1", "localhost")
    cert_file, key_file = directory / "cert.pem", directory / "key.pem"
    cert.cert_chain_pems[0].write_to_path(cert_file)
    cert.private_key_pem.write_to_path(key_file)
    with running_simulator(tls_cert=str(cert_file), tls_key=str(key_file)) as simulator:
        yield simulator


@pytest.fixture(scope="module")
def ca_file(ca, tmp_path_factory):
    path = tmp_path_factory.mktemp("ca") / "ca.pem"
    ca.cert_pem.write_to_path(path)
    return str(path)


def test_tls_with_ca_file_spawns_and_moves_bytes(tls_sim, ca_file, store, image):
    ops = XenVMOps(make_conf(tls_sim.url, ca_file=ca_file), image_store=store)
    try:
        instance = make_instance()
        ops.spawn(None, instance, image, [], None, [make_vif(1)])
        assert ops.get_info(instance).state == 1
        assert ops.session.stats.calls["HTTP PUT /import_raw_vdi"] == 1
        ops.destroy(instance)
    finally:
        ops.close()


def test_untrusted_certificate_is_rejected_without_retries(tls_sim):
    session = XenAPISession(tls_sim.url, "root", "secret")
    with pytest.raises(exc.CertificateRejected):
        session.call("pool.get_all")
    assert session.stats.snapshot() == {"session.login_with_password": 1}


def test_insecure_skips_verification_with_a_warning(tls_sim, caplog):
    session = XenAPISession(tls_sim.url, "root", "secret", insecure=True)
    assert session.call("pool.get_all")
    assert "insecure" in caplog.text
    session.close()


def test_concurrent_spawns_share_a_small_pool(sim, store, image, xapi):
    ops = XenVMOps(make_conf(sim.url, connection_concurrent=2), image_store=store)
    instances = [make_instance() for _ in range(4)]
    errors = []

    def spawn(instance, index):
        try:
            ops.spawn(None, instance, image, [], None, [make_vif(index)])
        except Exception as error:  # pragma: no cover - reported below
            errors.append(error)

    threads = [threading.Thread(target=spawn, args=(inst, i + 1))
               for i, inst in enumerate(instances)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    try:
        assert errors == []
        assert all(vm_of(xapi, inst)[1]["power_state"] == "Running" for inst in instances)
        # the pool's two for short calls, plus the one session every long connection (one
        # per VM.start in flight) shares; no event.from, no task to destroy
        assert ops.session.stats.calls["session.login_with_password"] <= 3
        assert "event.from" not in ops.session.stats.calls
        assert not [m for m in ops.session.stats.calls if m.startswith("Async.")]
        assert not xapi.task.get_all()
    finally:
        for inst in instances:
            ops.destroy(inst)
        ops.close()
    # every connection, long ones included, logged out
    assert not [s for s in sim.backend.sessions.by_ref.values() if s.originator == "virtdriver"]


def test_async_task_is_awaited_by_events_and_destroyed(sim, xapi):
    session = XenAPISession(sim.url, "root", "secret")
    seen = []
    sim.inject_delay("VM.clone", 0.3)
    vm = xapi.VM.create({"name_label": "clone-src", "memory_static_max": str(2 ** 28),
                         "memory_dynamic_max": str(2 ** 28), "memory_dynamic_min": str(2 ** 28),
                         "memory_static_min": "0", "VCPUs_max": "1", "VCPUs_at_startup": "1"})
    try:
        clone = session.call_async("VM.clone", vm, "clone-dst", progress=seen.append)
        assert xapi.VM.get_name_label(clone) == "clone-dst"
        assert seen[-1] == 1.0
        assert "task.get_record" not in session.stats.snapshot()
        assert session.stats.calls["task.destroy"] == 1
        assert not [t for t in xapi.task.get_all_records().values()
                    if t["name_label"] == "Async.VM.clone"]
        xapi.VM.destroy(clone)
    finally:
        xapi.VM.destroy(vm)
        session.close()


def test_task_timeout_cancels_the_task(sim, xapi):
    session = XenAPISession(sim.url, "root", "secret")
    vm = xapi.VM.create({"name_label": "slow", "memory_static_max": str(2 ** 28),
                         "memory_dynamic_max": str(2 ** 28), "memory_dynamic_min": str(2 ** 28),
                         "memory_static_min": "0", "VCPUs_max": "1", "VCPUs_at_startup": "1"})
    sim.inject_delay("VM.start", 5)
    try:
        with pytest.raises(exc.TaskTimeout):
            session.call_async("VM.start", vm, False, False, timeout=0.3)
        assert session.stats.calls["task.cancel"] == 1
        assert xapi.VM.get_power_state(vm) == "Halted"
    finally:
        sim.clear_faults()
        # Cancelling is asynchronous, as in xapi: the cancelled start keeps the VM busy
        # (OTHER_OPERATION_IN_PROGRESS) until its task has ended.
        deadline = time.monotonic() + 10
        while xapi.VM.get_current_operations(vm) and time.monotonic() < deadline:
            time.sleep(0.05)
        xapi.VM.destroy(vm)
        session.close()


def _halted_vm(xapi, name):
    return xapi.VM.create({"name_label": name, "memory_static_max": str(2 ** 28),
                           "memory_dynamic_max": str(2 ** 28),
                           "memory_dynamic_min": str(2 ** 28), "memory_static_min": "0",
                           "VCPUs_max": "1", "VCPUs_at_startup": "1"})


def test_a_lasting_call_leaves_the_pool_to_short_calls(sim, xapi):
    """VM.start lasting 2 s, on a session with a pool of one: short calls answer meanwhile,
    and the start costs one call, leaving no task behind."""
    session = XenAPISession(sim.url, "root", "secret", concurrent=1)
    vm = _halted_vm(xapi, "lasting")
    session.call("VM.get_all")
    sim.inject_delay("VM.start", 2.0)
    try:
        lasting = threading.Thread(target=session.call_lasting,
                                   args=("VM.start", vm, False, False))
        started = time.monotonic()
        lasting.start()
        time.sleep(0.1)
        session.call("VM.get_power_state", vm)
        assert time.monotonic() - started < 1.5  # answered while VM.start still ran
        lasting.join(10)
        assert xapi.VM.get_power_state(vm) == "Running"
        calls = session.stats.snapshot()
        assert calls["VM.start"] == 1
        assert not [m for m in calls if m.startswith("Async.") or m in ("event.from",
                                                                        "task.destroy")]
        assert not xapi.task.get_all()
    finally:
        sim.clear_faults()
        xapi.VM.hard_shutdown(vm)
        xapi.VM.destroy(vm)
        session.close()


def test_a_clean_shutdown_past_its_timeout_is_cut_short_by_a_hard_one(sim, xapi, store,
                                                                       image):
    """power_off(timeout=1) of a guest that never shuts down: the plain VM.clean_shutdown
    gives up after 1 s, VM.hard_shutdown cancels it on the server, the VM is halted and no
    task is left."""
    ops = XenVMOps(make_conf(sim.url), image_store=store)
    instance = make_instance()
    ops.spawn(None, instance, image, [], None, [make_vif(1)])
    try:
        sim.inject_delay("VM.clean_shutdown", 30)
        started = time.monotonic()
        ops.power_off(instance, timeout=1)
        took = time.monotonic() - started
        assert 1.0 <= took < 5, took
        assert vm_of(xapi, instance)[1]["power_state"] == "Halted"
        assert ops.session.stats.calls["VM.hard_shutdown"] == 1
        deadline = time.monotonic() + 5
        while xapi.task.get_all() and time.monotonic() < deadline:
            time.sleep(0.05)  # the cancelled clean shutdown's task ends after its cancel
        assert not xapi.task.get_all()
    finally:
        sim.clear_faults()
        ops.destroy(instance)
        ops.close()
