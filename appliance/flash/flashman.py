"""FLASHMAN0: the power-loss-safe segment allocator on the flash disk (IDE 1:0).

The disk is cut into 64 KiB segments (format: `appliance.flash.format`). Each segment is owned
by one client — VARS (the config store) or LDAP (FLASHDIR0, the object directory) — or free.
Each owner's segments, in sequence order, form an append-only log of CRC'd key/value records
grouped into transactions. The rules (DESIGN.md "Flash"):

- Append only; never overwrite live data in place. A segment is erased (zeroed) only while it
  is free, and then gets a fresh header (new sequence number, erase count + 1) before records.
- A transaction commits with its LAST record, written and flushed after the others; a torn
  tail is "not committed", never an error.
- Compaction (GC) copies the live records of the owner's oldest segment to the log head in a
  new transaction whose LAST record raises the owner's ``base`` past the old segment; that
  commit is what frees the segment. Before it, the old copy is still valid, after it the new.
- No free list on disk: the mount rebuilds everything by scanning; the newest sequence wins.
  A bad CRC marks the bytes dirty, is reported by a trace line, and the mount goes on.
- Spare: an owner may only take a new segment while at least one more stays free, so a
  compaction always finds a fresh segment. Free segments are taken lowest erase count first.
- Seals (format version 2): after a commit, the owner's finished segments get a seal, an
  index of their records under one CRC, so the mount takes a sealed segment's keys and
  values without parsing each record. Seals are never needed for correctness: a missing,
  torn or damaged seal, or a body that no longer matches it, means the segment is scanned
  record by record as before, with the same result (tested both ways).
- The mount builds the values; the key -> segment map that only writes need (compaction)
  is built on first use, like the live byte count.

Sizes (from the seed, ipva-concept.wiki)
----------------------------------------
- Segment 64 KiB. A blank disk is formatted with a 64 MiB flash area (1024 segments; the
  100 MB disk exists only because VMware cannot make smaller disks); ``reset all`` formats the
  whole disk, at most 512 MiB (8192 segments).
- ``RESERVE`` = 113 segments (or a ninth of a small flash) belong to no owner's maximum; they
  are FLASHMAN's spare and compaction headroom. With VARS' configured 10 this makes the
  FLASHDIR request on a standard 64 MiB flash 1024 - 113 - 10 = 901, the seed's
  ``fdir: segments=901->224(14.0MB)``. (The seed's 512 MiB example shows ``configured 8079``
  = 8192 - 113, i.e. without VARS' 10; we keep one rule and get 8069 there.)
- RAM rule: the seed says the flash content is held three times in RAM at start-up
  (flash manager, flash directory, PBX), so FLASHDIR is granted
  ``(ram - RAM_BASE) // (3 * 64 KiB) - VARS maximum`` segments at most, where
  ``RAM_BASE`` = 18 MiB is what the runtime needs for itself. With the seed's
  ``mem(64946176)=61.93MB`` this gives (64946176 - 18 MiB) // 192 KiB - 10 = 224 -> the
  seed's ``901->224(14.0MB)``; the full 901 needs >= 188.6 MiB, i.e. a 192 MB VM after the
  VMM's share, matching "900 segments at 192MB or more". An owner that already owns more
  segments than granted (RAM was reduced) keeps all its data but cannot grow.

``mod cmd FLASHMAN0 info`` — what each number means
---------------------------------------------------
``segments=N, segment-size=0x10000 (64k)``: N = segments in the flash area (all owners, free
and reserve). (The seed's line shows 675 next to an owner maximum of 8079 segments, so its N
cannot be the area size of that box; we show the area size.) Then one line per owner::

    LDAP - used Uk avail Ak owned Ok (segments S) maximum Mk (segments E, configured C)

- used U: segment headers + live records of the owner, KiB rounded up;
- avail A: unwritten bytes in the owner's head segment, KiB rounded down (the last
  ``SEAL_RESERVE`` = 1 KiB of it is kept for the segment's seal); owned - used - avail is
  dirty space (and seals) that compaction reclaims;
- owned O / segments S: segments the owner holds, O = S * 64;
- configured C: the owner's configured maximum in segments (VARS 10; LDAP what the flash
  size leaves, see above); segments E: the effective maximum after the RAM rule (= C for
  VARS); maximum M = E * 64.
"""

