"""iSCSI targets outside the pool: what a Cinder iSCSI backend exports, LUN by LUN.

State only (no XAPI rule): targets (portal ``host:port``, IQN, optional CHAP credentials)
and their LUNs (number, size, SCSI id), each LUN's bytes in a sparse file of its own. The
files live in this store's directory, not in a pool's VDI directory: a LUN outlives every
SR that shows it (``SR.forget`` drops records, never the LUN), and two simulators given
the same :class:`Targets` see the same LUNs, as two pools attached to one storage array do.

A LUN's VDI uuid is derived from its SCSI id, as the storage manager's LUN-per-VDI driver
(``xapi-project/sm`` ``LUNperVDI``) derives it from the LUN serial, so every pool that scans
the target finds the same VDI uuid for the same LUN.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import os
import threading
import uuid as _uuid

#: Cinder's (and tgt's) default iSCSI port.
DEFAULT_PORT = 3260


def scsi_id_of(iqn: str, lun: int) -> str:
    """A stable NAA-style SCSI id (``36001405`` + 24 hex digits) for a target's LUN."""
    digest = hashlib.sha256(f"{iqn}/{lun}".encode()).hexdigest()[:24]
    return "36001405" + digest


def vdi_uuid_of(scsi_id: str) -> str:
    """The VDI uuid a LUN gets in every pool: derived from its SCSI id."""
    return str(_uuid.uuid5(_uuid.NAMESPACE_OID, "scsi:" + scsi_id))


@dataclasses.dataclass
class Lun:
    """One logical unit of a target: ``size`` bytes in the file at ``path``."""

    number: int
    size: int
    scsi_id: str
    vdi_uuid: str
    path: str

    def describe(self) -> dict[str, object]:
        """A JSON-ready view."""
        return {"lun": self.number, "size": self.size, "scsi_id": self.scsi_id,
                "vdi_uuid": self.vdi_uuid}


@dataclasses.dataclass
class Target:
    """An iSCSI target: reachable at ``host:port`` while ``online``; CHAP when a user is
    set (the password never appears in a repr)."""

    iqn: str
    host: str
    port: int
    chap_user: str | None = None
    chap_password: str | None = dataclasses.field(default=None, repr=False)
    online: bool = True
    luns: dict[int, Lun] = dataclasses.field(default_factory=dict)

    @property
    def portal(self) -> str:
        """``host:port``."""
        return f"{self.host}:{self.port}"

    def accepts(self, user: str | None, password: str | None) -> bool:
        """Whether a login with these CHAP credentials succeeds."""
        if self.chap_user is None:
            return True
        return user == self.chap_user and password == self.chap_password

    def describe(self) -> dict[str, object]:
        """A JSON-ready view (CHAP user, never the password)."""
        return {"iqn": self.iqn, "portal": self.portal, "chap_user": self.chap_user,
                "online": self.online,
                "luns": [lun.describe() for _, lun in sorted(self.luns.items())]}


def parse_portal(portal: str) -> tuple[str, int]:
    """``host[:port]`` (IPv6 in brackets) -> (host, port)."""
    text = str(portal).strip()
    if text.startswith("["):
        host, _, rest = text[1:].partition("]")
        port = rest.lstrip(":")
    else:
        host, sep, port = text.rpartition(":")
        if not sep:
            host, port = text, ""
    if not host:
        raise ValueError(f"portal {portal!r} has no host")
    try:
        number = int(port) if port else DEFAULT_PORT
    except ValueError:
        raise ValueError(f"portal {portal!r} has a bad port") from None
    return host, number


