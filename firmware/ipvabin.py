"""ipva.bin files for the builder and `ipva fw`: the format itself is declared in the
runtime (appliance/services/update/image.py), which checks every image the box is given."""

from __future__ import annotations

from pathlib import Path

from appliance.services.update.image import (
    HEADER_SIZE,
    IMAGE_NAME_83,
    MAGIC,
    ChecksumError,
    FirmwareError,
    FirmwareInfo,
    Header,
    ImageVerifier,
    NotFirmwareError,
    TruncatedFirmwareError,
    build_header,
    parse_header,
)

__all__ = [
    "HEADER_SIZE", "IMAGE_NAME_83", "MAGIC", "ChecksumError", "FirmwareError", "FirmwareInfo",
    "Header", "NotFirmwareError", "TruncatedFirmwareError", "build_header", "parse_header",
    "pack", "read_info", "verify", "write_firmware",
]  # fmt: skip


def pack(payload: bytes, version: str, build: int) -> bytes:
    return build_header(version, build, payload) + payload


def write_firmware(path: Path, payload_path: Path, version: str, build: int) -> FirmwareInfo:
    payload = payload_path.read_bytes()
    path.write_bytes(pack(payload, version, build))
    return parse_header(path.read_bytes()[:HEADER_SIZE], source=str(path))


def read_info(path: Path) -> FirmwareInfo:
    with open(path, "rb") as f:
        return parse_header(f.read(HEADER_SIZE), source=str(path))


def verify(path: Path) -> FirmwareInfo:
    """Check header, length and digest; raise a FirmwareError saying what is wrong."""
    check = ImageVerifier(source=str(path))
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            check.feed(block)
    return check.finish()
