"""`vars create|read|del`: the box's variables as console lines and as backup lines.

A variable is a VARS key with a value (bytes), as on the real box: `UPDATE/PROT`,
`UPDATE/CHECK`, `X509/REQUEST` … Lines look like the real firmware's:

    vars create <NAME> <flags> <value>     flags: p (persistent: every IPVA variable is),
                                           b (the value is hex: binary)
    vars read <NAME>                       prints `<NAME> <flags> <value>` for NAME and every
                                           variable under NAME/ (update servers take the
                                           third word: mode=vardump)
    vars del <NAME>                        removes NAME and every variable under NAME/

Names are words of letters, digits and `_ . -` separated by `/`. Keys with a colon
(`CFG:IP0.ETH0`, `X509:HTTPS.KEY`, `SEAL:KEY`) are the box's own: the config has its own
commands and the HTTPS key and the key the config's secrets are sealed with
(config/secrets.py) never leave the box, so `vars` neither shows nor changes them, and
backups carry only the variables `vars` can name.
"""

from __future__ import annotations

import binascii
import re
from collections.abc import Iterable
from dataclasses import dataclass

_NAME_RE = re.compile(r"[A-Za-z0-9_.-]+(/[A-Za-z0-9_.-]+)*")
_FLAGS_RE = re.compile(r"[a-z]+")
_TEXT_RE = re.compile(rb"[\x21-\x7e]*")
MAX_VALUE = 4096  # bytes; a certificate request or response fits
MAX_WORD = 2 * MAX_VALUE  # a `vars create … pb` value in hex is one word of the console line


class VarsError(ValueError):
    """A `vars` line that cannot be taken; the message says what to type."""


@dataclass(frozen=True)
class VarCreate:
    """A parsed `vars create` line: the variable's name and its value."""

    name: str
    value: bytes


def check_name(name: str) -> str:
    if ":" in name:
        raise VarsError(
            f"{name!r} is one of the box's own keys: vars names have no ':' "
            "(the config is changed with config …)"
        )
    if not _NAME_RE.fullmatch(name):
        raise VarsError(
            f"bad variable name {name!r}: words of letters, digits, _ . - separated by /"
        )
    return name


def is_variable(key: str) -> bool:
    """A VARS key `vars` (and a backup) deals with, not one of the box's own."""
    return ":" not in key


def parse_create(args: list[str]) -> VarCreate:
    """The words after `vars create`: NAME FLAGS [VALUE]."""
    if len(args) < 2:
        raise VarsError("usage: vars create <NAME> <flags> <value> (flags: p, pb for hex)")
    name, flags, rest = check_name(args[0]), args[1], args[2:]
    if not _FLAGS_RE.fullmatch(flags):
        raise VarsError(f"bad flags {flags!r}: letters such as p (persistent), b (hex value)")
    text = " ".join(rest)
    if "b" in flags:
        try:
            value = binascii.unhexlify(text)
        except (binascii.Error, ValueError):
            raise VarsError(
                f"{name}: flag b takes the value in hex digits, got {text[:24]!r}"
            ) from None
    else:
        try:
            value = text.encode("ascii")
        except UnicodeEncodeError:
            raise VarsError(f"{name}: a text value is ASCII; use flag b and hex") from None
    if len(value) > MAX_VALUE:
        raise VarsError(f"{name}: value too long ({len(value)} bytes, at most {MAX_VALUE})")
    return VarCreate(name, value)


def create_line(name: str, value: bytes) -> str:
    """`vars create …` that recreates the variable (text as it is, anything else in hex)."""
    if value and _TEXT_RE.fullmatch(value):
        return f"vars create {name} p {value.decode('ascii')}"
    return f"vars create {name} pb {value.hex()}"


def read_line(name: str, value: bytes) -> str:
    """`vars read` prints the create line's words after `vars create`."""
    return create_line(name, value).removeprefix("vars create ")


def under(keys: Iterable[str], name: str) -> list[str]:
    """NAME itself and the variables under NAME/, sorted; every variable for NAME ""."""
    return sorted(
        k for k in keys if is_variable(k) and (not name or k == name or k.startswith(name + "/"))
    )
