"""The logging service: LOG0 (log server) and LOG1 (its shadow) as configured, one Sender each.

`configure()` takes the active config's LOG0/LOG1 values (at boot and on `config activate`);
a module whose values did not change keeps its sender, queue and counters. `log(text)` is
what the box calls for each event (config changes and writes with who made them, logins,
failed logins, resets, updates, crashes, link and address changes); it never blocks.
`info(module)` is `mod cmd LOG0 info`.
"""

from __future__ import annotations

import threading
import time
import xml.etree.ElementTree as ET
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from appliance.config.schema import MODULES
from appliance.events import (
    AddressChanged,
    ConfigActivated,
    ConfigChanged,
    ConfigWritten,
    Crashed,
    Event,
    LinkChanged,
    LoginFailed,
    LoginSucceeded,
    LogTargetChanged,
    RestartRequested,
    Resumed,
    Traced,
)
from appliance.hal.cf import CfVolume
from appliance.modcmd import Command, ModCmdError
from appliance.service import BaseService
from appliance.services.logtargets import make_target
from appliance.services.logtargets.sender import LogRecord, Rejected, Sender, Target
from appliance.trace import Tag, format_trace

if TYPE_CHECKING:
    from appliance.box import Box
    from appliance.config import Activation

LOG_MODULES = ("LOG0", "LOG1")
UPDATE_PREFIX = format_trace("", Tag.UPDATE)  # the update service's trace lines are logged
DRAIN_S = 2.0  # at stop: time for queued records to leave before the box restarts


class WatchedTarget:
    """A target that says when it stops, or starts again, taking records (on its sender's
    thread): the box's log-unreachable alarm. A refusal (Rejected) is an answer: up."""

    def __init__(self, target: Target, on_change: Callable[[bool, str], None]) -> None:
        self.target = target
        self.name = target.name
        self.on_change = on_change
        self._up = True

    def send(self, record: LogRecord) -> None:
        try:
            self.target.send(record)
        except Rejected:  # an answer: the target is there (the sender drops the record)
            self._state(True, "")
            raise
        except OSError as e:
            self._state(False, str(e) or type(e).__name__)
            raise
        self._state(True, "")

    def _state(self, up: bool, error: str) -> None:
        if up != self._up:
            self._up = up
            self.on_change(up, error)

    def close(self) -> None:
        self.target.close()


class LogService:
    def __init__(
        self,
        host: Callable[[], str],
        cf_volume: Callable[[], CfVolume | None],
        clock: Callable[[], float] = time.time,
        on_change: Callable[[LogTargetChanged], None] = lambda _change: None,
    ) -> None:
        """`on_change`: a target went down or came back (LogTargetChanged, the box's
        event), from that target's sender thread."""
        self.host = host
        self.cf_volume = cf_volume
        self.clock = clock
        self.on_change = on_change
        self._senders: dict[str, Sender] = {}
        self._values: dict[str, dict[str, Any]] = {}
        self._lock = threading.Lock()

    def configure(self, values: Mapping[str, Mapping[str, Any]]) -> None:
        """Start, replace or stop each module's sender to match `values[module]`."""
        with self._lock:
            for module in LOG_MODULES:
                new = dict(values.get(module, {}))
                if new == self._values.get(module):
                    continue
                old = self._senders.pop(module, None)
                if old is not None:
                    old.stop()
                self._values[module] = new
                target = make_target(module, new, self.cf_volume) if new else None
                if target is not None:
                    self._senders[module] = Sender(self._watched(module, target))

    def _watched(self, module: str, target: Target) -> WatchedTarget:
        def changed(up: bool, error: str) -> None:
            self.on_change(LogTargetChanged(module, target.name, up, error))

        return WatchedTarget(target, changed)

    def log(self, text: str) -> None:
        record = LogRecord(self.clock(), self.host(), text)
        with self._lock:
            senders = list(self._senders.values())
        for sender in senders:
            sender.log(record)

    def info(self, module: str) -> str:
        """`mod cmd LOG0 info`: the target and its counters, as XML."""
        with self._lock:
            sender = self._senders.get(module)
            kind = str(self._values.get(module, {}).get("type", "off"))
        attrs = {"module": module, "type": kind}
        if sender is not None:
            s = sender.stats
            attrs.update(
                target=sender.target.name,
                state="up" if s.up else "down",
                queued=str(sender.queued),
                sent=str(s.sent),
                dropped=str(s.dropped),
                failures=str(s.failures),
                error=s.last_error,
            )
        info = ET.Element("info")
        ET.SubElement(info, "log", attrs)
        return ET.tostring(info, encoding="unicode")

    def sender(self, module: str) -> Sender | None:
        with self._lock:
            return self._senders.get(module)

    def stop(self, drain_s: float = DRAIN_S) -> None:
        """Let queued records go out (briefly), then stop every sender."""
        with self._lock:
            senders, self._senders = list(self._senders.values()), {}
            self._values = {}
        deadline = time.monotonic() + drain_s
        for sender in senders:
            if sender.stats.up:  # a target that is down would only use up the time
                sender.drain(max(0.0, deadline - time.monotonic()))
            sender.stop()


