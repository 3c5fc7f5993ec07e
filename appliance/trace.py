"""The trace: one bounded ring buffer of the box's trace lines, mirrored to the consoles.

Every service writes through it in the box's format, `0:0000:081:4 - start flashdir …`: the
third field is the module's tag, declared once in `Tag` (a new service adds its member here).
The buffer keeps the last TRACE_LINES lines (2000: the whole boot trace and a long session;
at ~80 bytes a line about 160 KiB, small next to the 128 MiB guest). `mod cmd TRACE show
[N]` prints the last N (all without N), `mod cmd TRACE clear` empties it; `text()` is what
the web UI serves as /log.txt and what a crash record copies the tail of. Each line is also
an `events.Traced` event. Thread-safe: consoles and the DHCP watcher write concurrently.

A leaf: it imports nothing of the runtime but appliance.events, so the box, the flash and
the hal trace through it without loading appliance.services (TraceService, the `mod cmd
TRACE` commands on this buffer, is appliance/services/trace.py).
"""

from __future__ import annotations

import collections
import enum
import threading
from collections.abc import Callable
from typing import Protocol

from appliance.events import Events, Traced

TRACE_LINES = 2000


class Tag(enum.IntEnum):
    """The module tag of a trace line, one per module."""

    BOOT = 30  # the boot, the box's identity, config and network lines
    FLASH = 81  # FLASHMAN/FLASHDIR, as on the box (`0:0000:081:4 - start flashdir …`)
    UPDATE = 40  # UP0/UP1: firmware slots, updates, the update-server client
    HTTP = 51  # the web admin: listeners, certificate, logins refused


class TraceFn(Protocol):
    """What a service calls to trace: `trace("text")` or `trace("text", Tag.FLASH)`."""

    def __call__(self, text: str, tag: Tag = ..., /) -> None: ...


def format_trace(text: str, tag: int = Tag.BOOT) -> str:
    return f"0:0000:{tag:03d}:4 - {text}"


class TraceBuffer:
    def __init__(
        self,
        mirror: Callable[[str], None] = lambda _line: None,
        *,
        size: int = TRACE_LINES,
        events: Events | None = None,
    ) -> None:
        self._lines: collections.deque[str] = collections.deque(maxlen=size)
        self._lock = threading.Lock()
        self.mirror = mirror  # the consoles
        self.events = events if events is not None else Events()
        self.size = size

    def __call__(self, text: str, tag: Tag = Tag.BOOT, /) -> None:
        line = format_trace(text, tag)
        with self._lock:
            self._lines.append(line)
        self.mirror(line)
        self.events.emit(Traced(line))

    def lines(self, n: int | None = None) -> list[str]:
        """The last n lines (all with None), oldest first."""
        with self._lock:
            lines = list(self._lines)
        return lines if n is None else lines[max(len(lines) - n, 0) :]

    def text(self, n: int | None = None) -> str:
        return "".join(line + "\n" for line in self.lines(n))

    def clear(self) -> int:
        with self._lock:
            n = len(self._lines)
            self._lines.clear()
        return n
