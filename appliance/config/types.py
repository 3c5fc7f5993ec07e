"""Value types of config arguments: each parses console text and formats it back.

A type is the single place that knows what a value may look like, so `config change`
validation, `config show` output and `help` all agree. Every type guarantees
`parse(format(v)) == v` for every value it accepts (tested over the whole schema).
"""

from __future__ import annotations

import ipaddress
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any


class BadValueError(ValueError):
    """A value was refused; the message says what a good value looks like."""


@dataclass(frozen=True)
class ValueType:
    """Base: free text is not allowed; subclasses define parse/format/describe."""

    def parse(self, text: str) -> Any:
        raise NotImplementedError

    def format(self, value: Any) -> str:
        return str(value)

    def describe(self) -> str:
        raise NotImplementedError

    def samples(self) -> list[Any]:
        """A few valid, non-trivial values (used by the schema round-trip tests)."""
        raise NotImplementedError

    def complete(self, value: Any, effective: Mapping[str, Any]) -> Any:
        """A value that depends on other arguments of its object is finished here, once
        the whole `config change` is parsed (`effective`: every argument's value)."""
        return value


@dataclass(frozen=True)
class IPv4(ValueType):
    """An IPv4 address, in dotted form."""

    def parse(self, text: str) -> str:
        try:
            return str(ipaddress.IPv4Address(text))
        except ValueError:
            raise BadValueError(f"not an IPv4 address (like 192.168.0.10): {text!r}") from None

    def describe(self) -> str:
        return "IPv4 address, e.g. 192.168.0.10"

    def samples(self) -> list[Any]:
        return ["192.168.0.10", "10.1.2.3"]


@dataclass(frozen=True)
class Netmask(ValueType):
    """An IPv4 netmask: contiguous ones, in dotted form."""

    def parse(self, text: str) -> str:
        try:
            # a netmask is contiguous ones; IPv4Network checks that for us
            ipaddress.IPv4Network(f"0.0.0.0/{text}")
            return str(ipaddress.IPv4Address(text))
        except ValueError:
            raise BadValueError(f"not a netmask (like 255.255.255.0): {text!r}") from None

    def describe(self) -> str:
        return "netmask, e.g. 255.255.255.0"

    def samples(self) -> list[Any]:
        return ["255.255.255.0", "255.255.0.0"]


_HOSTNAME_RE = re.compile(
    r"^(?=.{1,253}$)[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?(\.[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*$"
)


@dataclass(frozen=True)
class Host(ValueType):
    """An IPv4 address or a DNS name (log servers, NTP servers)."""

    def parse(self, text: str) -> str:
        try:
            return str(ipaddress.IPv4Address(text))
        except ValueError:
            pass
        if _HOSTNAME_RE.match(text) and not text.replace(".", "").isdigit():
            return text.lower()
        raise BadValueError(
            f"not an IPv4 address or host name (like 10.0.0.5 or ntp.example.com): {text!r}"
        )

    def describe(self) -> str:
        return "IPv4 address or host name"

    def samples(self) -> list[Any]:
        return ["10.0.0.5", "pool.ntp.org"]


