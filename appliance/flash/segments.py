"""FLASHMAN0's in-memory state: the segments of the area and each owner's log of them.

Nothing here touches the disk; the mount (replay.py) fills it, the allocator (flashman.py)
keeps it in step with every commit.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field

from appliance.flash.format import (
    HEADER_AREA,
    OWNER_FREE,
    OWNER_NAMES,
    RECORD_ALIGN,
    RECORD_HEADER_SIZE,
    SEAL_RESERVE,
)
from appliance.flash.limits import SEG

_RSZ = RECORD_HEADER_SIZE + RECORD_ALIGN - 1  # record_size(), inlined for the mount
_RMASK = ~(RECORD_ALIGN - 1)


def fits_at(end: int, size: int) -> bool:
    """A record of `size` bytes may go at `end` of a segment: SEAL_RESERVE stays free for the
    seal, except for a segment's first record (a maximum-size record must fit somewhere)."""
    return end + size <= SEG - SEAL_RESERVE or (end == HEADER_AREA and end + size <= SEG)


@dataclass(eq=False)
class Segment:
    """One 64 KiB segment of the flash area: its owner, sequence, wear and append position."""

    index: int
    owner: int = OWNER_FREE
    seq: int = 0
    erase_count: int = 0
    end: int = HEADER_AREA  # append position
    sealed: bool = False  # has a seal, or will never get one (no room): do not try again
    _nlive: int = 0
    _lazy: Owner | None = None  # the owner whose `loc` (and so our nlive) is not built yet

    @property
    def nlive(self) -> int:
        """Live records in this segment (a cross-check for compaction)."""
        if self._lazy is not None:
            self._lazy.loc  # noqa: B018 - builds the location map and every nlive
        return self._nlive

    @nlive.setter
    def nlive(self, value: int) -> None:
        if self._lazy is not None:
            self._lazy.loc  # noqa: B018 - the counts of the other segments stay right
            self._lazy = None  # (a segment freed since the mount is not cleared by that)
        self._nlive = value


# what the mount learnt about where keys live, replayed by Owner.loc on first use:
# (segment, keys of a plain segment, None) or (segment, None, [(key, put?), ...])
LocLog = list[tuple[Segment, Sequence[bytes] | None, list[tuple[bytes, bool]] | None]]


@dataclass(eq=False)
class Owner:
    """One owner of the flash (VARS, LDAP): its segments in sequence order and its live values."""

    id: int
    configured: int = 0
    maximum: int = 0
    segs: list[Segment] = field(default_factory=list)  # sequence order, head last
    values: dict[bytes, bytes] = field(default_factory=dict)
    base: int = 0
    next_txn: int = 0
    _live: int | None = 0  # bytes of live records, all segments; None: not yet counted
    _loc: dict[bytes, Segment] | None = field(default_factory=dict)  # None: see _loc_log
    _loc_log: LocLog = field(default_factory=list)

    @property
    def name(self) -> str:
        return OWNER_NAMES[self.id]

    @property
    def loc(self) -> dict[bytes, Segment]:
        """Key -> segment holding its live record. Only writes need it (compaction picks
        the live records of a segment with it), so the mount leaves it to the first use:
        a dict entry per key is a large part of the cost of mounting a full flash."""
        if self._loc is None:
            loc: dict[bytes, Segment] = {}
            for seg, keys, ops in self._loc_log:
                if ops is None:
                    loc.update(dict.fromkeys(keys or (), seg))
                    continue
                for key, put in ops:
                    if put:
                        loc[key] = seg
                    else:
                        loc.pop(key, None)
            counts = Counter(loc.values())
            for seg, _keys, _ops in self._loc_log:  # (also segments freed since the mount)
                seg._lazy = None
            for s in self.segs:
                s._lazy = None
                s._nlive = counts.get(s, 0)
            self._loc, self._loc_log = loc, []
        return self._loc

    @property
    def live(self) -> int:
        if self._live is None:  # counted on first use, not at boot: the mount stays fast
            self._live = sum((_RSZ + len(k) + len(v)) & _RMASK for k, v in self.values.items())
        return self._live

    @live.setter
    def live(self, value: int) -> None:
        self._live = value
