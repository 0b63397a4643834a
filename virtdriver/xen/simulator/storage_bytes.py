"""VDI contents as sparse files in the simulator's temp dir, and a small VHD codec.

VHD support: export with ``format=vhd`` writes a *dynamic* VHD (footer, header, BAT, 2 MiB
blocks with full sector bitmaps, only non-zero blocks stored); import accepts fixed or dynamic
VHDs (differencing disks are refused).
"""

from __future__ import annotations

import contextlib
import os
import struct
import time
import uuid as _uuid
from collections.abc import Callable, Iterator
from typing import BinaryIO

BLOCK = 2 * 1024 * 1024
SECTOR = 512
VHD_EPOCH = 946684800  # 2000-01-01 UTC


class Disks:
    """Maps VDI uuids to sparse files.

    ``external(uuid)`` names a file kept outside ``root`` (an iSCSI LUN's): such a file
    is read and written like any other, but never created or deleted here.
    """

    def __init__(self, root: str,
                 external: Callable[[str], str | None] | None = None) -> None:
        self.root = root
        self.external = external or (lambda _uuid: None)

    def path(self, vdi_uuid: str) -> str:
        """File of one VDI."""
        return self.external(vdi_uuid) or os.path.join(self.root, vdi_uuid + ".img")

    def create(self, vdi_uuid: str, size: int) -> None:
        """A sparse file of ``size`` bytes."""
        if self.external(vdi_uuid):
            return  # the LUN's file exists already and belongs to its target
        with open(self.path(vdi_uuid), "wb") as fh:
            fh.truncate(size)

    def delete(self, vdi_uuid: str) -> None:
        """Remove a VDI's file (never an external one)."""
        if self.external(vdi_uuid):
            return
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.path(vdi_uuid))

    def resize(self, vdi_uuid: str, size: int) -> None:
        """Grow (or create) the file."""
        with open(self.path(vdi_uuid), "ab") as fh:
            fh.truncate(size)

    def copy(self, src_uuid: str, dst_uuid: str) -> None:
        """Sparse copy: only data extents are read and written."""
        src, dst = self.path(src_uuid), self.path(dst_uuid)
        size = os.path.getsize(src) if os.path.exists(src) else 0
        with open(dst, "wb") as out:
            out.truncate(size)
            if not size:
                return
            with open(src, "rb") as inp:
                for offset, length in extents(inp, size):
                    inp.seek(offset)
                    out.seek(offset)
                    remaining = length
                    while remaining:
                        chunk = inp.read(min(remaining, 1 << 20))
                        if not chunk:
                            break
                        out.write(chunk)
                        remaining -= len(chunk)

    def used(self, vdi_uuid: str) -> int:
        """Bytes actually allocated."""
        try:
            return os.stat(self.path(vdi_uuid)).st_blocks * 512
        except FileNotFoundError:
            return 0


def extents(fh: BinaryIO, size: int) -> Iterator[tuple[int, int]]:
    """(offset, length) of the data regions of a sparse file."""
    fd = fh.fileno()
    pos = 0
    while pos < size:
        try:
            start = os.lseek(fd, pos, os.SEEK_DATA)
        except OSError:
            return
        end = os.lseek(fd, start, os.SEEK_HOLE)
        yield start, min(end, size) - start
        pos = end


# -- VHD -------------------------------------------------------------------------------
def _checksum(data: bytes) -> int:
    return (~sum(data)) & 0xFFFFFFFF


