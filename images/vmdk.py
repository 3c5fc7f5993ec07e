"""VMDK sparse extents: the streamOptimized writer and reader, declared once with construct.

Spec: VMware "Virtual Disk Format 5.0", sections "Hosted Sparse Extent Header" and
"Stream-Optimized Compressed Sparse Extents". We write what VMware's own tools write, because
ESXi has rejected qemu-img's streamOptimized output before:

    sector 0        SparseExtentHeader, version 3, flags NL-detect|compressed|markers,
                    gdOffset = GD_AT_END (the real one is in the footer)
    sector 1…       the text descriptor (createType="streamOptimized", ddb.adapterType)
    overHead        grains: GrainMarker {lba, size, zlib data} padded to a sector; all-zero
                    grains are left out (GT entry 0)
                    after the grains of each grain table: MetadataMarker(GT) + the table;
                    an all-zero table is left out (GD entry 0)
    …               MetadataMarker(GD) + grain directory
                    MetadataMarker(FOOTER) + a copy of the header with the real gdOffset
                    MetadataMarker(EOS)

The same declarations read the extent back (`StreamOptimizedReader`, `walk_stream`) and
patch qemu-img's monolithicSparse descriptors (`set_descriptor_cid`).
"""

from __future__ import annotations

import hashlib
import math
import os
import re
import zlib
from collections.abc import Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from construct import (
    Bytes,
    Const,
    ConstructError,
    Enum,
    Flag,
    Int16ul,
    Int32ul,
    Int64ul,
    Padding,
    Struct,
    this,
)

SECTOR = 512
GRAIN_SECTORS = 128  # 64 KiB grains, VMware's default
GRAIN_BYTES = GRAIN_SECTORS * SECTOR
GTES_PER_GT = 512  # one grain table covers 32 MiB
GT_SECTORS = GTES_PER_GT * 4 // SECTOR
GD_AT_END = 0xFFFF_FFFF_FFFF_FFFF
OVERHEAD_SECTORS = 128  # header + descriptor area, grain aligned as VMware lays it out
DESCRIPTOR_SECTORS = 20  # room VMware reserves for the embedded descriptor

FLAG_NL_DETECT = 1 << 0
FLAG_RGD = 1 << 1
FLAG_COMPRESSED = 1 << 16
FLAG_MARKERS = 1 << 17
STREAM_FLAGS = FLAG_NL_DETECT | FLAG_COMPRESSED | FLAG_MARKERS
COMPRESSION_DEFLATE = 1

SparseExtentHeader = Struct(
    "magic" / Const(b"KDMV"),
    "version" / Int32ul,
    "flags" / Int32ul,
    "capacity" / Int64ul,  # sectors
    "grain_size" / Int64ul,  # sectors
    "descriptor_offset" / Int64ul,
    "descriptor_size" / Int64ul,
    "num_gtes_per_gt" / Int32ul,
    "rgd_offset" / Int64ul,
    "gd_offset" / Int64ul,
    "overhead" / Int64ul,
    "unclean_shutdown" / Flag,
    # the newline-corruption detector: FTP in text mode would mangle these
    "single_end_line_char" / Const(b"\n"),
    "non_end_line_char" / Const(b" "),
    "double_end_line_chars" / Const(b"\r\n"),
    "compress_algorithm" / Int16ul,
    Padding(433),
)
assert SparseExtentHeader.sizeof() == SECTOR

MarkerType = Enum(Int32ul, EOS=0, GT=1, GD=2, FOOTER=3)

# a metadata marker fills one sector; size == 0 tells it apart from a grain marker
MetadataMarker = Struct(
    "num_sectors" / Int64ul,
    "size" / Const(0, Int32ul),
    "type" / MarkerType,
    Padding(496),
)
assert MetadataMarker.sizeof() == SECTOR

# a compressed grain: its first sector number in the disk, then the zlib stream
GrainMarker = Struct(
    "lba" / Int64ul,
    "size" / Int32ul,
    "data" / Bytes(this.size),
)
GRAIN_MARKER_HEAD = 12

GrainTable = Int32ul[GTES_PER_GT]


class VmdkError(ValueError):
    """A VMDK file does not have the structure we expect; says where."""


def _pad(data: bytes) -> bytes:
    return data + b"\0" * (-len(data) % SECTOR)


