"""The two drivers Nova loads: :class:`VMwareDriver` and :class:`XenDriver`.

Each names its backend and Nova hypervisor type and supplies the backend-specific host
facts (``virtdriver.<backend>.resources``) and event channel (``virtdriver.<backend>.events``).
``capabilities`` are the backend's own, under Nova's keys, known before any connection.
"""

from __future__ import annotations

import urllib.parse
from typing import Any

from nova.objects import fields as obj_fields

from virtdriver.nova.driver import CONF, VirtDriver, nova_capabilities
from virtdriver.vmware import events as vmware_events
from virtdriver.vmware import resources as vmware_resources
from virtdriver.vmware.vmops import VMwareVMOps
from virtdriver.xen import disks as xen_disks
from virtdriver.xen import events as xen_events
from virtdriver.xen import resources as xen_resources
from virtdriver.xen.vmops import XenVMOps


class VMwareDriver(VirtDriver):
    """Nova compute driver for one vCenter cluster (``[vmware] cluster_name``).

    The cluster is one node, named ``<cluster moref>.<vCenter instanceUuid>`` as Nova's
    in-tree VMware driver names it; vCenter's DRS picks the ESXi host.
    """

    backend_name = "vmware"
    hypervisor_type = obj_fields.HVType.VMWARE
    backend_class = VMwareVMOps
    capabilities = nova_capabilities(VMwareVMOps.capabilities)

    def _read_resources(self) -> dict[str, Any]:
        ops = self.ops
        return vmware_resources.cluster_resources(ops.session, ops.inventory.cluster_ref,
                                                  CONF.vmware.datastore_regex)

    def _nodename(self) -> str:
        ops = self.ops
        return vmware_resources.node_name(ops.session, ops.inventory.cluster_ref)

    def _event_channel(self) -> vmware_events.PowerStateChannel:
        ops = self.ops
        return vmware_events.PowerStateChannel(ops.session, ops.inventory.vm_folder,
                                               ops.inventory.cluster_ref)

    def _server_host(self) -> str:
        return CONF.vmware.host_ip or ""


class XenDriver(VirtDriver):
    """Nova compute driver for one XAPI pool (``[xenserver] connection_url``).

    The pool is one node, named after the pool (or its master's hostname).
    """

    backend_name = "xen"
    hypervisor_type = obj_fields.HVType.XEN
    backend_class = XenVMOps
    capabilities = nova_capabilities(XenVMOps.capabilities)

    def _read_resources(self) -> dict[str, Any]:
        session = self.ops.session
        return xen_resources.pool_resources(
            session, xen_disks.find_sr(session, CONF.xenserver.sr_matching_filter))

    def _nodename(self) -> str:
        return xen_resources.node_name(self.ops.session)

    def _event_channel(self) -> xen_events.PowerStateChannel:
        return xen_events.PowerStateChannel(self.ops.session)

    def _server_host(self) -> str:
        return urllib.parse.urlsplit(CONF.xenserver.connection_url or "").hostname or ""
