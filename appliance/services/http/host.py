"""What the HTTP admin needs from the running box: the `AdminBox` protocol.

The web server never touches the box's internals; everything goes through these calls, so
the same service runs in the VM and hosted, and tests can see exactly what it may do.
Console lines run through the console's own interpreter (`execute`), as jobs on the box's
owner thread, so a browser, a script and the serial console take turns on one box.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol

from appliance.config import Config, Op
from appliance.events import Event
from appliance.hal.cf import CfVolume
from appliance.services.alarms.codes import Severity
from appliance.services.alarms.entry import Entry


class Vars(Protocol):
    """The flash's VARS store (appliance.flash.vars.Vars): the certificate is kept there."""

    def get(self, key: str) -> bytes | None: ...

    def keys(self) -> Iterable[str]: ...

    def commit(self, updates: Mapping[str, bytes | None]) -> None: ...


@dataclass(frozen=True)
class Address:
    """A port's address and mode, as the admin shows it."""

    port: str  # ETH0, ETH1
    addr: str  # 10.0.2.15/24, or "" for none
    mode: str  # dhcp, static, off
    mac: str = ""


@dataclass(frozen=True)
class FirmwareSlot:
    """One firmware slot, as the admin shows it."""

    letter: str  # A, B
    file: str  # IPVA.BIN, IPVA2.BIN
    version: str  # 16r1sr2, or "" when empty
    build: int
    state: str  # confirmed, trial, failed, previous, empty (update.service.SlotStatus)
    running: bool
    detail: str  # "starts at the next reset (2 tries)" …
    signed: str = ""  # "signed (release)", "signed with the DEVELOPMENT key (…)", "unsigned"


@dataclass(frozen=True)
class Firmware:
    """Both firmware slots and the last update's result; `slots` is empty where the box
    has no slots (hosted without a boot disk: `why_not` says so)."""

    slots: tuple[FirmwareSlot, ...]
    last_update: str
    why_not: str = ""

    @property
    def running(self) -> FirmwareSlot | None:
        return next((s for s in self.slots if s.running), None)

    @property
    def other(self) -> FirmwareSlot | None:
        return next((s for s in self.slots if not s.running), None)


@dataclass(frozen=True)
class BoxStatus:
    """One snapshot of the box for General/Info and /CMD0/box_info.xml."""

    version: str  # 16r1sr1 IPVA[1601001], Bootcode[1601001], HW[IPVA-vm]
    name: str  # SYS0 /name, or IPVA
    hw: str
    uptime_s: int
    dram_mb: int
    addresses: tuple[Address, ...]
    flash: str  # FLASHMAN0 info, or why there is no flash
    reset_required: tuple[str, ...]  # saved settings that run only after a reset
    unwritten: int  # changes not yet written with config write
    factory_password: bool  # ADMIN0 still has the documented factory password
    firmware: Firmware
    alarms: int = 0  # active alarms (ALARM0)

    @property
    def mac(self) -> str:
        return next((a.mac for a in self.addresses if a.mac), "")


# Account.stored of a password sealed with a key the box lacks: no login matches it
NO_LOGIN = "!"


@dataclass(frozen=True)
class Account:
    """The admin account a login is checked against: its user and stored password verifier."""

    user: str  # ADMIN0 /user
    # ADMIN0 /pwd opened with the box's key (config/secrets.py): "" (the factory
    # password), its Digest verifier digest$… (or an older sha256$…), or NO_LOGIN
    stored: str


class RestoreRefused(Exception):
    """A backup was not taken; `line` (1-based, or None) is where the file is wrong.
    Nothing changed unless `partial` (the config was stored, some items were not)."""

    def __init__(self, message: str, line: int | None = None, partial: bool = False) -> None:
        super().__init__(message)
        self.line = line
        self.partial = partial


class FirmwareRefused(Exception):
    """A firmware upload was not installed; the message says why. The boot disk (slots and
    boot-control record) is unchanged."""


class CertificateRefused(Exception):
    """A certificate (and chain) was not installed; the message says why. The one in use
    is unchanged."""


@dataclass(frozen=True)
class CertView:
    """The HTTPS certificate for Administration/Certificates (`error`: not readable)."""

    subject: str = ""
    issuer: str = ""
    san: str = ""
    not_before: str = ""
    not_after: str = ""
    days_left: int = 0
    sha256: str = ""
    self_signed: bool = True
    chain: tuple[str, ...] = ()  # "CN=… (issued by CN=…)", the box's own first
    request_pem: str = ""  # the pending signing request (X509/REQUEST), PEM
    request_subject: str = ""
    busy: str = ""  # what the X509 module is making now ("" nothing)
    error: str = ""


class Certificates(Protocol):
    """The X509 module (appliance.services.http.certificates.X509Module)."""

    def view(self) -> CertView | None: ...  # None: no HTTPS certificate in use

    def install(self, data: bytes, source: str) -> str: ...  # CertificateRefused


class Alarms(Protocol):
    """The alarm service (appliance.services.alarms.service.AlarmService)."""

    auth: bool  # ALARM0 /auth: incoming entries and log lines need the admin login

    def own(self, severity: Severity | None = None) -> list[Entry]: ...  # newest first

    def collected(self, severity: Severity | None = None) -> list[Entry]: ...

    def xml(self, severity: Severity | None = None) -> str: ...

    def take_entry(self, body: bytes, client: str) -> Entry: ...  # EntryError

    def take_log_line(self, body: bytes, client: str) -> str: ...  # LogLineError, OSError

    def refused(self) -> None: ...  # an incoming request without the login


class AdminBox(Protocol):
    def status(self) -> BoxStatus: ...

    def public_status(self) -> BoxStatus: ...  # name, version, factory password: for a 401

    def running(self) -> Config: ...  # the changed (running) config, to fill in forms

    def account(self) -> Account: ...  # from the active config

    def execute(self, line: str) -> str: ...  # one console line, the console's answer

    # config requests of one form, as one job: all taken (their answers, then config
    # activate's) or none (ConfigError / GrammarError)
    def apply_changes(self, ops: Sequence[Op]) -> list[str]: ...

    def backup_text(self) -> str: ...  # the saved config as cfg.txt

    def restore_text(self, text: str) -> str: ...  # raises RestoreRefused

    def trace_text(self) -> str: ...  # the trace buffer (/log.txt)

    def crash_dump_text(self) -> str: ...  # the post-mortem record (/crash_dump.txt)

    def vars(self) -> Vars | None: ...  # None: no flash mounted

    def cf_volume(self) -> CfVolume | None: ...  # the mounted CF card, None: not mounted

    def trace(self, text: str) -> None: ...  # one boot-trace line with HTTP's tag

    def emit(self, event: Event) -> None: ...  # a box event (logins, for the log)
    # a firmware image, in chunks as they arrive, into the slot that does not run: the
    # describing sentence, or FirmwareRefused; BoxRestarting when the box goes down
    def install_firmware(self, chunks: Iterable[bytes], source: str) -> str: ...

    def alarms(self) -> Alarms | None: ...  # None: no alarm service

    def certificates(self) -> Certificates | None: ...  # None: no X509 module
