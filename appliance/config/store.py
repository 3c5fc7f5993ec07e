"""Where the saved config lives: VARS keys, and the backup file format.

VARS keys (one per config object, value = its `config change` line in ASCII):
    CFG:<MODULE>          module-level arguments, e.g. CFG:DHCP0
    CFG:<MODULE>.<OBJ>    a sub-object, e.g. CFG:IP0.ETH0, CFG:IP0.RT0
`config write` is one `vars.commit()` that sets every present object and deletes every
CFG: key whose object is gone, so the saved config is always old-or-new, never a mix.

Backup file (download/upload, as on the box):
    vars check <digest> # <version> IPVA[<build>], Bootcode[<build>], HW[<hw>]
    config change IP0 ETH0 /addr 192.168.0.10 /mask 255.255.255.0
    …
    vars create UPDATE/CHECK p 42
    mod cmd FLASHDIR0 add-item …
<digest> is the first 32 hex digits of SHA-256 over the lines after the first (each ending
in a newline). A hand-edited file may carry `-` as digest to skip the check.

A real box's backup starts `vars check <hex> # <version text> <n>/<m> # <device> #` (an
IP811's, say): its checksum is the firmware's own, not published, so it is not checked. Its
lines for modules the IPVA lacks (`config change PBX0 …`, `mod cmd GW1 …`) are skipped and
listed with their line numbers; everything else is checked as in our own backups, and a bad
line still refuses the whole file.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Protocol

from appliance.config.grammar import GrammarError, parse_op, split_words
from appliance.config.model import Config, ConfigError, ObjKey, apply_op
from appliance.config.schema import MODULES
from appliance.config.varlines import VarsError, parse_create

KEY_PREFIX = "CFG:"


class Vars(Protocol):
    def get(self, key: str) -> bytes | None: ...

    def keys(self) -> Iterable[str]: ...

    def commit(self, changes: Mapping[str, bytes | None]) -> None: ...


def vars_key(key: ObjKey) -> str:
    return KEY_PREFIX + (f"{key[0]}.{key[1]}" if key[1] else key[0])


def parse_line(config: Config, line: str) -> Config:
    """Apply one `config change|add|rem …` line; raises ConfigError/GrammarError."""
    words = split_words(line)
    if len(words) < 2 or words[0].text.lower() != "config" or words[0].quoted:
        raise ConfigError("not a config line: expected config change|add|rem …")
    verb = words[1].text.lower()
    if verb not in ("change", "add", "rem"):
        raise ConfigError(f"expected config change|add|rem, got config {words[1].text}")
    config, _msg = apply_op(config, parse_op(verb, words[2:]))
    return config


def commit_changes(saved_keys: Iterable[str], config: Config) -> dict[str, bytes | None]:
    """The one VARS commit that makes the stored config equal `config`."""
    changes: dict[str, bytes | None] = {k: None for k in saved_keys if k.startswith(KEY_PREFIX)}
    for key, line in config.object_lines():
        changes[vars_key(key)] = line.encode("ascii")
    return changes


def saved_objects(vars: Vars) -> int:
    """How many config objects VARS holds (0 on a box that runs its factory settings)."""
    return sum(1 for k in vars.keys() if k.startswith(KEY_PREFIX))


def load_from_vars(vars: Vars, warn: Callable[[str], None]) -> Config:
    """The saved config; a damaged entry is reported through `warn` and skipped (boot goes on).
    Nothing saved (a new box, after a factory reset): the factory settings."""
    keys = sorted(k for k in vars.keys() if k.startswith(KEY_PREFIX))
    if not keys:
        return Config.factory_settings()
    config = Config.factory()
    for k in keys:
        raw = vars.get(k) or b""
        try:
            config = parse_line(config, raw.decode("ascii"))
        except (UnicodeDecodeError, ConfigError, GrammarError) as e:
            warn(f"config: ignoring damaged saved entry {k}: {e}")
    return config


@dataclass(frozen=True)
class BackupHeader:
    """The backup file's first line: the version, builds and hardware it was made on."""

    version: str
    build: int
    bootcode: int
    hw: str
    device: str = ""  # a real box's backup: its device (IP811); "" for an IPVA's own


class RestoreError(Exception):
    """A backup file was refused; nothing changed. Carries the 1-based line number."""

    def __init__(self, line: int, reason: str) -> None:
        super().__init__(f"line {line}: {reason}")
        self.line = line
        self.reason = reason


@dataclass(frozen=True)
class Backup:
    """A parsed backup file: its header, the config and the other lines it carried."""

    header: BackupHeader
    config: Config
    extra: list[str] = field(default_factory=list)  # `mod cmd FLASHDIR0 …` lines, in order
    extra_at: list[int] = field(default_factory=list)  # each one's 1-based line in the file
    variables: dict[str, bytes] = field(default_factory=dict)  # `vars create` lines
    skipped: list[tuple[int, str]] = field(default_factory=list)  # (line, module) not here
    notes: list[str] = field(default_factory=list)  # what the box restored otherwise (box.py)


