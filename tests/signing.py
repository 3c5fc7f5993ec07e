"""Signing keys for the tests, made when the tests start (never committed): the test key a
hosted box's keyring holds, a foreign key no box trusts, and the images they sign.

The four cases every install path is tested with (HTTP upload, UP0, UP1, the boot):
good, signed with a foreign key, unsigned, and tampered after signing (the header changed
and its CRC and digest made to fit, as a forger would)."""

from __future__ import annotations

import hashlib
import zlib
from pathlib import Path

from appliance.formats.ipvabin import HEADER_SIZE, SIGNED_SIZE
from appliance.formats.signify import SecretKey
from firmware import ipvabin

TEST_KEY = SecretKey.generate()
FOREIGN_KEY = SecretKey.generate()
TEST_KEY_NAME = "test"


def install_keyring(directory: Path, key: SecretKey = TEST_KEY, name: str = TEST_KEY_NAME) -> Path:
    """A hosted box's keyring (DIR/keyring/<name>.pub) holding `key`."""
    ring = directory / "keyring"
    ring.mkdir(parents=True, exist_ok=True)
    (ring / f"{name}.pub").write_text(key.public(name).to_text(f"ipva test key {name}"))
    return ring


def tampered(image: bytes, extra: bytes = b"evil") -> bytes:
    """`image` signed, then changed: payload appended to, the header's length, SHA-256 and
    CRC made to fit; the signature is the original's."""
    payload = image[HEADER_SIZE:] + extra
    head = bytearray(image[:HEADER_SIZE])
    head[32:40] = len(payload).to_bytes(8, "little")
    head[48:112] = hashlib.sha256(payload).hexdigest().encode()
    head[112:116] = zlib.crc32(bytes(head[:SIGNED_SIZE])).to_bytes(4, "little")
    return bytes(head) + payload


def signing_cases(version: str, build: int, payload: bytes) -> list[tuple[str, bytes, str]]:
    """(what, image, the reason the box gives) for the three images a box must refuse."""
    good = ipvabin.pack(payload, version, build, TEST_KEY)
    return [
        ("foreign key", ipvabin.pack(payload, version, build, FOREIGN_KEY),
         f"signed with key {FOREIGN_KEY.keynum.hex()}, which this box does not trust"),
        ("unsigned", ipvabin.pack(payload, version, build), "not signed: this box takes only"),
        ("tampered", tampered(good), "signature wrong: the image was changed after it was signed"),
    ]  # fmt: skip
