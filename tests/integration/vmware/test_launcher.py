"""Tests of the vCenter simulator launcher (``virtdriver.vmware.simulator``), with plain pyvmomi.

Properties are read through the PropertyCollector (RetrievePropertiesEx /
WaitForUpdatesEx), never through pyvmomi attribute access.  Tests whose name
contains ``stand_in`` exercise the launcher's own stand-ins for methods vcsim
0.24.2 lacks: they prove the request is well-formed, not that vCenter would
accept it.
"""

from __future__ import annotations

import contextlib
import hashlib
import http.client
import os
import pathlib
import ssl
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from typing import Any

import pytest
from pyVim.connect import Disconnect, SmartConnect
from pyVim.task import WaitForTask
from pyVmomi import vim, vmodl

from tests.integration.stock import build_stock_vcsim
from tests.integration.vmware.helpers import require_launcher
from virtdriver.vmware.simulator import (
    FaultInjectionUnavailable,
    RemoteVcsim,
    Vcsim,
    VcsimError,
    is_project_launcher,
)

pytestmark = pytest.mark.needs_launcher

PC = vmodl.query.PropertyCollector

CLUSTERS = 2
HOSTS_PER_CLUSTER = 2
STANDALONE = 1
VMS_PER_POOL = 1
DATASTORES = 2


@pytest.fixture(scope="module")
def vcsim_flags() -> dict[str, Any]:
    """An inventory that differs from vcsim's defaults in every flag."""
    return {
        "cluster": CLUSTERS,
        "host": HOSTS_PER_CLUSTER,
        "standalone_host": STANDALONE,
        "vm": VMS_PER_POOL,
        "ds": DATASTORES,
    }


@pytest.fixture(autouse=True)
def _needs_launcher(vcsim: Any) -> None:
    require_launcher(vcsim)


def connect(sim: Any, **kwargs: Any) -> vim.ServiceInstance:
    """Log in with pyvmomi over TLS verified against the test CA."""
    params: dict[str, Any] = {
        "host": sim.host,
        "port": sim.port,
        "user": sim.username,
        "pwd": sim.password,
        "sslContext": sim.ssl_context(),
    }
    params.update(kwargs)
    return SmartConnect(**params)


@pytest.fixture
def si(vcsim: Any, vcsim_faults: Any) -> Iterator[vim.ServiceInstance]:
    """A fresh session per test; injection rules are cleared afterwards."""
    inst = connect(vcsim)
    try:
        yield inst
    finally:
        # the session may have been expired by the test
        with contextlib.suppress(Exception):
            Disconnect(inst)


def retrieve(si: vim.ServiceInstance, obj: Any, *paths: str) -> dict[str, Any]:
    """Read properties of one object with RetrievePropertiesEx."""
    pc = si.content.propertyCollector
    spec = PC.FilterSpec(
        objectSet=[PC.ObjectSpec(obj=obj)],
        propSet=[PC.PropertySpec(type=type(obj), pathSet=list(paths))],
    )
    res = pc.RetrievePropertiesEx([spec], PC.RetrieveOptions())
    assert res is not None and len(res.objects) == 1
    oc = res.objects[0]
    for missing in oc.missingSet or []:
        raise missing.fault
    return {p.name: p.val for p in oc.propSet}


def inventory(si: vim.ServiceInstance, kind: type, *paths: str) -> dict[Any, dict[str, Any]]:
    """All objects of a type (container view), with the given properties."""
    content = si.content
    view = content.viewManager.CreateContainerView(content.rootFolder, [kind], True)
    try:
        spec = PC.FilterSpec(
            objectSet=[
                PC.ObjectSpec(
                    obj=view,
                    skip=True,
                    selectSet=[PC.TraversalSpec(type=vim.view.ContainerView, path="view")],
                )
            ],
            propSet=[PC.PropertySpec(type=kind, pathSet=list(paths) or ["name"])],
        )
        res = content.propertyCollector.RetrievePropertiesEx([spec], PC.RetrieveOptions())
        out: dict[Any, dict[str, Any]] = {}
        for oc in res.objects if res else []:
            out[oc.obj] = {p.name: p.val for p in oc.propSet}
        return out
    finally:
        view.DestroyView()


def vm_by_power(si: vim.ServiceInstance, state: str) -> vim.VirtualMachine:
    """Some VM in the given power state."""
    for vm, props in inventory(si, vim.VirtualMachine, "runtime.powerState").items():
        if props["runtime.powerState"] == state:
            return vm
    raise AssertionError(f"no VM is {state}")