from __future__ import annotations

import heapq
import math
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from itertools import repeat

from appliance.flash.format import (
    FLAG_DELETE,
    FLAG_LAST,
    FLAG_MARK,
    HEADER_AREA,
    HEADER_SIZE,
    MAX_PAYLOAD,
    OWNER_FREE,
    OWNER_LDAP,
    OWNER_NAMES,
    OWNER_VARS,
    RECORD_ALIGN,
    RECORD_HEADER_SIZE,
    SEAL_RESERVE,
    SEGMENT_SIZE,
    Header,
    Record,
    SegmentIndex,
    SegmentScan,
    build_header,
    build_record,
    build_seal,
    parse_header,
    read_seal,
    record_size,
    recover_identity,
    scan_records,
)
from appliance.hal.block import BlockDevice

KiB = 1024
MiB = 1024 * KiB
SEG = SEGMENT_SIZE
USABLE = SEG - HEADER_AREA
STANDARD_AREA = 64 * MiB
MAX_AREA = 512 * MiB
MIN_SEGMENTS = 16
RESERVE = 113
VARS_CONFIGURED = 10
RAM_BASE = 18 * MiB
RAM_COPIES = 3
SPARE = 1
_READ_CHUNK = 64  # segments per sequential read at mount (4 MiB)
_RSZ = RECORD_HEADER_SIZE + RECORD_ALIGN - 1  # record_size(), inlined for the mount
_RMASK = ~(RECORD_ALIGN - 1)
SEALS_PER_COMMIT = 4  # at most this many old segments get their seal after one commit


def _fits_at(end: int, size: int) -> bool:
    """A record of `size` bytes may go at `end` of a segment: SEAL_RESERVE stays free for the
    seal, except for a segment's first record (a maximum-size record must fit somewhere)."""
    return end + size <= SEG - SEAL_RESERVE or (end == HEADER_AREA and end + size <= SEG)


Trace = Callable[[str], None]


class FlashError(Exception):
    """Base of the flash errors; the message is fit for the console."""


class WrongDiskError(FlashError):
    """The flash disk holds something that is neither blank nor FLASHMAN."""


class FlashFullError(FlashError):
    """An owner cannot take more data; nothing stored before is lost."""


@dataclass(frozen=True)
class Limits:
    """How the flash area is shared out (see the module docstring)."""

    segments: int
    reserve: int
    vars_configured: int
    ldap_configured: int
    ldap_granted: int


