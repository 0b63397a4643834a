"""The built-in-style templates a simulated pool ships (canned content, apart from behaviour).

A real pool carries the vendor's templates (``is_a_template`` and ``is_default_template``
true, ``other_config:default_template``): clients list them, clone one and call
``VM.provision``, which makes the disks of its ``other_config:disks`` spec.  ``sr=""`` in
a spec is filled in by the client (``xe vm-install`` writes the target SR's uuid) before
``VM.provision``; xapi itself refuses an SR it cannot find.
"""

from __future__ import annotations

from typing import Any

GIB = 1024**3
MIB = 1024**2


def disks_spec(*sizes: int) -> str:
    """A ``<provision>`` spec of system disks at devices 0, 1...; the SR is left to the client."""
    disks = "".join(f'<disk device="{n}" size="{size}" sr="" bootable="{str(n == 0).lower()}" '
                    'type="system"/>' for n, size in enumerate(sizes))
    return f"<provision>{disks}</provision>"


_HVM_PLATFORM = {"acpi": "1", "apic": "true", "pae": "true", "nx": "true", "viridian": "false",
                 "device-model": "qemu-upstream-compat"}

#: name -> the VM record fields of one template (memory in bytes, as decimal strings).
TEMPLATES: dict[str, dict[str, Any]] = {
    "Other install media": {
        "name_description": "Template which allows VM installation from install media",
        "memory_mib": 512, "vcpus": 1, "platform": dict(_HVM_PLATFORM),
        "other_config": {"install-methods": "cdrom", "disks": disks_spec(32 * GIB)},
    },
    "Debian Bookworm 12": {
        "name_description": "To use this template from the CLI, install your VM using "
                            "vm-install, then set other-config-install-repository to the "
                            "path to your network repository",
        "memory_mib": 1024, "vcpus": 1, "platform": dict(_HVM_PLATFORM),
        "other_config": {"install-methods": "cdrom,nfs,http,ftp", "linux_template": "true",
                         "disks": disks_spec(10 * GIB)},
    },
    "Windows Server 2022 (64-bit)": {
        "name_description": "Clones of this template will automatically provision their "
                            "storage when first booted and then reconfigure themselves with "
                            "the optimal settings for Windows Server 2022 (64-bit).",
        "memory_mib": 2048, "vcpus": 2, "platform": {**_HVM_PLATFORM, "viridian": "true"},
        "other_config": {"install-methods": "cdrom", "disks": disks_spec(32 * GIB)},
    },
}


def template_record(name: str) -> dict[str, Any]:
    """The VM fields of template ``name`` as the registry stores them."""
    spec = TEMPLATES[name]
    memory = str(spec["memory_mib"] * MIB)
    vcpus = str(spec["vcpus"])
    return {
        "name_label": name, "name_description": spec["name_description"],
        "is_a_template": True, "is_default_template": True,
        "memory_static_max": memory, "memory_dynamic_max": memory,
        "memory_dynamic_min": memory, "memory_target": memory,
        "memory_static_min": str(min(spec["memory_mib"], 256) * MIB),
        "VCPUs_max": vcpus, "VCPUs_at_startup": vcpus, "domain_type": "hvm",
        "HVM_boot_policy": "BIOS order", "HVM_boot_params": {"order": "dc"},
        "platform": dict(spec["platform"]),
        "other_config": {"default_template": "true", **spec["other_config"]},
    }
