"""ALARM0 and MAIL0: the box's alarms and events as a service (services-logging.wiki).

The service turns the box's facts (appliance.events: restarts, crashes, logins, links,
addresses, config writes, the update service's trace lines) and what it finds at its
start (flash damage, no CF card) into typed entries (codes.py), and hands each one to:

    the memory queue       ALARM0 /mem newest entries (events too)
    the persistent queue   ALARM0 /flash newest alarms and faults, on the flash (queues.py);
                           written before raise() returns (a reboot's fault is on the flash
                           before the box goes down), a VARS commit on the box's owner
                           (box.owner.call: at once when raised there, else as a job)
    the forward server     ALARM0 /addr … (forward.py): its own queue and thread
    the mailer             MAIL0 (mail.py): alarms and faults, its own queue and thread
    catch trace            ALARM0 /catch codes stop the trace buffer (TRACE clear restarts)

An alarm is raised once per cause (code, source, subject) and cleared once; raised and
not cleared since this boot is *active* (box_info.xml alarms=, General/Info). What other
boxes send by the Standard method is the receiver's (receiver.py); the web admin reaches
all of it through `AlarmService` (the HTTP service's AdminBox.alarms()).

`mod cmd ALARM0 show [N] [event|alarm|fault]`, `clear`, `xml [severity]`, `info`, `test`.

The forwarder and the mailer are imported when configured (the forward server, MAIL0 /to),
not for a box's prompt.
"""

from __future__ import annotations

import re
import threading
import xml.etree.ElementTree as ET
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from appliance.config.schema import MODULES
from appliance.config.types import CLEAR_PREFIX
from appliance.errors import BoxError
from appliance.events import (
    AddressChanged,
    CertificateChecked,
    ConfigWritten,
    Crashed,
    Event,
    FlashReady,
    LinkChanged,
    LoginFailed,
    LoginSucceeded,
    LogTargetChanged,
    RestartRequested,
    Traced,
)
from appliance.hal.cf import CfVolume
from appliance.hal.types import DiskRole
from appliance.modcmd import Command, ModCmdError
from appliance.owner import BoxRestarting
from appliance.service import BaseService
from appliance.services.alarms import codes
from appliance.services.alarms.codes import Code, Severity
from appliance.services.alarms.entry import Entry
from appliance.services.alarms.queues import MemoryQueue, PersistentQueue, last_seq, persisted
from appliance.services.alarms.receiver import CfFull, Receiver
from appliance.trace import Tag, format_trace

if TYPE_CHECKING:
    from appliance.box import Box
    from appliance.config import Activation
    from appliance.services.alarms.forward import Forwarder, HttpForward, SyslogForward
    from appliance.services.alarms.mail import Mailer, MailSettings

MODULES_OWNED = ("ALARM0", "MAIL0")
DRAIN_S = 2.0  # at stop: time for queued entries to reach the forward server
UPDATE_PREFIX = format_trace("", Tag.UPDATE)
# the update service's trace lines (services/update/service.py) that are entries
UPDATE_LINES: tuple[tuple[re.Pattern[str], Code], ...] = (
    (re.compile(r"UP0: firmware .* started and is confirmed"), codes.UPDATE_DONE),
    (re.compile(r"UP0: update from .* failed: "), codes.UPDATE_FAILED),
    (re.compile(r"UP0: .*; nothing was written$"), codes.UPDATE_FAILED),
    (re.compile(r"UP0: slot \w+ \(.*\) did not start; running slot"), codes.UPDATE_FALLBACK),
    (re.compile(r"UP0: firmware .*: starting "), codes.UPDATE_FALLBACK),  # the bootcode's note
)


def _by(who: str) -> str:
    return f" (by {who})" if who else ""


@dataclass(frozen=True)
class Raise:
    """What one box event means: raise (or clear) `code` about `src`."""

    code: Code
    src: str
    text: str
    cleared: bool = False
    subject: str = ""  # tells apart alarms of one code and source (the locked-out client)