class Targets:
    """Every target of one storage network, with the LUN files under ``root``."""

    def __init__(self, root: str) -> None:
        self.root = root
        os.makedirs(root, mode=0o700, exist_ok=True)
        self.lock = threading.RLock()
        self._targets: dict[str, Target] = {}

    # -- configuration (what the volume service does) --------------------------------
    def add_target(self, iqn: str, portal: str = f"127.0.0.1:{DEFAULT_PORT}",
                   luns: dict[int, int] | None = None, chap_user: str | None = None,
                   chap_password: str | None = None) -> Target:
        """Export a target at ``portal`` with ``luns`` (number -> size in bytes)."""
        if not iqn:
            raise ValueError("a target needs an IQN")
        host, port = parse_portal(portal)
        with self.lock:
            if iqn in self._targets:
                raise ValueError(f"target {iqn} exists")
            target = Target(iqn=iqn, host=host, port=port, chap_user=chap_user or None,
                            chap_password=chap_password if chap_user else None)
            self._targets[iqn] = target
            for number, size in sorted((luns or {}).items()):
                self.add_lun(iqn, int(number), int(size))
            return target

    def add_lun(self, iqn: str, number: int, size: int) -> Lun:
        """A new zero-filled LUN of ``size`` bytes on a target."""
        if size <= 0 or number < 0:
            raise ValueError("a LUN needs a number >= 0 and a size > 0")
        with self.lock:
            target = self.target(iqn)
            if number in target.luns:
                raise ValueError(f"LUN {number} of {iqn} exists")
            scsi_id = scsi_id_of(iqn, number)
            lun = Lun(number=number, size=size, scsi_id=scsi_id,
                      vdi_uuid=vdi_uuid_of(scsi_id),
                      path=os.path.join(self.root, scsi_id + ".lun"))
            with open(lun.path, "wb") as fh:
                fh.truncate(size)
            target.luns[number] = lun
            return lun

    def remove_lun(self, iqn: str, number: int) -> None:
        """Delete a LUN and its bytes (the volume was deleted in the volume service)."""
        with self.lock:
            lun = self.lun(iqn, number)
            del self.target(iqn).luns[number]
            with contextlib.suppress(FileNotFoundError):
                os.unlink(lun.path)

    def resize_lun(self, iqn: str, number: int, size: int) -> Lun:
        """Grow a LUN (the volume was extended); its bytes are kept."""
        with self.lock:
            lun = self.lun(iqn, number)
            if size < lun.size:
                raise ValueError("LUNs only grow")
            with open(lun.path, "ab") as fh:
                fh.truncate(size)
            lun.size = size
            return lun

    def set_online(self, iqn: str, online: bool) -> None:
        """Make a target's portal unreachable (False) or reachable again."""
        with self.lock:
            self.target(iqn).online = bool(online)

    # -- lookups -----------------------------------------------------------------------
    def target(self, iqn: str) -> Target:
        """The target called ``iqn``; KeyError when there is none."""
        with self.lock:
            try:
                return self._targets[iqn]
            except KeyError:
                raise KeyError(f"no iSCSI target {iqn}") from None

    def lun(self, iqn: str, number: int) -> Lun:
        """One LUN; KeyError when there is none."""
        with self.lock:
            try:
                return self.target(iqn).luns[int(number)]
            except KeyError:
                raise KeyError(f"no LUN {number} on {iqn}") from None

    def at_portal(self, host: str, port: int) -> list[Target]:
        """The online targets answering at ``host:port``."""
        with self.lock:
            return [t for t in self._targets.values()
                    if t.online and t.host == host and t.port == port]

    def path_of_vdi(self, vdi_uuid: str) -> str | None:
        """The file of the LUN whose VDI uuid is ``vdi_uuid``, or None."""
        with self.lock:
            for target in self._targets.values():
                for lun in target.luns.values():
                    if lun.vdi_uuid == vdi_uuid:
                        return lun.path
        return None

    def lun_of_vdi(self, vdi_uuid: str) -> tuple[Target, Lun] | None:
        """The (target, LUN) whose VDI uuid is ``vdi_uuid``, or None."""
        with self.lock:
            for target in self._targets.values():
                for lun in target.luns.values():
                    if lun.vdi_uuid == vdi_uuid:
                        return target, lun
        return None

    def describe(self) -> list[dict[str, object]]:
        """Every target, JSON-ready (no CHAP password)."""
        with self.lock:
            return [t.describe() for _, t in sorted(self._targets.items())]

    # -- bytes -------------------------------------------------------------------------
    def read(self, iqn: str, number: int, offset: int = 0, length: int | None = None) -> bytes:
        """Bytes of a LUN (all of it by default)."""
        lun = self.lun(iqn, number)
        with open(lun.path, "rb") as fh:
            fh.seek(offset)
            return fh.read(lun.size - offset if length is None else length)

    def write(self, iqn: str, number: int, data: bytes, offset: int = 0) -> None:
        """Write bytes into a LUN (what a guest or the volume service wrote)."""
        lun = self.lun(iqn, number)
        if offset < 0 or offset + len(data) > lun.size:
            raise ValueError("write past the end of the LUN")
        with open(lun.path, "r+b") as fh:
            fh.seek(offset)
            fh.write(data)