def task_state(si: vim.ServiceInstance, task: vim.Task) -> dict[str, Any]:
    """info.state / info.error / info.result of a task, as separate paths."""
    return retrieve(si, task, "info.state", "info.error", "info.result")


def wait_task(si: vim.ServiceInstance, task: vim.Task, timeout: float = 10.0) -> list[str]:
    """Wait for a task with a filter and WaitForUpdatesEx; return the states seen."""
    pc = si.content.propertyCollector.CreatePropertyCollector()
    seen: list[str] = []
    try:
        spec = PC.FilterSpec(
            objectSet=[PC.ObjectSpec(obj=task)],
            propSet=[PC.PropertySpec(type=vim.Task, pathSet=["info.state"])],
        )
        pc.CreateFilter(spec, True)
        version = ""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            upd = pc.WaitForUpdatesEx(version, PC.WaitOptions(maxWaitSeconds=1))
            if upd is None:
                continue
            version = upd.version
            for fs in upd.filterSet:
                for obj in fs.objectSet:
                    for change in obj.changeSet:
                        if change.name == "info.state":
                            seen.append(str(change.val))
            if seen and seen[-1] in ("success", "error"):
                return seen
        raise AssertionError(f"task not finished after {timeout}s: {seen}")
    finally:
        pc.DestroyPropertyCollector()


def power_on(si: vim.ServiceInstance, vm: vim.VirtualMachine) -> None:
    """Power a VM on (if needed) and wait."""
    if retrieve(si, vm, "runtime.powerState")["runtime.powerState"] != "poweredOn":
        assert wait_task(si, vm.PowerOnVM_Task())[-1] == "success"


def power_off(si: vim.ServiceInstance, vm: vim.VirtualMachine) -> None:
    """Power a VM off (if needed) and wait."""
    if retrieve(si, vm, "runtime.powerState")["runtime.powerState"] != "poweredOff":
        assert wait_task(si, vm.PowerOffVM_Task())[-1] == "success"


def vm_disk(si: vim.ServiceInstance, vm: vim.VirtualMachine) -> vim.vm.device.VirtualDisk:
    """The VM's first virtual disk."""
    devices = retrieve(si, vm, "config.hardware.device")["config.hardware.device"]
    return next(d for d in devices if isinstance(d, vim.vm.device.VirtualDisk))


def local_path(sim: Any, ds_path: str) -> pathlib.Path:
    """Local file behind "[ds] dir/file" (datastores are local directories)."""
    ds, rel = ds_path[1:].split("] ", 1)
    return pathlib.Path(sim.datastores[ds]) / rel


def flat_file(sim: Any, ds_path: str) -> pathlib.Path:
    """The -flat.vmdk extent of a disk descriptor path."""
    p = local_path(sim, ds_path)
    return p.with_name(p.name[: -len(".vmdk")] + "-flat.vmdk")


# -- TLS and login -----------------------------------------------------------


def test_tls_verified_with_generated_ca(vcsim: Vcsim) -> None:
    assert vcsim.url.startswith("https://127.0.0.1:")
    ctx = ssl.create_default_context(cafile=vcsim.ca_file)
    assert ctx.verify_mode == ssl.CERT_REQUIRED and ctx.check_hostname
    inst = connect(vcsim, sslContext=ctx)
    try:
        assert inst.content.about.apiType == "VirtualCenter"
    finally:
        Disconnect(inst)


def test_tls_refused_without_ca(vcsim: Vcsim) -> None:
    ctx = ssl.create_default_context()  # system store only: the test CA is unknown
    with pytest.raises(ssl.SSLCertVerificationError):
        connect(vcsim, sslContext=ctx)
    with pytest.raises(urllib.error.URLError) as info:
        urllib.request.urlopen(vcsim.url, context=ctx, timeout=5)
    assert isinstance(info.value.reason, ssl.SSLCertVerificationError)


def test_wrong_password_refused(vcsim: Vcsim) -> None:
    with pytest.raises(vim.fault.InvalidLogin):
        connect(vcsim, pwd=vcsim.password + "x")
    with pytest.raises(vim.fault.InvalidLogin):
        connect(vcsim, user="someone-else")


def test_password_is_not_on_the_command_line(vcsim: Vcsim) -> None:
    """The launcher takes its password from the environment: ps shows it to nobody."""
    cmdline = pathlib.Path(f"/proc/{vcsim.pid}/cmdline").read_bytes().split(b"\0")
    assert cmdline[0] and f"-username={vcsim.username}".encode() in cmdline
    assert not any(vcsim.password.encode() in arg for arg in cmdline), cmdline


