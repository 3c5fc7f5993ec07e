"""IPVA.BIN — the firmware image: one header block, then the payload (a squashfs).

The box checks every image it is given (upload, update server) before it touches the boot
disk, the bootcode checks a slot before it starts it, and the builder (firmware/ipvabin.py)
writes images: all with these declarations.

The same file sits on the boot disk's FAT partition (as `IPVA.BIN`) and is what users get
as `ipva.bin` for updates. The bootcode (busybox sh, firmware/bootcode/init) checks it
before mounting the payload, so the fields it reads are at fixed offsets and the digest and
signature are ASCII (no parsing needed in sh):

    offset size field
    0      8    magic            b"IPVABIN\\x1a"
    8      2    header_version   2 (u16 le); 1: an image from before signatures (unsigned)
    10     2    flags            0 (reserved)
    12     4    build            firmware build number (u32 le), e.g. 1601001
    16     16   version          innovaphone version, ASCII, NUL padded, e.g. "16r1sr1"
    32     8    payload_length   bytes of payload (u64 le)   — sh: od -An -t u8 -j 32 -N 8
    40     8    payload_offset   4096 (u64 le)
    48     64   payload_sha256   lower-case hex of the payload's SHA-256 — sh: dd skip=48
    112    4    header_crc32     zlib CRC-32 of bytes 0..111 (u32 le)
    116    12   zero
    128    128  signature        the base64 line of a signify signature (appliance/formats/
                                 signify.py) over bytes 0..111, NUL padded; all NUL: unsigned
    256    …    zero up to 4096

The signature covers the header's fields, and so the payload through its SHA-256 (RAUC
signs its manifest of hashes the same way): the bootcode checks it with
`signify-openbsd -V` on those 112 bytes, then the digest; a box checks it as soon as the
header has arrived, before the payload. Old bootcodes read only bytes 0..111 and still boot
a signed image.

A file shorter than offset + length is truncated; a wrong digest is the box's
"checksum wrong!" case.
"""

from __future__ import annotations

import dataclasses
import hashlib
from dataclasses import dataclass

from construct import (
    Const,
    ConstructError,
    Int16ul,
    Int32ul,
    Int64ul,
    OneOf,
    PaddedString,
    Padding,
    Struct,
)

from appliance.formats.crc import crc32_trailed
from appliance.formats.signify import Keyring, SecretKey, Signature, SignifyError
from appliance.version import FirmwareVersion

MAGIC = b"IPVABIN\x1a"
HEADER_SIZE = 4096
HEADER_VERSION = 2
SIGNED_SIZE = 112  # bytes 0..111: what the signature and the CRC cover
SIGNATURE_OFFSET = 128
IMAGE_NAME_83 = "IPVA    BIN"  # how the box names the file in its messages (FAT 8.3 form)
# the keyring entry (development.pub) of the key `ipva build` signs with when given none:
# its secret half is public (firmware/keys/), so its images are marked wherever they show
DEVELOPMENT_KEY = "development"

HeaderFields = Struct(
    "magic" / Const(MAGIC),
    "header_version" / OneOf(Int16ul, [1, HEADER_VERSION]),
    "flags" / Int16ul,
    "build" / Int32ul,
    "version" / PaddedString(16, "ascii"),
    "payload_length" / Int64ul,
    "payload_offset" / Const(HEADER_SIZE, Int64ul),
    "payload_sha256" / PaddedString(64, "ascii"),
)
Header = Struct(
    "checked" / crc32_trailed(HeaderFields),  # .body.value: the fields; .crc32: header_crc32
    Padding(SIGNATURE_OFFSET - SIGNED_SIZE - 4),
    "signature" / PaddedString(128, "ascii"),
)


class FirmwareError(Exception):
    """ipva.bin is not usable; the message says why and what to do."""


class NotFirmwareError(FirmwareError):
    pass


class TruncatedFirmwareError(FirmwareError):
    pass


class ChecksumError(FirmwareError):
    pass


class SignatureError(FirmwareError):
    """Unsigned, signed with a key the keyring lacks, or changed after it was signed."""


@dataclass(frozen=True)
class FirmwareInfo:
    """What a firmware image's header says, and what the keyring made of its signature."""

    version: str
    build: int
    payload_length: int
    payload_sha256: str
    key_id: str = ""  # the signing key's number (hex) from the signature; "": unsigned
    signer: str = ""  # the keyring's name for that key, once the signature checked out
    refused: str = ""  # why the keyring refused it, where that was checked and it failed

    @property
    def total_size(self) -> int:
        return HEADER_SIZE + self.payload_length

    @property
    def development(self) -> bool:
        return self.signer == DEVELOPMENT_KEY

    def signed_text(self) -> str:
        """How the box and `ipva fw` name the signature: `signed (release)`, `signed with
        the DEVELOPMENT key`, `signed by key 0123…`, `unsigned`."""
        if self.refused:
            return f"refused by the keyring: {self.refused}"
        if self.development:
            return "signed with the DEVELOPMENT key (public: anyone can sign for it)"
        if self.signer:
            return f"signed ({self.signer})"
        return f"signed by key {self.key_id}" if self.key_id else "unsigned"