def entries_of(event: Event) -> list[Raise]:
    """The entries a box event stands for (most stand for none)."""
    if isinstance(event, RestartRequested):
        if event.kind == "reboot":
            return [Raise(codes.REBOOT, "SYS0", "reboot (watchdog trap)" + _by(event.by))]
        return [Raise(codes.RESET, "SYS0", "reset" + _by(event.by))]
    if isinstance(event, Crashed):
        return [Raise(codes.CRASH, "SYS0", f"restart after a crash: {event.reason}")]
    if isinstance(event, ConfigWritten):
        return [Raise(codes.CONFIG_WRITTEN, "CFG0", f"config {event.how}{_by(event.by)}")]
    if isinstance(event, LoginFailed):
        who = "".join(c if c.isprintable() else "?" for c in event.user[:64]) or "?"
        out = [Raise(codes.LOGIN_FAILED, "HTTP0",
                     f"failed login as {who} from {event.client}: {event.reason}")]  # fmt: skip
        if event.refused_s:
            out.append(Raise(codes.LOGIN_LOCKOUT, "HTTP0",
                             f"{event.client} refused for {event.refused_s:.0f} s after failed "
                             "logins", subject=event.client))  # fmt: skip
        return out
    if isinstance(event, LoginSucceeded):
        return [Raise(codes.LOGIN_LOCKOUT, "HTTP0", f"{event.client} logged in",
                      cleared=True, subject=event.client)]  # fmt: skip
    if isinstance(event, LinkChanged):
        what = "up" if event.up else "down"
        return [Raise(codes.LINK_DOWN, event.port, f"{event.port} link {what}", cleared=event.up)]
    if isinstance(event, AddressChanged):
        if event.address is None:
            return [Raise(codes.DHCP_LOST, event.port, f"{event.port} DHCP lease lost")]
        text = f"{event.port} IP address {event.address}"
        fallback = "fallback" in event.address
        return [
            Raise(codes.DHCP_LOST, event.port, text, cleared=True),
            Raise(codes.DHCP_FALLBACK, event.port, text, cleared=not fallback),
        ]
    if isinstance(event, LogTargetChanged):
        what = "takes records again" if event.up else f"does not take records: {event.error}"
        return [Raise(codes.LOG_UNREACHABLE, event.module, f"{event.target} {what}",
                      cleared=event.up)]  # fmt: skip
    if isinstance(event, CertificateChecked):
        left = f"expires in {event.days_left} days" if event.days_left >= 0 else "has expired"
        text = f"HTTPS certificate {event.subject} {left} ({event.not_after})"
        return [Raise(codes.CERT_EXPIRY, "X509", text, cleared=not event.near)]
    if isinstance(event, Traced) and event.line.startswith(UPDATE_PREFIX):
        text = event.line[len(UPDATE_PREFIX) :]
        for pattern, code in UPDATE_LINES:
            if pattern.match(text):
                return [Raise(code, text[:3], text[5:])]  # "UP0: …": UP0 is the source
    return []


def _values(box: Box, module: str) -> dict[str, Any]:
    return {a.name: box.active.value(module, a.name) for a in MODULES[module].args}


def mail_settings(v: dict[str, Any]) -> MailSettings | None:
    if not v["to"]:
        return None
    from appliance.services.alarms.mail import MailSettings  # here: see the module doc

    return MailSettings(
        str(v["from"]), str(v["from-name"]), str(v["to"]), str(v["to-name"]), str(v["server"]),
        int(v["port"]), str(v["user"]), str(v["pwd"]), int(v["rate"]), v["tls"] == "verify",
    )  # fmt: skip


def catch_codes(text: str) -> frozenset[int]:
    return frozenset(int(c) for c in text.split(",") if c)


class BoxVars:
    """The box's VARS for the persistent queue, on the owner thread (its callers are)."""

    def __init__(self, box: Box) -> None:
        self.box = box

    def get(self, key: str) -> bytes | None:
        return self.box.get_var(key)

    def keys(self) -> list[str]:
        return self.box.flash.vars.keys() if self.box.flash is not None else []

    def commit(self, updates: Mapping[str, bytes | None]) -> None:
        self.box.commit_vars(updates)


