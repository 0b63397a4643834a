"""Independent reads of what the simulator holds, for assertions (plain pyvmomi, no virtdriver)."""

from __future__ import annotations

import contextlib
import os
import ssl
from typing import Any

from pyVmomi import SoapStubAdapter, vim, vmodl


class Inspector:
    """A separate pyvmomi connection that reads server state through the property collector."""

    def __init__(self, vcsim: Any) -> None:
        self.vcsim = vcsim
        stub = SoapStubAdapter(
            host=vcsim.host,
            port=vcsim.port,
            path="/sdk",
            version="vim.version.v7_0",
            sslContext=ssl.create_default_context(cafile=vcsim.ca_file),
        )
        self.content = vim.ServiceInstance("ServiceInstance", stub).RetrieveContent()
        self.content.sessionManager.Login(vcsim.username, vcsim.password)

    def _collect(self, specs: list[Any]) -> dict[str, tuple[Any, dict[str, Any]]]:
        result = self.content.propertyCollector.RetrievePropertiesEx(
            specs, vmodl.query.PropertyCollector.RetrieveOptions()
        )
        found: dict[str, tuple[Any, dict[str, Any]]] = {}
        while result is not None:
            for obj in result.objects or []:
                found[obj.obj._moId] = (obj.obj, {p.name: p.val for p in obj.propSet or []})
            if not result.token:
                break
            result = self.content.propertyCollector.ContinueRetrievePropertiesEx(result.token)
        return found

    def _relogin(self) -> None:
        # tests expire every session, the inspector's too
        self.content.sessionManager._stub.cookie = ""
        self.content.sessionManager.Login(self.vcsim.username, self.vcsim.password)

    def objects(self, kind: type, paths: list[str]) -> dict[str, tuple[Any, dict[str, Any]]]:
        """Every object of ``kind`` in the inventory with ``paths``."""
        try:
            return self._objects(kind, paths)
        except vim.fault.NotAuthenticated:
            self._relogin()
            return self._objects(kind, paths)

    def _objects(self, kind: type, paths: list[str]) -> dict[str, tuple[Any, dict[str, Any]]]:
        view = self.content.viewManager.CreateContainerView(self.content.rootFolder, [kind], True)
        try:
            pc = vmodl.query.PropertyCollector
            spec = pc.FilterSpec(
                objectSet=[
                    pc.ObjectSpec(
                        obj=view,
                        skip=True,
                        selectSet=[
                            pc.TraversalSpec(
                                name="v", type=vim.view.ContainerView, path="view", skip=False
                            )
                        ],
                    )
                ],
                propSet=[pc.PropertySpec(type=kind, pathSet=paths)],
            )
            return self._collect([spec])
        finally:
            view.DestroyView()

    def vms(self) -> dict[str, dict[str, Any]]:
        """Every VM, by instanceUuid, with the properties tests look at."""
        paths = [
            "name",
            "runtime.powerState",
            "config.instanceUuid",
            "config.hardware",
            "config.extraConfig",
            "config.guestId",
            "config.cpuAllocation",
            "config.memoryAllocation",
            "config.files.vmPathName",
            "network",
            "runtime.host",
            "parent",
            "resourcePool",
            "datastore",
            "config.bootOptions",
        ]
        out = {}
        for ref, props in self.objects(vim.VirtualMachine, paths).values():
            props["ref"] = ref
            props["snapshot"] = (
                self._collect(
                    [
                        vmodl.query.PropertyCollector.FilterSpec(
                            objectSet=[vmodl.query.PropertyCollector.ObjectSpec(obj=ref)],
                            propSet=[
                                vmodl.query.PropertyCollector.PropertySpec(
                                    type=vim.VirtualMachine, pathSet=["snapshot"]
                                )
                            ],
                        )
                    ]
                )
                .get(ref._moId, (None, {}))[1]
                .get("snapshot")
            )
            out[props.get("config.instanceUuid") or ref._moId] = props
        return out

    def vm(self, uuid: str) -> dict[str, Any]:
        """One VM by instanceUuid (KeyError when it is gone)."""
        return self.vms()[uuid]

    def names(self, refs: list[Any]) -> list[str]:
        """Names of managed objects."""
        pc = vmodl.query.PropertyCollector
        found = self._collect(
            [
                pc.FilterSpec(
                    objectSet=[pc.ObjectSpec(obj=r) for r in refs],
                    propSet=[pc.PropertySpec(type=type(r), pathSet=["name"]) for r in refs],
                )
            ]
        )
        return [found[r._moId][1]["name"] for r in refs]

    def files(self) -> set[str]:
        """Every file and directory on every datastore, as '<ds>/<relative path>'."""
        out = set()
        for name, root in self.vcsim.datastores.items():
            for dirpath, dirnames, filenames in os.walk(root):
                rel = os.path.relpath(dirpath, root)
                for entry in dirnames + filenames:
                    out.add(f"{name}/{os.path.normpath(os.path.join(rel, entry))}")
        return out

    def close(self) -> None:
        """Log out."""
        with contextlib.suppress(vim.fault.NotAuthenticated):
            self.content.sessionManager.Logout()


