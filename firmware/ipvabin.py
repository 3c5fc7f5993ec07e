"""ipva.bin files for the builder and `ipva fw`: packing, signing, checking. The format is
declared in appliance/formats/ipvabin.py (the box checks every image it is given with it),
the keys in appliance/formats/signify.py.

Signing keys: `ipva build --signing-key FILE` / `ipva fw sign --key FILE` take a signify
secret key without passphrase (`signify-openbsd -G -n -p NAME.pub -s NAME.sec`). Without
one, images are signed with the development key in firmware/keys/: its secret half is in
this repository on purpose, so every checkout builds the same bytes and any development box
takes any development build; it protects nothing, and the box, `ipva fw info` and the boot
trace say so wherever such an image shows.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from appliance.formats.ipvabin import (
    DEVELOPMENT_KEY,
    HEADER_SIZE,
    IMAGE_NAME_83,
    MAGIC,
    ChecksumError,
    FirmwareError,
    FirmwareInfo,
    ImageVerifier,
    NotFirmwareError,
    SignatureError,
    TruncatedFirmwareError,
    build_header,
    parse_header,
)
from appliance.formats.signify import Keyring, PublicKey, SecretKey, SignifyError

__all__ = [
    "DEVELOPMENT_KEY", "HEADER_SIZE", "IMAGE_NAME_83", "MAGIC", "ChecksumError",
    "FirmwareError", "FirmwareInfo", "NotFirmwareError", "SignatureError",
    "TruncatedFirmwareError", "build_header", "parse_header", "pack", "read_info", "verify",
    "write_firmware", "sign", "SigningKey", "load_signing_key", "development_keyring",
    "load_keyring",
]  # fmt: skip

KEYS_DIR = Path(__file__).parent / "keys"
DEVELOPMENT_SECRET = KEYS_DIR / f"{DEVELOPMENT_KEY}.sec"
DEVELOPMENT_PUBLIC = KEYS_DIR / f"{DEVELOPMENT_KEY}.pub"


@dataclass(frozen=True)
class SigningKey:
    """A secret key and the name its public half has in a box's keyring."""

    secret: SecretKey
    name: str

    def public(self) -> PublicKey:
        return self.secret.public(self.name)

    @property
    def development(self) -> bool:
        return self.name == DEVELOPMENT_KEY


def load_signing_key(path: Path | None) -> SigningKey:
    """The key in `path` (a signify secret key), named after its file's stem in the keyring;
    None: the development key. FirmwareError saying what to do if it cannot be used."""
    if path is None:
        path = DEVELOPMENT_SECRET
    try:
        secret = SecretKey.parse(path.read_text(), what=str(path))
    except (OSError, UnicodeDecodeError, SignifyError) as e:
        raise FirmwareError(f"signing key {path}: {e}") from e
    dev = SecretKey.parse(DEVELOPMENT_SECRET.read_text())
    if path.stem == DEVELOPMENT_KEY and secret.keynum != dev.keynum:
        raise FirmwareError(
            f"signing key {path}: the name {DEVELOPMENT_KEY!r} marks the public development "
            "key on the box; rename the key files"
        )
    name = DEVELOPMENT_KEY if secret.keynum == dev.keynum else path.stem
    return SigningKey(secret, name)


def development_keyring() -> Keyring:
    return Keyring.load(KEYS_DIR)


def load_keyring(path: Path) -> Keyring:
    """A keyring from a directory of `*.pub` files or one public key file."""
    try:
        if path.is_dir():
            ring = Keyring.load(path)
        else:
            ring = Keyring((PublicKey.parse(path.read_text(), name=path.stem, what=str(path)),))
    except (OSError, UnicodeDecodeError, SignifyError) as e:
        raise FirmwareError(f"keyring {path}: {e}") from e
    if not ring.keys:
        raise FirmwareError(f"keyring {path}: no *.pub files in it")
    return ring


def pack(payload: bytes, version: str, build: int, key: SecretKey | None = None) -> bytes:
    """An image of `payload`, signed with `key` (None: unsigned, which no box installs)."""
    return build_header(version, build, payload, key) + payload


def write_firmware(
    path: Path, payload_path: Path, version: str, build: int, key: SigningKey
) -> FirmwareInfo:
    payload = payload_path.read_bytes()
    path.write_bytes(pack(payload, version, build, key.secret))
    return verify(path, Keyring((key.public(),)))


def read_info(path: Path) -> FirmwareInfo:
    with open(path, "rb") as f:
        return parse_header(f.read(HEADER_SIZE), source=str(path))


def sign(path: Path, key: SigningKey, out: Path | None = None) -> FirmwareInfo:
    """(Re-)sign the image in `path` (into `out`, default in place). Its payload must match
    its header first: a damaged image is refused, not signed."""
    verify(path, None)
    data = path.read_bytes()
    info = parse_header(data[:HEADER_SIZE], source=str(path))
    target = out or path
    target.write_bytes(pack(data[HEADER_SIZE:], info.version, info.build, key.secret))
    return verify(target, Keyring((key.public(),)))


def verify(path: Path, keyring: Keyring | None) -> FirmwareInfo:
    """Check header, signature (against `keyring`; None: not checked), length and digest;
    raise a FirmwareError saying what is wrong."""
    check = ImageVerifier(keyring=keyring, source=str(path))
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            check.feed(block)
    return check.finish()
