"""The HTTPS certificate's life (mod cmd X509, Administration/Certificates): the box makes a
key and a signing request, the real `openssl` on the host signs it as a company CA
(tests/x509ca.py), the certificate and its chain go back by the console/script path and by
the page, and TLS clients that trust only that CA then verify the box (chain and name):
Python's ssl, `openssl s_client -verify_return_error` and curl --cacert. Bad uploads are
refused and change nothing; the certificate survives a reset; alarm 70 warns before it
ends; the update server's certificate lines (tests/updateserver.py) make the request and
install the answer.
"""

from __future__ import annotations

import datetime
import html
import re
import shutil
import socket
import ssl
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlencode

import pytest
from httpbox import HostedHttpBox, authed, request

from appliance.services.alarms.codes import CERT_EXPIRY
from appliance.services.alarms.service import AlarmService
from appliance.services.http import certificates
from tests.updateserver import CustomCerts, update_server
from tests.x509ca import TestCA, openssl

pytestmark = pytest.mark.skipif(shutil.which("openssl") is None, reason="needs openssl")
FORM = {"Content-Type": "application/x-www-form-urlencoded"}


@pytest.fixture
def box(tmp_path: Path) -> Iterator[HostedHttpBox]:
    b = HostedHttpBox(tmp_path / "box")
    yield b
    b.close()


@pytest.fixture
def ca(tmp_path: Path) -> TestCA:
    return TestCA(tmp_path / "ca")


def wait_for(what: str, check: object, timeout: float = 60) -> None:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if check():  # type: ignore[operator]
            return
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


def idle(box: HostedHttpBox) -> None:
    wait_for("X509 to finish", lambda: "<busy" not in box.console_line("mod cmd X509 xml-info"))


def make_request(box: HostedHttpBox, line: str = "/type Signing+request") -> bytes:
    """The box's request (PEM), made on the console and read back with `vars read`."""
    answer = box.console_line(f"mod cmd X509 servercert-create {line}")
    assert answer.startswith("X509: making a new key"), answer
    idle(box)
    words = box.console_line("vars read X509/REQUEST").split()
    assert words[:2] == ["X509/REQUEST", "pb"], words
    return openssl("req", "-inform", "DER", stdin=bytes.fromhex(words[2]))


def served(url: str) -> bytes:
    """The certificate HTTPS hands out (DER), trusting nothing."""
    host, port = url.removeprefix("https://").split(":")
    ctx = ssl.create_default_context()
    ctx.check_hostname, ctx.verify_mode = False, ssl.CERT_NONE
    with socket.create_connection((host, int(port)), timeout=10) as s:
        with ctx.wrap_socket(s, server_hostname=host) as tls:
            der = tls.getpeercert(binary_form=True)
    assert der is not None
    return der


def verified(url: str, ca: TestCA) -> dict[str, object]:
    """Python's ssl with the test CA as its only trust anchor, checking the name 127.0.0.1."""
    host, port = url.removeprefix("https://").split(":")
    ctx = ssl.create_default_context(cafile=str(ca.root_file))
    with socket.create_connection((host, int(port)), timeout=10) as s:
        with ctx.wrap_socket(s, server_hostname=host) as tls:
            peer = tls.getpeercert()
    assert peer
    return peer


def s_client(url: str, ca: TestCA) -> subprocess.CompletedProcess[str]:
    hostport = url.removeprefix("https://")
    return subprocess.run(
        ["openssl", "s_client", "-connect", hostport, "-CAfile", str(ca.root_file),
         "-verify_return_error", "-verify_ip", "127.0.0.1", "-showcerts"],
        input="", capture_output=True, text=True, timeout=30,
    )  # fmt: skip


def install_by_vars(box: HostedHttpBox, chain: list[bytes]) -> None:
    """As the update server sends it: one `vars create X509/REQUESTRESPONSE/0000n pb` line
    per certificate (DER in hex), then config activate."""
    for n, pem in enumerate(chain):
        line = f"vars create X509/REQUESTRESPONSE/{n:05d} pb {TestCA.der(pem).hex()}"
        assert box.console_line(line) == "", line
    box.console_line("config activate")
    idle(box)


