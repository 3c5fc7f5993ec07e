"""Ed25519 keys and signatures in OpenBSD signify's format (Debian: `signify-openbsd`).

The bootcode checks a firmware image with the real signify before it mounts the payload
(firmware/bootcode/init); the runtime and the builder read and write the same files here,
so a key pair made with `signify-openbsd -G -n -p ipva.pub -s ipva.sec` works everywhere.
Each file is two lines: `untrusted comment: <text>` and the base64 of one record:

    public key   "Ed" | key number (8) | Ed25519 public key (32)
    signature    "Ed" | key number (8) | Ed25519 signature (64)
    secret key   "Ed" | "BK" | kdf rounds (u32 be) | salt (16) | checksum (8) |
                 key number (8) | Ed25519 secret key (64: seed, then public key)

The key number is random, chosen when the pair is made: signify refuses a signature made by
another key ("checked against wrong key"). A secret key with kdf rounds 0 has no passphrase
(`-n`); the checksum is the first 8 bytes of SHA-512 of the secret key. Passphrase-protected
keys (bcrypt_pbkdf) are not read here: sign with `signify-openbsd -S` or make the key with -n.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from construct import Bytes, Const, ConstructError, Int32ub, Struct

if TYPE_CHECKING:
    from ecdsa import SigningKey

# ecdsa (pure Python, Debian's python3-ecdsa) is imported where a key is used: ~10 ms on the
# host, more under TCG, and only an update or `ipva fw` needs it, never the boot.

COMMENT = "untrusted comment: "
PKALG = b"Ed"
KDFALG = b"BK"

PublicKeyRecord = Struct(
    "pkalg" / Const(PKALG),
    "keynum" / Bytes(8),
    "pubkey" / Bytes(32),
)
SignatureRecord = Struct(
    "pkalg" / Const(PKALG),
    "keynum" / Bytes(8),
    "sig" / Bytes(64),
)
SecretKeyRecord = Struct(
    "pkalg" / Const(PKALG),
    "kdfalg" / Const(KDFALG),
    "kdfrounds" / Int32ub,
    "salt" / Bytes(16),
    "checksum" / Bytes(8),
    "keynum" / Bytes(8),
    "seckey" / Bytes(64),
)


class SignifyError(Exception):
    """A key or signature file that cannot be used; the message says which and why."""


def _record(raw: bytes, kind: Struct, what: str) -> Any:  # a construct Container
    try:
        return kind.parse(raw)
    except ConstructError as e:
        raise SignifyError(f"{what}: not a signify Ed25519 record ({e})") from e


def _decode(text: str, what: str) -> tuple[str, bytes]:
    """(comment, record bytes) of a two-line signify file."""
    lines = text.splitlines()
    if len(lines) < 2 or not lines[0].startswith(COMMENT):
        raise SignifyError(f"{what}: not a signify file (no '{COMMENT.strip()}' line)")
    try:
        return lines[0][len(COMMENT) :], base64.b64decode(lines[1], validate=True)
    except binascii.Error as e:
        raise SignifyError(f"{what}: bad base64 ({e})") from e


def _encode(comment: str, raw: bytes) -> str:
    return f"{COMMENT}{comment}\n{base64.b64encode(raw).decode()}\n"


@dataclass(frozen=True)
class PublicKey:
    """A signify public key, under the name the box gives it."""

    keynum: bytes
    pubkey: bytes
    name: str  # what the box calls it: the file's stem in the keyring ("development")

    @property
    def key_id(self) -> str:
        return self.keynum.hex()

    @classmethod
    def parse(cls, text: str, *, name: str, what: str = "public key") -> PublicKey:
        _comment, raw = _decode(text, what)
        r = _record(raw, PublicKeyRecord, what)
        return cls(r.keynum, r.pubkey, name)

    def to_text(self, comment: str) -> str:
        return _encode(
            comment, PublicKeyRecord.build({"keynum": self.keynum, "pubkey": self.pubkey})
        )

    def verify(self, sig: Signature, message: bytes) -> bool:
        if sig.keynum != self.keynum:
            return False
        from ecdsa import BadSignatureError, Ed25519, VerifyingKey

        vk = VerifyingKey.from_string(self.pubkey, curve=Ed25519)
        try:
            return bool(vk.verify(sig.sig, message))
        except BadSignatureError:
            return False


@dataclass(frozen=True)
class Signature:
    """A signify signature: the signing key's number and the Ed25519 signature."""

    keynum: bytes
    sig: bytes

    @property
    def key_id(self) -> str:
        return self.keynum.hex()

    @classmethod
    def from_b64(cls, line: str, what: str = "signature") -> Signature:
        try:
            raw = base64.b64decode(line, validate=True)
        except binascii.Error as e:
            raise SignifyError(f"{what}: bad base64 ({e})") from e
        r = _record(raw, SignatureRecord, what)
        return cls(r.keynum, r.sig)

    def to_b64(self) -> str:
        return base64.b64encode(
            SignatureRecord.build({"keynum": self.keynum, "sig": self.sig})
        ).decode()


