"""The alarm and event forward server (ALARM0 /addr /port /method): one request per entry.

Methods (services-logging.wiki, as for the log server):
    standard   POST <event …>text</event> to STANDARD_PATH on another box, which collects it
    post       the same body to /path
    get        GET /path?seq=…&code=…&severity=…&state=…&src=…&host=…&text=… (query args)
    syslog     a UDP datagram to /addr and /addr2 (one or two SYSLOG servers), the entry's
               XML as the message, facility local0..7 from /class, PRI by severity (PRI_OF)
A receiver asking for a login (ALARM0 /auth on the other box) gets HTTP Digest from
ALARM0 /user /pwd. /pwd is kept as typed, sealed with this box's key (config/secrets.py),
so the answer fits whatever realm the receiver asks for (IPVA-<its salt>); an older value,
the receiver's Digest secrets H(user:realm:pwd) (digest$user[$salt]$md5$sha256), answers
only the realm it was made for.

`Forwarder` is the bounded queue and the thread that owns the sending (start() in the
constructor's owner, stop() joins it): `put()` never blocks — a full queue drops the entry
and counts it; an entry that did not get there is retried after RETRY_S, in order; a
refusal (4xx other than the login) is dropped and counted.
"""

from __future__ import annotations

import hashlib
import os
import re
import socket
import time
import urllib.parse
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Protocol

from appliance.config.types import (
    CLEAR_PREFIX,
    DigestVerifier,
    digest_secret,
    digest_verifier,
)
from appliance.services.alarms.codes import Severity
from appliance.services.alarms.entry import Entry
from appliance.services.alarms.worker import QueueWorker

STANDARD_PATH = "/ALARM0/event"  # ours: the real box's path is not public
QUEUE_SIZE = 100
RETRY_S = 5.0
TIMEOUT_S = 3.0  # one connect/request; the box never waits on it, the forwarder thread does
STOP_JOIN_S = TIMEOUT_S + 1.0  # a request under way ends by its timeout
HTTP_PORT, SYSLOG_PORT = 80, 514
LOCAL0 = 16
# syslog severity of an entry: fault 2 (critical), alarm raised 3 (error), alarm cleared
# 5 (notice), event 6 (informational)
PRI_OF = {"fault": 2, "raised": 3, "cleared": 5, "event": 6}


class Refused(Exception):
    """The server answered and will never take this entry (HTTP 4xx): drop it."""


class Destination(Protocol):
    name: str

    def send(self, entry: Entry) -> None: ...  # OSError: retry later; Refused: drop

    def close(self) -> None: ...


def syslog_severity(entry: Entry) -> int:
    if entry.severity is Severity.ALARM:
        return PRI_OF[entry.state or "raised"]
    return PRI_OF[entry.severity.value]


def syslog_record(entry: Entry, facility: int) -> str:
    """`<PRI>Mmm dd hh:mm:ss HOST IPVA: <event …>text</event>` (RFC 3164)."""
    t = time.localtime(entry.time)
    stamp = f"{time.strftime('%b', t)} {t.tm_mday:2d} {time.strftime('%H:%M:%S', t)}"
    pri = (LOCAL0 + facility) * 8 + syslog_severity(entry)
    host = entry.host or "IPVA"
    return f"<{pri}>{stamp} {host} IPVA: {entry.xml().decode('utf-8')}"


class SyslogForward:
    def __init__(self, addrs: list[str], port: int, facility: int) -> None:
        self.addrs = [(a, port or SYSLOG_PORT) for a in addrs if a]
        self.facility = facility
        self.name = "syslog " + ", ".join(f"{a}:{p}" for a, p in self.addrs)
        self._sock: socket.socket | None = None

    def send(self, entry: Entry) -> None:
        if self._sock is None:
            self._sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        data = syslog_record(entry, self.facility).encode("utf-8")
        for addr in self.addrs:
            self._sock.sendto(data, addr)

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None


def _challenge(values: list[str]) -> dict[str, str] | None:
    """The best Digest challenge a box offers: SHA-256 before MD5."""
    found = {}
    for value in values:
        if value.lower().startswith("digest"):
            c = {k.lower(): v.strip('"') for k, v in re.findall(r'(\w+)=("[^"]*"|[^,\s]+)', value)}
            found[c.get("algorithm", "MD5").upper()] = c
    return found.get("SHA-256") or found.get("MD5")


def digest_authorization(
    password: str, method: str, uri: str, challenge: dict[str, str], user: str = "admin"
) -> str:
    """The Authorization of a request answering `challenge`, from ALARM0 /user /pwd opened:
    `clear$<password>` (any realm) or an older `digest$user[$salt]$md5$sha256`
    (H(user:realm:pwd) of each algorithm, for its realm only)."""
    realm = challenge.get("realm", "")
    if password.startswith(CLEAR_PREFIX):
        clear = password.removeprefix(CLEAR_PREFIX)
        v = DigestVerifier(
            user, realm, *(digest_secret(user, clear, a, realm) for a in ("MD5", "SHA-256"))
        )
    else:
        found = digest_verifier(password)
        if found is None:
            raise Refused("ALARM0 /pwd is not set as a password: give it again")
        v = found
    if realm != v.realm:
        raise Refused(
            f"the receiver's realm is {realm!r}, ALARM0 /pwd is for {v.realm!r}: give "
            "ALARM0 /pwd the receiver's password (config add ALARM0 /pwd <password>)"
        )
    user, algorithm = v.user, challenge.get("algorithm", "MD5").upper()
    h = hashlib.sha256 if algorithm == "SHA-256" else hashlib.md5
    ha1 = v.sha256 if algorithm == "SHA-256" else v.md5
    ha2 = h(f"{method}:{uri}".encode()).hexdigest()
    cnonce = os.urandom(8).hex()
    nonce = challenge["nonce"]
    response = h(f"{ha1}:{nonce}:00000001:{cnonce}:auth:{ha2}".encode()).hexdigest()
    return (
        f'Digest username="{user}", realm="{v.realm}", nonce="{nonce}", uri="{uri}", '
        f'algorithm={algorithm}, qop=auth, nc=00000001, cnonce="{cnonce}", '
        f'response="{response}", opaque="{challenge.get("opaque", "")}"'
    )