def post_chain(box: HostedHttpBox, pem: bytes) -> tuple[int, str]:
    body = urlencode({"action": "install", "pem": pem.decode()}).encode()
    r = authed(box.http_url, "POST", "/administration/certificates", body, headers=FORM)
    said = re.findall(r'<p class="(?:ok|error)"[^>]*>([^<]*)</p>', r.text)
    return r.status, html.unescape(" / ".join(said))


def sent(box: HostedHttpBox) -> int:
    """How many UP0 scfg PUTs are over (sent, or refused by the server)."""
    text = box.console.text()
    return text.count("UP0: sent ") + text.count("; not sent")


def alarm_state(box: HostedHttpBox) -> str:
    """The newest entry of alarm 70: raised, cleared or "" (none)."""
    assert box.runtime.box is not None
    alarms = box.runtime.box.service(AlarmService)
    assert alarms is not None
    return next((e.state for e in alarms.own() if e.code == CERT_EXPIRY.number), "")


def test_a_request_signed_by_a_ca_is_installed_by_the_console_path_and_verified(
    box: HostedHttpBox, ca: TestCA
) -> None:
    with pytest.raises(ssl.SSLCertVerificationError):  # self-signed: not trusted
        verified(box.https_url, ca)
    csr = make_request(box)
    assert b"PRIVATE" not in csr
    text = openssl("req", "-noout", "-text", stdin=csr).decode()
    assert "DNS:IPVA, DNS:localhost, IP Address:127.0.0.1" in text  # its names and address
    # the pending request's key stays on the box: not in vars, the backup, the XML
    pending = box.console_line("vars read") + authed(box.http_url, "GET", "/cfg.txt").text
    assert "X509/REQUEST pb" in pending and "PRIVATE" not in pending
    xml = authed(box.http_url, "GET", "/X509/mod_cmd.xml?cmd=xml-info")  # read-only: a GET
    assert xml.status == 200 and '<requests><request size="' in xml.text, xml.text
    assert "PRIVATE" not in xml.text
    leaf = ca.sign(csr)
    install_by_vars(box, [leaf, ca.intermediate])
    assert "X509: certificate installed from X509/REQUESTRESPONSE" in box.console.text()
    # no restart: the listener that ran before serves the new chain
    peer = verified(box.https_url, ca)
    assert ("commonName", "IPVA") in [kv for rdn in peer["subject"] for kv in rdn]  # type: ignore[attr-defined]
    out = s_client(box.https_url, ca)
    assert out.returncode == 0 and "Verify return code: 0 (ok)" in out.stdout, out.stdout[-800:]
    assert out.stdout.count("-----BEGIN CERTIFICATE-----") == 2  # leaf + intermediate
    if shutil.which("curl"):
        r = subprocess.run(["curl", "-sS", "--cacert", str(ca.root_file), "-o", "/dev/null",
                            "-w", "%{http_code}", f"{box.https_url}/general/info"],
                           capture_output=True, text=True, timeout=30)  # fmt: skip
        assert r.stdout == "200", r.stderr
    # the answer is consumed, the key stays hidden, the page says who issued it
    assert box.console_line("vars read X509/REQUESTRESPONSE").startswith("error: no variable")
    info = box.console_line("mod cmd X509 info")
    assert "issued by CN=ipva test issuing CA" in info and "chain 2 certificates" in info
    assert "PRIVATE" not in box.console_line("vars read") + box.console_line("config show")
    assert b"PRIVATE" not in request(box.http_url, "GET", "/cfg.txt").body
    backup = authed(box.http_url, "GET", "/cfg.txt").text
    assert "PRIVATE" not in backup and "X509:" not in backup
    # a reset (and a new port): the same chain, still verified
    before = served(box.https_url)
    box.console_line("reset")
    assert served(box.https_url) == before
    verified(box.https_url, ca)


def test_the_page_makes_the_request_and_installs_the_chain(box: HostedHttpBox, ca: TestCA) -> None:
    body = urlencode({"action": "request", "san-dns": "ipva.example.com"}).encode()
    r = authed(box.http_url, "POST", "/administration/certificates", body, headers=FORM)
    assert r.status == 200 and "making a new key" in r.text, r.text
    idle(box)
    page = authed(box.http_url, "GET", "/administration/certificates")
    assert page.status == 200 and "(self-signed)" in page.text
    pem = authed(box.http_url, "GET", "/administration/certificates/request.pem")
    assert pem.status == 200 and pem.body.startswith(b"-----BEGIN CERTIFICATE REQUEST-----")
    assert 'filename="request.pem"' in pem.headers["Content-Disposition"]
    assert "DNS:ipva.example.com" in openssl("req", "-noout", "-text", stdin=pem.body).decode()
    status, text = post_chain(box, ca.chain(ca.sign(pem.body)))
    assert status == 200 and "certificate installed from the web admin" in text, text
    verified(box.https_url, ca)
    page = authed(box.http_url, "GET", "/administration/certificates").text
    assert "(self-signed)" not in page and "ipva test issuing CA" in page
    assert "DNS:ipva.example.com" in page and "PRIVATE" not in page