class AlarmService(BaseService):
    name = "alarms"
    config_modules: tuple[str, ...] = MODULES_OWNED

    def __init__(self, cf_volume: Callable[[], CfVolume | None] = lambda: None) -> None:
        """`cf_volume`: the CF card for the log lines other boxes send (the CF service's)."""
        self.cf_volume = cf_volume
        self.box: Box | None = None
        self.memory = MemoryQueue()
        self.persistent = PersistentQueue(None)
        self._deferred: list[Callable[[], None]] = []  # flash writes waiting for FlashReady
        self.receiver = Receiver(cf_volume, self.memory.size)
        self.forwarder: Forwarder | None = None
        self.mailer: Mailer | None = None
        self.catch: frozenset[int] = frozenset()
        self.auth = False
        self.lost = 0  # entries the flash did not take (full, damaged, box restarting)
        self._values: dict[str, dict[str, Any]] = {}
        self._seq = 0
        self._active: dict[tuple[int, str, str], Entry] = {}
        self._lock = threading.Lock()
        self._stopped = threading.Event()
        self._unsubscribe: Callable[[], None] | None = None

    # -- life ---------------------------------------------------------------------------
    def start(self, box: Box) -> None:
        self.box = box
        alarm = _values(box, "ALARM0")
        self.memory.resize(int(alarm["mem"]))
        self.receiver.collected.resize(int(alarm["mem"]))
        vars = BoxVars(box) if box.flash is not None else None
        self.persistent = PersistentQueue(vars, int(alarm["flash"]))
        kept = self.persistent.load(lambda text: box.trace(text))
        for entry in kept:
            self.memory.add(entry)
        self._seq = last_seq(kept)
        self.configure(box)
        self._unsubscribe = box.events.subscribe(self._on_event)
        self.raise_(codes.BOOT, "SYS0", f"boot {box.version_line()}")
        for line in box.flash.flashman.damage if box.flash is not None else []:
            self.raise_(codes.FLASH_DAMAGE, "FLASHMAN0", line)
        if DiskRole.CF in box.disks and self.cf_volume() is None:
            self.raise_(codes.CF_UNMOUNTED, "CF0", "CF0 not mounted: no log files on the card")

    def configure(self, box: Box) -> None:
        """Take ALARM0/MAIL0 from the active config; an unchanged part keeps its thread."""
        alarm, mail = _values(box, "ALARM0"), _values(box, "MAIL0")
        self.memory.resize(int(alarm["mem"]))
        self.receiver.collected.resize(int(alarm["mem"]))
        self.persistent.size = int(alarm["flash"])
        self.catch = catch_codes(str(alarm["catch"]))
        self.auth = bool(alarm["auth"])
        fwd_keys = ("addr", "port", "method", "path", "class", "addr2", "user", "pwd")
        fwd = {k: alarm[k] for k in fwd_keys}
        if fwd != self._values.get("forward"):
            self._values["forward"] = fwd
            # /pwd is sealed with the box's key (config/secrets.py): the sender needs it open
            password = box.secret(box.active, "ALARM0", "pwd")
            if password is None:
                box.trace(
                    "ALARM0: /pwd does not open with this box's key: give it again "
                    "(config add ALARM0 /pwd <password>); sending without a login"
                )
            fwd_open = {**fwd, "pwd": password or ""}
            old, self.forwarder = self.forwarder, self._make_forwarder(fwd_open)
            if old is not None:
                old.stop()
            if self.forwarder is not None:
                self.forwarder.start()
        if mail != self._values.get("mail"):
            self._values["mail"] = mail
            # /pwd is sealed with the box's key (config/secrets.py): SMTP AUTH needs it open
            smtp_pwd = box.secret(box.active, "MAIL0", "pwd")
            if smtp_pwd is None:
                box.trace(
                    "MAIL0: /pwd does not open with this box's key: give it again "
                    "(config add MAIL0 /pwd <password>)"
                )
            settings = mail_settings({**mail, "pwd": (smtp_pwd or "").removeprefix(CLEAR_PREFIX)})
            old_mail = self.mailer
            self.mailer = None
            if settings is not None:
                from appliance.services.alarms.mail import Mailer  # here: see the module doc

                self.mailer = Mailer(settings, lambda: box.name)
            if old_mail is not None:
                old_mail.stop()
            if self.mailer is not None:
                self.mailer.start()

    def _make_forwarder(self, v: dict[str, Any]) -> Forwarder | None:
        if not v["addr"]:
            return None
        # here: see the module doc
        from appliance.services.alarms.forward import Forwarder, HttpForward, SyslogForward

        if v["method"] == "syslog":
            dest: HttpForward | SyslogForward = SyslogForward(
                [str(v["addr"]), str(v["addr2"])], int(v["port"]), int(v["class"])
            )
        else:
            dest = HttpForward(
                str(v["addr"]), int(v["port"]), str(v["method"]), str(v["path"]),
                str(v["pwd"]), str(v["user"]),
            )  # fmt: skip
        return Forwarder(dest, self._forward_state)

    def _forward_state(self, up: bool, error: str) -> None:
        text = "the forward server takes entries again" if up else f"not delivered: {error}"
        self.raise_(codes.FORWARD_UNREACHABLE, "ALARM0", text, cleared=up)

    def apply(self, box: Box, activation: Activation) -> list[str]:
        if any(a.split(" ")[0] in MODULES_OWNED for a in activation.applied):
            self.configure(box)
            self._flash_write(self.persistent.trim)
        return []

    def stop(self) -> None:
        """Stop taking entries, give queued ones DRAIN_S to leave (the reset's own entry),
        then stop and join the forwarder and the mailer (each bounded by its timeout; one
        that did not end is traced)."""
        self._stopped.set()
        if self._unsubscribe is not None:
            self._unsubscribe()
            self._unsubscribe = None
        if self.forwarder is not None and self.forwarder.stats.up:  # down: it would wait
            self.forwarder.drain(DRAIN_S)
        for name, part in (("forwarder", self.forwarder), ("mailer", self.mailer)):
            if part is not None and not part.stop() and self.box is not None:
                self.box.trace(f"ALARM0: the {name} did not stop in time; it sends nothing more")

    # -- entries --------------------------------------------------------------------------
    def _on_event(self, event: Event) -> None:
        if isinstance(event, FlashReady):  # on the owner (the flash service posts it)
            deferred, self._deferred = self._deferred, []
            for write in deferred:
                self._flash_write(write)
            for line in event.damage:  # found by the read after the prompt
                self.raise_(codes.FLASH_DAMAGE, "FLASHMAN0", line)
            return
        raised = entries_of(event)
        box = self.box
        if raised and box is not None and not box.owner.in_owner():
            # an event from another thread (a trace line of the update's worker, a log
            # target's sender): its entries are made on the box's owner, in order
            box.owner.post(lambda: self._raise_all(raised))
        else:
            self._raise_all(raised)

    def _raise_all(self, raised: list[Raise]) -> None:
        for r in raised:
            self.raise_(r.code, r.src, r.text, cleared=r.cleared, subject=r.subject)

    def raise_(
        self, code: Code, src: str, text: str, *, cleared: bool = False, subject: str = ""
    ) -> Entry | None:
        """Make the entry and hand it on; None when there is nothing to say (an alarm that
        is raised already, or cleared and not raised, or the service stopped)."""
        if self._stopped.is_set() or self.box is None:
            return None
        box = self.box
        key = (code.number, src, subject)
        with self._lock:
            if code.severity is Severity.ALARM:
                if cleared != (key in self._active):
                    return None
            self._seq += 1
            entry = Entry.of(code, src, text, cleared=cleared, host=box.name, seq=self._seq)
            if code.severity is Severity.ALARM:
                if cleared:
                    del self._active[key]
                else:
                    self._active[key] = entry
        self.memory.add(entry)
        if persisted(entry):
            self._flash_write(lambda: self.persistent.add(entry))
        if self.forwarder is not None:
            self.forwarder.put(entry)
        if self.mailer is not None and entry.severity is not Severity.EVENT:
            self.mailer.put(entry)
        if code.number in self.catch and not box.trace.stopped:
            box.trace(f"ALARM0: trace stopped at event {code.number} {code.name}: {text}")
            box.trace.stop()
        return entry

    def _flash_write(self, write: Callable[[], None]) -> None:
        """A persistent-queue write, on the box's owner; one that fails (no room, the box
        going down) leaves the entry in RAM only, counted as lost. While a full flash is
        still being read after the prompt (a deferred mount) the write waits in RAM for
        events.FlashReady: a commit now would make the owner, so the console, wait."""
        if self.box is None:
            return
        flash = self.box.flash
        if flash is not None and not flash.flashman.mounted:
            self._deferred.append(write)
            return
        try:
            self.box.owner.call(write)
        except (BoxError, BoxRestarting) as e:
            with self._lock:
                self.lost += 1
            if isinstance(e, BoxError):
                self.box.trace(f"ALARM0: entry not kept on the flash: {e}")

    # -- what the console and the web admin read -----------------------------------------
    def active_count(self) -> int:
        with self._lock:
            return len(self._active)

    def own(self, severity: Severity | None = None) -> list[Entry]:
        return self.memory.newest(severity)

    def collected(self, severity: Severity | None = None) -> list[Entry]:
        return self.receiver.collected.newest(severity)

    def clear(self) -> str:
        n = self.memory.clear() + self.receiver.collected.clear()
        kept: list[int] = []
        self._flash_write(lambda: kept.append(self.persistent.clear()))
        return f"events cleared ({n} in memory, {sum(kept)} on the flash)"

    def xml(self, severity: Severity | None = None) -> str:
        """The XML form: `<events box= active=><event …/>…<collected><event …/></collected>`."""
        box = self.box.name if self.box is not None else ""
        root = ET.Element("events", {"box": box, "active": str(self.active_count())})
        for e in self.own(severity):
            root.append(e.element())
        collected = ET.SubElement(root, "collected")
        for e in self.collected(severity):
            collected.append(e.element())
        return ET.tostring(root, encoding="unicode")

    def take_entry(self, body: bytes, client: str) -> Entry:
        """A Standard-method entry from another box; forwarded on by SYSLOG (the central
        box's job), not by HTTP (two boxes forwarding to each other would loop)."""
        entry = self.receiver.take_entry(body, client)
        fwd = self.forwarder
        if fwd is not None:
            # imported with the forwarder (_make_forwarder)
            from appliance.services.alarms.forward import SyslogForward

            if isinstance(fwd.dest, SyslogForward):
                fwd.put(entry)
        return entry

    def take_log_line(self, body: bytes, client: str) -> str:
        try:
            path = self.receiver.take_log_line(body, client)
        except CfFull:
            self.raise_(codes.CF_FULL, "CF0", "CF0 is full: log lines of other boxes are lost")
            raise
        self.raise_(codes.CF_FULL, "CF0", "CF0 takes log lines again", cleared=True)
        self.raise_(codes.CF_UNMOUNTED, "CF0", "CF0 is mounted", cleared=True)
        return path

    def refused(self) -> None:
        self.receiver.refused()

    def info(self) -> str:
        parts = [
            f'<queues mem="{len(self.memory)}" mem-max="{self.memory.size}" '
            f'flash-max="{self.persistent.size}" active="{self.active_count()}" '
            f'lost="{self.lost}"/>'
        ]
        if self.forwarder is not None:
            s = self.forwarder.stats
            parts.append(ET.tostring(ET.Element("forward", {
                "to": self.forwarder.dest.name, "state": "up" if s.up else "down",
                "queued": str(self.forwarder.queued), "sent": str(s.sent),
                "dropped": str(s.dropped), "failures": str(s.failures), "error": s.last_error,
            }), encoding="unicode"))  # fmt: skip
        r = self.receiver.stats
        parts.append(ET.tostring(ET.Element("incoming", {
            "auth": "on" if self.auth else "off", "events": str(r.events),
            "log-lines": str(r.log_lines), "refused": str(r.refused), "bad": str(r.bad),
        }), encoding="unicode"))  # fmt: skip
        if self.mailer is not None:
            m = self.mailer.stats
            parts.append(ET.tostring(ET.Element("mail", {
                "to": self.mailer.settings.recipient, "mails": str(m.mails),
                "entries": str(m.entries), "dropped": str(m.dropped),
                "failures": str(m.failures), "tls": "yes" if m.tls else "no",
                "error": m.last_error,
            }), encoding="unicode"))  # fmt: skip
        return "<info>" + "".join(parts) + "</info>"

    # -- mod cmd ALARM0 -------------------------------------------------------------------
    def commands(self) -> list[Command]:
        return [
            Command("ALARM0", "show", "show [N] [event|alarm|fault]: newest first", self._show),
            Command("ALARM0", "clear", "empty the memory and persistent queues", self._clear),
            Command("ALARM0", "xml", "xml [event|alarm|fault]: the entries as XML", self._xml),
            Command("ALARM0", "info", "queues, forward server, incoming, mail (XML)", self._info),
            Command("ALARM0", "test", "raise a test fault (forward server, mail)", self._test),
        ]

    def _running(self) -> None:
        if self.box is None:
            raise ModCmdError("ALARM0: the alarm service is not running")

    def _show(self, box: Box, args: list[str]) -> str:
        self._running()
        n, severity = None, None
        for a in args:
            if a.isdigit():
                n = int(a)
            else:
                severity = parse_severity(a)
        own = self.own(severity)[:n]
        lines = [e.line() for e in own] or ["no entries"]
        collected = self.collected(severity)[:n]
        if collected:
            lines += ["collected from other boxes:"] + [e.line() for e in collected]
        return "\n".join(lines)

    def _clear(self, box: Box, args: list[str]) -> str:
        self._running()
        if args:
            raise ModCmdError(f"clear takes no arguments, got {args[0]!r}")
        return self.clear()

    def _xml(self, box: Box, args: list[str]) -> str:
        self._running()
        if len(args) > 1:
            raise ModCmdError("usage: mod cmd ALARM0 xml [event|alarm|fault]")
        return self.xml(parse_severity(args[0]) if args else None)

    def _info(self, box: Box, args: list[str]) -> str:
        self._running()
        return self.info()

    def _test(self, box: Box, args: list[str]) -> str:
        self._running()
        entry = self.raise_(codes.TEST, "ALARM0", " ".join(args) or "test entry")
        return entry.line() if entry is not None else "error: not raised"


def parse_severity(word: str) -> Severity:
    try:
        return Severity(word.lower())
    except ValueError:
        raise ModCmdError(f"{word!r}: give event, alarm or fault (or a number N)") from None
