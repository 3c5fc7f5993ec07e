"""The admin login: HTTP Digest (RFC 7616, SHA-256 and MD5) everywhere, Basic over HTTPS.

Digest: the box keeps H(user:realm:password) for both algorithms (config.types), never the
password. Nonces are stateless (time + HMAC with a per-boot key), valid NONCE_LIFETIME_S;
an expired one gets a new challenge with `stale=true` (the browser retries by itself, it
is not a failure). The nonce count must grow per nonce (replays are refused); the `uri`
of the answer must be the request's own.

Lockout: a client (by IP address) that fails LOCKOUT_AFTER logins in a row is refused for
LOCKOUT_FIRST_S, then each further failure once that time is over doubles it, up to
LOCKOUT_MAX_S; a good login clears the count. Every refusal that starts a lockout is in
the trace. The table is bounded (LOCKOUT_TABLE entries, oldest dropped) so a flood of
addresses cannot grow it.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import os
import re
import struct
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

from appliance.config.types import (
    DIGEST_REALM,
    FACTORY_PASSWORD,
    check_password,
    digest_secret,
)
from appliance.services.http.host import Account

NONCE_LIFETIME_S = 300
LOCKOUT_AFTER = 5
LOCKOUT_FIRST_S = 30.0
LOCKOUT_MAX_S = 3600.0
LOCKOUT_TABLE = 1024
NONCE_COUNTS = 4096  # nonces whose last count is remembered (replay check)
ALGORITHMS = ("SHA-256", "MD5")  # offered in this order: the stronger first (RFC 7616 3.7)
_HASH = {"SHA-256": hashlib.sha256, "MD5": hashlib.md5}
MAX_HEADER = 4096  # an Authorization header longer than this is refused unparsed


@dataclass(frozen=True)
class Verdict:
    ok: bool
    user: str = ""
    reason: str = ""  # why not: for the 401 page and the trace
    stale: bool = False  # Digest nonce expired: not a failure, ask again
    counts: bool = True  # a failure that counts toward the lockout


_PARAM = re.compile(r'\s*([A-Za-z][A-Za-z0-9_-]*)\s*=\s*("(?:[^"\\]|\\.)*"|[^\s,"]*)\s*(,|$)')


def parse_digest_params(text: str) -> dict[str, str] | None:
    """The key=value list of a Digest header; None if it is not one (strict: no junk)."""
    params: dict[str, str] = {}
    pos = 0
    while pos < len(text):
        m = _PARAM.match(text, pos)
        if not m or m.end() == pos:
            return None
        key, value = m[1].lower(), m[2]
        if value.startswith('"'):
            value = re.sub(r"\\(.)", r"\1", value[1:-1])
        if key in params:
            return None
        params[key] = value
        pos = m.end()
    return params


class Nonces:
    """Stateless nonces: base64(8-byte time, HMAC); plus the last count seen per nonce."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._key = os.urandom(32)
        self._clock = clock
        self._counts: OrderedDict[str, int] = OrderedDict()
        self._lock = threading.Lock()

    def make(self) -> str:
        stamp = struct.pack(">d", self._clock())
        mac = hmac.new(self._key, stamp, hashlib.sha256).digest()[:16]
        return base64.urlsafe_b64encode(stamp + mac).decode()

    def check(self, nonce: str) -> str | None:
        """None if ours and fresh; "stale" if ours but old; "bad" otherwise."""
        try:
            raw = base64.urlsafe_b64decode(nonce.encode("ascii"))
        except (ValueError, binascii.Error, UnicodeEncodeError):
            return "bad"
        if len(raw) != 24:
            return "bad"
        want = hmac.new(self._key, raw[:8], hashlib.sha256).digest()[:16]
        if not hmac.compare_digest(want, raw[8:]):
            return "bad"
        age = self._clock() - struct.unpack(">d", raw[:8])[0]
        return "stale" if not 0 <= age <= NONCE_LIFETIME_S else None

    def count_ok(self, nonce: str, nc: int) -> bool:
        """The count must grow per nonce (a replayed answer repeats its count)."""
        with self._lock:
            last = self._counts.get(nonce, 0)
            if nc <= last:
                return False
            self._counts[nonce] = nc
            self._counts.move_to_end(nonce)
            while len(self._counts) > NONCE_COUNTS:
                self._counts.popitem(last=False)
            return True


@dataclass
class _Client:
    failures: int = 0
    until: float = 0.0  # refused until this monotonic time
    period: float = 0.0  # the last refusal time


