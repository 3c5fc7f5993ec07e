"""VHDX (MS-VHDX v1.0): just enough of the format to make qemu-img's output reproducible.

qemu-img writes random GUIDs (FileWriteGuid, DataWriteGuid in both headers; the Page83
virtual disk id in the metadata region). We replace them with GUIDs derived from a seed and
fix the CRC-32C of each header. Layout:

    0 KiB     file type identifier "vhdxfile"
    64 KiB    header 1 (4 KiB, "head", CRC-32C over the 4 KiB with the checksum zeroed)
    128 KiB   header 2
    192 KiB   region table ("regi") → BAT and metadata regions
    metadata  "metadata" table; item Page83Data holds the virtual disk id (no checksum)
"""

from __future__ import annotations

import hashlib
import uuid
from pathlib import Path
from typing import BinaryIO

from construct import (
    Array,
    Bytes,
    Const,
    ConstructError,
    Int16ul,
    Int32ul,
    Int64ul,
    Padding,
    Struct,
    this,
)

KiB = 1024
HEADER_OFFSETS = (64 * KiB, 128 * KiB)
REGION_TABLE_OFFSET = 192 * KiB
METADATA_REGION = uuid.UUID("8B7CA206-4790-4B9A-B8FE-575F050F886E")
PAGE83_ITEM = uuid.UUID("BECA12AB-B2E6-4523-93EF-C309E000C746")


Header = Struct(
    "signature" / Const(b"head"),
    "checksum" / Int32ul,
    "sequence_number" / Int64ul,
    "file_write_guid" / Bytes(16),
    "data_write_guid" / Bytes(16),
    "log_guid" / Bytes(16),
    "log_version" / Int16ul,
    "version" / Int16ul,
    "log_length" / Int32ul,
    "log_offset" / Int64ul,
    "reserved" / Bytes(4016),
)
assert Header.sizeof() == 4 * KiB

RegionTable = Struct(
    "signature" / Const(b"regi"),
    "checksum" / Int32ul,
    "entry_count" / Int32ul,
    Padding(4),
    "entries"
    / Array(
        this.entry_count,
        Struct(
            "guid" / Bytes(16), "file_offset" / Int64ul, "length" / Int32ul, "required" / Int32ul
        ),
    ),
)

MetadataTable = Struct(
    "signature" / Const(b"metadata"),
    Padding(2),
    "entry_count" / Int16ul,
    Padding(20),
    "entries"
    / Array(
        this.entry_count,
        Struct(
            "item_id" / Bytes(16),
            "offset" / Int32ul,
            "length" / Int32ul,
            "flags" / Int32ul,
            Padding(4),
        ),
    ),
)


class VhdxError(ValueError):
    """A VHDX file does not have the structure we expect; says where."""


def _crc32c_table() -> list[int]:
    table = []
    for n in range(256):
        c = n
        for _ in range(8):
            c = (c >> 1) ^ 0x82F63B78 if c & 1 else c >> 1
        table.append(c)
    return table


_CRC32C = _crc32c_table()


def crc32c(data: bytes) -> int:
    """CRC-32C (Castagnoli), as VHDX uses for headers, region tables and log entries."""
    crc = 0xFFFFFFFF
    for b in data:
        crc = _CRC32C[(crc ^ b) & 0xFF] ^ (crc >> 8)
    return crc ^ 0xFFFFFFFF


def _guid(seed: str, what: str) -> bytes:
    # a version-4-shaped GUID from a hash, so the same seed gives the same file
    return uuid.UUID(
        bytes=hashlib.sha256(f"{seed}/{what}".encode()).digest()[:16], version=4
    ).bytes_le


def _read_at(fh: BinaryIO, offset: int, size: int) -> bytes:
    fh.seek(offset)
    return fh.read(size)


def read_headers(fh: BinaryIO) -> list[dict]:
    out = []
    for off in HEADER_OFFSETS:
        raw = _read_at(fh, off, Header.sizeof())
        try:
            h = Header.parse(raw)
        except ConstructError as exc:
            raise VhdxError(f"offset {off:#x}: bad VHDX header ({exc})") from None
        if crc32c(raw[:4] + b"\0" * 4 + raw[8:]) != h.checksum:
            raise VhdxError(f"offset {off:#x}: header checksum mismatch")
        out.append({k: v for k, v in h.items() if not k.startswith("_")})
    return out


def _metadata_offset(fh: BinaryIO) -> int:
    table = RegionTable.parse(_read_at(fh, REGION_TABLE_OFFSET, 64 * KiB))
    for e in table.entries:
        if uuid.UUID(bytes_le=e.guid) == METADATA_REGION:
            return e.file_offset
    raise VhdxError(f"offset {REGION_TABLE_OFFSET:#x}: region table has no metadata region")


def read_disk_id(fh: BinaryIO) -> uuid.UUID:
    meta = _metadata_offset(fh)
    table = MetadataTable.parse(_read_at(fh, meta, 64 * KiB))
    for e in table.entries:
        if uuid.UUID(bytes_le=e.item_id) == PAGE83_ITEM:
            return uuid.UUID(bytes_le=_read_at(fh, meta + e.offset, 16))
    raise VhdxError(f"offset {meta:#x}: metadata has no Page83Data item")


def make_reproducible(path: Path, seed: str) -> None:
    """Replace qemu-img's random GUIDs by ones derived from `seed`, in place."""
    with path.open("r+b") as fh:
        if _read_at(fh, 0, 8) != b"vhdxfile":
            raise VhdxError(f"{path}: not a VHDX file")
        headers = [dict(Header.parse(_read_at(fh, off, Header.sizeof()))) for off in HEADER_OFFSETS]
        # qemu-img starts the sequence at a random number; keep the order (the higher one
        # is the current header), drop the randomness
        base = min(h["sequence_number"] for h in headers)
        current = max(headers, key=lambda h: h["sequence_number"])
        if current["log_guid"] != bytes(16):
            raise VhdxError(f"{path}: log not empty (LogGuid set); refusing to rewrite it")
        # with LogGuid zero the log is empty by definition, but qemu-img leaves its old
        # (randomly tagged) entries in the log region: clear them
        fh.seek(current["log_offset"])
        fh.write(bytes(current["log_length"]))
        for off, h in zip(HEADER_OFFSETS, headers, strict=True):
            h["sequence_number"] = 1 + h["sequence_number"] - base
            h["file_write_guid"] = _guid(seed, "file-write")
            h["data_write_guid"] = _guid(seed, "data-write")
            h["checksum"] = 0
            body = Header.build(h)
            h["checksum"] = crc32c(body)
            fh.seek(off)
            fh.write(Header.build(h))
        meta = _metadata_offset(fh)
        table = MetadataTable.parse(_read_at(fh, meta, 64 * KiB))
        for e in table.entries:
            if uuid.UUID(bytes_le=e.item_id) == PAGE83_ITEM:
                fh.seek(meta + e.offset)
                fh.write(_guid(seed, "page83"))
                break
        else:
            raise VhdxError(f"{path}: metadata has no Page83Data item")