_HEADER_RE = re.compile(
    r"^vars check (?P<digest>[0-9a-f]{32}|-) # (?P<version>\S+) "
    r"IPVA\[(?P<build>\d+)\], Bootcode\[(?P<bootcode>\d+)\], HW\[(?P<hw>[^\]]*)\]"
)


# a real box's first line: its checksum, firmware text, part n/m, device
_FOREIGN_RE = re.compile(
    r"^vars check (?P<digest>[0-9a-fA-F]+) # (?P<version>.*?) ?(?P<part>\d+/\d+)? "
    r"# (?P<device>[^#\s]+) #\s*$"
)


def _digest(body: str) -> str:
    import hashlib  # here: it loads OpenSSL's libcrypto, and only backups need it

    return hashlib.sha256(body.encode("ascii")).hexdigest()[:32]


def make_backup(config: Config, header: BackupHeader, extra: Iterable[str] = ()) -> str:
    body = "".join(line + "\n" for line in [*config.lines(), *extra])
    first = (
        f"vars check {_digest(body)} # {header.version} IPVA[{header.build}], "
        f"Bootcode[{header.bootcode}], HW[{header.hw}]"
    )
    return first + "\n" + body


def parse_backup(text: str, check_extra: Callable[[str], str | None] | None = None) -> Backup:
    """Validate a whole backup file and return what it holds; raise RestoreError at the
    first bad line. `check_extra` validates `mod cmd …` lines (None: they are refused)."""
    try:
        text.encode("ascii")
    except UnicodeEncodeError as e:
        at = text[: e.start].count("\n") + 1
        raise RestoreError(at, "non-ASCII character: a backup file is plain ASCII") from None
    lines = text.replace("\r\n", "\n").split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    if not lines:
        raise RestoreError(1, "empty file: a backup starts with a 'vars check …' line")
    header = _parse_header(lines)
    config = Config.factory()
    extra: list[str] = []
    extra_at: list[int] = []
    variables: dict[str, bytes] = {}
    skipped: list[tuple[int, str]] = []
    for n, line in enumerate(lines[1:], start=2):
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        words = stripped.split()
        if words[0].lower() == "vars":
            if len(words) < 2 or words[1].lower() != "create":
                raise RestoreError(n, "a backup holds vars create lines only")
            try:
                var = parse_create(words[2:])
            except VarsError as e:
                raise RestoreError(n, str(e)) from None
            variables[var.name] = var.value
            continue
        foreign = _foreign_module(words)
        if foreign:
            skipped.append((n, foreign))
            continue
        if stripped.lower().startswith("mod cmd "):
            problem = (
                check_extra(stripped)
                if check_extra
                else "mod cmd lines are not supported in a backup yet"
            )
            if problem:
                raise RestoreError(n, problem)
            extra.append(stripped)
            extra_at.append(n)
            continue
        try:
            config = parse_line(config, stripped)
        except (ConfigError, GrammarError) as e:
            raise RestoreError(n, str(e)) from None
    return Backup(header, config, extra, extra_at, variables, skipped)


def _parse_header(lines: list[str]) -> BackupHeader:
    m = _HEADER_RE.match(lines[0])
    if m:
        body = "".join(line + "\n" for line in lines[1:])
        if m["digest"] != "-" and m["digest"] != _digest(body):
            raise RestoreError(
                1,
                "digest does not match the file (changed after download?): download the "
                "backup again, or put '-' as digest to restore an edited file",
            )
        return BackupHeader(m["version"], int(m["build"]), int(m["bootcode"]), m["hw"])
    f = _FOREIGN_RE.match(lines[0])
    if f:
        return BackupHeader(f["version"].strip(), 0, 0, "", device=f["device"])
    raise RestoreError(
        1,
        "not a backup file: the first line must be "
        "'vars check <digest> # <version> IPVA[<build>], Bootcode[<build>], HW[…]' "
        "(or a real box's 'vars check <hex> # <version> 1/1 # <device> #')",
    )


# modules with `mod cmd` lines in a backup that the IPVA restores (the rest are another box's)
_RESTORED_COMMANDS = ("FLASHDIR0",)


def _foreign_module(words: list[str]) -> str | None:
    """The module of a `config …`/`mod cmd …` line for a module the IPVA lacks, else None."""
    low = [w.lower() for w in words[:3]]
    if len(words) >= 3 and low[0] == "config" and low[1] in ("change", "add", "rem"):
        module = words[2].upper()
        return None if module in MODULES else module
    if len(words) >= 3 and low[:2] == ["mod", "cmd"]:
        module = words[2].upper()
        return None if module in _RESTORED_COMMANDS else module
    return None