def test_password_flag_is_gone(vcsim_binary: pathlib.Path) -> None:
    done = subprocess.run([str(vcsim_binary), "-password=x"], capture_output=True, timeout=30)
    assert done.returncode == 2 and b"-password" in done.stderr


def test_tells_the_launcher_from_a_stock_vcsim(vcsim_binary: pathlib.Path) -> None:
    assert is_project_launcher(vcsim_binary) is True
    assert is_project_launcher(build_stock_vcsim()) is False
    with pytest.raises(VcsimError, match="neither"):
        is_project_launcher(pathlib.Path("/bin/true"))


def test_stock_vcsim_runs_and_says_what_needs_the_launcher() -> None:
    sim = Vcsim(build_stock_vcsim())
    with pytest.raises(FaultInjectionUnavailable, match="stock vcsim"):
        sim.start(idle=1)
    assert not sim.running
    with sim.start(cluster=1, host=2, vm=0) as sim:
        assert sim.can_inject is False and sim.url.startswith("https://127.0.0.1:")
        assert "@" not in sim.url  # the stock line's user:pass is not kept
        cmdline = pathlib.Path(f"/proc/{sim.pid}/cmdline").read_bytes()
        assert sim.password.encode() not in cmdline and b"-password" not in cmdline
        inst = connect(sim)  # any credentials: a stock vcsim checks none
        try:
            hosts = inventory(inst, vim.HostSystem)
            assert len(hosts) == 2 + 1  # the cluster's and the standalone one
        finally:
            Disconnect(inst)
        for call in (lambda: sim.inject("PowerOnVM_Task", "fault", fault="SystemError"),
                     sim.expire_sessions, sim.rules):
            with pytest.raises(FaultInjectionUnavailable, match="stock vcsim"):
                call()
        sim.clear_faults()  # nothing to clear: a no-op
        pid, tmpdir = sim.pid, sim.tmpdir
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)
    assert tmpdir is not None and not tmpdir.exists()


# -- inventory ---------------------------------------------------------------


def test_inventory_flags_honoured(si: vim.ServiceInstance, vcsim: Vcsim) -> None:
    clusters = inventory(si, vim.ClusterComputeResource, "name", "host")
    assert len(clusters) == CLUSTERS
    assert all(len(p["host"]) == HOSTS_PER_CLUSTER for p in clusters.values())
    hosts = inventory(si, vim.HostSystem, "name")
    assert len(hosts) == CLUSTERS * HOSTS_PER_CLUSTER + STANDALONE
    datastores = inventory(si, vim.Datastore, "name", "info.url")
    names = sorted(p["name"] for p in datastores.values())
    assert names == [f"LocalDS_{i}" for i in range(DATASTORES)]
    assert sorted(vcsim.datastores) == names
    for props in datastores.values():
        assert vcsim.datastores[props["name"]] == props["info.url"]
        assert os.path.isdir(props["info.url"])
    vms = inventory(si, vim.VirtualMachine, "runtime.powerState")
    assert len(vms) == (CLUSTERS + STANDALONE) * VMS_PER_POOL
    # -autostart defaults to true: the initial VMs are powered on
    assert {p["runtime.powerState"] for p in vms.values()} == {"poweredOn"}


# -- fault injection ---------------------------------------------------------


def test_inject_fault_mode(si: vim.ServiceInstance, vcsim: Vcsim) -> None:
    vm = vm_by_power(si, "poweredOn")
    vcsim.inject("PowerOffVM_Task", "fault", fault="TaskInProgress", message="busy now")
    with pytest.raises(vim.fault.TaskInProgress) as info:
        vm.PowerOffVM_Task()
    assert info.value.msg == "busy now"
    assert vcsim.rules() == []  # count=1 was consumed
    state = retrieve(si, vm, "runtime.powerState")["runtime.powerState"]
    assert state == "poweredOn"  # the real method did not run


FAULT_TYPES = [
    "InvalidPowerState",
    "NotAuthenticated",
    "TaskInProgress",
    "InsufficientResourcesFault",
    "SystemError",
    "InvalidState",
    "FileNotFound",
    "DuplicateName",
    "NoPermission",
    "InvalidArgument",
    "NotSupported",
    "RequestCanceled",
    "HostConnectFault",
]