def test_bad_certificates_are_refused_and_change_nothing(
    box: HostedHttpBox, ca: TestCA, tmp_path: Path
) -> None:
    csr = make_request(box)
    before = served(box.https_url)
    key = str(tmp_path / "other.key")
    other = openssl("req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
                    "-nodes", "-keyout", key, "-subj", "/CN=other")  # fmt: skip
    leaf = ca.sign(csr)
    cases = {
        "is not for this box's key": ca.chain(ca.sign(other)),
        "expired on": ca.chain(ca.sign(csr, days=-1)),
        "no certificate in it": b"hello, this is not a certificate",
        "does not parse": b"-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n",
        "is the box's own and must come first": ca.intermediate + leaf + ca.root,
        "root CA,O=ipva tests) did not issue certificate 1": leaf + ca.root + ca.intermediate,
        "holds a private key": leaf + (tmp_path / "other.key").read_bytes(),
    }
    for reason, pem in cases.items():
        status, text = post_chain(box, pem)
        assert status == 400 and reason in text and "nothing changed" in text, (reason, text)
        assert served(box.https_url) == before, reason
    # the script path: refused, kept in X509/REQUESTERROR (the update server stops on it)
    install_by_vars(box, [ca.intermediate, leaf])
    assert served(box.https_url) == before
    xml = box.console_line("mod cmd X509 xml-info")
    assert "<request-error" in xml and "must come first" in xml, xml
    assert box.console_line("vars read X509/REQUESTRESPONSE").startswith("error:")
    # the right chain still goes in afterwards, and clears the error
    install_by_vars(box, [leaf, ca.intermediate])
    assert served(box.https_url) != before
    assert "<request-error" not in box.console_line("mod cmd X509 xml-info")


def test_near_expiry_alarm_raised_for_a_short_lived_certificate_and_cleared_by_renewal(
    box: HostedHttpBox, ca: TestCA
) -> None:
    assert alarm_state(box) == ""  # 20 years of self-signed: nothing to say
    status, text = post_chain(box, ca.chain(ca.sign(make_request(box), days=10)))
    assert status == 200, text
    wait_for("alarm 70", lambda: alarm_state(box) == "raised")
    box.console_line("config write")
    box.console_line("reset")  # checked again at the start: raised again after a reset
    box.started_service()
    wait_for("alarm 70 after the reset", lambda: alarm_state(box) == "raised")
    status, text = post_chain(box, ca.chain(ca.sign(make_request(box), days=365)))
    assert status == 200, text
    wait_for("alarm 70 cleared", lambda: alarm_state(box) == "cleared")


