"""The two backends as the benchmarks see them: simulator, options, and the three clients.

A :class:`BackendSpec` knows how to start its simulator with a given inventory, how to point
the library at it, and how to build the library, floor and naive clients against it. Every
factory raises :class:`benchmarks.common.Unavailable` (with the reason) rather than crash,
so a section reports "backend operation not available: ..." and ``run.py`` completes.
"""

from __future__ import annotations

import contextlib
import importlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from benchmarks import sims
from benchmarks.common import Unavailable, unavailable_reason


@dataclass(frozen=True)
class BackendSpec:
    """One backend: its name, its simulator and how its clients are built."""

    name: str
    network: str
    disk_format: str
    hosts: list[str]
    start_sim: Callable[..., Any]
    conf: Callable[[Any], Any]
    floor_module: str
    floor_class: str
    naive_module: str
    naive_class: str

    @contextlib.contextmanager
    def simulator(self, **inventory: Any) -> Iterator[Any]:
        """A running simulator with ``inventory`` (VMs, hosts...); stopped on exit."""
        try:
            manager = self.start_sim(**inventory)
            running = manager.__enter__()
        except Unavailable:
            raise
        except Exception as error:  # noqa: BLE001 - the section reports it
            raise Unavailable(f"simulator did not start: {type(error).__name__}: {error}"
                              ) from error
        try:
            yield running
        finally:
            manager.__exit__(None, None, None)

    def raw_sim(self, running: Any) -> Any:
        """What raw clients and options need: the launcher (VMware) or the XenSim (Xen)."""
        return running.sim if self.name == "vmware" else running

    def library(self, running: Any) -> Any:
        """The library client, logged in and warmed up."""
        from benchmarks.operations import LibraryClient
        try:
            client = LibraryClient(self.name, self.conf(self.raw_sim(running)), self.network,
                                   self.disk_format, self.hosts,
                                   resize_dest=running.url if self.name == "xen" else "")
        except Exception as error:  # noqa: BLE001
            raise Unavailable(unavailable_reason(error)) from error
        try:
            client.warm_up()
        except Exception as error:  # noqa: BLE001
            client.close()
            raise Unavailable(unavailable_reason(error)) from error
        return client

    def _raw(self, module: str, cls: str, running: Any) -> Any:
        try:
            factory = getattr(importlib.import_module(module), cls)
            return factory(self.raw_sim(running))
        except Exception as error:  # noqa: BLE001
            raise Unavailable(f"{module}.{cls} not available: {type(error).__name__}: {error}"
                              ) from error

    def floor(self, running: Any) -> Any:
        """The floor client (fewest raw calls, push waiting)."""
        return self._raw(self.floor_module, self.floor_class, running)

    def naive(self, running: Any) -> Any:
        """The naive client (how most scripts do it)."""
        return self._raw(self.naive_module, self.naive_class, running)


def _vmware_sim(vms: int = 0, hosts: int = 3) -> sims.VmwareSim:
    # VMs go in the one cluster (vcsim counts -vm per cluster); no standalone host, so the
    # inventory holds exactly ``vms`` VMs.
    return sims.VmwareSim(vm=vms, host=hosts)


def _xen_sim(vms: int = 0, hosts: int = 2) -> sims.XenSim:
    return sims.XenSim(hosts=hosts, vms=vms)


VMWARE = BackendSpec(
    name="vmware", network="VM Network", disk_format="vmdk",
    hosts=["DC0_C0_H0", "DC0_C0_H1"], start_sim=_vmware_sim, conf=sims.vmware_conf,
    floor_module="benchmarks.floor_vmware", floor_class="FloorVmware",
    naive_module="benchmarks.naive_vmware", naive_class="NaiveVmware")

XEN = BackendSpec(
    name="xen", network="Pool-wide network associated with eth0", disk_format="raw",
    hosts=["host0", "host1"], start_sim=_xen_sim, conf=sims.xen_conf,
    floor_module="benchmarks.floor_xen", floor_class="FloorXen",
    naive_module="benchmarks.naive_xen", naive_class="NaiveXen")

BACKENDS = [VMWARE, XEN]