@pytest.mark.parametrize("fault", FAULT_TYPES)
def test_inject_fault_types_deserialize(si: vim.ServiceInstance, vcsim: Vcsim, fault: str) -> None:
    """Each fault type reaches pyvmomi as that type, as a SOAP fault and as a task error."""
    vm = vm_by_power(si, "poweredOn")
    vcsim.inject("ResetVM_Task", "fault", fault=fault, message=f"m-{fault}")
    with pytest.raises(vmodl.MethodFault) as info:
        vm.ResetVM_Task()
    assert info.value._wsdlName == fault and info.value.msg == f"m-{fault}"
    vcsim.inject("ResetVM_Task", "taskfault", fault=fault)
    error = task_state(si, vm.ResetVM_Task())["info.error"]
    assert error._wsdlName == fault


def test_inject_fault_on_property_collector(si: vim.ServiceInstance, vcsim: Vcsim) -> None:
    vm = vm_by_power(si, "poweredOn")
    vcsim.inject("RetrievePropertiesEx", "fault", fault="NotAuthenticated", count=2)
    for _ in range(2):
        with pytest.raises(vim.fault.NotAuthenticated):
            retrieve(si, vm, "name")
    assert retrieve(si, vm, "name")["name"]


def test_inject_rule_limited_to_moref(si: vim.ServiceInstance, vcsim: Vcsim) -> None:
    vms = list(inventory(si, vim.VirtualMachine, "name"))
    target, other = vms[0], vms[1]
    vcsim.inject("RebootGuest", "fault", fault="ToolsUnavailable", moref=target._moId, count=-1)
    power_on(si, other)
    other.RebootGuest()  # not the injected moref
    with pytest.raises(vim.fault.ToolsUnavailable):
        target.RebootGuest()
    with pytest.raises(vim.fault.ToolsUnavailable):
        target.RebootGuest()  # count=-1: until cleared
    vcsim.clear_faults()
    assert vcsim.rules() == []


def test_inject_taskfault_mode(si: vim.ServiceInstance, vcsim: Vcsim) -> None:
    vm = vm_by_power(si, "poweredOn")
    power_off(si, vm)
    vcsim.inject(
        "PowerOnVM_Task", "taskfault", fault="InsufficientResourcesFault", message="no room"
    )
    task = vm.PowerOnVM_Task()
    assert isinstance(task, vim.Task)
    info = task_state(si, task)
    assert info["info.state"] == "error"
    assert isinstance(info["info.error"], vim.fault.InsufficientResourcesFault)
    assert info["info.error"].msg == "no room"
    assert retrieve(si, vm, "runtime.powerState")["runtime.powerState"] == "poweredOff"
    power_on(si, vm)


def test_inject_delay_mode_task_runs_then_succeeds(si: vim.ServiceInstance, vcsim: Vcsim) -> None:
    vm = vm_by_power(si, "poweredOn")
    vcsim.inject("PowerOffVM_Task", "delay", delay_ms=1200)
    start = time.monotonic()
    task = vm.PowerOffVM_Task()
    assert time.monotonic() - start < 1.0  # the call returns at once
    first = task_state(si, task)
    assert first["info.state"] == "running"
    assert retrieve(si, vm, "runtime.powerState")["runtime.powerState"] == "poweredOn"
    seen = wait_task(si, task)
    assert seen[0] == "running" and seen[-1] == "success"
    assert time.monotonic() - start >= 1.1
    assert retrieve(si, vm, "runtime.powerState")["runtime.powerState"] == "poweredOff"
    power_on(si, vm)


def test_inject_delay_mode_copies_result_and_fault(si: vim.ServiceInstance, vcsim: Vcsim) -> None:
    vm = vm_by_power(si, "poweredOn")
    vcsim.inject("CreateSnapshot_Task", "delay", delay_ms=300)
    task = vm.CreateSnapshot_Task("s1", "", False, False)
    assert task_state(si, task)["info.state"] == "running"
    assert wait_task(si, task)[-1] == "success"
    snap = task_state(si, task)["info.result"]
    assert isinstance(snap, vim.vm.Snapshot)
    # a delayed call whose real method faults ends the task in that fault
    vcsim.inject("PowerOnVM_Task", "delay", delay_ms=200)
    task = vm.PowerOnVM_Task()  # already on
    assert wait_task(si, task)[-1] == "error"
    assert isinstance(task_state(si, task)["info.error"], vim.fault.InvalidPowerState)
    assert wait_task(si, snap.RemoveSnapshot_Task(False))[-1] == "success"


def test_inject_rejects_unknown_fault(vcsim: Vcsim) -> None:
    with pytest.raises(VcsimError, match="400"):
        vcsim.inject("PowerOnVM_Task", "fault", fault="NoSuchFault")
    with pytest.raises(VcsimError, match="400"):
        vcsim.inject("PowerOnVM_Task", "sometimes")