def _geometry(size: int) -> tuple[int, int, int]:
    sectors = min(size // SECTOR, 65535 * 16 * 255)
    if sectors >= 65535 * 16 * 63:
        spt, heads = 255, 16
        cth = sectors // spt
    else:
        spt = 17
        cth = sectors // spt
        heads = max((cth + 1023) // 1024, 4)
        if cth >= heads * 1024 or heads > 16:
            spt, heads = 31, 16
            cth = sectors // spt
        if cth >= heads * 1024:
            spt, heads = 63, 16
            cth = sectors // spt
    return cth // heads, heads, spt


def footer(size: int, disk_type: int, data_offset: int) -> bytes:
    """A 512-byte VHD footer (disk_type 2 fixed, 3 dynamic)."""
    cyl, heads, spt = _geometry(size)
    fields = struct.pack(
        ">8sIIQI4sI4sQQHBBII16sB", b"conectix", 2, 0x00010000, data_offset,
        int(time.time()) - VHD_EPOCH, b"vsim", 0x00010000, b"Wi2k", size, size,
        cyl, heads, spt, disk_type, 0, _uuid.uuid4().bytes, 0)
    fields = fields.ljust(SECTOR, b"\0")
    csum = _checksum(fields)
    return fields[:64] + struct.pack(">I", csum) + fields[68:]


def vhd_stream(path: str) -> Iterator[bytes]:
    """A dynamic VHD of the raw file at ``path``, block by block."""
    size = os.path.getsize(path)
    blocks = (size + BLOCK - 1) // BLOCK
    bat_bytes = ((blocks * 4 + SECTOR - 1) // SECTOR) * SECTOR
    with open(path, "rb") as fh:
        present = set()
        for offset, length in extents(fh, size):
            present.update(range(offset // BLOCK, (offset + length - 1) // BLOCK + 1))
        data_blocks: list[int] = []
        for b in sorted(present):
            fh.seek(b * BLOCK)
            if fh.read(BLOCK).strip(b"\0"):
                data_blocks.append(b)
        foot = footer(size, 3, SECTOR)
        yield foot
        header = struct.pack(">8sQQIIII16sII", b"cxsparse", 0xFFFFFFFFFFFFFFFF,
                             SECTOR + 1024, 0x00010000, blocks, BLOCK, 0, b"\0" * 16, 0, 0)
        header = header.ljust(1024, b"\0")
        header = header[:36] + struct.pack(">I", _checksum(header)) + header[40:]
        yield header
        first = (SECTOR + 1024 + bat_bytes) // SECTOR
        bat = [0xFFFFFFFF] * blocks
        for i, b in enumerate(data_blocks):
            bat[b] = first + i * (1 + BLOCK // SECTOR)
        yield struct.pack(f">{blocks}I", *bat).ljust(bat_bytes, b"\xff")
        for b in data_blocks:
            fh.seek(b * BLOCK)
            chunk = fh.read(BLOCK).ljust(BLOCK, b"\0")
            yield b"\xff" * SECTOR + chunk
        yield foot


def vhd_import(data: bytes, out: BinaryIO, limit: int) -> int:
    """Write the disk image inside a fixed or dynamic VHD to ``out``; returns its size."""
    if len(data) < SECTOR:
        raise ValueError("VHD too short")
    foot = data[-SECTOR:] if data[-SECTOR:][:8] == b"conectix" else data[:SECTOR]
    if foot[:8] != b"conectix":
        raise ValueError("no VHD footer")
    size = struct.unpack(">Q", foot[48:56])[0]
    disk_type = struct.unpack(">I", foot[60:64])[0]
    if size > limit:
        raise ValueError("VHD larger than the VDI")
    if disk_type == 2:
        out.write(data[:size])
        return size
    if disk_type != 3:
        raise ValueError("differencing VHDs are not supported")
    hdr_off = struct.unpack(">Q", foot[16:24])[0]
    hdr = data[hdr_off:hdr_off + 1024]
    bat_off = struct.unpack(">Q", hdr[16:24])[0]
    entries = struct.unpack(">I", hdr[28:32])[0]
    block = struct.unpack(">I", hdr[32:36])[0]
    bitmap = ((block // SECTOR // 8 + SECTOR - 1) // SECTOR) * SECTOR
    bat = struct.unpack(f">{entries}I", data[bat_off:bat_off + 4 * entries])
    for i, sector in enumerate(bat):
        if sector == 0xFFFFFFFF:
            continue
        start = sector * SECTOR + bitmap
        chunk = data[start:start + block][: max(0, size - i * block)]
        out.seek(i * block)
        out.write(chunk)
    return size