def devices(vm: dict[str, Any], kind: type) -> list[Any]:
    """The VM's devices of one type."""
    return [d for d in vm["config.hardware"].device if isinstance(d, kind)]


def extra_config(vm: dict[str, Any]) -> dict[str, str]:
    """extraConfig as a dict (the last value of a key wins, as vcsim appends)."""
    return {o.key: o.value for o in vm.get("config.extraConfig") or []}


# -- fixtures shared by the operation modules (import them into a test module) ---------------

import uuid as uuid_module  # noqa: E402
from collections.abc import Iterator  # noqa: E402

import pytest  # noqa: E402
from oslo_config import cfg  # noqa: E402

import virtdriver  # noqa: E402
from virtdriver.common.model import VIF, Flavor, Instance  # noqa: E402

IMAGE_BYTES = bytes(range(256)) * 4096  # 1 MiB, recognisable


def require_launcher(vcsim: Any) -> None:
    """Fail (never skip) if a launcher-only test met another server: with ``VCSIM_URL`` the
    conftest deselects such tests, so reaching this means one was not marked."""
    if not vcsim.can_inject:
        pytest.fail("needs the project's vcsim launcher, but VCSIM_URL names another server")


def make_conf(vcsim: Any, **vmware: Any) -> cfg.ConfigOpts:
    """A configuration pointing at the simulator."""
    conf = cfg.ConfigOpts()
    virtdriver.register_opts(conf)
    conf([])
    conf.set_override("host_ip", vcsim.host, group="vmware")
    conf.set_override("host_port", vcsim.port, group="vmware")
    conf.set_override("host_username", vcsim.username, group="vmware")
    conf.set_override("host_password", vcsim.password, group="vmware")
    conf.set_override("ca_file", vcsim.ca_file, group="vmware")
    conf.set_override("api_retry_count", 2, group="vmware")
    for key, value in vmware.items():
        conf.set_override(key, value, group="vmware")
    return conf


@pytest.fixture(scope="module")
def image_store(tmp_path_factory: pytest.TempPathFactory) -> Any:
    """A local image store with one 1 MiB vmdk image and one ISO image."""
    root = tmp_path_factory.mktemp("images")
    store = virtdriver.LocalImageStore(root / "store")
    disk = root / "disk.vmdk"
    disk.write_bytes(IMAGE_BYTES)
    store.disk = store.import_file(disk, disk_format="vmdk", name="disk",  # type: ignore
                                   properties={"vmware_adaptertype": "paraVirtual",
                                               "vmware_ostype": "otherLinux64Guest",
                                               "hw_vif_model": "vmxnet3"})
    iso = root / "rescue.iso"
    iso.write_bytes(b"\0" * 65536)
    store.iso = store.import_file(iso, disk_format="iso", name="iso")  # type: ignore
    return store


@pytest.fixture(scope="module")
def ops(vcsim: Any, image_store: Any) -> Iterator[Any]:
    """A VMwareVMOps on the simulator, loaded through the public entry point."""
    backend = virtdriver.load_backend("vmware", make_conf(vcsim), image_store=image_store)
    yield backend
    backend.close()


#: The clusters of a vcsim started with two (``vcsim_flags`` of ``{"cluster": 2, ...}``).
TWO_CLUSTERS = ("DC0_C0", "DC0_C1")


@pytest.fixture(scope="module", name="vcsim_flags")
def two_clusters_vcsim_flags() -> dict[str, Any]:
    """vcsim with the two clusters of :data:`TWO_CLUSTERS`, two hosts each, no VM: a module
    that imports this fixture gets it as its ``vcsim_flags``."""
    return {"cluster": 2, "host": 2, "vm": 0, "autostart": False}


@pytest.fixture(scope="module")
def inspector(vcsim: Any) -> Iterator[Inspector]:
    """The independent reader."""
    reader = Inspector(vcsim)
    yield reader
    reader.close()


def make_instance(**flavor: Any) -> Instance:
    """A fresh instance with a small flavor."""
    spec = {"vcpus": 1, "memory_mb": 256, "root_gb": 1, **flavor}
    uuid = str(uuid_module.uuid4())
    return Instance(uuid=uuid, name=f"inst-{uuid[:8]}", flavor=Flavor(**spec))


def make_vif(n: int = 1, network: str = "VM Network") -> VIF:
    """A VIF with a predictable MAC."""
    return VIF(id=str(uuid_module.uuid4()), address=f"fa:16:3e:00:00:{n:02x}", network=network,
               fixed_ips=[f"10.0.0.{n}"])


def datastore_files(inspector: Inspector) -> set[str]:
    """Datastore files outside the image cache (temp folders must be empty)."""
    return {f for f in inspector.files() if "/_base" not in f and not f.endswith("/_base")
            and not f.endswith("/vmware_temp")}


