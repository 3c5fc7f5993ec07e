"""The admin login: HTTP Digest (RFC 7616, SHA-256 and MD5) everywhere, Basic over HTTPS.

Digest: the box keeps H(user:realm:password) for both algorithms (config.types), never the
password, and those only sealed with its own key (config.secrets): the Account this module
gets holds them opened, and nothing the box shows opens them. Nonces are stateless
(time + HMAC with a per-boot key), valid NONCE_LIFETIME_S; an expired one, or one of an
earlier boot (a browser after a reset), gets a new challenge with `stale=true` when the
answer is right (the browser retries by itself, it is not a failure). Only `qop=auth` is
taken (RFC 2069's answer without qop has no count and could be replayed); the nonce count
must grow per nonce (replays are refused); the `uri` of the answer must be the request's
own.

The challenges: Digest MD5 first, then SHA-256, then (HTTPS only) Basic. Python's urllib
reads only the first challenge and knows only MD5 (a box offering SHA-256 first cannot be
scripted with it); curl, requests, PHP and browsers answer MD5 as well. Over the same
unsalted-password guessing, SHA-256 adds nothing MD5 lacks here (the realm is salted per
box, config.types), so compatibility decides the order; SHA-256 stays for clients that
insist on it.

Lockout: a client (by IP address) that fails LOCKOUT_AFTER logins in a row is refused for
LOCKOUT_FIRST_S, then each further failure once that time is over doubles it, up to
LOCKOUT_MAX_S; a good login clears the count. Failures spread over many addresses are
counted too: SPREAD_AFTER failures within SPREAD_WINDOW_S refuse every address that has
not logged in well within KNOWN_S (the admin's own keep working: the way back); the
console's `mod cmd HTTP0 unlock` lifts every lockout. Every refusal that starts a lockout
is in the trace. The tables are bounded (LOCKOUT_TABLE entries, oldest dropped) so a flood
of addresses cannot grow them.
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
from collections import OrderedDict, deque
from collections.abc import Callable
from dataclasses import dataclass

from appliance.config.types import (
    FACTORY_PASSWORD,
    check_password,
    digest_secret,
    digest_verifier,
    password_realm,
)
from appliance.services.http.host import Account

NONCE_LIFETIME_S = 300
LOCKOUT_AFTER = 5
LOCKOUT_FIRST_S = 30.0
LOCKOUT_MAX_S = 3600.0
LOCKOUT_TABLE = 1024
SPREAD_AFTER = 20  # failed logins from all addresses together …
SPREAD_WINDOW_S = 600.0  # … within this time lock out the addresses not known
KNOWN_S = 7 * 86400.0  # an address that logged in well this recently is known
NONCE_COUNTS = 4096  # nonces whose counts are remembered (replay check)
REPLAY_WINDOW = 64  # counts below the highest seen that may still come (out of order)
ALGORITHMS = ("MD5", "SHA-256")  # offered in this order (see the docstring)
_HASH = {"SHA-256": hashlib.sha256, "MD5": hashlib.md5}
MAX_HEADER = 4096  # an Authorization header longer than this is refused unparsed


@dataclass(frozen=True)
class Verdict:
    """The outcome of checking one request's login, and why it failed."""

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
        # per nonce: the highest count seen and a bit per count of the REPLAY_WINDOW below
        self._counts: OrderedDict[str, tuple[int, int]] = OrderedDict()
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
            return "stale"  # made by an earlier boot (another key): ask again
        age = self._clock() - struct.unpack(">d", raw[:8])[0]
        return "stale" if not 0 <= age <= NONCE_LIFETIME_S else None

    def count_ok(self, nonce: str, nc: int) -> bool:
        """Each count is taken once per nonce (a replayed answer repeats its count). A
        browser's parallel requests may arrive out of order: counts up to REPLAY_WINDOW
        below the highest are taken if not seen yet (IPsec's replay window)."""
        with self._lock:
            top, seen = self._counts.get(nonce, (0, 0))
            if nc > top:
                seen = ((seen << (nc - top)) | 1) & ((1 << REPLAY_WINDOW) - 1)
                top = nc
            else:
                bit = 1 << (top - nc)
                if top - nc >= REPLAY_WINDOW or seen & bit:
                    return False
                seen |= bit
            self._counts[nonce] = (top, seen)
            self._counts.move_to_end(nonce)
            while len(self._counts) > NONCE_COUNTS:
                self._counts.popitem(last=False)
            return True


@dataclass
class _Client:
    """One address's lockout state: its failures and how long it is refused."""

    failures: int = 0
    until: float = 0.0  # refused until this monotonic time
    period: float = 0.0  # the last refusal time