# -- sessions ----------------------------------------------------------------


def test_expire_sessions(si: vim.ServiceInstance, vcsim: Vcsim) -> None:
    vm = vm_by_power(si, "poweredOn")
    assert si.content.sessionManager.currentSession is not None
    assert vcsim.expire_sessions() >= 1
    with pytest.raises(vim.fault.NotAuthenticated):
        vm.PowerOffVM_Task()
    # RetrievePropertiesEx reports NotAuthenticated in missingSet, as vCenter does
    with pytest.raises(vim.fault.NotAuthenticated):
        retrieve(si, vm, "name")
    # logging in again works
    si.content.sessionManager.Login(vcsim.username, vcsim.password)
    assert retrieve(si, vm, "name")["name"]


# -- robustness --------------------------------------------------------------


def test_fetch_of_unset_property_returns_none(si: vim.ServiceInstance) -> None:
    vm = vm_by_power(si, "poweredOn")
    # attribute access uses the hidden Fetch method; vcsim 0.24.2 panics on it
    assert vm.snapshot is None
    assert vm.parentVApp is None


def test_handler_panic_becomes_fault(si: vim.ServiceInstance) -> None:
    """vcsim 0.24.2 panics on an unknown pool moref inside CreateVM's task."""
    folder = next(iter(inventory(si, vim.Datacenter, "vmFolder").values()))["vmFolder"]
    spec = vim.vm.ConfigSpec(
        name="panic-test", guestId="otherGuest", files=vim.vm.FileInfo(vmPathName="[LocalDS_0]")
    )
    bogus_pool = vim.ResourcePool("resgroup-404", si._stub)
    try:
        task = folder.CreateVM_Task(spec, bogus_pool)
    except vmodl.fault.SystemError as exc:
        assert "panic" in exc.msg
    except http.client.RemoteDisconnected:  # pragma: no cover - the failure this guards
        pytest.fail("a handler panic dropped the connection")
    else:
        pytest.fail(f"expected a SystemError fault, got {task}")
    # the task the panicking handler had started does not stay running
    recent = retrieve(si, si.content.taskManager, "recentTask")["recentTask"]
    names = {t: task_state(si, t)["info.state"] for t in recent}
    assert "running" not in names.values()
    # the server keeps serving, and no VM was made
    vms = inventory(si, vim.VirtualMachine, "name")
    assert "panic-test" not in {p.get("name") for p in vms.values()}


def test_guard_unknown_datastore_or_network_faults_without_ghost_vm(
    si: vim.ServiceInstance,
) -> None:
    """Arguments that panic vcsim 0.24.2 end the task in a fault instead."""
    dc = next(iter(inventory(si, vim.Datacenter, "vmFolder").values()))
    pool = next(iter(inventory(si, vim.ResourcePool)))
    before = set(inventory(si, vim.VirtualMachine))
    spec = vim.vm.ConfigSpec(
        name="ghost", guestId="otherGuest", files=vim.vm.FileInfo(vmPathName="[NoSuchDS]")
    )
    task = dc["vmFolder"].CreateVM_Task(spec, pool)
    assert wait_task(si, task)[-1] == "error"
    assert isinstance(task_state(si, task)["info.error"], vim.fault.InvalidDatastore)
    assert set(inventory(si, vim.VirtualMachine)) == before

    vm = vm_by_power(si, "poweredOn")
    nic = vim.vm.device.VirtualVmxnet3()
    nic.key = -1
    nic.backing = vim.vm.device.VirtualEthernetCard.NetworkBackingInfo(deviceName="no-such-net")
    change = vim.vm.device.VirtualDeviceSpec(operation="add", device=nic)
    task = vm.ReconfigVM_Task(vim.vm.ConfigSpec(deviceChange=[change]))
    assert wait_task(si, task)[-1] == "error"
    assert isinstance(task_state(si, task)["info.error"], vim.fault.InvalidDeviceBacking)


# -- task entity fix -----------------------------------------------------------


def test_snapshot_task_info_deserializes(si: vim.ServiceInstance) -> None:
    """vcsim sets a snapshot task's entity to the snapshot; the launcher points it at the VM."""
    vm = vm_by_power(si, "poweredOn")
    task = vm.CreateSnapshot_Task("entity-check", "", False, False)
    assert wait_task(si, task)[-1] == "success"
    snap = task_state(si, task)["info.result"]
    revert = snap.RevertToSnapshot_Task()
    assert wait_task(si, revert)[-1] == "success"
    info = retrieve(si, revert, "info")["info"]  # the whole TaskInfo, entity included
    assert info.entity == vm
    remove = snap.RemoveSnapshot_Task(False)
    assert wait_task(si, remove)[-1] == "success"
    assert retrieve(si, remove, "info")["info"].entity == vm
    # so pyVim's WaitForTask (which reads the whole info) works on them too
    task = vm.CreateSnapshot_Task("entity-check-2", "", False, False)
    assert WaitForTask(task, si=si) == "success"
    snap = task_state(si, task)["info.result"]
    assert WaitForTask(snap.RemoveSnapshot_Task(False), si=si) == "success"


