"""ipva.bin: header round trip, and verify refuses every kind of damage."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
from click.testing import CliRunner

from appliance.services.update.image import ImageVerifier
from firmware import ipvabin
from tools.cli import main

PAYLOAD = bytes(range(256)) * 64


def test_header_round_trip() -> None:
    raw = ipvabin.build_header("16r1sr1", 1601001, PAYLOAD)
    assert len(raw) == ipvabin.HEADER_SIZE
    info = ipvabin.parse_header(raw)
    assert info == ipvabin.FirmwareInfo(
        "16r1sr1", 1601001, len(PAYLOAD), hashlib.sha256(PAYLOAD).hexdigest()
    )
    # and rebuilding from the parsed fields gives the same bytes
    fields = ipvabin.Header.parse(raw).fields.value
    assert ipvabin.Header.build({"fields": {"value": fields}}).ljust(4096, b"\0") == raw


def test_offsets_the_bootcode_reads() -> None:
    """/init reads these with head/od/dd: keep them where the shell script expects them."""
    raw = ipvabin.pack(PAYLOAD, "16r1sr1", 7)
    assert raw[:7] == b"IPVABIN"
    assert int.from_bytes(raw[32:40], "little") == len(PAYLOAD)
    assert raw[48:112].decode() == hashlib.sha256(PAYLOAD).hexdigest()
    assert raw[4096:] == PAYLOAD


def test_refuses_a_version_the_box_would_not_show() -> None:
    with pytest.raises(ValueError, match="innovaphone version"):
        ipvabin.build_header("16.1.1", 1, PAYLOAD)


@pytest.fixture
def firmware(tmp_path: Path) -> Path:
    path = tmp_path / "ipva.bin"
    path.write_bytes(ipvabin.pack(PAYLOAD, "16r1sr1", 1601001))
    return path


def test_verify_accepts_intact(firmware: Path) -> None:
    assert ipvabin.verify(firmware).version == "16r1sr1"


@pytest.mark.parametrize("offset", [4096, 4096 + len(PAYLOAD) // 2, 4096 + len(PAYLOAD) - 1])
def test_verify_rejects_flipped_payload_byte(firmware: Path, offset: int) -> None:
    data = bytearray(firmware.read_bytes())
    data[offset] ^= 0x01
    firmware.write_bytes(bytes(data))
    with pytest.raises(ipvabin.ChecksumError, match="checksum wrong! Loading failed"):
        ipvabin.verify(firmware)


@pytest.mark.parametrize("offset", [0, 12, 20, 33, 60, 113])
def test_verify_rejects_damaged_header(firmware: Path, offset: int) -> None:
    data = bytearray(firmware.read_bytes())
    data[offset] ^= 0x01
    firmware.write_bytes(bytes(data))
    with pytest.raises(ipvabin.FirmwareError):
        ipvabin.verify(firmware)


@pytest.mark.parametrize("keep", [0, 100, 4096, 4096 + 1000, 4096 + len(PAYLOAD) - 1])
def test_verify_rejects_truncated(firmware: Path, keep: int) -> None:
    firmware.write_bytes(firmware.read_bytes()[:keep])
    with pytest.raises(ipvabin.FirmwareError):
        ipvabin.verify(firmware)


def test_verify_rejects_trailing_data(firmware: Path) -> None:
    firmware.write_bytes(firmware.read_bytes() + b"x")
    with pytest.raises(ipvabin.FirmwareError, match="trailing data after"):
        ipvabin.verify(firmware)


def test_cli_verify_and_info(firmware: Path) -> None:
    runner = CliRunner()
    ok = runner.invoke(main, ["fw", "verify", str(firmware)])
    assert ok.exit_code == 0, ok.output
    assert "checksum ok" in ok.output and "16r1sr1" in ok.output
    info = runner.invoke(main, ["fw", "info", str(firmware)])
    assert "build:    1601001" in info.output
    data = bytearray(firmware.read_bytes())
    data[-1] ^= 0xFF
    firmware.write_bytes(bytes(data))
    bad = runner.invoke(main, ["fw", "verify", str(firmware)])
    assert bad.exit_code == 1
    assert "checksum wrong!" in bad.output


# --- the streaming check the box uses for uploads and downloads ---------------------------


@pytest.mark.parametrize("chunk", [1, 7, 4095, 4096, 4097, 65536])
def test_stream_verifier_matches_the_file_check(firmware: Path, chunk: int) -> None:
    data = firmware.read_bytes()
    check = ImageVerifier(source="upload")
    for i in range(0, len(data), chunk):
        check.feed(data[i : i + chunk])
    assert check.finish() == ipvabin.verify(firmware)


def test_stream_verifier_refuses_a_foreign_file_at_once() -> None:
    check = ImageVerifier(source="upload")
    with pytest.raises(ipvabin.NotFirmwareError, match="upload: not an IPVA firmware"):
        check.feed(b"PK\x03\x04 a zip file, not firmware")


def test_stream_verifier_refuses_oversize_from_the_header(firmware: Path) -> None:
    data = firmware.read_bytes()
    check = ImageVerifier(source="upload", max_size=len(data) - 1)
    with pytest.raises(ipvabin.FirmwareError, match="more than the .* a firmware slot holds"):
        check.feed(data[:4096])


def test_stream_verifier_truncated_and_damaged(firmware: Path) -> None:
    data = firmware.read_bytes()
    short = ImageVerifier()
    short.feed(data[:-1])
    with pytest.raises(ipvabin.TruncatedFirmwareError, match="truncated"):
        short.finish()
    headless = ImageVerifier()
    headless.feed(data[:100])
    with pytest.raises(ipvabin.TruncatedFirmwareError, match="too short for a header"):
        headless.finish()
    bad = ImageVerifier()
    bad.feed(data[:-1] + bytes([data[-1] ^ 1]))
    with pytest.raises(ipvabin.ChecksumError, match="checksum wrong! Loading failed"):
        bad.finish()
