"""The update-server client's rules (UP1): where to poll, when, and how a script runs.

A fleet of boxes is updated from any plain web server (shared/reference/box-network-admin.md,
wiki "Concept Update Server"): each box polls a script, a text file of console commands, and
runs it line by line as if typed on the console. Two commands steer it:

    mod cmd UP1 check <final> <serial>       the rest of the script runs only if <serial>
                                             differs from the UPDATE/CHECK variable; it is
                                             stored once the script ran
    mod cmd UP0 prot <url> <final> <serial>  a firmware update (UP0), done once per <serial>
                                             (UPDATE/PROT)

Finals say what happens once the work is done (the box's vocabulary; the meaning of `n` is
not documented publicly — decided here): `reset` restarts at once, `ireset` once the box is
idle; `resetn`/`iresetn` the same, but only if something asks for a reset (a new firmware
waiting for its first start, changes only a reset applies: the update service decides);
`ser` (what innovaphone's update server sends before a separate `iresetn` line) only
records the serial.

This module is the pure part: no network, no clock, no box. The UP1 service feeds it.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from urllib.parse import quote, unquote, urlencode


class Final(enum.StrEnum):
    RESET = "reset"
    IRESET = "ireset"
    RESETN = "resetn"
    IRESETN = "iresetn"
    SER = "ser"

    @property
    def when_idle(self) -> bool:
        return self in (Final.IRESET, Final.IRESETN)

    @property
    def only_if_changed(self) -> bool:
        return self in (Final.RESETN, Final.IRESETN)

    def restarts(self, changed: bool) -> bool:
        """Whether this final asks for a reset after a step that did (not) change the box."""
        if self is Final.SER:
            return False
        return changed or not self.only_if_changed


class ScriptError(ValueError):
    """A script line or argument the update client cannot take; the message says which."""


def parse_final(word: str) -> Final:
    try:
        return Final(word.lower())
    except ValueError:
        finals = "|".join(f.value for f in Final)
        raise ScriptError(f"unknown final {word!r}: one of {finals}") from None


@dataclass(frozen=True)
class Identity:
    """What a box puts for the placeholders in its update URLs."""

    box_type: str  # #t: the type update servers list the box as ("ipva")
    mac: str  # #m: the MAC of ETH0, 12 hex digits ("" without a NIC)
    hw_id: str  # #h: the hardware id ("IPVA-vm")
    ip: str = ""  # #i: the box's IP address ("" before it has one)


def fill_url(url: str, me: Identity) -> str:
    """`#t`, `#m`, `#h`, `#i` in an update URL replaced by the box's values (URL-encoded):
    the type in lower case as innovaphone's update server lists models, the MAC as 12 hex
    digits in lower case, as the servers key boxes."""
    values = {
        "#t": me.box_type.lower(),
        "#m": me.mac.replace(":", "").lower(),
        "#h": me.hw_id,
        "#i": me.ip,
    }
    return re.sub(r"#[tmhi]", lambda m: quote(values[m[0]], safe=""), url)


def script_url(url: str, me: Identity, state: Mapping[str, str] | None = None) -> str:
    """The URL UP1 fetches: a directory URL gets `update-<type>.htm`; placeholders filled
    (fill_url); then the box's state args appended (`PROT=1601001&CHECK=…`), which the
    update server reads and never writes back into the URL."""
    if url.endswith("/"):
        url += f"update-{me.box_type.lower()}.htm"
    url = fill_url(url, me)
    if state:
        url += ("&" if "?" in url else "?") + urlencode(state)
    return url


def firmware_url(url: str, box_type: str) -> str:
    """`UP0 prot` with a directory URL (ending in /) gets the box's file name, as the real
    boxes (`ip<model>.bin`): `ipva.bin`."""
    return url + f"{box_type.lower()}.bin" if url.endswith("/") else url


@dataclass(frozen=True)
class Prot:
    """A parsed `mod cmd UP0 prot` line: the firmware's URL, the final, the serial."""

    url: str
    final: Final
    serial: str | None  # None: install whatever UPDATE/PROT says