def test_manager_task_info_deserializes(si: vim.ServiceInstance, vcsim: Vcsim) -> None:
    """FileManager/VirtualDiskManager tasks get no entity instead of the manager."""
    content = si.content
    dc = next(iter(inventory(si, vim.Datacenter)))
    (pathlib.Path(vcsim.datastores["LocalDS_0"]) / "entity-dir").mkdir(exist_ok=True)
    task = content.fileManager.DeleteDatastoreFile_Task("[LocalDS_0] entity-dir", dc)
    assert wait_task(si, task)[-1] == "success"
    assert retrieve(si, task, "info")["info"].entity is None
    assert not (pathlib.Path(vcsim.datastores["LocalDS_0"]) / "entity-dir").exists()


# -- datastore HTTP ------------------------------------------------------------


def test_datastore_http_upload_keeps_bytes(si: vim.ServiceInstance, vcsim: Vcsim) -> None:
    data = os.urandom(256 * 1024) + b"end"
    url = (
        f"https://{vcsim.host}:{vcsim.port}/folder/upload-test/image.bin"
        "?dcPath=DC0&dsName=LocalDS_1"
    )
    cookie = si._stub.cookie
    req = urllib.request.Request(url, data=data, method="PUT", headers={"Cookie": cookie})
    with urllib.request.urlopen(req, context=vcsim.ssl_context(), timeout=10) as resp:
        assert resp.status == 200
    local = pathlib.Path(vcsim.datastores["LocalDS_1"]) / "upload-test" / "image.bin"
    assert local.read_bytes() == data
    get = urllib.request.Request(url, headers={"Cookie": cookie})
    with urllib.request.urlopen(get, context=vcsim.ssl_context(), timeout=10) as resp:
        assert resp.read() == data


# -- stand-ins -----------------------------------------------------------------


def test_stand_in_reboot_guest(si: vim.ServiceInstance) -> None:
    vm = vm_by_power(si, "poweredOn")
    before = retrieve(si, vm, "runtime.bootTime").get("runtime.bootTime")
    time.sleep(0.01)
    assert vm.RebootGuest() is None
    after = retrieve(si, vm, "runtime.powerState", "runtime.bootTime")
    assert after["runtime.powerState"] == "poweredOn"
    assert before is None or after["runtime.bootTime"] > before
    power_off(si, vm)
    with pytest.raises(vim.fault.InvalidPowerState):
        vm.RebootGuest()
    power_on(si, vm)


def test_stand_in_acquire_tickets(si: vim.ServiceInstance, vcsim: Vcsim) -> None:
    vm = vm_by_power(si, "poweredOn")
    cfg = retrieve(si, vm, "config.files.vmPathName")["config.files.vmPathName"]
    ticket = vm.AcquireTicket("webmks")
    assert ticket.ticket and ticket.cfgFile == cfg
    assert (ticket.host, ticket.port) == (vcsim.host, vcsim.port)
    assert ticket.url == f"wss://{vcsim.host}:{vcsim.port}/ticket/{ticket.ticket}"
    mks = vm.AcquireMksTicket()
    assert mks.ticket and mks.ticket != ticket.ticket and mks.cfgFile == cfg
    power_off(si, vm)
    with pytest.raises(vim.fault.InvalidPowerState):
        vm.AcquireTicket("mks")
    with pytest.raises(vim.fault.InvalidPowerState):
        vm.AcquireMksTicket()
    power_on(si, vm)


