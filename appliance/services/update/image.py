"""IPVA.BIN — the firmware image: one header block, then the payload (a squashfs).

Declared here, in the runtime, because the box itself checks every image it is given
(upload, update server) before it touches the boot disk; the builder (firmware/ipvabin.py)
writes images with these same declarations.

The same file sits on the boot disk's FAT partition (as `IPVA.BIN`) and is what users get
as `ipva.bin` for updates. The bootcode (busybox sh, firmware/bootcode/init) checks it
before mounting the payload, so the fields it reads are at fixed offsets and the digest is
ASCII hex (no parsing needed in sh):

    offset size field
    0      8    magic            b"IPVABIN\\x1a"
    8      2    header_version   1 (u16 le)
    10     2    flags            0 (reserved)
    12     4    build            firmware build number (u32 le), e.g. 1601001
    16     16   version          innovaphone version, ASCII, NUL padded, e.g. "16r1sr1"
    32     8    payload_length   bytes of payload (u64 le)   — sh: od -An -t u8 -j 32 -N 8
    40     8    payload_offset   4096 (u64 le)
    48     64   payload_sha256   lower-case hex of the payload's SHA-256 — sh: dd skip=48
    112    4    header_crc32     zlib CRC-32 of bytes 0..111 (u32 le)
    116    …    zero up to 4096

A file shorter than offset + length is truncated; a wrong digest is the box's
"checksum wrong!" case.
"""

from __future__ import annotations

import hashlib
import zlib
from dataclasses import dataclass

from construct import (
    Checksum,
    Const,
    ConstructError,
    Int16ul,
    Int32ul,
    Int64ul,
    PaddedString,
    RawCopy,
    Struct,
    this,
)

from appliance.version import FirmwareVersion

MAGIC = b"IPVABIN\x1a"
HEADER_SIZE = 4096
IMAGE_NAME_83 = "IPVA    BIN"  # how the box names the file in its messages (FAT 8.3 form)

HeaderFields = Struct(
    "magic" / Const(MAGIC),
    "header_version" / Const(1, Int16ul),
    "flags" / Int16ul,
    "build" / Int32ul,
    "version" / PaddedString(16, "ascii"),
    "payload_length" / Int64ul,
    "payload_offset" / Const(HEADER_SIZE, Int64ul),
    "payload_sha256" / PaddedString(64, "ascii"),
)
Header = Struct(
    "fields" / RawCopy(HeaderFields),
    "header_crc32" / Checksum(Int32ul, lambda data: zlib.crc32(data), this.fields.data),
)


class FirmwareError(Exception):
    """ipva.bin is not usable; the message says why and what to do."""


class NotFirmwareError(FirmwareError):
    pass


class TruncatedFirmwareError(FirmwareError):
    pass


class ChecksumError(FirmwareError):
    pass


@dataclass(frozen=True)
class FirmwareInfo:
    version: str
    build: int
    payload_length: int
    payload_sha256: str

    @property
    def total_size(self) -> int:
        return HEADER_SIZE + self.payload_length


def build_header(version: str, build: int, payload: bytes) -> bytes:
    FirmwareVersion.parse(version)  # refuse versions the box would not show
    raw = Header.build(
        {
            "fields": {
                "value": {
                    "flags": 0,
                    "build": build,
                    "version": version,
                    "payload_length": len(payload),
                    "payload_sha256": hashlib.sha256(payload).hexdigest(),
                }
            }
        }
    )
    return raw.ljust(HEADER_SIZE, b"\0")


def parse_header(block: bytes, *, source: str = "ipva.bin") -> FirmwareInfo:
    if len(block) < Header.sizeof():
        raise TruncatedFirmwareError(f"{source}: {len(block)} bytes, too short for a header")
    if block[: len(MAGIC)] != MAGIC:
        raise NotFirmwareError(f"{source}: not an IPVA firmware image (no IPVABIN magic)")
    try:
        h = Header.parse(block[: Header.sizeof()])
    except ConstructError as exc:
        raise NotFirmwareError(f"{source}: damaged header: {exc}") from exc
    v = h.fields.value
    return FirmwareInfo(v.version, v.build, v.payload_length, v.payload_sha256)


class ImageVerifier:
    """Checks an image while it streams by (an upload, a download): feed it the bytes in
    order, then `finish()`. Only the header and a running SHA-256 are kept, so an image is
    never held in RAM; a wrong magic or a file longer than its header says (or than
    `max_size`) is refused as soon as it shows."""

    def __init__(self, *, source: str = "ipva.bin", max_size: int | None = None) -> None:
        self.source = source
        self.max_size = max_size
        self.info: FirmwareInfo | None = None
        self.received = 0
        self._head = bytearray()
        self._sha = hashlib.sha256()

    def feed(self, chunk: bytes) -> None:
        if self.info is None:
            need = HEADER_SIZE - len(self._head)
            self._head += chunk[:need]
            if len(self._head) >= len(MAGIC) and self._head[: len(MAGIC)] != MAGIC:
                raise NotFirmwareError(
                    f"{self.source}: not an IPVA firmware image (no IPVABIN magic)"
                )
            chunk = chunk[need:] if len(self._head) == HEADER_SIZE else b""
            if len(self._head) == HEADER_SIZE:
                self.info = parse_header(bytes(self._head), source=self.source)
                if self.max_size is not None and self.info.total_size > self.max_size:
                    raise FirmwareError(
                        f"{self.source}: {self.info.total_size} bytes, more than the "
                        f"{self.max_size} a firmware slot holds"
                    )
            self.received = len(self._head)
        if not chunk:
            return
        assert self.info is not None
        self.received += len(chunk)
        if self.received > self.info.total_size:
            raise FirmwareError(
                f"{self.source}: trailing data after the {self.info.total_size} bytes its "
                "header says: not an unmodified ipva.bin"
            )
        self._sha.update(chunk)

    def finish(self) -> FirmwareInfo:
        """The image's identity once every byte checked out; a FirmwareError otherwise."""
        if self.info is None:
            raise TruncatedFirmwareError(
                f"{self.source}: {self.received} bytes, too short for a header"
            )
        if self.received < self.info.total_size:
            raise TruncatedFirmwareError(
                f"{self.source}: truncated: {self.received} bytes, header says "
                f"{self.info.total_size}; download ipva.bin again"
            )
        got = self._sha.hexdigest()
        if got != self.info.payload_sha256:
            raise ChecksumError(
                f"checksum wrong! Loading failed for image={IMAGE_NAME_83} ({self.source}: "
                f"payload SHA-256 {got[:16]}…, header says {self.info.payload_sha256[:16]}…)"
            )
        return self.info