def ide_geometry(sectors: int) -> tuple[int, int, int]:
    """(cylinders, heads, sectors) as VMware computes it for IDE disks."""
    return min(sectors // (16 * 63), 16383), 16, 63


def make_descriptor(
    *,
    capacity_sectors: int,
    extent_name: str,
    cid: int,
    create_type: str = "streamOptimized",
    adapter_type: str = "ide",
    long_content_id: str = "",
) -> bytes:
    """The embedded text descriptor, in VMware's order and spelling."""
    cyl, heads, secs = ide_geometry(capacity_sectors)
    lines = [
        "# Disk DescriptorFile",
        "version=1",
        'encoding="UTF-8"',
        f"CID={cid:08x}",
        "parentCID=ffffffff",
        f'createType="{create_type}"',
        "",
        "# Extent description",
        f'RW {capacity_sectors} SPARSE "{extent_name}"',
        "",
        "# The Disk Data Base",
        "#DDB",
        "",
        f'ddb.adapterType = "{adapter_type}"',
        f'ddb.geometry.cylinders = "{cyl}"',
        f'ddb.geometry.heads = "{heads}"',
        f'ddb.geometry.sectors = "{secs}"',
        f'ddb.longContentID = "{long_content_id}"',
        'ddb.toolsInstallType = "0"',
        'ddb.toolsVersion = "0"',
        'ddb.virtualHWVersion = "4"',
    ]
    return ("\n".join(lines) + "\n").encode()


def parse_descriptor(text: bytes) -> dict[str, str]:
    """key → value of the descriptor's `key=value` / `key = "value"` lines, plus `extent`."""
    out: dict[str, str] = {}
    for raw in text.split(b"\0", 1)[0].decode("utf-8", "replace").splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith(("RW ", "RDONLY ", "NOACCESS ")):
            out["extent"] = line
            continue
        key, sep, value = line.partition("=")
        if not sep:
            raise VmdkError(f"descriptor: cannot parse line {raw!r}")
        out[key.strip()] = value.strip().strip('"')
    return out


def _header(capacity: int, gd_offset: int) -> bytes:
    return SparseExtentHeader.build(
        dict(
            version=3,
            flags=STREAM_FLAGS,
            capacity=capacity,
            grain_size=GRAIN_SECTORS,
            descriptor_offset=1,
            descriptor_size=DESCRIPTOR_SECTORS,
            num_gtes_per_gt=GTES_PER_GT,
            rgd_offset=0,
            gd_offset=gd_offset,
            overhead=OVERHEAD_SECTORS,
            unclean_shutdown=False,
            compress_algorithm=COMPRESSION_DEFLATE,
        )
    )


def _marker(kind: str, num_sectors: int) -> bytes:
    return MetadataMarker.build(dict(num_sectors=num_sectors, type=kind))


def _read_grains(src: BinaryIO, count: int) -> Iterator[bytes]:
    for _ in range(count):
        data = src.read(GRAIN_BYTES)
        # the last grain of an odd-sized disk is padded: readers expect whole grains
        yield data + b"\0" * (GRAIN_BYTES - len(data))


_ZERO_GRAIN = bytes(GRAIN_BYTES)


def _compress(level: int, grain: bytes) -> bytes | None:
    if grain == _ZERO_GRAIN:  # sparse: GT entry 0 reads as zeros
        return None
    return zlib.compress(grain, level)


@dataclass(frozen=True)
class StreamStats:
    capacity_sectors: int
    grains_written: int
    file_bytes: int


def make_stream_optimized(
    raw: Path,
    out: Path,
    *,
    capacity_bytes: int | None = None,
    adapter_type: str = "ide",
    level: int = 9,
    threads: int | None = None,
) -> StreamStats:
    """Write `raw` (a raw disk image) as a streamOptimized VMDK at `out`.

    capacity_bytes may exceed the raw size (rounded up to whole sectors); the rest reads as
    zeros. The CID and longContentID derive from the content so builds are reproducible.
    """
    raw_size = raw.stat().st_size
    capacity = math.ceil(max(capacity_bytes or 0, raw_size) / SECTOR)
    n_grains = math.ceil(capacity / GRAIN_SECTORS)
    n_gts = math.ceil(n_grains / GTES_PER_GT)
    gd = [0] * n_gts
    digest = hashlib.sha256()
    workers = threads or min(8, os.cpu_count() or 1)
    written = 0
    tmp = out.with_name(out.name + ".tmp")
    with raw.open("rb") as src, tmp.open("wb") as dst, ThreadPoolExecutor(workers) as pool:
        dst.write(b"\0" * OVERHEAD_SECTORS * SECTOR)  # header + descriptor come last
        pos = OVERHEAD_SECTORS
        for gt_index in range(n_gts):
            first = gt_index * GTES_PER_GT
            count = min(GTES_PER_GT, n_grains - first)
            grains = list(_read_grains(src, count))
            for g in grains:
                digest.update(g)
            # zlib releases the GIL: compress one grain table's grains in parallel
            compressed = pool.map(lambda g: _compress(level, g), grains)
            table = [0] * GTES_PER_GT
            for i, data in enumerate(compressed):
                if data is None:
                    continue
                lba = (first + i) * GRAIN_SECTORS
                blob = _pad(GrainMarker.build(dict(lba=lba, size=len(data), data=data)))
                table[i] = pos
                dst.write(blob)
                pos += len(blob) // SECTOR
                written += 1
            if any(table):
                dst.write(_marker("GT", GT_SECTORS))
                gd[gt_index] = pos + 1
                dst.write(GrainTable.build(table))
                pos += 1 + GT_SECTORS
        gd_bytes = _pad(Int32ul[n_gts].build(gd))
        dst.write(_marker("GD", len(gd_bytes) // SECTOR))
        gd_offset = pos + 1
        dst.write(gd_bytes)
        pos += 1 + len(gd_bytes) // SECTOR
        dst.write(_marker("FOOTER", 1))
        dst.write(_header(capacity, gd_offset))
        dst.write(_marker("EOS", 0))
        # now the head: the header says "GD at end", then the descriptor
        cid = int.from_bytes(digest.digest()[:4], "little")
        cid = cid or 1  # CID 0 is not used by VMware
        desc = make_descriptor(
            capacity_sectors=capacity,
            extent_name=out.name,
            cid=cid,
            adapter_type=adapter_type,
            long_content_id=digest.hexdigest()[:32],
        )
        if len(desc) > DESCRIPTOR_SECTORS * SECTOR:
            raise VmdkError(f"{out}: descriptor too long ({len(desc)} bytes)")
        dst.seek(0)
        dst.write(_header(capacity, GD_AT_END))
        dst.write(desc)
        file_bytes = dst.seek(0, os.SEEK_END)
    tmp.replace(out)
    return StreamStats(capacity, written, file_bytes)


# --- reading ---------------------------------------------------------------------------


def parse_header(data: bytes, where: str = "header") -> dict:
    try:
        parsed = SparseExtentHeader.parse(data)
    except ConstructError as exc:
        raise VmdkError(f"{where}: not a VMDK sparse extent header ({exc})") from None
    return {k: v for k, v in parsed.items() if not k.startswith("_")}


@dataclass(frozen=True)
class StreamEntry:
    """One item of a streamOptimized extent, in file order (sector numbers)."""

    offset: int
    kind: str  # "GRAIN", "GT", "GD", "FOOTER", "EOS"
    lba: int = 0
    size: int = 0


def walk_stream(fh: BinaryIO, overhead: int) -> Iterator[StreamEntry]:
    """Walk the markers from overHead to EOS, checking each; raise VmdkError on a bad one."""
    sector = overhead
    while True:
        fh.seek(sector * SECTOR)
        head = fh.read(SECTOR)
        if len(head) < SECTOR:
            raise VmdkError(f"sector {sector}: stream ends without an EOS marker")
        size = int.from_bytes(head[8:12], "little")
        if size:
            lba = int.from_bytes(head[:8], "little")
            yield StreamEntry(sector, "GRAIN", lba, size)
            sector += math.ceil((GRAIN_MARKER_HEAD + size) / SECTOR)
            continue
        try:
            m = MetadataMarker.parse(head)
        except ConstructError as exc:
            raise VmdkError(f"sector {sector}: bad metadata marker ({exc})") from None
        kind = str(m.type)
        if kind not in ("EOS", "GT", "GD", "FOOTER"):
            raise VmdkError(f"sector {sector}: unknown marker type {m.type}")
        yield StreamEntry(sector, kind, 0, m.num_sectors)
        if kind == "EOS":
            return
        sector += 1 + m.num_sectors


class StreamOptimizedReader:
    """Reads a streamOptimized (or any compressed, GD-at-end) sparse extent."""

    def __init__(self, fh: BinaryIO) -> None:
        self.fh = fh
        fh.seek(0)
        self.header = parse_header(fh.read(SECTOR))
        if self.header["version"] != 3 or not self.header["flags"] & FLAG_COMPRESSED:
            raise VmdkError(
                f"header: version {self.header['version']}, flags "
                f"{self.header['flags']:#x}: not a streamOptimized extent"
            )
        fh.seek(self.header["descriptor_offset"] * SECTOR)
        self.descriptor_bytes = fh.read(self.header["descriptor_size"] * SECTOR).split(b"\0")[0]
        self.descriptor = parse_descriptor(self.descriptor_bytes)
        self.footer = None
        gd_offset = self.header["gd_offset"]
        if gd_offset == GD_AT_END:
            # footer marker + footer + EOS marker are the last three sectors
            end = fh.seek(0, os.SEEK_END)
            fh.seek(end - 3 * SECTOR)
            marker = MetadataMarker.parse(fh.read(SECTOR))
            if str(marker.type) != "FOOTER":
                raise VmdkError(f"sector {end // SECTOR - 3}: expected FOOTER marker")
            self.footer = parse_header(fh.read(SECTOR), "footer")
            gd_offset = self.footer["gd_offset"]
        self.capacity = self.header["capacity"]
        self.grain_size = self.header["grain_size"]
        n_grains = math.ceil(self.capacity / self.grain_size)
        self.n_gts = math.ceil(n_grains / GTES_PER_GT)
        fh.seek(gd_offset * SECTOR)
        self.gd = list(Int32ul[self.n_gts].parse(fh.read(4 * self.n_gts)))
        self.gts: list[list[int] | None] = []
        for off in self.gd:
            if off:
                fh.seek(off * SECTOR)
                self.gts.append(list(GrainTable.parse(fh.read(GT_SECTORS * SECTOR))))
            else:
                self.gts.append(None)

    @property
    def size(self) -> int:
        return self.capacity * SECTOR

    def grain_offset(self, grain: int) -> int:
        gt = self.gts[grain // GTES_PER_GT]
        return gt[grain % GTES_PER_GT] if gt else 0

    def read_grain(self, grain: int) -> bytes:
        gbytes = self.grain_size * SECTOR
        off = self.grain_offset(grain)
        if not off:
            return b"\0" * gbytes
        self.fh.seek(off * SECTOR)
        head = self.fh.read(GRAIN_MARKER_HEAD)
        lba = int.from_bytes(head[:8], "little")
        size = int.from_bytes(head[8:12], "little")
        if lba != grain * self.grain_size:
            raise VmdkError(
                f"sector {off}: grain marker LBA {lba}, expected {grain * self.grain_size}"
            )
        data = zlib.decompress(self.fh.read(size))
        if len(data) != gbytes:
            raise VmdkError(f"sector {off}: grain inflates to {len(data)} bytes, not {gbytes}")
        return data

    def iter_chunks(self) -> Iterable[bytes]:
        """The whole virtual disk, one grain at a time (last one trimmed to capacity)."""
        n_grains = math.ceil(self.capacity / self.grain_size)
        for g in range(n_grains):
            data = self.read_grain(g)
            if g == n_grains - 1:
                data = data[: (self.capacity - g * self.grain_size) * SECTOR]
            yield data


def read_descriptor(path: Path) -> dict[str, str]:
    """The embedded descriptor of any hosted sparse VMDK (stream or monolithicSparse)."""
    with path.open("rb") as fh:
        hdr = parse_header(fh.read(SECTOR))
        fh.seek(hdr["descriptor_offset"] * SECTOR)
        return parse_descriptor(fh.read(hdr["descriptor_size"] * SECTOR))


_CID_RE = re.compile(rb"^CID=[0-9a-fA-F]{1,8}$", re.MULTILINE)


def descriptor_area(path: Path) -> bytes:
    """The raw embedded-descriptor sectors of a hosted sparse VMDK, NUL padding included."""
    with path.open("rb") as fh:
        hdr = parse_header(fh.read(SECTOR))
        if not hdr["descriptor_size"]:
            raise VmdkError(f"{path}: no embedded descriptor")
        fh.seek(hdr["descriptor_offset"] * SECTOR)
        return fh.read(hdr["descriptor_size"] * SECTOR)


def set_descriptor_cid(path: Path, cid: int, template: bytes | None = None) -> None:
    """Replace the CID in an embedded descriptor in place (qemu-img picks a random one).

    `template`: the descriptor area to write instead of the current one. qemu rewrites the
    CID on its first write to an image and, when the new random CID has fewer hex digits,
    leaves the old text's last bytes behind the string's NUL: passing the area as it was
    right after `qemu-img create` keeps those leftovers out of the file."""
    with path.open("r+b") as fh:
        hdr = parse_header(fh.read(SECTOR))
        if not hdr["descriptor_size"]:
            raise VmdkError(f"{path}: no embedded descriptor")
        fh.seek(hdr["descriptor_offset"] * SECTOR)
        text = fh.read(hdr["descriptor_size"] * SECTOR)
        if template is not None:
            if len(template) != len(text):
                raise VmdkError(
                    f"{path}: descriptor template is {len(template)} bytes, not {len(text)}"
                )
            text = template
        new, n = _CID_RE.subn(f"CID={cid:08x}".encode(), text, count=1)
        if n != 1:
            raise VmdkError(f"{path}: descriptor has no CID line")
        # qemu-img writes the CID unpadded: keep the descriptor area's size exactly
        if any(new[len(text) :]) or len(new) < len(text) and new[-1]:
            raise VmdkError(f"{path}: descriptor area too full to rewrite the CID")
        new = new[: len(text)] + b"\0" * (len(text) - len(new))
        fh.seek(hdr["descriptor_offset"] * SECTOR)
        fh.write(new)