class Lockout:
    def __init__(
        self,
        trace: Callable[[str], None],
        clock: Callable[[], float] = time.monotonic,
        *,
        spread: bool = True,
    ) -> None:
        """`spread`: count failures over all addresses too (see the module's docstring)."""
        self._trace = trace
        self._clock = clock
        self._spread = spread
        self._clients: OrderedDict[str, _Client] = OrderedDict()
        self._recent: deque[float] = deque(maxlen=SPREAD_AFTER)  # the last failures' times
        self._known: OrderedDict[str, float] = OrderedDict()  # address → last good login
        self._everyone = _Client()  # the lockout of addresses not known
        self._lock = threading.Lock()

    def refused_for(self, client: str) -> float:
        """Seconds this client is still refused (0: it may try)."""
        with self._lock:
            now = self._clock()
            c = self._clients.get(client)
            own = max(0.0, c.until - now) if c else 0.0
            known = now - self._known.get(client, -KNOWN_S - 1) <= KNOWN_S
            spread = 0.0 if known else max(0.0, self._everyone.until - now)
            return max(own, spread)

    def clear(self) -> int:
        """Lift every lockout (the console's way back); how many addresses were refused."""
        with self._lock:
            now = self._clock()
            n = sum(1 for c in self._clients.values() if c.until > now)
            n += self._everyone.until > now
            self._clients.clear()
            self._recent.clear()
            self._everyone = _Client()
            return n

    def failed(self, client: str, user: str, reason: str) -> float:
        """Count a failed login; returns the refusal time it starts (0: none yet)."""
        with self._lock:
            c = self._clients.pop(client, None) or _Client()
            self._clients[client] = c  # most recent last; the oldest go first
            while len(self._clients) > LOCKOUT_TABLE:
                self._clients.popitem(last=False)
            c.failures += 1
            spread = self._spread_failure()
            if c.failures < LOCKOUT_AFTER:
                return spread
            c.period = min(LOCKOUT_MAX_S, c.period * 2 if c.period else LOCKOUT_FIRST_S)
            c.until = self._clock() + c.period
            n = c.failures
        self._trace(
            f"HTTP0: {n} failed logins from {client} (last as {user or '?'}: {reason}): "
            f"refused for {c.period:.0f} s"
        )
        return c.period

    def _spread_failure(self) -> float:
        """Count one failure over all addresses (under the lock); the lockout it starts."""
        now = self._clock()
        self._recent.append(now)
        if not self._spread or len(self._recent) < SPREAD_AFTER:
            return 0.0
        if now - self._recent[0] > SPREAD_WINDOW_S or self._everyone.until > now:
            return 0.0
        e = self._everyone
        e.period = min(LOCKOUT_MAX_S, e.period * 2 if e.period else LOCKOUT_FIRST_S)
        e.until = now + e.period
        self._recent.clear()
        self._trace(
            f"HTTP0: {SPREAD_AFTER} failed logins within {SPREAD_WINDOW_S:.0f} s from several "
            f"addresses: addresses that have not logged in before refused for {e.period:.0f} s "
            "(mod cmd HTTP0 unlock lifts it)"
        )
        return e.period

    def locked_clients(self) -> list[tuple[str, float]]:
        """The clients refused right now and for how many more seconds."""
        with self._lock:
            now = self._clock()
            return [(k, c.until - now) for k, c in self._clients.items() if c.until > now]

    def succeeded(self, client: str) -> None:
        with self._lock:
            self._clients.pop(client, None)
            self._known.pop(client, None)
            self._known[client] = self._clock()
            while len(self._known) > LOCKOUT_TABLE:
                self._known.popitem(last=False)


def challenges(nonces: Nonces, https: bool, realm: str, stale: bool = False) -> list[str]:
    """The WWW-Authenticate values of a 401: Digest MD5, SHA-256; Basic only over TLS."""
    nonce = nonces.make()
    out = [
        f'Digest realm="{realm}", qop="auth", algorithm={alg}, nonce="{nonce}", '
        f'opaque="{realm}"' + (", stale=true" if stale else "")
        for alg in ALGORITHMS
    ]
    if https:
        out.append(f'Basic realm="{realm}", charset="UTF-8"')
    return out


def _ha1(account: Account, user: str, algorithm: str) -> str | None:
    """H(user:realm:password) for the account, or None if it cannot be had."""
    if user != account.user:
        return None
    if not account.stored:
        return digest_secret(user, FACTORY_PASSWORD, algorithm)
    v = digest_verifier(account.stored)
    if v is None or v.user != user:
        return None  # an older salted value: Basic over HTTPS only
    return v.md5 if algorithm == "MD5" else v.sha256


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
    if p["realm"] != password_realm(account.stored):  # an answer from before a change
        return Verdict(False, user, "wrong realm (the password changed?)", counts=False)
    state = nonces.check(p["nonce"])
    if state == "bad":
        return Verdict(False, user, "not a nonce of this box")
    if p["uri"] != uri:
        return Verdict(False, user, "the answer is for another URI")
    ha1 = _ha1(account, user, algorithm)
    qop = p.get("qop")
    if qop is None:  # RFC 2069: no count, so the answer could be replayed
        return Verdict(False, user, "Digest without qop=auth is not taken", counts=False)
    if qop != "auth" or "nc" not in p or "cnonce" not in p:
        return Verdict(False, user, "qop must be auth, with nc and cnonce")
    if not re.fullmatch(r"[0-9a-fA-F]{8}", p["nc"]):
        return Verdict(False, user, "bad nonce count")
    if not re.fullmatch(r"[0-9a-fA-F]{32}|[0-9a-fA-F]{64}", p["response"]):
        return Verdict(False, user, "the response is not a hex digest")
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
    if not nonces.count_ok(p["nonce"], int(p["nc"], 16)):
        # the password was right: not a guess; a new nonce (stale) lets a browser go on
        return Verdict(False, user, "replayed answer (nonce count seen)", stale=True, counts=False)
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
