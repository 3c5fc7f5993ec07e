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
from typing import Any

from appliance.services.cf import CfVolume
from appliance.services.logtargets import make_target
from appliance.services.logtargets.sender import LogRecord, Sender

MODULES = ("LOG0", "LOG1")
DRAIN_S = 2.0  # at stop: time for queued records to leave before the box restarts


class LogService:
    def __init__(
        self,
        host: Callable[[], str],
        cf_volume: Callable[[], CfVolume | None],
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.host = host
        self.cf_volume = cf_volume
        self.clock = clock
        self._senders: dict[str, Sender] = {}
        self._values: dict[str, dict[str, Any]] = {}
        self._lock = threading.Lock()

    def configure(self, values: Mapping[str, Mapping[str, Any]]) -> None:
        """Start, replace or stop each module's sender to match `values[module]`."""
        with self._lock:
            for module in MODULES:
                new = dict(values.get(module, {}))
                if new == self._values.get(module):
                    continue
                old = self._senders.pop(module, None)
                if old is not None:
                    old.stop()
                self._values[module] = new
                target = make_target(module, new, self.cf_volume) if new else None
                if target is not None:
                    self._senders[module] = Sender(target)

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
            sender.drain(max(0.0, deadline - time.monotonic()))
            sender.stop()