class HttpForward:
    def __init__(
        self, addr: str, port: int, method: str, path: str, password: str = "", user: str = "admin"
    ) -> None:
        self.addr, self.port = addr, port or HTTP_PORT
        self.method = method
        self.path = STANDARD_PATH if method == "standard" else "/" + path.lstrip("/")
        self.password = password  # ALARM0 /pwd opened (clear$… or digest$…), "" for none
        self.user = user
        self.name = f"http {method} {addr}:{self.port}{self.path}"

    def request_of(self, entry: Entry) -> tuple[str, str, bytes | None]:
        if self.method == "get":
            query = urllib.parse.urlencode({
                "seq": entry.seq, "time": int(entry.time), "code": entry.code,
                "name": entry.name, "severity": entry.severity.value, "state": entry.state,
                "src": entry.src, "host": entry.host, "text": entry.text,
            })  # fmt: skip
            sep = "&" if "?" in self.path else "?"
            return "GET", f"{self.path}{sep}{query}", None
        return "POST", self.path, entry.xml()

    def send(self, entry: Entry) -> None:
        import http.client  # only a box that forwards pays for it (see logtargets.remote)

        method, url, body = self.request_of(entry)
        headers = {"Content-Type": "text/xml; charset=utf-8"} if body is not None else {}
        for attempt in range(2):  # the second answers a Digest challenge
            conn = http.client.HTTPConnection(self.addr, self.port, timeout=TIMEOUT_S)
            try:
                conn.request(method, url, body=body, headers=headers)
                r = conn.getresponse()
                r.read()
                challenges = r.headers.get_all("WWW-Authenticate") or []
            except (http.client.HTTPException, OSError) as e:
                raise OSError(f"{self.name}: {e}") from e
            finally:
                conn.close()
            if r.status == 401 and attempt == 0 and self.password:
                challenge = _challenge(challenges)
                if challenge is not None:
                    auth = digest_authorization(self.password, method, url, challenge, self.user)
                    headers = {**headers, "Authorization": auth}
                    continue
            break
        if 400 <= r.status < 500:
            raise Refused(f"{self.name}: HTTP {r.status} {r.reason}")
        if r.status >= 300:
            raise OSError(f"{self.name}: HTTP {r.status} {r.reason}")

    def close(self) -> None:
        pass


@dataclass
class ForwardStats:
    """The forward server's counts and state (sent, dropped, failures, last error, up)."""

    sent: int = 0
    dropped: int = 0  # the queue was full, or the server refused it
    failures: int = 0  # attempts that failed (the entry was retried)
    last_error: str = ""
    up: bool = True


class Forwarder(QueueWorker):
    """A destination behind a bounded queue and its thread. `on_state(up, error)` is called
    (from the thread) when the destination stops or starts taking entries."""

    def __init__(
        self,
        dest: Destination,
        on_state: Callable[[bool, str], None] = lambda _up, _error: None,
        queue_size: int = QUEUE_SIZE,
        retry_s: float = RETRY_S,
    ) -> None:
        super().__init__("alarm-forward", queue_size, STOP_JOIN_S)
        self.dest = dest
        self.on_state = on_state
        self.retry_s = retry_s
        self._stats = ForwardStats()

    @property
    def stats(self) -> ForwardStats:
        with self._lock:
            return replace(self._stats, dropped=self._stats.dropped + self.full_drops)

    def _run(self) -> None:
        while (entry := self._take()) is not None:
            try:
                self._deliver(entry)
            finally:
                self._done()

    def _set_up(self, up: bool, error: str) -> None:
        with self._lock:
            changed = self._stats.up != up
            self._stats.up = up
        if changed and not self._stop.is_set():
            self.on_state(up, error)

    def _deliver(self, entry: Entry) -> None:
        while not self._stop.is_set():
            try:
                self.dest.send(entry)
            except Refused as e:
                with self._lock:
                    self._stats.dropped += 1
                    self._stats.last_error = str(e)
                return
            except OSError as e:
                error = str(e) or type(e).__name__
                with self._lock:
                    self._stats.failures += 1
                    self._stats.last_error = error
                self._set_up(False, error)
                self._stop.wait(self.retry_s)
                continue
            with self._lock:
                self._stats.sent += 1
            self._set_up(True, "")
            return

    def stop(self) -> bool:
        """Stop and join the thread (a request under way ends by its timeout); True if it
        ended, and then the destination is closed. Nothing is sent after that."""
        ended = super().stop()
        if ended:
            self.dest.close()
        return ended