def parse_prot(args: list[str]) -> Prot:
    """`UP0 prot <url> [<final>] [<serial>]`, where `ser <serial>` (the update server's form)
    is a final that keeps the serial and leaves the reset to a line of its own."""
    if not 1 <= len(args) <= 3:
        raise ScriptError("usage: mod cmd UP0 prot <url-or-dir/> [<final>] [<serial>|ser <serial>]")
    final = parse_final(args[1]) if len(args) > 1 else Final.SER
    if final is Final.SER and len(args) == 2:
        raise ScriptError("ser needs the serial: mod cmd UP0 prot <url> ser <serial>")
    return Prot(args[0], final, args[2] if len(args) == 3 else None)


@dataclass(frozen=True)
class Scfg:
    """A parsed `mod cmd UP0 scfg` line: where the backup is PUT, the serial, /always's command."""

    url: str
    serial: str | None  # None: the saved configuration's own digest
    always: str | None  # /always <command>: PUT this command's output, every time


def parse_scfg(args: list[str]) -> Scfg:
    """`UP0 scfg <url> [ser <serial>] [/always <command>]` (the command URL-encoded, as the
    update server sends it: `vars%20read%20V`)."""
    usage = "usage: mod cmd UP0 scfg <url> [ser <serial>] [/always <command>]"
    if not args:
        raise ScriptError(usage)
    url, rest = args[0], args[1:]
    serial = always = None
    while rest:
        if rest[0].lower() == "ser" and len(rest) >= 2:
            serial, rest = rest[1], rest[2:]
        elif rest[0].lower() == "/always" and len(rest) >= 2:
            always, rest = unquote(" ".join(rest[1:])), []
        else:
            raise ScriptError(f"{usage}; not {rest[0]!r}")
    return Scfg(url, serial, always)


def parse_hours(text: str) -> frozenset[int]:
    """`mod cmd UP1 times /allow 12,22,23,0,1` → the hours (0–23) polling is allowed in."""
    hours = set()
    for part in text.split(","):
        part = part.strip()
        if not part:
            continue
        if not part.isdigit() or not 0 <= int(part) <= 23:
            raise ScriptError(f"bad hour {part!r} in /allow: hours 0..23, comma separated")
        hours.add(int(part))
    if not hours:
        raise ScriptError("/allow needs at least one hour (0..23), e.g. /allow 22,23,0,1")
    return frozenset(hours)


def may_poll(hour: int, allowed: frozenset[int] | None) -> bool:
    """No `times /allow` given: any hour."""
    return allowed is None or hour in allowed


@dataclass
class ScriptRun:
    """What running a script did: each line with its answer, and how it ended."""

    lines: list[tuple[str, str]] = field(default_factory=list)
    skipped_at: int | None = None  # line number of a `check` whose serial was already done
    check: tuple[Final, str] | None = None  # the `check` that let the script run

    @property
    def errors(self) -> list[tuple[str, str]]:
        return [(line, answer) for line, answer in self.lines if answer.startswith("error")]


def is_check_line(line: str) -> tuple[Final, str] | None:
    """`mod cmd UP1 check <final> <serial>` → (final, serial); other lines → None."""
    words = line.split()
    if [w.lower() for w in words[:4]] != ["mod", "cmd", "up1", "check"]:
        return None
    if len(words) != 6:
        raise ScriptError("mod cmd UP1 check <final> <serial>: two arguments")
    return parse_final(words[4]), words[5]


def run_script(
    lines: Iterable[str], execute: Callable[[str], str], done_serial: str | None
) -> ScriptRun:
    """Run a script's lines through `execute` (the console interpreter) in order.

    A `check` line whose serial equals `done_serial` (the UPDATE/CHECK variable) ends the
    run there; otherwise it is remembered, and the caller stores its serial once the script
    ran. Blank lines and `#` comments are skipped; an `error:` answer does not stop the
    script (a box runs what it can, as when the lines are typed), but is kept for the trace."""
    run = ScriptRun()
    for number, raw in enumerate(lines, 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        try:
            check = is_check_line(line)
        except ScriptError as e:
            run.lines.append((line, f"error: {e}"))
            continue
        if check is not None:
            if check[1] == done_serial:
                run.skipped_at = number
                return run
            run.check = check
            run.lines.append((line, "ok"))
            continue
        run.lines.append((line, execute(line)))
    return run
