"""Certificates in the guest: its own openssl (the firmware's) makes the key and request,
checks the chain, and its Python ssl serves it (tests/hosted/test_certificates.py does the
rest on the host's). The real `openssl` on the host is the CA (tests/x509ca.py)."""

from __future__ import annotations

import socket
import ssl
import subprocess
import sys
from pathlib import Path
from urllib.parse import urlencode

import pytest

sys.path.insert(0, str(Path(__file__).parents[1] / "hosted"))
from httpbox import authed  # noqa: E402

from tests.x509ca import TestCA, openssl  # noqa: E402

pytestmark = pytest.mark.vm


def verified(url: str, ca: TestCA) -> str:
    """Python's ssl with only the test CA, the name checked (127.0.0.1: forwarded)."""
    host, port = url.removeprefix("https://").split(":")
    ctx = ssl.create_default_context(cafile=str(ca.root_file))
    with socket.create_connection((host, int(port)), timeout=30) as s:
        with ctx.wrap_socket(s, server_hostname=host) as tls:
            return str(tls.version())


@pytest.mark.timeout(900)
def test_the_guest_makes_a_request_and_serves_the_signed_chain(
    ipva_machine,  # type: ignore[no-untyped-def]
    tmp_path: Path,
) -> None:
    box = ipva_machine("vmware", resume=True)  # a box at its prompt, web admin up
    ca = TestCA(tmp_path / "ca")
    out = box.command("mod cmd X509 servercert-create /type Signing+request /key 2048-bit")
    assert "X509: making a new key and a signing request" in out, out
    box.wait_for_console(r"X509: signing request made for CN=IPVA", timeout=300)
    read = box.command("vars read X509/REQUEST")
    (line,) = [ln for ln in read.splitlines() if ln.startswith("X509/REQUEST pb ")]
    csr = openssl("req", "-inform", "DER", stdin=bytes.fromhex(line.split()[2]))
    text = openssl("req", "-noout", "-text", "-verify", stdin=csr).decode()
    assert "IP Address:10.0.2.15" in text and "Public-Key: (2048 bit)" in text, text
    with pytest.raises(ssl.SSLCertVerificationError):
        verified(box.https_url, ca)
    # an out-of-order chain first: the guest's checks refuse it
    leaf = ca.sign(csr)
    form = {"Content-Type": "application/x-www-form-urlencoded"}
    bad = urlencode({"action": "install", "pem": (ca.intermediate + leaf).decode()}).encode()
    r = authed(box.http_url, "POST", "/administration/certificates", bad, headers=form,
               timeout=120)  # fmt: skip
    assert r.status == 400 and "must come first" in r.text, r.text[-2000:]
    good = urlencode({"action": "install", "pem": ca.chain(leaf).decode()}).encode()
    r = authed(box.http_url, "POST", "/administration/certificates", good, headers=form,
               timeout=120)  # fmt: skip
    assert r.status == 200 and "certificate installed from the web admin" in r.text
    assert verified(box.https_url, ca) in ("TLSv1.2", "TLSv1.3")
    hostport = box.https_url.removeprefix("https://")
    s_client = subprocess.run(
        ["openssl", "s_client", "-connect", hostport, "-CAfile", str(ca.root_file),
         "-verify_return_error", "-verify_ip", "127.0.0.1"],
        input="", capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert s_client.returncode == 0 and "Verify return code: 0 (ok)" in s_client.stdout
    assert 'issuer_cn="ipva test issuing CA"' in box.command("mod cmd X509 xml-info")
    # kept on the guest's flash across a reset
    box.send_line("reset")
    box.wait_for_console("reset: restarting")
    box.wait_for_prompt()
    box.wait_for_web_admin()
    verified(box.https_url, ca)
