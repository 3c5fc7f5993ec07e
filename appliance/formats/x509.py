"""A self-signed X.509 v3 certificate with an ECDSA P-256 key, written in DER (RFC 5280).

The box's HTTPS certificate (appliance/services/http/cert.py) used to come from the `openssl`
command; carrying that binary only for this cost 0.33 MB of the firmware (zstd), so the
certificate is written here from python3-ecdsa (which the firmware carries for signed
updates) and its DER helpers. The fields are the ones `openssl req -x509` wrote:

    Certificate  SEQUENCE { tbsCertificate, signatureAlgorithm, signatureValue BIT STRING }
    tbs          SEQUENCE { [0] version 2 (v3), serialNumber, signature ecdsa-with-SHA256,
                            issuer = subject (CN=<name>, O=ipva), validity, subject,
                            subjectPublicKeyInfo, [3] extensions }
    extensions   basicConstraints critical CA:FALSE, keyUsage critical digitalSignature,
                 extendedKeyUsage serverAuth, subjectAltName (DNS names, IP addresses),
                 subjectKeyIdentifier (SHA-1 of the public key, RFC 5280 4.2.1.2 method 1)

Times are UTCTime up to 2049 and GeneralizedTime from 2050 on (RFC 5280 4.1.2.5). The key
is PKCS#8 ("BEGIN PRIVATE KEY"), as OpenSSL writes it and Python's ssl loads it.
"""

from __future__ import annotations

import base64
import hashlib
import ipaddress
import time
from collections.abc import Sequence
from dataclasses import dataclass

from ecdsa import NIST256p, SigningKey
from ecdsa.der import (
    encode_bitstring,
    encode_constructed,
    encode_integer,
    encode_length,
    encode_octet_string,
    encode_oid,
    encode_sequence,
)
from ecdsa.util import sigencode_der

ECDSA_WITH_SHA256 = (1, 2, 840, 10045, 4, 3, 2)
COMMON_NAME = (2, 5, 4, 3)
ORGANIZATION = (2, 5, 4, 10)
BASIC_CONSTRAINTS = (2, 5, 29, 19)
KEY_USAGE = (2, 5, 29, 15)
EXT_KEY_USAGE = (2, 5, 29, 37)
SERVER_AUTH = (1, 3, 6, 1, 5, 5, 7, 3, 1)
SUBJECT_ALT_NAME = (2, 5, 29, 17)
SUBJECT_KEY_ID = (2, 5, 29, 14)

# universal tags ecdsa.der has no helper for; context tags of GeneralName (implicit)
BOOLEAN, UTF8_STRING, UTC_TIME, GENERALIZED_TIME = 0x01, 0x0C, 0x17, 0x18
DNS_NAME, IP_ADDRESS = 0x82, 0x87
DIGITAL_SIGNATURE = b"\x80"  # keyUsage bit 0, the other 7 bits unused


def _tlv(tag: int, body: bytes) -> bytes:
    return bytes([tag]) + encode_length(len(body)) + body


def _time(epoch: int) -> bytes:
    t = time.gmtime(epoch)
    if t.tm_year < 2050:
        return _tlv(UTC_TIME, time.strftime("%y%m%d%H%M%SZ", t).encode())
    return _tlv(GENERALIZED_TIME, time.strftime("%Y%m%d%H%M%SZ", t).encode())


def _name(cn: str, org: str) -> bytes:
    def rdn(oid: tuple[int, ...], value: str) -> bytes:
        attribute = encode_sequence(encode_oid(*oid), _tlv(UTF8_STRING, value.encode()))
        return _tlv(0x31, attribute)  # SET OF one attribute

    return encode_sequence(rdn(COMMON_NAME, cn), rdn(ORGANIZATION, org))


def _extension(oid: tuple[int, ...], value: bytes, critical: bool = False) -> bytes:
    flag = _tlv(BOOLEAN, b"\xff") if critical else b""
    return encode_sequence(encode_oid(*oid), flag, encode_octet_string(value))


@dataclass(frozen=True)
class AltName:
    """One subjectAltName entry: a DNS name or an IP address (v4 or v6)."""

    kind: str  # "DNS" or "IP", as openssl's configuration spells them
    value: str

    def to_der(self) -> bytes:
        if self.kind == "DNS":
            return _tlv(DNS_NAME, self.value.encode("ascii"))
        if self.kind == "IP":
            return _tlv(IP_ADDRESS, ipaddress.ip_address(self.value).packed)
        raise ValueError(f"subjectAltName entry {self.kind}:{self.value}: only DNS and IP")


def parse_alt_names(text: str) -> list[AltName]:
    """`DNS:IPVA, DNS:localhost, IP:10.0.2.15` (openssl's subjectAltName line) → entries."""
    entries = []
    for item in text.split(","):
        kind, _, value = item.strip().partition(":")
        entries.append(AltName(kind, value))
    return entries


def _pem(kind: str, der: bytes) -> bytes:
    b64 = base64.b64encode(der)
    lines = b"\n".join(b64[i : i + 64] for i in range(0, len(b64), 64))
    return f"-----BEGIN {kind}-----\n".encode() + lines + f"\n-----END {kind}-----\n".encode()


def make_self_signed(
    cn: str,
    alt_names: Sequence[AltName],
    serial: int,
    not_before: int,
    days: int,
    key: SigningKey | None = None,
) -> tuple[bytes, bytes]:
    """(certificate PEM, PKCS#8 key PEM): a new P-256 key unless `key` is given."""
    if serial <= 0:
        raise ValueError("a certificate's serial number is a positive integer")
    key = key or SigningKey.generate(curve=NIST256p)
    spki = key.get_verifying_key().to_der()  # SubjectPublicKeyInfo, uncompressed point
    public_bits = key.get_verifying_key().to_string("uncompressed")
    algorithm = encode_sequence(encode_oid(*ECDSA_WITH_SHA256))
    name = _name(cn, "ipva")
    extensions = encode_sequence(
        _extension(BASIC_CONSTRAINTS, encode_sequence(), critical=True),
        _extension(KEY_USAGE, encode_bitstring(DIGITAL_SIGNATURE, unused=7), critical=True),
        _extension(EXT_KEY_USAGE, encode_sequence(encode_oid(*SERVER_AUTH))),
        _extension(SUBJECT_ALT_NAME, encode_sequence(*(a.to_der() for a in alt_names))),
        _extension(SUBJECT_KEY_ID, encode_octet_string(hashlib.sha1(public_bits).digest())),
    )
    tbs = encode_sequence(
        encode_constructed(0, encode_integer(2)),
        encode_integer(serial),
        algorithm,
        name,
        encode_sequence(_time(not_before), _time(not_before + days * 86400)),
        name,
        spki,
        encode_constructed(3, extensions),
    )
    signature = key.sign_deterministic(tbs, hashfunc=hashlib.sha256, sigencode=sigencode_der)
    cert = encode_sequence(tbs, algorithm, encode_bitstring(signature, unused=0))
    return _pem("CERTIFICATE", cert), key.to_pem(format="pkcs8")