def build_header(version: str, build: int, payload: bytes, key: SecretKey | None = None) -> bytes:
    """The header block for `payload`; signed with `key` (None: unsigned)."""
    FirmwareVersion.parse(version)  # refuse versions the box would not show
    fields = {
        "flags": 0,
        "header_version": HEADER_VERSION,
        "build": build,
        "version": version,
        "payload_length": len(payload),
        "payload_sha256": hashlib.sha256(payload).hexdigest(),
    }
    unsigned = Header.build({"checked": {"body": {"value": fields}}, "signature": ""})
    signature = key.sign(unsigned[:SIGNED_SIZE]).to_b64() if key else ""
    return sign_header(unsigned, signature).ljust(HEADER_SIZE, b"\0")


def sign_header(block: bytes, signature: str) -> bytes:
    """`block` (a header) with its signature field replaced by the base64 line `signature`."""
    h = Header.parse(block[: Header.sizeof()])
    h.signature = signature
    return Header.build(h) + block[Header.sizeof() :]


def signed_part(block: bytes) -> bytes:
    """The bytes of a header the signature covers."""
    return block[:SIGNED_SIZE]


def parse_header(block: bytes, *, source: str = "ipva.bin") -> FirmwareInfo:
    if len(block) < Header.sizeof():
        raise TruncatedFirmwareError(f"{source}: {len(block)} bytes, too short for a header")
    if block[: len(MAGIC)] != MAGIC:
        raise NotFirmwareError(f"{source}: not an IPVA firmware image (no IPVABIN magic)")
    try:
        h = Header.parse(block[: Header.sizeof()])
    except ConstructError as exc:
        raise NotFirmwareError(f"{source}: damaged header: {exc}") from exc
    v = h.checked.body.value
    key_id = _signature(h.signature, source).key_id if h.signature else ""
    return FirmwareInfo(v.version, v.build, v.payload_length, v.payload_sha256, key_id)


def _signature(line: str, source: str) -> Signature:
    try:
        return Signature.from_b64(line, f"{source}: signature")
    except SignifyError as e:
        raise SignatureError(str(e)) from e


def check_signature(block: bytes, info: FirmwareInfo, keyring: Keyring, *, source: str) -> str:
    """The keyring's name of the key that signed this header; SignatureError saying why
    the image is not to be trusted otherwise."""
    if not keyring.keys:
        raise SignatureError(
            f"{source}: refused: this box has no keyring to check signatures with (its boot "
            "disk is from before signed firmware); give it a boot disk of a current build"
        )
    if not info.key_id:
        raise SignatureError(
            f"{source}: not signed: this box takes only images signed with a key of its "
            f"keyring ({keyring.describe()}); sign it with `ipva fw sign`"
        )
    sig = _signature(Header.parse(block[: Header.sizeof()]).signature, source)
    key = keyring.find(sig.keynum)
    if key is None:
        raise SignatureError(
            f"{source}: signed with key {sig.key_id}, which this box does not trust "
            f"(its keyring: {keyring.describe()})"
        )
    if not key.verify(sig, signed_part(block)):
        raise SignatureError(
            f"{source}: signature wrong: the image was changed after it was signed "
            f"(key {key.name} {key.key_id})"
        )
    return key.name


class ImageVerifier:
    """Checks an image while it streams by (an upload, a download): feed it the bytes in
    order, then `finish()`. Only the header and a running SHA-256 are kept, so an image is
    never held in RAM; a wrong magic, a signature the keyring refuses, or a file longer than
    its header says (or than `max_size`) is refused as soon as it shows.

    `keyring`: the keys the image must be signed with; None checks the header and digest
    only (showing what a slot holds, `ipva fw verify` without a key)."""

    def __init__(
        self, *, keyring: Keyring | None, source: str = "ipva.bin", max_size: int | None = None
    ) -> None:
        self.source = source
        self.max_size = max_size
        self.keyring = keyring
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
                self.info = self._check_header(bytes(self._head))
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

    def _check_header(self, block: bytes) -> FirmwareInfo:
        info = parse_header(block, source=self.source)
        if self.max_size is not None and info.total_size > self.max_size:
            raise FirmwareError(
                f"{self.source}: {info.total_size} bytes, more than the "
                f"{self.max_size} a firmware slot holds"
            )
        if self.keyring is None:
            return info
        signer = check_signature(block, info, self.keyring, source=self.source)
        return dataclasses.replace(info, signer=signer)

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