@dataclass(frozen=True)
class Int(ValueType):
    """A decimal number in the range lo..hi."""

    lo: int
    hi: int

    def parse(self, text: str) -> int:
        if not re.fullmatch(r"[0-9]{1,10}", text):
            raise BadValueError(f"not a number ({self.lo}..{self.hi}): {text!r}")
        n = int(text)
        if not self.lo <= n <= self.hi:
            raise BadValueError(f"{n} is out of range {self.lo}..{self.hi}")
        return n

    def describe(self) -> str:
        return f"number {self.lo}..{self.hi}"

    def samples(self) -> list[Any]:
        return sorted({self.lo, self.hi, (self.lo + self.hi) // 2})


@dataclass(frozen=True)
class Choice(ValueType):
    """One of a fixed set of words; input is case-insensitive, output is canonical."""

    choices: tuple[str, ...]

    def parse(self, text: str) -> str:
        for c in self.choices:
            if c.lower() == text.lower():
                return c
        raise BadValueError(f"{text!r} is not one of: {', '.join(self.choices)}")

    def describe(self) -> str:
        return "|".join(self.choices)

    def samples(self) -> list[Any]:
        return list(self.choices)


_ON = {"on", "true", "1", "yes"}
_OFF = {"off", "false", "0", "no"}


@dataclass(frozen=True)
class Flag(ValueType):
    """A switch: `/arg` alone means on; `/arg off` switches it off."""

    def parse(self, text: str) -> bool:
        if text.lower() in _ON:
            return True
        if text.lower() in _OFF:
            return False
        raise BadValueError(f"{text!r} is not on or off")

    def format(self, value: Any) -> str:
        return "on" if value else "off"

    def describe(self) -> str:
        return "flag: /arg (on) or /arg off"

    def samples(self) -> list[Any]:
        return [True, False]


@dataclass(frozen=True)
class Text(ValueType):
    """Printable text up to `max_len` characters (quote it if it has spaces)."""

    max_len: int = 64
    pattern: str = r"[\x20-\x7e]*"
    hint: str = "printable text"

    def parse(self, text: str) -> str:
        if len(text) > self.max_len:
            raise BadValueError(f"too long ({len(text)} characters, at most {self.max_len})")
        if not re.fullmatch(self.pattern, text):
            raise BadValueError(f"{text!r} is not {self.hint}")
        return text

    def describe(self) -> str:
        return f"{self.hint}, at most {self.max_len} characters"

    def samples(self) -> list[Any]:
        return ["a", "x" * self.max_len] if re.fullmatch(self.pattern, "a") else []


@dataclass(frozen=True)
class Url(ValueType):
    """An http:// or https:// URL (no spaces), or empty for none."""

    max_len: int = 255
    hint: str = "an http:// or https:// URL"

    def parse(self, text: str) -> str:
        if len(text) > self.max_len:
            raise BadValueError(f"too long ({len(text)} characters, at most {self.max_len})")
        if text and not re.fullmatch(r"(?i)https?://[\x21-\x7e]+", text):
            raise BadValueError(f"{text!r} is not {self.hint}")
        return text

    def describe(self) -> str:
        return f"{self.hint}, at most {self.max_len} characters"

    def samples(self) -> list[Any]:
        return ["http://10.0.2.2:8080/up/", "https://updates.example/ipva/#m.htm?hw=#h"]


# POSIX TZ strings as the box's time zone setting takes them (e.g. CET-1CEST,M3.5.0,M10.5.0/3)
_RULE = r"M[0-9]{1,2}\.[1-5]\.[0-6](/[0-9]{1,2})?"
_TZ_RE = (
    r"[A-Za-z]{3,6}[+-]?[0-9]{1,2}(:[0-9]{2})?"
    rf"([A-Za-z]{{3,6}}([+-]?[0-9]{{1,2}})?(,{_RULE},{_RULE})?)?"
)

TIME_ZONE = Text(
    max_len=64, pattern=_TZ_RE, hint="a POSIX time zone like CET-1CEST,M3.5.0,M10.5.0/3"
)


# The admin password is kept as the two HTTP Digest (RFC 7616) secrets H(user:realm:pwd),
# MD5 and SHA-256, so the box can answer both kinds of Digest login without the clear text
# (as Apache's htdigest files do). They depend on the user name and on a random salt made
# when the password is set, both part of the value:
#     digest$<user>$<salt: 12 hex>$<md5 hex>$<sha256 hex>
# The salt is in the realm the box sends (`IPVA-<salt>`), so the same password gives other
# secrets on every box and at every change (no table of precomputed secrets fits two boxes),
# and renaming the box does not invalidate the password. Older values are still accepted:
# digest$<user>$<md5>$<sha256> (realm IPVA), sha256$<salt>$<hex> (console and Basic only).
# The secrets log in over Digest as the password does, so the config never holds them in
# the open: config/secrets.py seals them with the box's own key (Password, Unsealed).
DIGEST_REALM = "IPVA"  # the realm of the factory password and of the older values
FACTORY_PASSWORD = "ipva"  # the box's type, as documented in README; shown until changed
_DIGEST_RE = (
    r"digest\$([A-Za-z0-9._-]{1,32})\$"  # the user
    r"(?:([0-9a-f]{12})\$)?([0-9a-f]{32})\$([0-9a-f]{64})"  # [salt$] md5 $ sha256
)
_SALTED_RE = r"sha256\$([0-9a-f]{16})\$([0-9a-f]{64})"
SALT_HEX = 12


def digest_secret(user: str, clear: str, algorithm: str, realm: str = DIGEST_REALM) -> str:
    """H(user:realm:password), the stored secret of a Digest login ("MD5" or "SHA-256")."""
    import hashlib  # here: hashlib loads OpenSSL's libcrypto, which the prompt does not need

    h = hashlib.md5 if algorithm == "MD5" else hashlib.sha256
    return h(f"{user}:{realm}:{clear}".encode()).hexdigest()


def stored_password(user: str, clear: str, salted: bool = True) -> str:
    """What ADMIN0 /pwd keeps for `clear` when the admin user is `user` (a new salt);
    unsalted: the secrets for the realm IPVA (a password at another box, ALARM0 /pwd)."""
    if not salted:
        md5, sha = (digest_secret(user, clear, a) for a in ("MD5", "SHA-256"))
        return f"digest${user}${md5}${sha}"
    salt = os.urandom(SALT_HEX // 2).hex()
    realm = f"{DIGEST_REALM}-{salt}"
    md5, sha = (digest_secret(user, clear, a, realm) for a in ("MD5", "SHA-256"))
    return f"digest${user}${salt}${md5}${sha}"


@dataclass(frozen=True)
class DigestVerifier:
    """A stored password's Digest secrets and the realm they were made for."""

    user: str
    realm: str
    md5: str
    sha256: str


def digest_verifier(stored: str) -> DigestVerifier | None:
    """The Digest secrets in a stored value (None: a value that has none, sha256$…)."""
    m = re.fullmatch(_DIGEST_RE, stored)
    if not m:
        return None
    realm = f"{DIGEST_REALM}-{m[2]}" if m[2] else DIGEST_REALM
    return DigestVerifier(m[1], realm, m[3], m[4])


def password_realm(stored: str) -> str:
    """The Digest realm a login with this stored password answers."""
    v = digest_verifier(stored) if stored else None
    return v.realm if v else DIGEST_REALM


@dataclass(frozen=True)
class ClearPassword:
    """A typed password between parsing and storing; `Password.complete` hashes it with
    the object's user name. Its repr never shows the text."""

    text: str

    def __repr__(self) -> str:
        return "ClearPassword(***)"


@dataclass(frozen=True)
class Unsealed:
    """A secret the box has not sealed yet (config.secrets.seal_secrets does, with the box's
    own key, before anything shows or stores it): `digest$…` (a Digest verifier), `sha256$…`
    or `clear$<password>` (a password at another box). Neither its repr nor `format` shows
    it."""

    plain: str

    def __repr__(self) -> str:
        return "Unsealed(***)"


# A sealed secret (config.secrets): the id of the box key that sealed it, then the nonce,
# the ciphertext and the tag in unpadded base64url
SEALED_RE = r"enc\$([0-9a-f]{8})\$([A-Za-z0-9_-]{40,600})"
CLEAR_PREFIX = "clear$"  # a sealed password kept as typed (ALARM0 /pwd)


@dataclass(frozen=True)
class Password(ValueType):
    """A secret kept sealed with the box's own key (config.secrets): `config show`, backups
    and VARS hold only `enc$<key id>$…`, which parses back as is, and opens on this box
    only. Typed in clear it becomes, before sealing, the Digest verifier of the password
    (see stored_password; `keep_clear`: the password itself, for a login at another box,
    whose realm is not known here). Older unsealed values (`digest$…`, `sha256$…`) are still
    taken and sealed. `user_arg` names the argument of the same object that holds the user
    name."""

    user_arg: str = "user"
    keep_clear: bool = False

    def parse(self, text: str) -> str | ClearPassword | Unsealed:
        if re.fullmatch(SEALED_RE, text):
            return text
        if re.fullmatch(_DIGEST_RE, text) or re.fullmatch(_SALTED_RE, text):
            return Unsealed(text)
        if not 1 <= len(text) <= 64 or not re.fullmatch(r"[\x21-\x7e]+", text):
            raise BadValueError("a password is 1..64 printable characters without spaces")
        return ClearPassword(text)

    def format(self, value: Any) -> str:
        if not isinstance(value, str) or not re.fullmatch(SEALED_RE, value):
            # a path that skipped seal_secrets: refuse rather than show the secret
            raise ValueError("a password value that is not sealed cannot be shown")
        return value

    def complete(self, value: Any, effective: Mapping[str, Any]) -> Any:
        if isinstance(value, ClearPassword):
            if self.keep_clear:
                return Unsealed(CLEAR_PREFIX + value.text)
            return Unsealed(stored_password(str(effective[self.user_arg]), value.text))
        return value

    def describe(self) -> str:
        return "password (kept encrypted with this box's key)"

    def samples(self) -> list[Any]:
        return ["enc$0123abcd$" + "A" * 40 + "_-" + "z9" * 20]


def password_user(stored: str) -> str | None:
    """The user name a stored password was hashed with (None: an older, salted value)."""
    m = re.fullmatch(_DIGEST_RE, stored)
    return m[1] if m else None


def check_password(stored: str, clear: str, user: str = "admin") -> bool:
    """True if `clear` is the password of `user` whose hash is `stored`; an empty `stored`
    is the factory password."""
    import hashlib  # here: hashlib and hmac load OpenSSL's libcrypto (not before the prompt)
    import hmac

    if not stored:
        return hmac.compare_digest(clear.encode(), FACTORY_PASSWORD.encode())
    v = digest_verifier(stored)
    if v:
        want = digest_secret(user, clear, "SHA-256", v.realm)
        return v.user == user and hmac.compare_digest(want, v.sha256)
    m = re.fullmatch(_SALTED_RE, stored)
    if m:
        got = hashlib.sha256((m[1] + clear).encode()).hexdigest()
        return hmac.compare_digest(got, m[2])
    return False
