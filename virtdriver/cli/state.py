"""The command's memory between runs: which instance each user-chosen name is.

One small JSON file next to the configuration, written atomically (temp file + rename), so
an interrupted command never leaves it half-written.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

from virtdriver.common.exceptions import InstanceExists, InstanceNotFound
from virtdriver.common.model import Flavor, Instance


class StateFile:
    """Instances by backend and name, with the flavor, image and networks they were built with."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def _load(self) -> dict[str, Any]:
        try:
            return json.loads(self.path.read_text())
        except FileNotFoundError:
            return {"instances": {}}

    def _save(self, data: dict[str, Any]) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd, temp = tempfile.mkstemp(dir=self.path.parent, prefix=f".{self.path.name}.")
        try:
            with os.fdopen(fd, "w") as handle:
                json.dump(data, handle, indent=2, sort_keys=True)
            os.replace(temp, self.path)
        except BaseException:
            os.unlink(temp)
            raise

    def records(self, backend: str) -> dict[str, dict[str, Any]]:
        """Every remembered instance of ``backend``, by name."""
        return self._load()["instances"].get(backend, {})

    def get(self, backend: str, name: str) -> dict[str, Any]:
        """The record of ``name``; InstanceNotFound if the command never made it."""
        record = self.records(backend).get(name)
        if record is None:
            raise InstanceNotFound(name, f"no instance named {name!r} on {backend}")
        return record

    def add(self, backend: str, name: str, record: dict[str, Any]) -> None:
        """Remember a new instance; InstanceExists if the name is taken."""
        data = self._load()
        instances = data["instances"].setdefault(backend, {})
        if name in instances:
            raise InstanceExists(name)
        instances[name] = record
        self._save(data)

    def update(self, backend: str, name: str, **changes: Any) -> None:
        """Change fields of a remembered instance; a field set to None is dropped."""
        data = self._load()
        record = data["instances"][backend][name]
        for key, value in changes.items():
            if value is None:
                record.pop(key, None)
            else:
                record[key] = value
        self._save(data)

    def remove(self, backend: str, name: str) -> None:
        """Forget an instance (after destroy)."""
        data = self._load()
        data["instances"].get(backend, {}).pop(name, None)
        self._save(data)


def instance_from_record(name: str, record: dict[str, Any],
                         flavor_key: str = "flavor") -> Instance:
    """Rebuild the Instance a record describes."""
    return Instance(uuid=record["uuid"], name=name, flavor=Flavor(**record[flavor_key]),
                    image_ref=record.get("image_id", ""),
                    config_drive=record.get("config_drive", False),
                    metadata=record.get("metadata", {}))
