"""The box's self-signed certificate names its addresses (subjectAltName), checked with the
real `openssl x509`; a kept one is reused while it names them, renewed when the box has an
address it does not name."""

from __future__ import annotations

import shutil
import socket
import ssl
import subprocess
import threading
from collections.abc import Iterable, Mapping
from pathlib import Path

import pytest

from appliance.formats.x509 import make_self_signed, parse_alt_names
from appliance.services.http.cert import (
    CERT_KEY,
    SAN_KEY,
    load_or_make,
    make_certificate,
    pem_files,
    server_context,
)

pytestmark = pytest.mark.skipif(shutil.which("openssl") is None, reason="needs openssl")


class DictVars:
    def __init__(self) -> None:
        self.data: dict[str, bytes] = {}

    def get(self, key: str) -> bytes | None:
        return self.data.get(key)

    def keys(self) -> Iterable[str]:
        return list(self.data)

    def commit(self, updates: Mapping[str, bytes | None]) -> None:
        for k, v in updates.items():
            if v is None:
                self.data.pop(k, None)
            else:
                self.data[k] = v


def san_of(pem: bytes, tmp_path: Path) -> str:
    (tmp_path / "c.pem").write_bytes(pem)
    out = subprocess.run(
        ["openssl", "x509", "-noout", "-ext", "subjectAltName", "-in", str(tmp_path / "c.pem")],
        check=True, capture_output=True, text=True,
    ).stdout  # fmt: skip
    return out.splitlines()[1].strip()  # the line after "X509v3 Subject Alternative Name:"


def test_the_certificate_names_the_box_and_its_addresses(tmp_path: Path) -> None:
    vars = DictVars()
    cert, note = load_or_make(vars, "branch-7", ["10.0.2.15", "192.168.0.10"])
    san = san_of(cert.cert_pem, tmp_path)
    assert san == (
        "DNS:branch-7, DNS:localhost, IP Address:127.0.0.1, IP Address:10.0.2.15, "
        "IP Address:192.168.0.10"
    )
    assert note.startswith("HTTPS: new self-signed certificate made for DNS:branch-7")
    assert vars.get(SAN_KEY) == cert.san.encode()
    # the same addresses (or fewer): the kept one, no line
    again, note = load_or_make(vars, "branch-7", ["10.0.2.15"])
    assert again.cert_pem == cert.cert_pem and note == ""
    # an address it does not name: a new one, saying why
    renewed, note = load_or_make(vars, "branch-7", ["10.0.2.16"])
    assert renewed.cert_pem != cert.cert_pem and vars.get(CERT_KEY) == renewed.cert_pem
    assert "the one kept did not name 10.0.2.16" in note
    assert "IP Address:10.0.2.16" in san_of(renewed.cert_pem, tmp_path)


def _openssl_text(pem: bytes, tmp_path: Path) -> str:
    (tmp_path / "t.pem").write_bytes(pem)
    return subprocess.run(
        ["openssl", "x509", "-noout", "-text", "-in", str(tmp_path / "t.pem")],
        check=True, capture_output=True, text=True,
    ).stdout  # fmt: skip


def test_the_written_certificate_is_what_openssl_req_made(tmp_path: Path) -> None:
    # the reference reader: OpenSSL parses it, takes it as a TLS server's certificate (its
    # own signature checks), and shows the fields `openssl req -x509` used to write
    cert = make_certificate("IPVA", addresses=["10.0.2.15"])
    (tmp_path / "c.pem").write_bytes(cert.cert_pem)
    ok = subprocess.run(
        ["openssl", "verify", "-CAfile", str(tmp_path / "c.pem"), "-purpose", "sslserver",
         str(tmp_path / "c.pem")], capture_output=True, text=True,
    )  # fmt: skip
    assert ok.returncode == 0, ok.stdout + ok.stderr
    text = _openssl_text(cert.cert_pem, tmp_path)
    for line in ("Version: 3 (0x2)", "Signature Algorithm: ecdsa-with-SHA256",
                 "Issuer: CN = IPVA, O = ipva", "Subject: CN = IPVA, O = ipva",
                 "NIST CURVE: P-256", "X509v3 Basic Constraints: critical", "CA:FALSE",
                 "X509v3 Key Usage: critical", "Digital Signature",
                 "TLS Web Server Authentication", "X509v3 Subject Key Identifier"):  # fmt: skip
        assert line in text, line
    key = subprocess.run(
        ["openssl", "pkey", "-noout", "-text"], input=cert.key_pem, capture_output=True,
        check=True,
    ).stdout  # fmt: skip
    assert b"ASN1 OID: prime256v1" in key


def test_a_tls_handshake_with_the_written_pair(tmp_path: Path) -> None:
    cert = make_certificate("IPVA", addresses=["127.0.0.1"])
    with pem_files(cert) as (crt, key):
        server = server_context(crt, key)
    client = ssl.create_default_context(cadata=cert.cert_pem.decode())
    a, b = socket.socketpair()
    with a, b:
        done: list[str] = []
        t = threading.Thread(
            target=lambda: done.append(server.wrap_socket(b, server_side=True).version() or "")
        )
        t.start()
        tls = client.wrap_socket(a, server_hostname="127.0.0.1")
        t.join(10)
        assert tls.version() in ("TLSv1.2", "TLSv1.3") and done == [tls.version()]
        assert tls.getpeercert()["subjectAltName"][-1] == ("IP Address", "127.0.0.1")


def test_validity_after_2049_is_a_generalized_time(tmp_path: Path) -> None:
    # RFC 5280: UTCTime up to 2049, GeneralizedTime from 2050 (a box made in 2031 + 20 years)
    pem, _key = make_self_signed(
        "IPVA",
        parse_alt_names("DNS:IPVA, IP:127.0.0.1"),
        7,
        1956528000,
        7300,  # 2032-01-01
    )
    text = _openssl_text(pem, tmp_path)
    assert "Not Before: Jan  1 00:00:00 2032 GMT" in text
    assert "Not After : Dec 27 00:00:00 2051 GMT" in text


def test_alt_names_other_than_dns_and_ip_are_refused() -> None:
    with pytest.raises(ValueError, match="only DNS and IP"):
        make_self_signed("IPVA", parse_alt_names("email:a@b"), 1, 0, 1)
