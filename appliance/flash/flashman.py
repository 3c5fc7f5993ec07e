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
- The box's mount can leave the LDAP owner for later (`defer_ldap`): the headers and VARS
  (the config the boot needs) are read at once, and FLASHDIR0's segments, most of a full
  flash, by `finish_mount()` (the flash service calls it on a thread of its own, after the
  prompt's path). Until then every write and every read of LDAP first finishes the mount
  itself (or waits for the thread doing it), so nothing is written on a half-known flash
  and nobody reads a half-loaded directory; damage in LDAP is traced when it is found.
- One change at a time, whatever the caller: a commit (with the compactions it needs), a
  reset and a format take the write lock, so a second writer waits until the first one's
  records are laid out, written, committed and applied (two commits laid out at once put one
  behind the other's still unwritten records: a power cut then leaves a hole before an
  acknowledged commit, and a reset let through frees the segment a held commit then writes
  into). The box's executor orders its writers anyway; this is the last line of defence
  (tests/unit/test_flash_threads.py holds a writer inside its commit to prove it). Reads
  do not take it. The lock is taken after finish_mount(), which has its own.
- The segment headers (8192 on a 512 MiB flash) are read with the device's read_strided():
  on a disk that is a few large O_DIRECT requests instead of one small request per header,
  which under emulated IDE costs more than reading the whole area.

The pieces: limits.py (sizes and how the area is shared out, the errors), segments.py (the
in-memory segments and owner logs), replay.py (the mount: reading, seal or scan, replaying
the committed transactions), seals.py (sealing finished segments), info.py (`mod cmd
FLASHMAN0 info`). This module is the allocator and the transactions on top of them.
"""

from __future__ import annotations

import heapq
import math
import threading
from collections.abc import Callable, Iterable, Iterator

from appliance.flash.format import (
    FLAG_DELETE,
    FLAG_LAST,
    FLAG_MARK,
    HEADER_AREA,
    HEADER_SIZE,
    MAX_PAYLOAD,
    OWNER_FREE,
    OWNER_LDAP,
    OWNER_VARS,
    SEAL_RESERVE,
    Header,
    Record,
    SegmentIndex,
    SegmentScan,
    build_header,
    build_record,
    parse_header,
    record_size,
    scan_records,
)
from appliance.flash.info import format_info
from appliance.flash.limits import (
    MAX_AREA,
    MIN_SEGMENTS,
    SEG,
    SPARE,
    STANDARD_AREA,
    USABLE,
    FlashError,
    FlashFullError,
    KiB,
    Limits,
    MiB,
    WrongDiskError,
    plan_limits,
)
from appliance.flash.replay import read_and_scan, rebuild
from appliance.flash.seals import seal_behind
from appliance.flash.segments import Owner, Segment, fits_at
from appliance.hal.block import BlockDevice

# the names other modules and tools know from here
__all__ = [
    "SEG",
    "FlashError",
    "FlashFullError",
    "FlashMan",
    "KiB",
    "Limits",
    "MiB",
    "Trace",
    "WrongDiskError",
    "plan_limits",
]

Trace = Callable[[str], None]


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
        defer_ldap: bool = False,
    ) -> None:
        """`defer_ldap`: leave the LDAP owner's segments for finish_mount() (see above)."""
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
        # the LDAP segments still to read and replay, with the scans already made (a
        # damaged header recovered as LDAP); None: the mount is complete
        self._deferred: tuple[list[Segment], dict[int, SegmentIndex]] | None = None
        self._deferred_error: Exception | None = None  # finish_mount() failed: why
        self._mount_lock = threading.Lock()  # one finish_mount(); the others wait for it
        self._write_lock = threading.Lock()  # one commit/reset/format at a time (see above)
        if format_all:  # `reset all` on a disk that would not mount (e.g. WrongDiskError)
            area = min(self.dev.size, MAX_AREA) // SEG
            if area < MIN_SEGMENTS:
                raise FlashError(f"flash disk too small: {self.dev.size} bytes")
            self.trace(f"flashman: formatting {area} segments")
            self._format(area, [parse_header(r) for r in self._read_headers(area)])
            return
        self._mount(defer_ldap)

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

    def _read_headers(self, count: int) -> list[bytes]:
        """The header areas of the first `count` segments, raw (both copies)."""
        return self.dev.read_strided(0, SEG, HEADER_AREA, count)

    def _mount(self, defer_ldap: bool) -> None:
        dev_segments = min(self.dev.size, MAX_AREA) // SEG
        if dev_segments < MIN_SEGMENTS:
            raise FlashError(
                f"flash disk too small: {self.dev.size} bytes, need {MIN_SEGMENTS * SEG}"
            )
        raw = self._read_headers(dev_segments)
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
        later: list[Segment] = []
        if defer_ldap:  # a damaged header's owner is known only once it is read
            later = [s for s in wanted if s.owner == OWNER_LDAP and s.index not in damaged]
            wanted = [s for s in wanted if s.owner != OWNER_LDAP or s.index in damaged]
        scans, recovered = read_and_scan(self.dev, wanted, damaged, self.epoch, self._report)
        self.next_seq = max(self.next_seq, recovered + 1)
        self._set_limits()
        if later:  # else there is nothing left to defer: one rebuild of everything
            ldap = {i: ix for i, ix in scans.items() if self.segments[i].owner == OWNER_LDAP}
            self._deferred = (later, ldap)
            scans = {i: ix for i, ix in scans.items() if i not in ldap}
            owners = {OWNER_VARS: self.owners[OWNER_VARS]}
        else:
            owners = self.owners
        self._free = rebuild(self.segments, owners, scans, self._scan, self._report, self.trace)

    @property
    def mounted(self) -> bool:
        """Every owner's log is replayed (False while finish_mount() is still to come)."""
        return self._deferred is None

    def finish_mount(self) -> None:
        """Read and replay the LDAP segments a deferred mount left; returns at once when
        there are none. Raises FlashError when that failed (then, and on every later
        write or LDAP read: the flash stays read-only as far as it is known)."""
        with self._mount_lock:
            if self._deferred is not None and self._deferred_error is None:
                later, scans = self._deferred
                try:
                    more, _ = read_and_scan(self.dev, later, set(), self.epoch, self._report)
                    scans.update(more)
                    self._free = rebuild(
                        self.segments, {OWNER_LDAP: self.owners[OWNER_LDAP]}, scans,
                        self._scan, self._report, self.trace,
                    )  # fmt: skip
                except Exception as e:  # a read error: VARS stays usable, writes do not
                    self._deferred_error = e
                else:
                    self._deferred = None
                    self.check_ldap_size()
            if self._deferred_error is not None:
                raise FlashError(
                    f"FLASHDIR0 could not be read ({self._deferred_error}); "
                    "no flash writes until the box restarts"
                )

    def check_ldap_size(self) -> None:
        """Trace it when LDAP holds more segments than granted (the box has less RAM than
        when they were written): FlashDir at its start, or finish_mount() when deferred."""
        o = self.owners[OWNER_LDAP]
        if len(o.segs) > o.maximum:
            self.trace(f"fdir: holds {len(o.segs)} segments, more than granted; it cannot grow")

    def _report(self, line: str) -> None:
        self.damage.append(line)
        self.trace(line)

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
        self.finish_mount()
        with self._write_lock:
            area = min(self.dev.size, MAX_AREA) // SEG
            parsed = [parse_header(r) for r in self._read_headers(area)]
            for s in self.segments:  # keep what the mount knew, e.g. of damaged headers
                if parsed[s.index] is None:
                    parsed[s.index] = Header(OWNER_FREE, 0, s.erase_count, 0, 0)
            self._format(area, parsed)
            self.blank = False

    def reset_owner(self, owner: int) -> None:
        """`reset vars` / `reset ldap`: drop all of one owner's data in one commit."""
        self.finish_mount()
        with self._write_lock:
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
            if not fits_at(end, sz):
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
        self.finish_mount()
        with self._write_lock:  # the values compared and the layout are the ones written
            self._commit(self.owners[owner], updates)

    def _commit(self, o: Owner, updates: Iterable[tuple[bytes, bytes | None]]) -> None:
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
            if head is None or not fits_at(head.end, size):
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
        seal_behind(o, self.dev.read, self._write)

    # ---- reading -------------------------------------------------------------------

    def get(self, owner: int, key: bytes) -> bytes | None:
        if owner == OWNER_LDAP:
            self.finish_mount()
        return self.owners[owner].values.get(key)

    def values(self, owner: int) -> dict[bytes, bytes]:
        if owner == OWNER_LDAP:
            self.finish_mount()
        return self.owners[owner].values

    def info(self) -> str:
        """`mod cmd FLASHMAN0 info`, in the seed's format (info.py)."""
        self.finish_mount()
        return format_info(len(self.segments), self.owners)

    def segment_table(self) -> Iterator[Segment]:
        self.finish_mount()
        return iter(self.segments)

    def _scan(self, seg: Segment) -> SegmentScan:
        """Parse one segment record by record (the disk as it is, seal or not)."""
        return scan_records(self.dev.read(seg.index * SEG, SEG), seg.owner, seg.seq)

    def records_of(self, seg: Segment) -> list[Record]:
        """Re-read one segment's records (for `ipva flash dump`)."""
        if seg.owner == OWNER_FREE:
            return []
        return self._scan(seg).records