class Lockout:
    def __init__(
        self,
        trace: Callable[[str], None],
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._trace = trace
        self._clock = clock
        self._clients: OrderedDict[str, _Client] = OrderedDict()
        self._lock = threading.Lock()

    def refused_for(self, client: str) -> float:
        """Seconds this client is still refused (0: it may try)."""
        with self._lock:
            c = self._clients.get(client)
            return max(0.0, c.until - self._clock()) if c else 0.0

    def failed(self, client: str, user: str, reason: str) -> float:
        """Count a failed login; returns the refusal time it starts (0: none yet)."""
        with self._lock:
            c = self._clients.pop(client, None) or _Client()
            self._clients[client] = c  # most recent last; the oldest go first
            while len(self._clients) > LOCKOUT_TABLE:
                self._clients.popitem(last=False)
            c.failures += 1
            if c.failures < LOCKOUT_AFTER:
                return 0.0
            c.period = min(LOCKOUT_MAX_S, c.period * 2 if c.period else LOCKOUT_FIRST_S)
            c.until = self._clock() + c.period
            n = c.failures
        self._trace(
            f"HTTP0: {n} failed logins from {client} (last as {user or '?'}: {reason}): "
            f"refused for {c.period:.0f} s"
        )
        return c.period

    def locked_clients(self) -> list[tuple[str, float]]:
        """The clients refused right now and for how many more seconds."""
        with self._lock:
            now = self._clock()
            return [(k, c.until - now) for k, c in self._clients.items() if c.until > now]

    def succeeded(self, client: str) -> None:
        with self._lock:
            self._clients.pop(client, None)


def challenges(nonces: Nonces, https: bool, stale: bool = False) -> list[str]:
    """The WWW-Authenticate values of a 401: Digest SHA-256, MD5; Basic only over TLS."""
    nonce = nonces.make()
    out = [
        f'Digest realm="{DIGEST_REALM}", qop="auth", algorithm={alg}, nonce="{nonce}", '
        f'opaque="{DIGEST_REALM}"' + (", stale=true" if stale else "")
        for alg in ALGORITHMS
    ]
    if https:
        out.append(f'Basic realm="{DIGEST_REALM}", charset="UTF-8"')
    return out


def _ha1(account: Account, user: str, algorithm: str) -> str | None:
    """H(user:realm:password) for the account, or None if it cannot be had."""
    if user != account.user:
        return None
    if not account.stored:
        return digest_secret(user, FACTORY_PASSWORD, algorithm)
    parts = account.stored.split("$")
    if parts[0] != "digest" or len(parts) != 4 or parts[1] != user:
        return None  # an older salted value: Basic over HTTPS only
    return parts[2] if algorithm == "MD5" else parts[3]


def digest_response(
    algorithm: str,
    ha1: str,
    nonce: str,
    method: str,
    uri: str,
    nc: str | None,
    cnonce: str | None,
    qop: str | None,
) -> str:
    """The `response` a client must send (RFC 7616 3.4.1; without qop: RFC 2069)."""
    h = _HASH[algorithm]

    def hx(text: str) -> str:
        return h(text.encode("utf-8", "surrogateescape")).hexdigest()

    ha2 = hx(f"{method}:{uri}")
    if qop is None:
        return hx(f"{ha1}:{nonce}:{ha2}")
    return hx(f"{ha1}:{nonce}:{nc}:{cnonce}:{qop}:{ha2}")


def check_digest(header: str, method: str, uri: str, account: Account, nonces: Nonces) -> Verdict:
    p = parse_digest_params(header)
    if p is None:
        return Verdict(False, reason="malformed Digest header")
    user = p.get("username", "")
    need = ("username", "realm", "nonce", "uri", "response")
    missing = [k for k in need if k not in p]
    if missing:
        return Verdict(False, user, "Digest header lacks " + ", ".join(missing))
    algorithm = p.get("algorithm", "MD5").upper()
    if algorithm not in _HASH:
        return Verdict(False, user, f"algorithm {algorithm[:20]} not offered")
    if p["realm"] != DIGEST_REALM:
        return Verdict(False, user, "wrong realm")
    state = nonces.check(p["nonce"])
    if state == "bad":
        return Verdict(False, user, "not a nonce of this box")
    if p["uri"] != uri:
        return Verdict(False, user, "the answer is for another URI")
    ha1 = _ha1(account, user, algorithm)
    qop = p.get("qop")
    if qop is not None:
        if qop != "auth" or "nc" not in p or "cnonce" not in p:
            return Verdict(False, user, "qop must be auth, with nc and cnonce")
        if not re.fullmatch(r"[0-9a-fA-F]{8}", p["nc"]):
            return Verdict(False, user, "bad nonce count")
    expected = (
        digest_response(
            algorithm, ha1, p["nonce"], method, p["uri"], p.get("nc"), p.get("cnonce"), qop
        )
        if ha1
        else ""
    )
    if not ha1 or not hmac.compare_digest(expected, p["response"].lower()):
        return Verdict(False, user, "wrong user or password")
    if state == "stale":
        return Verdict(False, user, "nonce expired", stale=True, counts=False)
    if qop is not None and not nonces.count_ok(p["nonce"], int(p["nc"], 16)):
        return Verdict(False, user, "replayed answer (nonce count did not grow)")
    return Verdict(True, user)


def check_basic(header: str, account: Account) -> Verdict:
    try:
        raw = base64.b64decode(header.strip().encode("ascii"), validate=True).decode("utf-8")
    except (ValueError, binascii.Error, UnicodeError):
        return Verdict(False, reason="malformed Basic header")
    user, sep, clear = raw.partition(":")
    if not sep:
        return Verdict(False, reason="malformed Basic header")
    if user != account.user or not check_password(account.stored, clear, user):
        return Verdict(False, user, "wrong user or password")
    return Verdict(True, user)


def check_authorization(
    header: str | None,
    *,
    method: str,
    uri: str,
    https: bool,
    account: Account,
    nonces: Nonces,
) -> Verdict | None:
    """The verdict on a request's Authorization header; None: it has none (no failure)."""
    if header is None or not header.strip():
        return None
    if len(header) > MAX_HEADER:
        return Verdict(False, reason="Authorization header too long")
    scheme, _, rest = header.strip().partition(" ")
    scheme = scheme.lower()
    if scheme == "digest":
        return check_digest(rest, method, uri, account, nonces)
    if scheme == "basic":
        if not https:
            # the password is not even looked at, so this is no guess to count
            return Verdict(
                False, reason="Basic login only over HTTPS: use Digest or https://", counts=False
            )
        return check_basic(rest, account)
    return Verdict(False, reason=f"unknown authentication scheme {scheme[:20]!r}")
