"""ipva.bin: header round trip, signatures (signify's format, checked against a keyring),
and verify refuses every kind of damage."""

from __future__ import annotations

import base64
import hashlib
import zlib
from pathlib import Path

import pytest
from click.testing import CliRunner

from appliance.formats.ipvabin import Header, ImageVerifier
from appliance.formats.signify import Keyring, SecretKey, Signature, SignifyError
from firmware import ipvabin
from tests.signing import FOREIGN_KEY, TEST_KEY, signing_cases, tampered
from tools.cli import main

RING = Keyring((TEST_KEY.public("test"),))

PAYLOAD = bytes(range(256)) * 64


def test_header_round_trip() -> None:
    raw = ipvabin.build_header("16r1sr1", 1601001, PAYLOAD)
    assert len(raw) == ipvabin.HEADER_SIZE
    info = ipvabin.parse_header(raw)
    assert info == ipvabin.FirmwareInfo(
        "16r1sr1", 1601001, len(PAYLOAD), hashlib.sha256(PAYLOAD).hexdigest()
    )
    # and rebuilding from the parsed fields gives the same bytes
    parsed = Header.parse(raw)
    assert Header.build(parsed).ljust(4096, b"\0") == raw
    signed = ipvabin.build_header("16r1sr1", 1601001, PAYLOAD, TEST_KEY)
    assert Header.build(Header.parse(signed)).ljust(4096, b"\0") == signed
    assert ipvabin.parse_header(signed).key_id == TEST_KEY.keynum.hex()
    assert signed[:112] == raw[:112]  # the signature is outside the signed fields


def test_an_image_from_before_signatures_reads_as_unsigned() -> None:
    """header_version 1 (no signature field): its header still shows, it is not trusted."""
    raw = bytearray(ipvabin.build_header("16r1sr1", 1601001, PAYLOAD))
    raw[8:10] = (1).to_bytes(2, "little")
    raw[112:116] = zlib.crc32(bytes(raw[:112])).to_bytes(4, "little")
    info = ipvabin.parse_header(bytes(raw))
    assert (info.version, info.key_id, info.signed_text()) == ("16r1sr1", "", "unsigned")


def test_offsets_the_bootcode_reads() -> None:
    """/init reads these with head/od/dd: keep them where the shell script expects them."""
    raw = ipvabin.pack(PAYLOAD, "16r1sr1", 7)
    assert raw[:7] == b"IPVABIN"
    assert int.from_bytes(raw[32:40], "little") == len(PAYLOAD)
    assert raw[48:112].decode() == hashlib.sha256(PAYLOAD).hexdigest()
    assert raw[4096:] == PAYLOAD
    signed = ipvabin.pack(PAYLOAD, "16r1sr1", 7, TEST_KEY)
    sig = signed[128:256].rstrip(b"\0").decode()  # the base64 line of a signify signature
    assert len(sig) == 100 and signed[256:4096] == bytes(3840)
    assert TEST_KEY.public().verify(
        Signature.from_b64(sig),
        signed[:112],
    )


def test_refuses_a_version_the_box_would_not_show() -> None:
    with pytest.raises(ValueError, match="innovaphone version"):
        ipvabin.build_header("16.1.1", 1, PAYLOAD)


@pytest.fixture
def firmware(tmp_path: Path) -> Path:
    path = tmp_path / "ipva.bin"
    path.write_bytes(ipvabin.pack(PAYLOAD, "16r1sr1", 1601001, TEST_KEY))
    return path


def test_verify_accepts_intact(firmware: Path) -> None:
    got = ipvabin.verify(firmware, RING)
    assert (got.version, got.signer, got.signed_text()) == ("16r1sr1", "test", "signed (test)")
    assert ipvabin.verify(firmware, None).signer == ""  # no keyring: no trust decision


SIGNING_CASES = signing_cases("16r1sr1", 1601001, PAYLOAD)


