"""virtdriver's options on Nova's own CONF.

Choice: register our options on ``nova.conf.CONF`` (only those Nova lacks), rather than
read the config files again into a ConfigOpts of our own. Nova already defines most of
``[vmware]`` (host_ip, cluster_name, datastore_regex, ...) with the same meaning, so an
operator's existing section drives both Nova and the backend from one value; anything set
programmatically (``CONF.set_override`` in tests, ``nova-manage`` tooling, Nova's own
``flags``) is seen by the backend too, which a second ConfigOpts parsed from the files would
miss; and ``[xenserver]`` (removed from Nova in Victoria) comes back as ours. Options Nova
defines are left untouched: registering ours over them would be a DuplicateOptError.
"""

from __future__ import annotations

from typing import Any

from oslo_config import cfg

from virtdriver.common.config import list_opts


def _registered(conf: cfg.ConfigOpts, group: str | None, name: str) -> bool:
    try:
        namespace = conf if group is None else conf[group]
        return name in namespace
    except (cfg.NoSuchOptError, cfg.NoSuchGroupError, KeyError):
        return False


def register_opts(conf: Any) -> Any:
    """Register every virtdriver option that ``conf`` (Nova's CONF) lacks; idempotent.

    Our ``[DEFAULT]`` image-cache names follow Nova's ``[image_cache]`` values as defaults,
    so one setting governs Nova's cache manager and the backends' caches.
    """
    for group, opts in list_opts():
        group_name = None if group == "DEFAULT" else group
        missing = [opt for opt in opts if not _registered(conf, group_name, opt.dest)]
        if missing:
            conf.register_opts(missing, group=group_name)
    image_cache = getattr(conf, "image_cache", None)
    if image_cache is not None:
        for ours, nova_name in (("image_cache_subdirectory_name", "subdirectory_name"),
                                ("remove_unused_base_images", "remove_unused_base_images"),
                                ("remove_unused_original_minimum_age_seconds",
                                 "remove_unused_original_minimum_age_seconds")):
            if nova_name in image_cache:
                conf.set_default(ours, image_cache[nova_name])
    return conf
