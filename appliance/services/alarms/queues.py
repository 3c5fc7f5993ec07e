"""The local alarm and event queues (services-logging.wiki, Local Alarm and Event Queues).

MemoryQueue      the newest entries in RAM (ALARM0 /mem, default 100); an older one goes
                 when a newer one comes: a flood never grows it
PersistentQueue  the newest alarms and faults on the flash (ALARM0 /flash, default 50), one
                 VARS key each (`EVENT:<seq>`); each add is one atomic VARS commit that stores
                 the new entry and deletes those beyond the bound, so a power cut leaves the
                 old or the new queue, never half of one. Events (boots, logins) stay in RAM:
                 they would wear the flash, and the wiki's queue is of faults and alarms.
"""

from __future__ import annotations

import collections
import threading
from collections.abc import Callable, Iterable, Mapping
from typing import Protocol

from appliance.services.alarms.codes import Severity
from appliance.services.alarms.entry import Entry, EntryError, parse_entry

MEMORY_ENTRIES = 100
PERSISTENT_ENTRIES = 50
KEY_PREFIX = "EVENT:"


class Vars(Protocol):
    """The flash's VARS store (appliance.flash.vars.Vars)."""

    def get(self, key: str) -> bytes | None: ...

    def keys(self) -> list[str]: ...

    def commit(self, updates: Mapping[str, bytes | None]) -> None: ...


def persisted(entry: Entry) -> bool:
    return entry.severity is not Severity.EVENT


class MemoryQueue:
    def __init__(self, size: int = MEMORY_ENTRIES) -> None:
        self._entries: collections.deque[Entry] = collections.deque(maxlen=size)
        self._lock = threading.Lock()

    @property
    def size(self) -> int:
        return self._entries.maxlen or 0

    def resize(self, size: int) -> None:
        with self._lock:
            if size != self._entries.maxlen:
                self._entries = collections.deque(self._entries, maxlen=size)

    def add(self, entry: Entry) -> None:
        with self._lock:
            self._entries.append(entry)

    def newest(self, severity: Severity | None = None, n: int | None = None) -> list[Entry]:
        """Newest first, of one severity (None: all), at most n."""
        with self._lock:
            entries = [e for e in reversed(self._entries) if severity in (None, e.severity)]
        return entries if n is None else entries[:n]

    def clear(self) -> int:
        with self._lock:
            n = len(self._entries)
            self._entries.clear()
        return n

    def __len__(self) -> int:
        return len(self._entries)


def _key(seq: int) -> str:
    return f"{KEY_PREFIX}{seq:010d}"  # sorts by number


class PersistentQueue:
    """The flash's queue; `vars` is None when the box has no flash (then nothing persists)."""

    def __init__(self, vars: Vars | None, size: int = PERSISTENT_ENTRIES) -> None:
        self.vars = vars
        self.size = size

    def _keys(self) -> list[str]:
        return sorted(k for k in self.vars.keys() if k.startswith(KEY_PREFIX)) if self.vars else []

    def load(self, warn: Callable[[str], None]) -> list[Entry]:
        """What the flash holds, oldest first; a damaged entry is reported and skipped."""
        out = []
        for key in self._keys():
            assert self.vars is not None
            try:
                out.append(parse_entry(self.vars.get(key) or b""))
            except EntryError as e:
                warn(f"ALARM0: ignoring damaged saved entry {key}: {e}")
        return out

    def add(self, entry: Entry) -> None:
        """Store `entry` and drop what is beyond the bound, in one commit (FlashError:
        nothing changed)."""
        if self.vars is None or self.size == 0:
            return
        keys = self._keys()
        excess = max(0, len(keys) + 1 - self.size)
        updates: dict[str, bytes | None] = {k: None for k in keys[:excess]}
        updates[_key(entry.seq)] = entry.xml()
        self.vars.commit(updates)

    def trim(self) -> None:
        """After /flash was lowered: drop the oldest beyond it (one commit)."""
        if self.vars is None:
            return
        keys = self._keys()
        if len(keys) > self.size:
            self.vars.commit({k: None for k in keys[: len(keys) - self.size]})

    def clear(self) -> int:
        keys = self._keys()
        if keys and self.vars is not None:
            self.vars.commit({k: None for k in keys})
        return len(keys)


def last_seq(entries: Iterable[Entry]) -> int:
    return max((e.seq for e in entries), default=0)
