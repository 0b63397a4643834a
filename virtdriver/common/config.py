"""Configuration options of every group, with help text and sane defaults.

Option names follow Nova's where the meaning is the same, so an operator's existing
``[vmware]`` and ``[xenserver]`` sections work unchanged. ``etc/virtdriver.conf.sample`` is
generated from :func:`list_opts` by ``oslo-config-generator`` (``make genconfig``).
"""

from __future__ import annotations

from oslo_config import cfg

DEFAULT_OPTS = [
    cfg.StrOpt("image_cache_subdirectory_name", default="_base",
               help="Name of the folder, on each datastore or SR, that caches images "
                    "used by instances."),
    cfg.BoolOpt("remove_unused_base_images", default=True,
                help="Whether manage_image_cache deletes cached images no instance uses."),
    cfg.IntOpt("remove_unused_original_minimum_age_seconds", default=86400, min=0,
               help="How long an unused cached image is kept before it is deleted."),
    cfg.IntOpt("reboot_timeout", default=0, min=0,
               help="Seconds after which poll_rebooting_instances hard-reboots an instance "
                    "stuck rebooting; 0 disables it."),
    cfg.StrOpt("config_drive_format", default="iso9660", choices=["iso9660"],
               help="Format of config drives."),
    cfg.IntOpt("task_timeout", default=3600, min=1,
               help="Seconds to wait for one server task before giving up."),
]

VMWARE_OPTS = [
    cfg.HostAddressOpt("host_ip", help="Hostname or IP address of the vCenter server."),
    cfg.PortOpt("host_port", default=443, help="Port of the vCenter server's SDK endpoint."),
    cfg.StrOpt("host_username", help="User name for vCenter."),
    cfg.StrOpt("host_password", secret=True, help="Password for vCenter."),
    cfg.StrOpt("ca_file",
               help="CA bundle that verifies vCenter's certificate. Unset: the system store."),
    cfg.BoolOpt("insecure", default=False,
                help="Do not verify vCenter's certificate. Ignored when ca_file is set. "
                     "Logs a warning: use only for tests."),
    cfg.StrOpt("cluster_name", help="Name of the vCenter cluster this backend manages."),
    cfg.StrOpt("datastore_regex",
               help="Regular expression that datastore names must match to be used; "
                    "unset: any datastore, the one with most free space first."),
    cfg.IntOpt("api_retry_count", default=10, min=0,
               help="Times to retry a call after a connection failure."),
    cfg.IntOpt("call_timeout", default=60, min=5,
               help="Seconds a vCenter call (including a datastore transfer's wait for "
                    "an answer) may go unanswered before it fails with ConnectionFailed "
                    "(code CallTimeout); such a call is not repeated. Task waits ask the "
                    "server to answer a few seconds sooner, so a long task never trips it. "
                    "Nova has no such option; oslo.vmware sockets have no timeout."),
    cfg.BoolOpt("use_linked_clone", default=True,
                help="Make root disks copy-on-write children of the cached image instead "
                     "of full copies."),
    cfg.StrOpt("cache_prefix",
               help="Prefix of the image-cache folder, for computes that share datastores."),
    cfg.IntOpt("maximum_objects", default=100, min=1,
               help="Page size of property-collector reads."),
    cfg.IntOpt("vnc_port", default=5900, min=1, max=65535,
               help="First VNC port handed to instances."),
    cfg.IntOpt("vnc_port_total", default=10000, min=1,
               help="Number of VNC ports handed out from vnc_port upwards."),
    cfg.StrOpt("vnc_keymap", default="en-us", help="Keymap of VNC consoles."),
    cfg.StrOpt("temp_folder", default="vmware_temp",
               help="Datastore folder for uploads in progress."),
]

XENSERVER_OPTS = [
    cfg.URIOpt("connection_url", schemes=["http", "https"],
               help="URL of the XAPI pool master, e.g. https://xenserver1."),
    cfg.StrOpt("connection_username", default="root", help="User name for XAPI."),
    cfg.StrOpt("connection_password", secret=True, help="Password for XAPI."),
    cfg.IntOpt("connection_concurrent", default=5, min=1,
               help="Number of XAPI sessions kept for concurrent callers."),
    cfg.StrOpt("ca_file",
               help="CA bundle that verifies the XAPI server's certificate. Unset: the "
                    "system store."),
    cfg.BoolOpt("insecure", default=False,
                help="Do not verify the XAPI server's certificate. Logs a warning."),
    cfg.IntOpt("login_timeout", default=10, min=1, help="Seconds to wait for a XAPI login."),
    cfg.IntOpt("call_timeout", default=60, min=5,
               help="Seconds an XAPI call may go unanswered before it fails with "
                    "ConnectionFailed (code CALL_TIMEOUT); such a call is not repeated. "
                    "Long waits (event.from) get their own wait time plus this. Guest-agent "
                    "calls use the agent_* timeouts instead. Nova has no such option "
                    "(its XenAPI calls had none)."),
    cfg.IntOpt("api_retry_count", default=3, min=0,
               help="Times to retry a call after a connection failure."),
    cfg.StrOpt("sr_matching_filter", default="default-sr:true",
               help="Which SR holds instance disks: 'default-sr:true' for the pool's "
                    "default SR, or 'other-config:<key>=<value>'."),
    cfg.IntOpt("running_timeout", default=60, min=1,
               help="Seconds to wait for a VM to reach Running after start."),
    cfg.IntOpt("vhd_coalesce_timeout", default=100, min=1,
               help="Seconds to wait for a VHD chain to coalesce after a snapshot."),
    cfg.BoolOpt("disable_agent", default=False,
                help="Never talk to the guest agent (inject_file, set_admin_password and "
                     "reset_network then raise UnsupportedOperation)."),
    cfg.BoolOpt("use_agent_default", default=False,
                help="Whether images without a 'xenapi_use_agent' property carry the guest "
                     "agent; decides whether spawn asks the agent to reset the network."),
    cfg.IntOpt("agent_timeout", default=30, min=1,
               help="Seconds to wait for the guest agent to answer a request."),
    cfg.IntOpt("agent_version_timeout", default=300, min=1,
               help="Seconds to wait for the guest agent to come up after boot."),
    cfg.IntOpt("agent_resetnetwork_timeout", default=60, min=1,
               help="Seconds to wait for the guest agent to reset the network."),
    cfg.IntOpt("num_vbd_unplug_retries", default=10, min=0,
               help="Times to retry unplugging a VBD the guest still holds."),
    cfg.StrOpt("default_os_type", default="linux", help="OS type of images that name none."),
]


def list_opts() -> list[tuple[str, list[cfg.Opt]]]:
    """Every option, by group, for oslo-config-generator."""
    return [("DEFAULT", list(DEFAULT_OPTS)), ("vmware", list(VMWARE_OPTS)),
            ("xenserver", list(XENSERVER_OPTS))]


def register_opts(conf: cfg.ConfigOpts) -> cfg.ConfigOpts:
    """Register every group's options on ``conf``; safe to call twice. Returns ``conf``."""
    for group, opts in list_opts():
        conf.register_opts(opts, group=None if group == "DEFAULT" else group)
    return conf