def test_stand_in_extend_virtual_disk(si: vim.ServiceInstance, vcsim: Vcsim) -> None:
    content = si.content
    dc = next(iter(inventory(si, vim.Datacenter)))
    vdm = content.virtualDiskManager
    name = "[LocalDS_0] extend-test/disk.vmdk"
    flat = flat_file(vcsim, name)
    flat.parent.mkdir(exist_ok=True)
    local_path(vcsim, name).write_bytes(b"# descriptor\n")
    flat.write_bytes(b"x" * 4096)

    task = vdm.ExtendVirtualDisk_Task(name, dc, 64, False)
    assert wait_task(si, task)[-1] == "success"
    assert flat.stat().st_size == 64 * 1024
    assert flat.read_bytes()[:4096] == b"x" * 4096  # existing bytes kept
    assert retrieve(si, task, "info")["info"].entity is None

    shrink = vdm.ExtendVirtualDisk_Task(name, dc, 1, False)
    assert wait_task(si, shrink)[-1] == "error"
    assert isinstance(task_state(si, shrink)["info.error"], vmodl.fault.InvalidArgument)
    assert flat.stat().st_size == 64 * 1024

    missing = vdm.ExtendVirtualDisk_Task("[LocalDS_0] extend-test/none.vmdk", dc, 64, False)
    assert wait_task(si, missing)[-1] == "error"
    assert isinstance(task_state(si, missing)["info.error"], vim.fault.FileNotFound)


def test_stand_in_migrate_vm(si: vim.ServiceInstance) -> None:
    clusters = inventory(si, vim.ClusterComputeResource, "host", "resourcePool")
    cluster_hosts = {h for p in clusters.values() for h in p["host"]}
    vms = inventory(si, vim.VirtualMachine, "runtime.host")
    vm = next(v for v, p in vms.items() if p["runtime.host"] in cluster_hosts)
    current = vms[vm]["runtime.host"]
    cluster = next(p for p in clusters.values() if current in p["host"])
    target = next(h for h in cluster["host"] if h != current)
    task = vm.MigrateVM_Task(pool=None, host=target, priority="defaultPriority")
    assert wait_task(si, task)[-1] == "success"
    assert retrieve(si, task, "info.name")["info.name"] == "MigrateVM_Task"
    assert retrieve(si, vm, "runtime.host")["runtime.host"] == target
    assert retrieve(si, vm, "resourcePool")["resourcePool"] == cluster["resourcePool"]
    # to another cluster, pool and host given
    other = next(p for p in clusters.values() if p is not cluster)
    task = vm.MigrateVM_Task(
        pool=other["resourcePool"], host=other["host"][0], priority="highPriority"
    )
    assert wait_task(si, task)[-1] == "success"
    props = retrieve(si, vm, "runtime.host", "resourcePool")
    assert props == {"runtime.host": other["host"][0], "resourcePool": other["resourcePool"]}
    # the state argument must match the power state
    with pytest.raises(vim.fault.InvalidPowerState):
        vm.MigrateVM_Task(host=target, priority="defaultPriority", state="poweredOff")


def test_stand_in_export_vm(si: vim.ServiceInstance, vcsim: Vcsim) -> None:
    vm = vm_by_power(si, "poweredOn")
    with pytest.raises(vim.fault.InvalidPowerState):
        vm.ExportVm()
    power_off(si, vm)
    disk = vm_disk(si, vm)
    flat = flat_file(vcsim, disk.backing.fileName)
    data = os.urandom(100_000)
    flat.write_bytes(data)

    lease = vm.ExportVm()
    assert isinstance(lease, vim.HttpNfcLease)
    props = retrieve(si, lease, "state", "info")
    assert props["state"] == "ready"
    info = props["info"]
    assert info.entity == vm and len(info.deviceUrl) == 1
    dev = info.deviceUrl[0]
    assert dev.disk and dev.url.startswith("https://*/")
    url = dev.url.replace("*", f"{vcsim.host}:{vcsim.port}", 1)
    with urllib.request.urlopen(url, context=vcsim.ssl_context(), timeout=10) as resp:
        assert resp.read() == data
    manifest = lease.HttpNfcLeaseGetManifest()
    assert [(m.key, m.sha1, m.size) for m in manifest] == [
        (dev.key, hashlib.sha1(data).hexdigest(), len(data))
    ]
    lease.HttpNfcLeaseProgress(50)
    assert retrieve(si, lease, "transferProgress")["transferProgress"] == 50
    lease.HttpNfcLeaseComplete()
    with pytest.raises(urllib.error.HTTPError):
        urllib.request.urlopen(url, context=vcsim.ssl_context(), timeout=10)
    power_on(si, vm)


# -- a second launcher: plain HTTP, flags, stop() -----------------------------


