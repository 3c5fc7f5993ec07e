"""Alarms and faults as e-mail (MAIL0; services-logging.wiki, Alarms and Errors as Email).

SMTP to MAIL0 /server:/port; STARTTLS whenever the server offers it (its certificate checked
against the server's name unless /tls any), then AUTH with /user /pwd if a user is set.
OAuth2 is not offered (only user and password).

A flapping link must not flood a mailbox: at most /rate mails an hour. The mailer thread
sends a mail for the first entry at once; what comes while the rate is used up waits and
goes out together, in the next mail the rate allows (up to BATCH entries; the queue is
bounded and counts what it drops).
"""

from __future__ import annotations

import collections
import time
from collections.abc import Callable
from dataclasses import dataclass, replace

from appliance.services.alarms.entry import Entry
from appliance.services.alarms.worker import QueueWorker

QUEUE_SIZE = 100
BATCH = 50
HOUR_S = 3600.0
TIMEOUT_S = 10.0
STOP_JOIN_S = TIMEOUT_S + 1.0


@dataclass(frozen=True)
class MailSettings:
    """MAIL0's settings: sender, recipient, SMTP server and login, rate."""

    sender: str
    sender_name: str
    recipient: str
    recipient_name: str
    server: str
    port: int
    user: str
    password: str
    rate: int  # mails an hour
    verify: bool = True  # check the server's certificate at STARTTLS


@dataclass
class MailStats:
    """The mailer's counts and state (mails, entries, dropped, failures, last error, TLS)."""

    mails: int = 0
    entries: int = 0
    dropped: int = 0
    failures: int = 0
    last_error: str = ""
    tls: bool = False  # the last mail went over STARTTLS


def compose(settings: MailSettings, entries: list[Entry], host: str) -> bytes:
    from email.message import EmailMessage
    from email.utils import formataddr, formatdate, make_msgid

    msg = EmailMessage()
    msg["From"] = formataddr((settings.sender_name, settings.sender))
    msg["To"] = formataddr((settings.recipient_name, settings.recipient))
    msg["Date"] = formatdate(localtime=False)
    msg["Message-ID"] = make_msgid("ipva")
    first = entries[0]
    if len(entries) == 1:
        state = f" {first.state}" if first.state else ""
        subject = f"{host}: {first.severity.value}{state} {first.code} {first.name}: {first.text}"
    else:
        subject = f"{host}: {len(entries)} alarms and faults"
    msg["Subject"] = subject[:200]
    msg.set_content("".join(e.line() + "\n" for e in entries))
    return msg.as_bytes()


def send_mail(settings: MailSettings, message: bytes) -> bool:
    """One SMTP session; True if it went over STARTTLS. OSError/smtplib errors if not sent."""
    import smtplib
    import ssl

    with smtplib.SMTP(settings.server, settings.port, timeout=TIMEOUT_S) as smtp:
        smtp.ehlo()
        tls = smtp.has_extn("starttls")
        if tls:
            context = ssl.create_default_context()
            if not settings.verify:
                context.check_hostname = False
                context.verify_mode = ssl.CERT_NONE
            smtp.starttls(context=context)
            smtp.ehlo()
        if settings.user:
            smtp.login(settings.user, settings.password)
        smtp.sendmail(settings.sender, [settings.recipient], message)
    return tls


class Mailer(QueueWorker):
    """The bounded queue and its thread (start()/stop(): the owner starts and joins it)."""

    def __init__(
        self,
        settings: MailSettings,
        host: Callable[[], str],
        clock: Callable[[], float] = time.monotonic,
        send: Callable[[MailSettings, bytes], bool] = send_mail,
    ) -> None:
        super().__init__("alarm-mail", QUEUE_SIZE, STOP_JOIN_S)
        self.settings = settings
        self.host = host
        self.clock = clock
        self._send = send
        self._stats = MailStats()
        self._sent_at: collections.deque[float] = collections.deque()

    @property
    def stats(self) -> MailStats:
        with self._lock:
            return replace(self._stats, dropped=self._stats.dropped + self.full_drops)

    def _rate_allows(self) -> bool:
        now = self.clock()
        while self._sent_at and now - self._sent_at[0] >= HOUR_S:
            self._sent_at.popleft()
        return len(self._sent_at) < max(1, self.settings.rate)

    def _wait_for_rate(self) -> bool:
        """Until the rate allows one more mail; False if stopped meanwhile."""
        while not self._stop.is_set():
            if self._rate_allows():
                return True
            self._stop.wait(min(HOUR_S - (self.clock() - self._sent_at[0]), 1.0))
        return False

    def _run(self) -> None:
        while (first := self._take()) is not None:
            batch = [first]
            try:
                # while the rate has room each entry is a mail of its own, however many are
                # queued (a slow start must not turn the first fault into a digest); only
                # what waited for the rate goes out together
                if not self._rate_allows():
                    if not self._wait_for_rate():
                        return
                    while len(batch) < BATCH and (more := self._take(block=False)) is not None:
                        batch.append(more)
                self._mail(batch)
            finally:
                self._done(len(batch))

    def _mail(self, batch: list[Entry]) -> None:
        self._sent_at.append(self.clock())  # a failed attempt uses the rate too
        try:
            tls = self._send(self.settings, compose(self.settings, batch, self.host()))
        except Exception as e:  # smtplib.SMTPException, OSError, ssl.SSLError: not sent
            with self._lock:
                self._stats.failures += 1
                self._stats.dropped += len(batch)
                self._stats.last_error = f"{type(e).__name__}: {e}"
            return
        with self._lock:
            self._stats.mails += 1
            self._stats.entries += len(batch)
            self._stats.tls = tls
