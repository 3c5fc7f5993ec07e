"""appliance/services/http/x509.py against the real openssl: the update server's request
options as it sends them, requests naming the box, chains checked (with a test CA made by
tests/x509ca.py, which does not share the box's code)."""

from __future__ import annotations

import datetime
import shutil
from pathlib import Path

import pytest

from appliance.services.http import x509
from appliance.services.http.cert import CertError
from tests.x509ca import TestCA, openssl

pytestmark = pytest.mark.skipif(shutil.which("openssl") is None, reason="needs openssl")

# UpdateServerV2::doCertificates with config.xml's customcerts (CSRkey 2048-bit, CSRsignature
# SH256, CSRdn-cn {sn}): the empty options are empty words
SERVER_LINE = (
    "/cmd servercert-create /redirect /target device /type Signing%20request  /key 2048-bit "
    "/signature SH256 /dn-cn 009033123456 /dn-ou  /dn-o  /dn-l  /dn-st  /dn-c  /san-dns  "
    "/san-dns  /san-dns  /san-ip  /san-ip "
)


def test_the_update_servers_options_are_read_as_it_means_them() -> None:
    spec = x509.parse_request_args(SERVER_LINE.split())
    assert not spec.self_signed and spec.key == "2048-bit" and spec.signature == "SH256"
    assert spec.dn == (("CN", "009033123456"),) and spec.san_dns == () == spec.san_ip
    assert x509.key_args(spec) == ["-newkey", "rsa:2048"] and x509.digest(spec) == "-sha256"
    # the mypbx form of the same line, and URL-encoded values
    spec = x509.parse_request_args(
        "/type Signing+request /dn-o ACME%20Corp /dn-c DE /san-dns box.example.com "
        "/san-ip 10.0.0.5 /signature SHA384".split()
    )
    assert dict(spec.dn) == {"O": "ACME Corp", "C": "DE"}
    assert spec.san_dns == ("box.example.com",) and spec.san_ip == ("10.0.0.5",)
    assert x509.digest(spec) == "-sha384" and x509.key_args(spec)[1] == "ec"
    assert x509.parse_request_args(["/type", "Self-signed"]).self_signed


@pytest.mark.parametrize(
    ("words", "reason"),
    [
        ("/key 1024-bit", "shorter RSA keys are refused"),
        ("/signature SHA1", "SHA256, SHA384 or SHA512"),
        ("/type Other", "Signing request or Self-signed"),
        ("/san-dns bad_name!", "is not a DNS name"),
        ("/san-ip 300.1.1.1", "is not an IP address"),
        ("loose", "options are /name value"),
    ],
)
def test_bad_options_are_refused_before_any_key_is_made(words: str, reason: str) -> None:
    with pytest.raises(CertError, match=reason):
        x509.parse_request_args(words.split())


def test_a_request_names_the_box_and_its_addresses(tmp_path: Path) -> None:
    spec = x509.parse_request_args("/san-dns ipva.example.com /san-ip 10.0.0.9".split())
    csr, key = x509.make_request(spec, "my box", ["10.0.2.15"])
    text = openssl("req", "-noout", "-text", "-verify", stdin=csr).decode()
    assert "CN = my-box" in text
    assert ("DNS:my-box, DNS:localhost, IP Address:127.0.0.1, IP Address:10.0.2.15, "
            "DNS:ipva.example.com, IP Address:10.0.0.9") in text  # fmt: skip
    assert b"PRIVATE KEY" in key
    der = x509.request_der(csr)
    assert x509.request_pem(der) == csr  # the update server's DER, back to PEM


def test_check_chain(tmp_path: Path) -> None:
    ca = TestCA(tmp_path / "ca")
    csr, key = x509.make_request(x509.RequestSpec(), "IPVA", [])
    leaf = ca.sign(csr)
    chain, infos, used = x509.check_chain(ca.chain(leaf), [key])
    assert used == key and chain == leaf + ca.intermediate
    assert [i.subject_cn for i in infos] == ["IPVA", "ipva test issuing CA"]
    assert infos[0].issuer_cn == "ipva test issuing CA" and not infos[0].self_signed
    assert infos[0].san == "DNS:IPVA, DNS:localhost, IP:127.0.0.1"
    # a DER certificate alone (what X509/REQUESTRESPONSE holds) is taken too
    assert x509.split_pem(TestCA.der(leaf)) == [leaf]
    # 30 days before its end the alarm is due; later than notAfter it is refused
    end = infos[0].not_after
    assert infos[0].days_left(end - datetime.timedelta(days=29, hours=1)) == 29
    with pytest.raises(CertError, match="certificate 1 .* expired on"):
        x509.check_chain(leaf, [key], now=end + datetime.timedelta(seconds=1))
    with pytest.raises(CertError, match="is not valid before"):
        x509.check_chain(leaf, [key], now=infos[0].not_before - datetime.timedelta(hours=1))
    # signed by another CA with the same name: the names chain, the signature does not
    other = TestCA(tmp_path / "other")
    with pytest.raises(CertError, match="certificate 1 is not signed by certificate 2"):
        x509.check_chain(leaf + other.intermediate, [key])