def plan_limits(segments: int, ram_bytes: int) -> Limits:
    reserve = max(2, min(RESERVE, segments // 9))
    vars_conf = VARS_CONFIGURED
    ldap_conf = max(1, segments - reserve - vars_conf)
    by_ram = (ram_bytes - RAM_BASE) // (RAM_COPIES * SEG) - vars_conf
    return Limits(segments, reserve, vars_conf, ldap_conf, max(1, min(ldap_conf, by_ram)))


@dataclass(eq=False)
class Segment:
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


class _Commits:
    """Which txns of an owner's log are committed: those with a LAST record anywhere.

    The LASTs of scanned segments go into a set; sealed segments are only asked about the
    few txns that need it (a set of every txn would cost as much as the rest of the mount).
    """

    def __init__(self, ixs: Iterable[SegmentIndex]) -> None:
        self.scanned: set[int] = set()
        self.sealed: list[SegmentIndex] = []
        self.known: dict[int, bool] = {}
        for ix in ixs:
            if ix.sealed:
                self.sealed.append(ix)
            else:
                self.scanned.update(ix.last_txns())

    def __call__(self, txn: int) -> bool:
        if txn in self.scanned:
            return True
        if txn not in self.known:
            self.known[txn] = any(txn in ix.last_txns() for ix in self.sealed)
        return self.known[txn]


def _ignore(_line: str) -> None:
    pass


class FlashMan:
    """The segment allocator and the per-owner logs; VARS and FLASHDIR sit on top."""

    def __init__(
        self,
        dev: BlockDevice,
        *,
        ram_bytes: int,
        trace: Trace = _ignore,
        readonly: bool = False,
        format_all: bool = False,
    ) -> None:
        self.dev = dev
        self.ram_bytes = ram_bytes
        self.trace = trace
        self.readonly = readonly
        self.blank = False
        self.bytes_written = 0
        self.writes = 0
        self.flushes = 0
        self.compactions = 0
        self.damage: list[str] = []
        self.owners = {OWNER_VARS: Owner(OWNER_VARS), OWNER_LDAP: Owner(OWNER_LDAP)}
        self.segments: list[Segment] = []
        self._free: list[tuple[int, int]] = []
        self.epoch = 0
        self.next_seq = 1
        if format_all:  # `reset all` on a disk that would not mount (e.g. WrongDiskError)
            area = min(self.dev.size, MAX_AREA) // SEG
            if area < MIN_SEGMENTS:
                raise FlashError(f"flash disk too small: {self.dev.size} bytes")
            self.trace(f"flashman: formatting {area} segments")
            self._format(area, [parse_header(dev.read(i * SEG, HEADER_AREA)) for i in range(area)])
            return
        self._mount()

    # ---- device access -------------------------------------------------------------

    def _write(self, offset: int, data: bytes) -> None:
        if self.readonly:
            raise FlashError("flash is open read-only")
        self.dev.write(offset, data)
        self.bytes_written += len(data)
        self.writes += 1

    def _flush(self) -> None:
        self.dev.flush()
        self.flushes += 1

    # ---- mount ---------------------------------------------------------------------

    def _mount(self) -> None:
        dev_segments = min(self.dev.size, MAX_AREA) // SEG
        if dev_segments < MIN_SEGMENTS:
            raise FlashError(
                f"flash disk too small: {self.dev.size} bytes, need {MIN_SEGMENTS * SEG}"
            )
        raw = [self.dev.read(i * SEG, HEADER_AREA) for i in range(dev_segments)]
        parsed = [parse_header(r) for r in raw]
        valid = [h for h in parsed if h is not None]
        if not valid:
            zero = bytes(HEADER_AREA)
            if all(r == zero for r in raw) and not self.dev.read(0, SEG).strip(b"\0"):
                area = min(self.dev.size, STANDARD_AREA) // SEG
                self.blank = True
                if self.readonly:
                    self.segments = [Segment(i) for i in range(area)]
                    self._set_limits()
                    return
                self.trace(f"flashman: blank flash disk, formatting {area} segments")
                self._format(area, parsed)
                return
            raise WrongDiskError(
                "the flash disk (IDE 1:0) holds no FLASHMAN data and is not blank; "
                "format it with !mod cmd FLASHMAN0 reset all (erases the disk)"
            )
        self.epoch = max(h.epoch for h in valid)
        area = max(h.area_segments for h in valid if h.epoch == self.epoch)
        if area > dev_segments:
            self.trace(f"flashman: flash area {area} segments, disk has {dev_segments}")
            area = dev_segments
        self.next_seq = max(max(h.seq, h.epoch) for h in valid) + 1
        max_ec = max(h.erase_count for h in valid)
        self.segments = [Segment(i) for i in range(area)]
        wanted: list[Segment] = []
        damaged: set[int] = set()
        for seg in self.segments:
            h = parsed[seg.index]
            if h is not None:
                if raw[seg.index][:HEADER_SIZE] != raw[seg.index][HEADER_SIZE:]:
                    self._report(f"flashman: segment {seg.index}: one header copy damaged")
                seg.erase_count = h.erase_count
                if h.epoch == self.epoch and h.owner in self.owners:
                    seg.owner, seg.seq = h.owner, h.seq
                    wanted.append(seg)
            elif raw[seg.index].strip(b"\0"):
                seg.erase_count = max_ec
                damaged.add(seg.index)
                wanted.append(seg)
        scans = self._read_and_scan(wanted, damaged)
        self._rebuild(scans)
        self._set_limits()

    def _read_and_scan(self, wanted: list[Segment], damaged: set[int]) -> dict[int, SegmentIndex]:
        """Read the wanted segments in long sequential runs and index them: from their seal
        where it checks out, else by parsing every record."""
        scans: dict[int, SegmentIndex] = {}
        i = 0
        while i < len(wanted):
            j = i + 1
            while (
                j < len(wanted)
                and j - i < _READ_CHUNK
                and wanted[j].index == wanted[j - 1].index + 1
            ):
                j += 1
            first = wanted[i].index
            data = self.dev.read(first * SEG, (j - i) * SEG)
            mv = memoryview(data)
            for seg in wanted[i:j]:
                off = (seg.index - first) * SEG
                if seg.index in damaged:
                    ident = recover_identity(data[off : off + SEG])
                    if ident is None or ident[1] <= self.epoch:
                        self._report(f"flashman: segment {seg.index}: header damaged, now free")
                        continue
                    seg.owner, seg.seq = ident
                    self.next_seq = max(self.next_seq, seg.seq + 1)
                    self._report(
                        f"flashman: segment {seg.index}: header damaged, recovered as "
                        f"{OWNER_NAMES[seg.owner]} seq {seg.seq}"
                    )
                ix = read_seal(mv[off : off + SEG], seg.owner, seg.seq)
                if ix is None:
                    sc = scan_records(data[off : off + SEG], seg.owner, seg.seq)
                    ix = SegmentIndex.from_scan(sc)
                seg.sealed = ix.sealed
                scans[seg.index] = ix
            i = j
        return scans

    def _report(self, line: str) -> None:
        self.damage.append(line)
        self.trace(line)

    def _rebuild(self, scans: dict[int, SegmentIndex]) -> None:
        """Replay every owner's log: committed transactions only, obsolete segments skipped."""
        for o in self.owners.values():
            segs = sorted(
                (s for s in self.segments if s.owner == o.id and s.index in scans),
                key=lambda s: s.seq,
            )
            committed = _Commits([scans[s.index] for s in segs])
            base = max((scans[s.index].base_max for s in segs), default=0)
            max_txn = max((scans[s.index].txn_max for s in segs), default=-1)
            o.base, o.next_txn = base, max_txn + 1
            uncommitted: set[int] = set()
            values = o.values
            log: LocLog = []
            for s in segs:
                if s.seq < base:
                    s.owner = OWNER_FREE
                    continue
                o.segs.append(s)
                ix = scans[s.index]
                pending = {t for t in ix.others if not committed(t)}
                if pending and ix.txns is None:
                    # a sealed segment with records of a torn transaction (left by a power
                    # cut): the seal has no per-record txns, so parse the records
                    ix = scans[s.index] = SegmentIndex.from_scan(self._scan(s))
                    pending = {t for t in ix.others if not committed(t)}
                s.end = ix.end
                s._lazy = o
                if not pending and ix.plain:
                    # the common case, at C speed: plain committed puts
                    values.update(zip(ix.keys, ix.values, strict=True))
                    log.append((s, ix.keys, None))
                    continue
                uncommitted |= pending
                ops: list[tuple[bytes, bool]] = []
                txns = ix.txns if pending and ix.txns is not None else repeat(-1, len(ix.keys))
                for flags, txn, key, value in zip(ix.flags, txns, ix.keys, ix.values, strict=True):
                    if txn in pending or flags & FLAG_MARK:
                        continue
                    if flags & FLAG_DELETE:
                        values.pop(key, None)
                        ops.append((key, False))
                    else:
                        values[key] = value
                        ops.append((key, True))
                log.append((s, None, ops))
            o._live = None
            o._loc, o._loc_log = None, log
            for s in o.segs:
                for off, length in scans[s.index].damage:
                    if s is o.segs[-1] and off + length >= s.end - 8:
                        self._report(
                            f"flashman: {o.name} segment {s.index}: uncommitted tail at "
                            f"0x{off:x} ({length} bytes), ignored"
                        )
                    else:
                        self._report(
                            f"flashman: {o.name} segment {s.index}: damaged records at "
                            f"0x{off:x} ({length} bytes) skipped"
                        )
            if uncommitted:
                self.trace(
                    f"flashman: {o.name}: {len(uncommitted)} uncommitted transaction(s) ignored"
                )
        self._free = [(s.erase_count, s.index) for s in self.segments if s.owner == OWNER_FREE]
        heapq.heapify(self._free)

    @staticmethod
    def _apply(o: Owner, seg: Segment, flags: int, key: bytes, value: bytes, size: int) -> None:
        if flags & FLAG_MARK:
            return
        live = o.live  # counted (if still lazy) before `values` changes, or it counts twice
        old = o.values.get(key)
        if old is not None:
            live -= record_size(len(key), len(old))
            o.loc[key].nlive -= 1
        if flags & FLAG_DELETE:
            o.values.pop(key, None)
            o.loc.pop(key, None)
        else:
            o.values[key] = value
            o.loc[key] = seg
            live += size
            seg.nlive += 1
        o.live = live

    def _set_limits(self) -> None:
        self.limits = plan_limits(len(self.segments), self.ram_bytes)
        v, ld = self.owners[OWNER_VARS], self.owners[OWNER_LDAP]
        v.configured = v.maximum = self.limits.vars_configured
        ld.configured, ld.maximum = self.limits.ldap_configured, self.limits.ldap_granted

    # ---- format --------------------------------------------------------------------

    def _format(self, area: int, parsed: list[Header | None]) -> None:
        """Write a FREE header of a new epoch into every segment of the area.

        The new epoch wins as soon as one of its headers is on disk, so a format cut short
        by a power loss is a complete (empty) format; erase counts carry over.
        """
        epoch = self.next_seq
        self.epoch, self.next_seq = epoch, epoch + 1
        self.segments = []
        for i in range(area):
            h = parsed[i] if i < len(parsed) else None
            ec = h.erase_count if h is not None else 0
            self.segments.append(Segment(i, erase_count=ec))
            self._write(i * SEG, build_header(Header(OWNER_FREE, epoch, ec, epoch, area)))
        self._flush()
        self.owners = {OWNER_VARS: Owner(OWNER_VARS), OWNER_LDAP: Owner(OWNER_LDAP)}
        self._free = [(s.erase_count, s.index) for s in self.segments]
        heapq.heapify(self._free)
        self._set_limits()

    def reset_all(self) -> None:
        """`reset all`: format the whole disk (up to 512 MiB). Everything is lost, by design."""
        area = min(self.dev.size, MAX_AREA) // SEG
        parsed = [parse_header(self.dev.read(i * SEG, HEADER_AREA)) for i in range(area)]
        for s in self.segments:  # keep what the mount knew, e.g. of damaged headers
            if parsed[s.index] is None:
                parsed[s.index] = Header(OWNER_FREE, 0, s.erase_count, 0, 0)
        self._format(area, parsed)
        self.blank = False

    def reset_owner(self, owner: int) -> None:
        """`reset vars` / `reset ldap`: drop all of one owner's data in one commit."""
        o = self.owners[owner]
        if not o.segs and not o.values:
            return
        self._append_txn(o, [], reset=True)

    # ---- allocation ----------------------------------------------------------------

    def _new_segment(self, o: Owner, *, spare_ok: bool) -> Segment:
        if len(self._free) <= (0 if spare_ok else SPARE):
            raise FlashFullError(self._full_message(o))
        _ec, idx = heapq.heappop(self._free)
        seg = self.segments[idx]
        off = idx * SEG
        # erase first (and make it durable) so no leftover can follow our records
        tail = len(self.dev.read(off + HEADER_AREA, USABLE).rstrip(b"\0"))
        if tail:
            self._write(off + HEADER_AREA, bytes(tail))
            self._flush()
        seg.erase_count += 1
        seg.owner, seg.seq = o.id, self.next_seq
        self.next_seq += 1
        seg.end, seg.nlive, seg.sealed = HEADER_AREA, 0, False
        h = Header(o.id, seg.seq, seg.erase_count, self.epoch, len(self.segments))
        self._write(off, build_header(h))
        self._flush()
        o.segs.append(seg)
        return seg

    def _full_message(self, o: Owner) -> str:
        return (
            f"flash full: {o.name} has {len(o.segs)} of {o.maximum} segments "
            f"({math.ceil(o.live / KiB)}k live), {len(self._free)} free"
        )

    def _fits(self, o: Owner, sizes: list[int]) -> bool:
        end = o.segs[-1].end if o.segs else SEG  # SEG: nothing fits, a new segment
        new = 0
        for sz in sizes:
            if not _fits_at(end, sz):
                new += 1
                end = HEADER_AREA
            end += sz
        return new == 0 or (len(o.segs) + new <= o.maximum and len(self._free) - new >= SPARE)

    def _make_room(self, o: Owner, sizes: list[int]) -> None:
        for _ in range(2 * len(o.segs) + 4):
            if self._fits(o, sizes):
                return
            if not o.segs:
                break
            self._gc_step(o)
        raise FlashFullError(self._full_message(o))

    def _gc_step(self, o: Owner) -> None:
        """Compact the owner's oldest segment: copy its live records to the head, then the
        commit (base past the old segment) frees it."""
        victim = o.segs[0]
        self.compactions += 1
        # which records of the victim are live: re-read it (cheaper than tracking per segment)
        loc = o.loc
        keys = {k for k in self._scan(victim).keys if loc.get(k) is victim}
        if len(keys) != victim.nlive:  # the disk changed under us: ask memory instead
            self.trace(f"flashman: {o.name} segment {victim.index}: re-read differs")
            keys = {k for k, s in loc.items() if s is victim}
        entries = [(0, k, o.values[k]) for k in sorted(keys)]
        self._append_txn(o, entries, base=victim.seq + 1, avoid=victim)

    # ---- transactions --------------------------------------------------------------

    def commit(self, owner: int, updates: Iterable[tuple[bytes, bytes | None]]) -> None:
        """Write all updates of one owner as ONE transaction (None deletes a key)."""
        if self.readonly:
            raise FlashError("flash is open read-only")
        o = self.owners[owner]
        entries: list[tuple[int, bytes, bytes]] = []
        grow = 0
        for key, value in updates:
            old = o.values.get(key)
            if value is None:
                if old is None:
                    continue
                entries.append((FLAG_DELETE, key, b""))
                grow -= record_size(len(key), len(old))
                continue
            if old == value:
                continue
            if len(key) > 0xFFFF or len(key) + len(value) > MAX_PAYLOAD:
                raise FlashError(f"{o.name}: record too large ({len(key) + len(value)} bytes)")
            entries.append((0, key, value))
            grow += record_size(len(key), len(value))
            if old is not None:
                grow -= record_size(len(key), len(old))
        if not entries:
            return
        limit = max(o.maximum - 1, 1) * (USABLE - SEAL_RESERVE)
        if grow > 0 and o.live + grow > limit:
            raise FlashFullError(self._full_message(o))
        sizes = [record_size(len(k), len(v)) for _f, k, v in entries]
        self._make_room(o, sizes)
        self._append_txn(o, entries)

    def _append_txn(
        self,
        o: Owner,
        entries: list[tuple[int, bytes, bytes]],
        *,
        base: int = 0,
        avoid: Segment | None = None,
        reset: bool = False,
    ) -> None:
        gc = avoid is not None or reset
        txn = o.next_txn
        o.next_txn += 1
        head = o.segs[-1] if o.segs else None
        if head is avoid:
            head = None
        if reset:
            head = self._new_segment(o, spare_ok=True)
            base = head.seq
        base = max(o.base, base)
        if not entries:
            entries = [(FLAG_MARK, b"", b"")]
        placed: list[tuple[Segment, int, bytes]] = []
        n = len(entries)
        for i, (flags, key, value) in enumerate(entries):
            size = record_size(len(key), len(value))
            if head is None or not _fits_at(head.end, size):
                try:
                    head = self._new_segment(o, spare_ok=gc)
                except FlashError:
                    for seg, off, _rec in placed:  # nothing was written: undo the layout
                        seg.end = min(seg.end, off)
                    raise
            last = i == n - 1
            rec = build_record(
                owner=o.id,
                flags=flags | (FLAG_LAST if last else 0),
                seg_seq=head.seq,
                txn=txn,
                index=i & 0xFFFF,
                key=key,
                value=value,
                base=base if last else 0,
            )
            placed.append((head, head.end, rec))
            head.end += size
        # everything but LAST, durable first; then LAST commits
        run: list[bytes] = []
        run_seg, run_off = None, 0
        for seg, off, rec in placed[:-1]:
            if seg is not run_seg:
                if run:
                    assert run_seg is not None  # a run always starts with its segment
                    self._write(run_seg.index * SEG + run_off, b"".join(run))
                run, run_seg, run_off = [], seg, off
            run.append(rec)
        if run:
            assert run_seg is not None
            self._write(run_seg.index * SEG + run_off, b"".join(run))
            self._flush()
        seg, off, rec = placed[-1]
        self._write(seg.index * SEG + off, rec)
        self._flush()
        # the commit is durable: now the in-memory state follows
        if reset:
            for s in o.segs:
                s.nlive = 0
            o.values.clear()
            o.loc.clear()
            o.live = 0
        for (seg, _off, rec), (flags, key, value) in zip(placed, entries, strict=True):
            self._apply(o, seg, flags, key, value, len(rec))
        if base > o.base:
            o.base = base
            keep = []
            for s in o.segs:
                if s.seq < base:
                    s.owner = OWNER_FREE
                    heapq.heappush(self._free, (s.erase_count, s.index))
                else:
                    keep.append(s)
            o.segs = keep
        self._seal_behind(o)

    def _seal_behind(self, o: Owner) -> None:
        """Seal the owner's finished segments (all but the head) that have no seal yet.

        Runs after a commit, so a power cut here only loses (or tears) a seal: the mount
        then scans that segment record by record, as without seals. The seal is built from
        a fresh scan of the segment on disk, not from memory, so it describes exactly what
        a scan would find (a segment with records from before the last mount included). Not
        flushed: the next commit's flush makes it durable, and a lost seal costs nothing.
        """
        todo = [s for s in o.segs[:-1] if not s.sealed][:SEALS_PER_COMMIT]
        for s in todo:
            s.sealed = True  # sealed now, or no room: either way never try again
            buf = self.dev.read(s.index * SEG, SEG)
            sc = scan_records(buf, s.owner, s.seq)
            rec = build_seal(buf, sc, s.owner, s.seq)
            if sc.end < s.end or sc.end + len(rec) > SEG:
                continue
            self._write(s.index * SEG + sc.end, rec)
            s.end = sc.end + len(rec)

    # ---- reading -------------------------------------------------------------------

    def get(self, owner: int, key: bytes) -> bytes | None:
        return self.owners[owner].values.get(key)

    def values(self, owner: int) -> dict[bytes, bytes]:
        return self.owners[owner].values

    def info(self) -> str:
        """`mod cmd FLASHMAN0 info`, in the seed's format."""
        lines = [f"segments={len(self.segments)}, segment-size=0x{SEG:x} ({SEG // KiB}k)"]
        for oid in (OWNER_LDAP, OWNER_VARS):
            o = self.owners[oid]
            n = len(o.segs)
            used = math.ceil((n * HEADER_AREA + o.live) / KiB)
            avail = (SEG - o.segs[-1].end) // KiB if o.segs else 0
            lines.append(
                f"{o.name} - used {used}k avail {avail}k owned {n * SEG // KiB}k "
                f"(segments {n}) maximum {o.maximum * SEG // KiB}k "
                f"(segments {o.maximum}, configured {o.configured})"
            )
        return "\n".join(lines)

    def segment_table(self) -> Iterator[Segment]:
        return iter(self.segments)

    def _scan(self, seg: Segment) -> SegmentScan:
        """Parse one segment record by record (the disk as it is, seal or not)."""
        return scan_records(self.dev.read(seg.index * SEG, SEG), seg.owner, seg.seq)

    def records_of(self, seg: Segment) -> list[Record]:
        """Re-read one segment's records (for `ipva flash dump`)."""
        if seg.owner == OWNER_FREE:
            return []
        return self._scan(seg).records
