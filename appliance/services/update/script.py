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
idle; `resetn`/`iresetn` the same, but only if the step changed something (new firmware
installed, config written); `ser` (what innovaphone's update server sends before a separate
`iresetn` line) only records the serial.

This module is the pure part: no network, no clock, no box. The UP1 service feeds it.
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field


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


def script_url(url: str, *, box_type: str, mac: str, hw_id: str) -> str:
    """The URL UP1 fetches: a directory URL gets `update-<type>.htm`; `#m` is the MAC (hex,
    no separators, lower case, as innovaphone's servers key boxes), `#h` the hardware id."""
    if url.endswith("/"):
        url += f"update-{box_type.lower()}.htm"
    return url.replace("#m", mac.replace(":", "").lower()).replace("#h", hw_id)


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