@pytest.mark.parametrize(
    ("what", "image", "reason"), SIGNING_CASES, ids=[c[0] for c in SIGNING_CASES]
)
def test_verify_refuses_what_the_keyring_did_not_sign(
    tmp_path: Path, what: str, image: bytes, reason: str
) -> None:
    path = tmp_path / "ipva.bin"
    path.write_bytes(image)
    with pytest.raises(ipvabin.SignatureError, match=reason.split(":")[0]) as e:
        ipvabin.verify(path, RING)
    assert reason in str(e.value)
    # the same image streamed: refused at its header, before any payload
    check = ImageVerifier(keyring=RING, source="upload")
    with pytest.raises(ipvabin.SignatureError):
        check.feed(image[:4096])


def test_a_signed_header_changed_anywhere_is_refused(firmware: Path) -> None:
    data = firmware.read_bytes()
    for offset in (12, 16, 32):  # build, version, length: CRC fixed as a forger would
        bad = bytearray(data)
        bad[offset] ^= 0x01
        bad[112:116] = zlib.crc32(bytes(bad[:112])).to_bytes(4, "little")
        firmware.write_bytes(bytes(bad))
        with pytest.raises(ipvabin.FirmwareError, match="signature wrong"):
            ipvabin.verify(firmware, RING)
    firmware.write_bytes(tampered(data))
    assert ipvabin.verify(firmware, None).payload_length == len(PAYLOAD) + 4  # well formed


def test_sign_resigns_and_refuses_a_damaged_image(firmware: Path, tmp_path: Path) -> None:
    key_file = tmp_path / "release.sec"
    key_file.write_text(FOREIGN_KEY.to_text("test release key"))
    out = tmp_path / "signed.bin"
    got = ipvabin.sign(firmware, ipvabin.load_signing_key(key_file), out)
    assert got.signer == "release" and got.key_id == FOREIGN_KEY.keynum.hex()
    assert out.read_bytes()[4096:] == firmware.read_bytes()[4096:]
    with pytest.raises(ipvabin.SignatureError, match="does not trust"):
        ipvabin.verify(out, RING)
    data = bytearray(firmware.read_bytes())
    data[-1] ^= 1
    firmware.write_bytes(bytes(data))
    with pytest.raises(ipvabin.ChecksumError):
        ipvabin.sign(firmware, ipvabin.load_signing_key(key_file), out)


def test_signing_keys_round_trip_and_bad_keys_say_why(tmp_path: Path) -> None:
    key = SecretKey.generate()
    assert SecretKey.parse(key.to_text("k")) == key
    pub = key.public("k")
    assert type(pub).parse(pub.to_text("k"), name="k") == pub
    with pytest.raises(SignifyError, match="not a signify file"):
        SecretKey.parse("hello\n")
    raw = bytearray(base64.b64decode(key.to_text("k").splitlines()[1]))
    raw[-1] ^= 1
    damaged = "untrusted comment: k\n" + base64.b64encode(bytes(raw)).decode()
    with pytest.raises(SignifyError, match="checksum wrong"):
        SecretKey.parse(damaged)
    raw = bytearray(base64.b64decode(key.to_text("k").splitlines()[1]))
    raw[4:8] = (16).to_bytes(4, "big")  # kdf rounds: a passphrase
    with_pass = "untrusted comment: k\n" + base64.b64encode(bytes(raw)).decode()
    with pytest.raises(SignifyError, match="passphrase"):
        SecretKey.parse(with_pass)
    (tmp_path / "development.sec").write_text(key.to_text("not the development key"))
    with pytest.raises(ipvabin.FirmwareError, match="rename the key files"):
        ipvabin.load_signing_key(tmp_path / "development.sec")


def test_the_development_key_is_marked(tmp_path: Path) -> None:
    key = ipvabin.load_signing_key(None)
    assert key.development and key.name == "development"
    path = tmp_path / "ipva.bin"
    path.write_bytes(ipvabin.pack(PAYLOAD, "16r1sr1", 1, key.secret))
    got = ipvabin.verify(path, ipvabin.development_keyring())
    assert got.development and "DEVELOPMENT key" in got.signed_text()