@dataclass(frozen=True)
class SecretKey:
    """A signify secret key without a passphrase: its key number and Ed25519 seed."""

    keynum: bytes
    seed: bytes  # the Ed25519 secret key's first half; the second is the public key

    @classmethod
    def generate(cls) -> SecretKey:
        return cls(os.urandom(8), os.urandom(32))

    @classmethod
    def parse(cls, text: str, what: str = "secret key") -> SecretKey:
        _comment, raw = _decode(text, what)
        r = _record(raw, SecretKeyRecord, what)
        if r.kdfrounds != 0:
            raise SignifyError(
                f"{what}: protected by a passphrase; make the key with `signify-openbsd -G -n` "
                "(and keep the file itself safe)"
            )
        seckey: bytes = r.seckey
        if hashlib.sha512(seckey).digest()[:8] != r.checksum:
            raise SignifyError(f"{what}: checksum wrong: the file is damaged")
        key = cls(r.keynum, seckey[:32])
        if key.public().pubkey != seckey[32:]:
            raise SignifyError(f"{what}: its public half does not match its secret half")
        return key

    def _signing_key(self) -> SigningKey:
        from ecdsa import Ed25519, SigningKey

        return SigningKey.from_string(self.seed, curve=Ed25519)

    def public(self, name: str = "") -> PublicKey:
        return PublicKey(self.keynum, self._signing_key().get_verifying_key().to_string(), name)

    def to_text(self, comment: str) -> str:
        seckey = self.seed + self.public().pubkey
        raw = SecretKeyRecord.build({
            "kdfrounds": 0, "salt": bytes(16), "checksum": hashlib.sha512(seckey).digest()[:8],
            "keynum": self.keynum, "seckey": seckey,
        })  # fmt: skip
        return _encode(comment, raw)

    def sign(self, message: bytes) -> Signature:
        return Signature(self.keynum, self._signing_key().sign(message))


@dataclass(frozen=True)
class Keyring:
    """The public keys a box trusts: one `<name>.pub` file each in a directory."""

    keys: tuple[PublicKey, ...]

    @classmethod
    def load(cls, directory: Path) -> Keyring:
        """Every `*.pub` in `directory` (none, or no directory: an empty keyring)."""
        keys = []
        for path in sorted(directory.glob("*.pub")) if directory.is_dir() else []:
            keys.append(PublicKey.parse(path.read_text(), name=path.stem, what=str(path)))
        return cls(tuple(keys))

    def find(self, keynum: bytes) -> PublicKey | None:
        return next((k for k in self.keys if k.keynum == keynum), None)

    def describe(self) -> str:
        return ", ".join(f"{k.name} ({k.key_id})" for k in self.keys) or "no keys"