def _given(name: str) -> str:
    """A user name as a client sent it: short and one printable line (no forged records)."""
    return "".join(c if c.isprintable() else "?" for c in name[:64]) or "?"


def _by(who: str) -> str:
    return f" (by {who})" if who else ""


def event_text(event: Event) -> str | None:
    """The log line of a box event, or None for events that are not logged. Changes say
    who made them: `(by console ttyS0)`, `(by HTTP admin@10.0.2.2)`, `(by UP1 update
    script)`; none where the box did it itself."""
    if isinstance(event, ConfigChanged):
        return event.request + _by(event.by) if event.request else None
    if isinstance(event, ConfigWritten):
        n = event.objects
        return f"config {event.how}: {n} saved object{'s' if n != 1 else ''}{_by(event.by)}"
    if isinstance(event, ConfigActivated):
        pending = f", needs reset: {' '.join(event.pending)}" if event.pending else ""
        return f"config activate{pending}{_by(event.by)}"
    if isinstance(event, RestartRequested):
        kind = f"{event.kind}" if event.kind != "reboot" else "reboot (watchdog trap)"
        return kind + _by(event.by)
    if isinstance(event, LoginSucceeded):
        return f"login {_given(event.user)} from {event.client} (web admin)"
    if isinstance(event, LoginFailed):
        lock = f"; {event.client} refused for {event.refused_s:.0f} s" if event.refused_s else ""
        return f"failed login as {_given(event.user)} from {event.client}: {event.reason}{lock}"
    if isinstance(event, AddressChanged):
        return f"{event.port} IP address {event.address or 'lost'}"
    if isinstance(event, LinkChanged):
        return f"{event.port} link {'up' if event.up else 'down'}"
    if isinstance(event, Crashed):
        return f"restart after a crash: {event.reason}"
    if isinstance(event, Resumed):
        return f"resumed after a pause: clock stepped by {event.offset_s:+.1f} s"
    if isinstance(event, Traced) and event.line.startswith(UPDATE_PREFIX):
        return event.line[len(UPDATE_PREFIX) :]  # UP0/UP1: firmware and script updates
    return None


def _log_values(box: Box) -> dict[str, dict[str, Any]]:
    return {m: {a.name: box.active.value(m, a.name) for a in MODULES[m].args} for m in LOG_MODULES}


class LoggingService(BaseService):
    """LOG0/LOG1 as a service of the box: configured from the active config, fed by the
    box's events; `cf_volume` is the CF card for LOCAL (the CF service's)."""

    name = "logging"
    config_modules: tuple[str, ...] = LOG_MODULES

    def __init__(self, cf_volume: Callable[[], CfVolume | None]) -> None:
        self.cf_volume = cf_volume
        self.log: LogService | None = None
        self._unsubscribe: Callable[[], None] | None = None

    def start(self, box: Box) -> None:
        self.log = LogService(lambda: box.name, self.cf_volume, on_change=box.events.emit)
        self.log.configure(_log_values(box))
        self._unsubscribe = box.events.subscribe(self._on_event)
        self.log.log(f"boot {box.version_line()}")

    def _on_event(self, event: Event) -> None:
        text = event_text(event)
        if text is not None and self.log is not None:
            self.log.log(text)

    def apply(self, box: Box, activation: Activation) -> list[str]:
        if self.log is not None:
            self.log.configure(_log_values(box))
        return []

    def stop(self) -> None:
        if self._unsubscribe is not None:
            self._unsubscribe()
            self._unsubscribe = None
        if self.log is not None:
            self.log.stop()

    def _info(self, module: str) -> Callable[[Box, list[str]], str]:
        def info(box: Box, args: list[str]) -> str:
            if self.log is None:
                raise ModCmdError(f"{module}: the logging service is not running")
            return self.log.info(module)

        return info

    def commands(self) -> list[Command]:
        return [
            Command(m, "info", "log target, state, queued/sent/dropped counts (XML)", self._info(m))
            for m in LOG_MODULES
        ]