def test_second_launcher_flags_and_stop_cleans_up(vcsim_binary: pathlib.Path) -> None:
    sim = Vcsim(vcsim_binary, tls=False)
    sim.start(
        cluster=0,
        standalone_host=1,
        vm=1,
        autostart=False,
        idle="1s",
        method_delay={"PowerOnVM_Task": 300},
        trace=True,
    )
    pid, tmpdir = sim.pid, sim.tmpdir
    dirs = list(sim.datastores.values())
    try:
        assert sim.url.startswith("http://127.0.0.1:")
        assert sim.ca_file is None
        inst = SmartConnect(
            protocol="http", host=sim.host, port=sim.port, user=sim.username, pwd=sim.password
        )
        vms = inventory(inst, vim.VirtualMachine, "runtime.powerState")
        assert [p["runtime.powerState"] for p in vms.values()] == ["poweredOff"]  # -autostart
        assert len(inventory(inst, vim.ClusterComputeResource)) == 0
        vm = next(iter(vms))
        start = time.monotonic()
        task = vm.PowerOnVM_Task()
        assert time.monotonic() - start >= 0.3  # -method-delay
        assert task_state(inst, task)["info.state"] == "success"
        time.sleep(2.5)  # -idle 1s: expiry happens between 1 and 2 s of idleness
        with pytest.raises(vim.fault.NotAuthenticated):
            vm.PowerOffVM_Task()
        assert sim.log_file is not None
        assert "PowerOnVM_Task" in sim.log_file.read_text()  # -trace
    finally:
        sim.stop()
    assert not sim.running
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)
    assert tmpdir is not None and not tmpdir.exists()
    assert dirs and not any(os.path.exists(d) for d in dirs)


def test_startup_failure_is_reported_and_cleaned_up(vcsim_binary: pathlib.Path) -> None:
    sim = Vcsim(vcsim_binary)
    with pytest.raises(VcsimError, match="method-delay"):
        sim.start(method_delay={"PowerOnVM_Task": -5})
    assert not sim.running
    assert sim.tmpdir is not None and not sim.tmpdir.exists()


def test_remote_server_has_no_fault_endpoint() -> None:
    remote = RemoteVcsim.from_env(
        {
            "VCSIM_URL": "https://vc.example:8443/sdk",
            "VCSIM_USERNAME": "u",
            "VCSIM_PASSWORD": "s3cret-pw",
        }
    )
    assert (remote.host, remote.port, remote.ca_file) == ("vc.example", 8443, None)
    assert "s3cret-pw" not in repr(remote)
    with pytest.raises(FaultInjectionUnavailable, match="no fault endpoint"):
        remote.inject("PowerOnVM_Task", "fault", fault="SystemError")
    with pytest.raises(FaultInjectionUnavailable, match="no fault endpoint"):
        remote.expire_sessions()
    remote.clear_faults()  # nothing to clear: a no-op


def test_inject_datastore_http_failure(si: vim.ServiceInstance, vcsim: Vcsim) -> None:
    """Pseudo-method "DatastoreHTTP.<verb>": fail or delay a /folder transfer."""
    url = f"https://{vcsim.host}:{vcsim.port}/folder/inject-test/a.bin?dcPath=DC0&dsName=LocalDS_0"
    local = pathlib.Path(vcsim.datastores["LocalDS_0"]) / "inject-test" / "a.bin"
    vcsim.inject("DatastoreHTTP.PUT", "fault", message="disk full", moref="LocalDS_0")
    req = urllib.request.Request(url, data=b"abc", method="PUT")
    with pytest.raises(urllib.error.HTTPError) as info:
        urllib.request.urlopen(req, context=vcsim.ssl_context(), timeout=10)
    assert info.value.code == 500 and b"disk full" in info.value.read()
    assert not local.exists()
    vcsim.inject("DatastoreHTTP.PUT", "delay", delay_ms=300)
    start = time.monotonic()
    with urllib.request.urlopen(req, context=vcsim.ssl_context(), timeout=10) as resp:
        assert resp.status == 200
    assert time.monotonic() - start >= 0.3
    assert local.read_bytes() == b"abc"


def test_restart_gives_a_fresh_server_with_the_same_flags(vcsim_binary: pathlib.Path) -> None:
    with Vcsim(vcsim_binary, tls=False).start(cluster=0, vm=1, ds=2, autostart=False) as sim:
        first_pid, first_dir = sim.pid, sim.tmpdir
        sim.restart()
        assert sim.running and sim.pid != first_pid
        assert first_dir is not None and not first_dir.exists()
        assert sorted(sim.datastores) == ["LocalDS_0", "LocalDS_1"]
        inst = SmartConnect(
            protocol="http", host=sim.host, port=sim.port, user=sim.username, pwd=sim.password
        )
        vms = inventory(inst, vim.VirtualMachine, "runtime.powerState")
        assert [p["runtime.powerState"] for p in vms.values()] == ["poweredOff"]
    assert not sim.running
