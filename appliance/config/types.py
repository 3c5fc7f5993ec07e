"""Value types of config arguments: each parses console text and formats it back.

A type is the single place that knows what a value may look like, so `config change`
validation, `config show` output and `help` all agree. Every type guarantees
`parse(format(v)) == v` for every value it accepts (tested over the whole schema).
"""

from __future__ import annotations

import hashlib
import ipaddress
import os
import re
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


@dataclass(frozen=True)
class IPv4(ValueType):
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


_HASH_PREFIX = "sha256$"


@dataclass(frozen=True)
class Password(ValueType):
    """Stored only as a salted hash; `config show` prints the hash, which parses back as is.

    Typing a clear-text password stores its hash, so backups never hold clear text.
    """

    def parse(self, text: str) -> str:
        if re.fullmatch(r"sha256\$[0-9a-f]{16}\$[0-9a-f]{64}", text):
            return text
        if not 1 <= len(text) <= 64 or not re.fullmatch(r"[\x21-\x7e]+", text):
            raise BadValueError("a password is 1..64 printable characters without spaces")
        salt = os.urandom(8).hex()
        return f"{_HASH_PREFIX}{salt}${hashlib.sha256((salt + text).encode()).hexdigest()}"

    def describe(self) -> str:
        return "password (stored as a salted hash)"

    def samples(self) -> list[Any]:
        return [self.parse("secret")]


def check_password(stored: str, clear: str) -> bool:
    """True if `clear` is the password whose hash is `stored`."""
    try:
        _, salt, digest = stored.split("$")
    except ValueError:
        return False
    return hashlib.sha256((salt + clear).encode()).hexdigest() == digest
