"""Alarms delivered to real receivers on 127.0.0.1: an SMTP server (aiosmtpd, with and
without STARTTLS and AUTH) gets the alarm mail; Debian's rsyslogd gets the XML records,
the box's own and those it collected from another box, with the PRI of their severity."""

from __future__ import annotations

import email
import email.policy
import re
import ssl
import subprocess
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword

from tests.hosted.alarmbox import cf_image, info, lines, port_of
from tests.hosted.httpbox import HostedHttpBox
from tests.receivers import free_port, rsyslog, wait_for


@dataclass
class Mailbox:
    mails: list[tuple[email.message.EmailMessage, bool, str]] = field(default_factory=list)
    logins: list[str] = field(default_factory=list)

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:  # noqa: N802
        msg = email.message_from_bytes(envelope.content, policy=email.policy.default)
        self.mails.append((msg, session.ssl is not None, envelope.rcpt_tos[0]))
        return "250 OK"

    def authenticate(self, server: Any, session: Any, envelope: Any, mechanism: str,
                     auth_data: Any) -> AuthResult:  # fmt: skip
        ok = isinstance(auth_data, LoginPassword) and (auth_data.login, auth_data.password) == (
            b"alarms", b"s3cret",
        )  # fmt: skip
        if ok:
            self.logins.append(mechanism)
        return AuthResult(success=ok)


def tls_context(tmp: Path) -> ssl.SSLContext:
    key, crt = tmp / "smtp.key", tmp / "smtp.crt"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
         "-nodes", "-keyout", str(key), "-out", str(crt), "-days", "2", "-subj", "/CN=127.0.0.1"],
        check=True, capture_output=True,
    )  # fmt: skip
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.load_cert_chain(str(crt), str(key))
    return ctx


@pytest.fixture
def box(tmp_path: Path) -> Iterator[HostedHttpBox]:
    cf_image(tmp_path / "box")
    b = HostedHttpBox(tmp_path / "box")
    lines(b, "config change SYS0 /name box-a", "config activate")
    yield b
    b.close()


def _smtp(handler: Mailbox, tls: ssl.SSLContext | None) -> Controller:
    kwargs: dict[str, Any] = {}
    if tls is not None:  # STARTTLS offered; AUTH only after it (aiosmtpd's default)
        kwargs = {"tls_context": tls, "authenticator": handler.authenticate}
    c = Controller(handler, hostname="127.0.0.1", port=free_port(), **kwargs)
    c.start()
    return c


def test_alarm_mail_without_starttls(box: HostedHttpBox):
    mailbox = Mailbox()
    smtp = _smtp(mailbox, None)
    try:
        lines(box, "config change MAIL0 /from ipva@example.com /from-name \"Box A\" "
                   "/to ops@example.com /to-name Ops /server 127.0.0.1 "
                   f"/port {smtp.port}", "config activate")  # fmt: skip
        box.console_line("mod cmd ALARM0 test by-mail")
        box.console_line("mod cmd ALARM0 show")  # events are not mailed
        msg, over_tls, rcpt = wait_for(lambda: mailbox.mails, what="the alarm mail")[0]
        assert (over_tls, rcpt) == (False, "ops@example.com")
        assert msg["From"] == "Box A <ipva@example.com>" and msg["To"] == "Ops <ops@example.com>"
        assert msg["Subject"] == "box-a: fault 99 test: by-mail"
        assert "fault 99 test ALARM0: by-mail" in msg.get_content()
        assert info(box).find("mail").get("mails") == "1"
    finally:
        smtp.stop()


def test_alarm_mail_with_starttls_and_login_and_a_bounded_rate(box: HostedHttpBox,
                                                             tmp_path: Path):  # fmt: skip
    mailbox = Mailbox()
    smtp = _smtp(mailbox, tls_context(tmp_path))
    try:
        lines(box, "config change MAIL0 /from ipva@example.com /to ops@example.com "
                   f"/server 127.0.0.1 /port {smtp.port} /user alarms /pwd s3cret "
                   "/tls any /rate 2", "config activate")  # fmt: skip
        for i in range(6):  # a flapping cause: 6 faults, 2 mails an hour
            box.console_line(f"mod cmd ALARM0 test flap-{i}")
        wait_for(lambda: len(mailbox.mails) >= 2, what="two mails")
        first, over_tls, _ = mailbox.mails[0]
        assert over_tls and mailbox.logins  # the sealed /pwd opened for SMTP AUTH
        shown = box.console_line("config show")
        assert "s3cret" not in shown and re.search(r"MAIL0 .*/pwd enc\$", shown), shown
        assert "flap-0" in first["Subject"]
        m = info(box).find("mail")
        assert m.get("tls") == "yes"
        # the rest waits for the rate: no third mail now, nothing lost yet
        assert len(mailbox.mails) == 2 and m.get("dropped") == "0"
        body = mailbox.mails[1][0].get_content()
        assert "flap-1" in body
        # a certificate that is not valid for the server is refused with /tls verify
        lines(box, "config add MAIL0 /tls verify /rate 60", "config activate")
        box.console_line("mod cmd ALARM0 test not-verified")
        wait_for(lambda: info(box).find("mail").get("failures") == "1", what="a refusal")
        assert "CERTIFICATE_VERIFY_FAILED" in info(box).find("mail").get("error")
    finally:
        smtp.stop()


def test_syslog_gets_xml_records_with_the_pri_of_their_severity(tmp_path: Path):
    with rsyslog(tmp_path / "rsyslog") as r:
        cf_image(tmp_path / "b")
        b = HostedHttpBox(tmp_path / "b")
        (tmp_path / "a").mkdir()
        a = HostedHttpBox(tmp_path / "a")
        try:
            lines(b, "config change SYS0 /name box-b", f"config change ALARM0 /addr 127.0.0.1 "
                     f"/addr2 127.0.0.1 /port {r.udp_port} /method syslog /class 3",
                     "config activate")  # fmt: skip
            lines(a, "config change SYS0 /name box-a",
                  f"config change ALARM0 /addr 127.0.0.1 /port {port_of(b)}",
                  "config activate")  # fmt: skip
            b.console_line("mod cmd ALARM0 test own-fault")  # B's own fault
            b.console_line("config write")  # B's own event
            a.console_line("mod cmd ALARM0 test from-a")  # A's, collected by B

            def record(text: str) -> list[str]:
                return [x for x in r.lines() if f">{text}</event>" in x]

            own = wait_for(lambda: record("own-fault"), what="B's fault in rsyslog")
            # pri facility severity host tag msg: local3 = 19; fault → 2 (critical)
            assert own[0].startswith(f"{19 * 8 + 2} local3 2 box-b IPVA:")
            assert len(wait_for(lambda: len(record("own-fault")) == 2 and record("own-fault"),
                                what="the record at /addr2 too")) == 2  # fmt: skip
            written = wait_for(lambda: record("config write"), what="B's event")
            assert written[0].startswith(f"{19 * 8 + 6} local3 6 box-b IPVA:")
            came = wait_for(lambda: record("from-a"), what="A's fault, forwarded by B")
            e = ET.fromstring(came[0].split("IPVA:", 1)[1].strip())
            assert (e.get("host"), e.get("addr"), e.get("code")) == ("box-a", "127.0.0.1", "99")
            assert came[0].startswith(f"{19 * 8 + 2} local3 2 box-a IPVA:")
        finally:
            a.close()
            b.close()
