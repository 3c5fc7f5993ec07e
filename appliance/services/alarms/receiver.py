"""The receiving side of the Standard method: what other boxes send to this one.

Alarms/events   `POST /ALARM0/event` (forward.STANDARD_PATH), one `<event …>` each: kept
                in the collected queue (ALARM0 /mem entries) with the sender's name (its
                `host`) and address, listed on Maintenance/Events and in `mod cmd ALARM0
                show`; ALARM0 /auth on asks them for the admin login, and refusals are
                counted.
Log lines       `POST /LOG0/log` (logtargets.remote.STANDARD_PATH), one syslog line each
                (`<PRI>Mmm dd hh:mm:ss HOST IPVA: text`, as the log server's Standard
                method sends it): stored on this box's CF card under
                /log/remote/<HOST>.0 … .3 (rotated as LOG0.n is; <HOST> as the line names
                the sender, else its address), readable at /DRIVE/CF0/log/remote/…
"""

from __future__ import annotations

import errno
import re
import threading
from collections.abc import Callable
from dataclasses import dataclass, replace

from appliance.hal.cf import CfVolume
from appliance.services.alarms.entry import Entry, EntryError, parse_entry
from appliance.services.alarms.queues import MemoryQueue
from appliance.services.logtargets.local import LocalTarget

MAX_BODY = 8192  # one entry or one log line
REMOTE_DIR = "log/remote"
MAX_SENDERS = 64  # distinct log files kept open; more are refused (a full CF card helps no one)
_LINE_RE = re.compile(r"<(\d{1,3})>(\w{3} [ \d]\d \d\d:\d\d:\d\d) (\S{1,64}) (.*)", re.S)
_NAME_RE = re.compile(r"[A-Za-z0-9._-]{1,32}")


class LogLineError(ValueError):
    """A body that is not one syslog line of a box."""


class CfFull(OSError):
    """The CF card has no room for the line (ENOSPC)."""


@dataclass
class ReceiverStats:
    """What the receiver took from other boxes, and what it refused."""

    events: int = 0
    log_lines: int = 0
    refused: int = 0  # no or a wrong login while ALARM0 /auth is on
    bad: int = 0  # not an entry / not a log line


class Receiver:
    def __init__(self, cf_volume: Callable[[], CfVolume | None], size: int) -> None:
        self.cf_volume = cf_volume
        self.collected = MemoryQueue(size)
        self.stats = ReceiverStats()
        self._files: dict[str, LocalTarget] = {}
        self._lock = threading.Lock()

    def take_entry(self, body: bytes, client: str) -> Entry:
        """A forwarded entry, kept with the sender's address; EntryError if it is not one."""
        try:
            entry = replace(parse_entry(body), addr=client)
        except EntryError:
            with self._lock:
                self.stats.bad += 1
            raise
        self.collected.add(entry)
        with self._lock:
            self.stats.events += 1
        return entry

    def refused(self) -> None:
        with self._lock:
            self.stats.refused += 1

    def take_log_line(self, body: bytes, client: str) -> str:
        """Store one log line on the CF card; returns the file. LogLineError (not a line),
        OSError (CF0 not mounted, CfFull) otherwise."""
        m = _LINE_RE.fullmatch(body.decode("utf-8", "replace").rstrip("\r\n"))
        if m is None or "\n" in m[4] or "\r" in m[4]:
            with self._lock:
                self.stats.bad += 1
            raise LogLineError("not a log line: <PRI>Mmm dd hh:mm:ss HOST TAG: text")
        name = m[3] if _NAME_RE.fullmatch(m[3]) else client.replace(":", "_")
        with self._lock:
            target = self._files.get(name)
            if target is None:
                if len(self._files) >= MAX_SENDERS:
                    raise OSError(f"log lines of {MAX_SENDERS} boxes are kept here already")
                target = LocalTarget(self.cf_volume, name, directory=REMOTE_DIR)
                self._files[name] = target
            try:
                target.write_line(f"{m[2]} {m[3]} {m[4]}")
            except OSError as e:
                if e.errno == errno.ENOSPC:
                    raise CfFull(errno.ENOSPC, "the CF card is full") from e
                raise
            self.stats.log_lines += 1
        return target.path(0)
