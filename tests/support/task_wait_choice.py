"""How the VMware task waiter was chosen: per-waiter collectors against one shared ListView.

    .venv/bin/python -m tests.support.task_wait_choice      # about 30 s

Starts vcsim with 50 VMs and, three times each, powers all 50 on at once with every
power-on lasting 0.2 s on the server, waiting for the tasks

* as the session does (:class:`virtdriver.vmware.tasks.TaskWaiter`: each waiter borrows a
  collector of its own, whose ListView holds that waiter's task only), and
* with a prototype of the other candidate: one ListView on one collector with one filter
  shared by every waiter,
  tasks added to and removed from the view (``ModifyListView``), one thread waiting with
  ``WaitForUpdatesEx`` and handing states to the waiters.

Prints wall time and calls of each round.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

from pyVmomi import vim, vmodl

from virtdriver.vmware.session import VMwareSession
from virtdriver.vmware.simulator import Vcsim

N = 50


def main() -> None:
    """Run both waiters three times each against one vcsim and print the figures."""
    sim = Vcsim()
    sim.start(vm=N)
    stop = threading.Event()
    try:
        session = VMwareSession(sim.host, sim.port, sim.username, sim.password,
                                ca_file=sim.ca_file)
        vms = [ref for ref, _ in
               session.list_objects(vim.VirtualMachine, ["name"]).values()][:N]

        def power_off_all() -> None:
            states = session.retrieve(vms, ["runtime.powerState"])
            for vm in vms:
                if states[vm._moId]["runtime.powerState"] == "poweredOn":
                    session.call_task(vm, "PowerOffVM_Task")

        def run(wait: Callable[[Any], None], label: str) -> None:
            power_off_all()
            sim.inject("PowerOnVM_Task", "delay", delay_ms=200, count=N)
            session.stats.reset()
            barrier = threading.Barrier(N + 1)

            def one(vm: Any) -> None:
                barrier.wait()
                wait(session.invoke(vm, "PowerOnVM_Task"))

            threads = [threading.Thread(target=one, args=(vm,)) for vm in vms]
            for thread in threads:
                thread.start()
            barrier.wait()
            start = time.perf_counter()
            for thread in threads:
                thread.join()
            print(f"{label}: {time.perf_counter() - start:.2f} s, "
                  f"{session.stats.total_calls} calls {dict(session.stats.calls)}")
            sim.clear_faults()

        pc = vmodl.query.PropertyCollector
        content = session.content
        view = session.invoke(content.viewManager, "CreateListView", [])
        collector = session.invoke(content.propertyCollector, "CreatePropertyCollector")
        spec = pc.FilterSpec(
            objectSet=[pc.ObjectSpec(obj=view, skip=True, selectSet=[
                pc.TraversalSpec(name="v", type=vim.view.ListView, path="view", skip=False)])],
            propSet=[pc.PropertySpec(type=vim.Task, pathSet=["info.state"])])
        session.invoke(collector, "CreateFilter", spec, partialUpdates=False)
        cond = threading.Condition()
        states: dict[str, str] = {}

        def pump() -> None:
            version = ""
            while not stop.is_set():
                try:
                    update = session.wait_for_updates(collector, version, 5)
                except Exception:  # noqa: BLE001 - the simulator is stopping
                    return
                if update is None:
                    continue
                version = update.version
                with cond:
                    for filter_update in update.filterSet or []:
                        for obj in filter_update.objectSet or []:
                            for change in obj.changeSet or []:
                                if change.name == "info.state":
                                    states[obj.obj._moId] = str(change.val)
                    cond.notify_all()

        threading.Thread(target=pump, daemon=True, name="listview-pump").start()

        def listview_wait(task: Any) -> None:
            state = session.retrieve_one(task, ["info.state"]).get("info.state")
            if str(state) in ("success", "error"):
                return
            session.invoke(view, "ModifyListView", add=[task])
            with cond:
                while states.get(task._moId) not in ("success", "error"):
                    cond.wait(5)
            session.invoke(view, "ModifyListView", remove=[task])

        for _ in range(3):
            run(session.wait_for_task, "collector per waiter")
            run(listview_wait, "one ListView        ")
    finally:
        stop.set()
        sim.stop()


if __name__ == "__main__":
    main()