@pytest.mark.parametrize("offset", [4096, 4096 + len(PAYLOAD) // 2, 4096 + len(PAYLOAD) - 1])
def test_verify_rejects_flipped_payload_byte(firmware: Path, offset: int) -> None:
    data = bytearray(firmware.read_bytes())
    data[offset] ^= 0x01
    firmware.write_bytes(bytes(data))
    with pytest.raises(ipvabin.ChecksumError, match="checksum wrong! Loading failed"):
        ipvabin.verify(firmware, RING)


@pytest.mark.parametrize("offset", [0, 12, 20, 33, 60, 113])
def test_verify_rejects_damaged_header(firmware: Path, offset: int) -> None:
    data = bytearray(firmware.read_bytes())
    data[offset] ^= 0x01
    firmware.write_bytes(bytes(data))
    with pytest.raises(ipvabin.FirmwareError):
        ipvabin.verify(firmware, RING)


@pytest.mark.parametrize("keep", [0, 100, 4096, 4096 + 1000, 4096 + len(PAYLOAD) - 1])
def test_verify_rejects_truncated(firmware: Path, keep: int) -> None:
    firmware.write_bytes(firmware.read_bytes()[:keep])
    with pytest.raises(ipvabin.FirmwareError):
        ipvabin.verify(firmware, RING)


def test_verify_rejects_trailing_data(firmware: Path) -> None:
    firmware.write_bytes(firmware.read_bytes() + b"x")
    with pytest.raises(ipvabin.FirmwareError, match="trailing data after"):
        ipvabin.verify(firmware, RING)


def test_cli_verify_info_and_sign(firmware: Path, tmp_path: Path) -> None:
    runner = CliRunner()
    ring = tmp_path / "ring"
    ring.mkdir()
    (ring / "test.pub").write_text(TEST_KEY.public().to_text("test key"))
    ok = runner.invoke(main, ["fw", "verify", "--keyring", str(ring), str(firmware)])
    assert ok.exit_code == 0, ok.output
    assert "checksum ok, signature ok" in ok.output and "16r1sr1" in ok.output
    assert "signature: signed (test)" in ok.output
    # without --keyring: the development keyring, which did not sign it
    dev = runner.invoke(main, ["fw", "verify", str(firmware)])
    assert dev.exit_code == 1 and "which this box does not trust" in dev.output
    assert "development (" in dev.output
    info = runner.invoke(main, ["fw", "info", str(firmware)])
    assert "build:     1601001" in info.output
    assert f"signature: key {TEST_KEY.keynum.hex()}" in info.output
    # sign with the development key (no --key): marked as such by info and verify
    signed = runner.invoke(main, ["fw", "sign", str(firmware), "-o", str(tmp_path / "d.bin")])
    assert signed.exit_code == 0, signed.output
    assert "signed with the DEVELOPMENT key" in signed.output
    info = runner.invoke(main, ["fw", "info", str(tmp_path / "d.bin")])
    assert "the DEVELOPMENT key (public: anyone can sign with it)" in info.output
    data = bytearray(firmware.read_bytes())
    data[-1] ^= 0xFF
    firmware.write_bytes(bytes(data))
    bad = runner.invoke(main, ["fw", "verify", "--keyring", str(ring), str(firmware)])
    assert bad.exit_code == 1
    assert "checksum wrong!" in bad.output
    unsigned = tmp_path / "u.bin"
    unsigned.write_bytes(ipvabin.pack(PAYLOAD, "16r1sr1", 1))
    no_sig = runner.invoke(main, ["fw", "verify", "--keyring", str(ring), str(unsigned)])
    assert no_sig.exit_code == 1 and "not signed" in no_sig.output
    assert runner.invoke(main, ["fw", "verify", "--no-signature", str(unsigned)]).exit_code == 0


# --- the streaming check the box uses for uploads and downloads ---------------------------


@pytest.mark.parametrize("chunk", [1, 7, 4095, 4096, 4097, 65536])
def test_stream_verifier_matches_the_file_check(firmware: Path, chunk: int) -> None:
    data = firmware.read_bytes()
    check = ImageVerifier(keyring=RING, source="upload")
    for i in range(0, len(data), chunk):
        check.feed(data[i : i + chunk])
    assert check.finish() == ipvabin.verify(firmware, RING)


def test_stream_verifier_refuses_a_foreign_file_at_once() -> None:
    check = ImageVerifier(keyring=RING, source="upload")
    with pytest.raises(ipvabin.NotFirmwareError, match="upload: not an IPVA firmware"):
        check.feed(b"PK\x03\x04 a zip file, not firmware")


def test_stream_verifier_refuses_oversize_from_the_header(firmware: Path) -> None:
    data = firmware.read_bytes()
    check = ImageVerifier(keyring=RING, source="upload", max_size=len(data) - 1)
    with pytest.raises(ipvabin.FirmwareError, match="more than the .* a firmware slot holds"):
        check.feed(data[:4096])


def test_stream_verifier_truncated_and_damaged(firmware: Path) -> None:
    data = firmware.read_bytes()
    short = ImageVerifier(keyring=RING)
    short.feed(data[:-1])
    with pytest.raises(ipvabin.TruncatedFirmwareError, match="truncated"):
        short.finish()
    headless = ImageVerifier(keyring=RING)
    headless.feed(data[:100])
    with pytest.raises(ipvabin.TruncatedFirmwareError, match="too short for a header"):
        headless.finish()
    bad = ImageVerifier(keyring=RING)
    bad.feed(data[:-1] + bytes([data[-1] ^ 1]))
    with pytest.raises(ipvabin.ChecksumError, match="checksum wrong! Loading failed"):
        bad.finish()


def test_a_box_without_a_keyring_refuses_everything_saying_why(firmware: Path) -> None:
    with pytest.raises(ipvabin.SignatureError, match="no keyring to check signatures with"):
        ipvabin.verify(firmware, Keyring(()))


def test_the_signing_key_setting_round_trips_and_a_bad_key_stops_the_build(
    tmp_path: Path,
) -> None:
    from firmware.settings import BuildSettings

    settings = BuildSettings(signing_key=tmp_path / "release.sec")
    assert BuildSettings.from_json(settings.to_json()) == settings
    assert BuildSettings.from_json(BuildSettings().to_json()).signing_key is None
    (tmp_path / "release.sec").write_text("not a key\n")
    out = CliRunner().invoke(
        main, ["build", "--signing-key", str(tmp_path / "release.sec"), "--out", str(tmp_path)]
    )
    assert out.exit_code != 0 and "not a signify file" in out.output
    assert not (tmp_path / "ipva.bin").exists()


def test_run_hosted_gives_a_new_state_the_builds_keyring(tmp_path: Path) -> None:
    from tools.run_cmd import _hosted_keyring

    dist = tmp_path / "dist"
    (dist / "keyring").mkdir(parents=True)
    (dist / "keyring/development.pub").write_text(ipvabin.DEVELOPMENT_PUBLIC.read_text())
    _hosted_keyring(tmp_path / "state", dist)
    assert (tmp_path / "state/keyring/development.pub").read_text() == (
        ipvabin.DEVELOPMENT_PUBLIC.read_text()
    )
    # a state with its own keyring keeps it
    (tmp_path / "state/keyring/development.pub").unlink()
    (tmp_path / "state/keyring/mine.pub").write_text(TEST_KEY.public().to_text("mine"))
    _hosted_keyring(tmp_path / "state", dist)
    assert [p.name for p in (tmp_path / "state/keyring").iterdir()] == ["mine.pub"]