def test_the_daily_check_finds_a_certificate_near_its_end(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(certificates, "CHECK_INTERVAL_S", 0.2)  # a day, shortened
    b = HostedHttpBox(tmp_path / "box")
    try:
        assert alarm_state(b) == ""  # the check at the start: 20 years left
        later = datetime.datetime.now(datetime.UTC) + datetime.timedelta(days=7300 - 20)
        monkeypatch.setattr(certificates, "_now", lambda: later)  # 20 years on
        wait_for("alarm 70 from the daily check", lambda: alarm_state(b) == "raised")
        entry = next(e for e in b.runtime.box.service(AlarmService).own()  # type: ignore[union-attr]
                     if e.code == CERT_EXPIRY.number)  # fmt: skip
        assert "HTTPS certificate CN=IPVA,O=ipva expires in 19 days" in entry.text, entry.text
    finally:
        b.close()


def test_back_to_a_new_self_signed_certificate(box: HostedHttpBox, ca: TestCA) -> None:
    install_by_vars(box, [ca.sign(make_request(box)), ca.intermediate])
    verified(box.https_url, ca)
    signed = served(box.https_url)
    answer = box.console_line("mod cmd X509 servercert-create /type Self-signed")
    assert answer.startswith("X509: making a new key and a self-signed certificate"), answer
    idle(box)
    assert served(box.https_url) != signed
    assert "(self-signed)" in box.console_line("mod cmd X509 info")
    with pytest.raises(ssl.SSLCertVerificationError):
        verified(box.https_url, ca)


def test_requests_refuse_what_tls_clients_would_not_take(box: HostedHttpBox) -> None:
    for args, reason in (
        ("/key 1024-bit", "/key '1024-bit'"),
        ("/signature MD5", "/signature 'MD5'"),
        ("/type Other", "/type 'Other'"),
        ("/san-ip not-an-ip", "is not an IP address"),
    ):
        answer = box.console_line(f"mod cmd X509 servercert-create {args}")
        assert answer.startswith("error:") and reason in answer, answer


def test_the_update_servers_certificate_lines_make_the_request_and_install_the_answer(
    box: HostedHttpBox, ca: TestCA
) -> None:
    """php-update-server's flow, step by step as its polls would deliver it: query, create
    the request, fetch it, (the CA's admin signs it), upload the answer, see it good."""
    names = ("ipva test issuing CA", "ipva test root CA")
    certs = CustomCerts(names, {"key": "2048-bit", "signature": "SH256", "dn-cn": "{sn}"},
                        ca_files=[ca.intermediate])  # fmt: skip
    with update_server() as srv:
        srv.certs = certs

        def line_taken(line: str) -> str:
            """The line's answer once UP0 takes it: the trace's "sent" comes just before the
            worker of the previous PUT ends, and UP0 refuses a second PUT while it runs (as
            the UP1 script does, the next line waits for that worker)."""
            answers: list[str] = []

            def taken() -> bool:
                answers.append(box.console_line(line))
                return "under way; try again after it" not in answers[-1]

            wait_for(f"UP0 to take {line[:40]!r}", taken, timeout=30)
            return answers[-1]

        def poll() -> list[str] | None:
            """The query the box answers (its xml-info PUT), then the server's lines."""
            done = sent(box)
            assert line_taken(srv.query_line()).startswith("UP0: sending the output")
            wait_for("the query", lambda: sent(box) > done)
            (sn,) = certs.queries
            return srv.certificate_lines(sn)

        def run(lines: list[str]) -> None:
            """Each line as the UP1 script runs it: the next after an scfg's PUT is done."""
            for line in lines:
                done = sent(box)
                answer = line_taken(line)
                if answer.startswith("UP0: sending"):
                    wait_for("the PUT", lambda done=done: sent(box) > done)  # type: ignore[misc]
            idle(box)

        first = poll()
        assert first is not None
        (create,) = [ln for ln in first if "servercert-create" in ln]
        assert "/type Signing%20request  /key 2048-bit /signature SH256 /dn-cn " in create
        run(first)
        fetch = poll()
        assert fetch is not None and any("var=X509/REQUEST&" in ln for ln in fetch), fetch
        run(fetch)
        (sn,) = certs.queries
        wait_for("the request", lambda: f"certs/{sn}-request.p10.pem" in certs.files)
        pem = certs.files[f"certs/{sn}-request.p10.pem"]
        text = openssl("req", "-noout", "-text", "-verify", stdin=pem).decode()
        assert f"CN = {sn}" in text and "Public-Key: (2048 bit)" in text  # as asked
        assert poll() is None  # "signing request must be processed by CA (ongoing)"
        certs.files[f"certs/{sn}-signedrequest.cer"] = ca.sign(pem)
        answer = poll()
        assert answer is not None
        assert [ln.split(" pb ")[0] for ln in answer if ln.startswith("vars create")] == [
            "vars create X509/REQUESTRESPONSE/00000", "vars create X509/REQUESTRESPONSE/00001"
        ]  # fmt: skip
        run(answer)
        wait_for("the installed certificate", lambda: "installed" in box.console.text())
        assert poll() is None  # issuer in CAname, valid: nothing more to do
        verified(box.https_url, ca)
        assert "error:" not in box.console_line("mod cmd X509 xml-info")
        # the server's `admin` query: its {name} for requests, a crash of update.php without
        assert box.console_line("mod cmd CMD0 xml-info") == '<info name="IPVA"/>'
