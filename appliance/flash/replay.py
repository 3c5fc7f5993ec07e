"""FLASHMAN0's mount: read the owners' segments in long runs, index each from its seal or
record by record, and replay every owner's log (committed transactions only; the newest
sequence wins; obsolete segments become free). See flashman.py for the rules.
"""

from __future__ import annotations

import heapq
from collections.abc import Callable, Iterable
from itertools import repeat

from appliance.flash.format import (
    FLAG_DELETE,
    FLAG_MARK,
    OWNER_FREE,
    OWNER_NAMES,
    SegmentIndex,
    SegmentScan,
    read_seal,
    recover_identity,
    scan_records,
)
from appliance.flash.limits import SEG
from appliance.flash.segments import LocLog, Owner, Segment
from appliance.hal.block import BlockDevice

Trace = Callable[[str], None]
_READ_CHUNK = 64  # segments per sequential read at mount (4 MiB)


class Commits:
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


def read_and_scan(
    dev: BlockDevice, wanted: list[Segment], damaged: set[int], epoch: int, report: Trace
) -> tuple[dict[int, SegmentIndex], int]:
    """Read the wanted segments in long sequential runs and index them: from their seal
    where it checks out, else by parsing every record. Also returns the highest sequence
    number of a segment whose header was recovered from its records (0: none)."""
    scans: dict[int, SegmentIndex] = {}
    recovered = 0
    i = 0
    while i < len(wanted):
        j = i + 1
        while (
            j < len(wanted) and j - i < _READ_CHUNK and wanted[j].index == wanted[j - 1].index + 1
        ):
            j += 1
        first = wanted[i].index
        data = dev.read(first * SEG, (j - i) * SEG)
        mv = memoryview(data)
        for seg in wanted[i:j]:
            off = (seg.index - first) * SEG
            if seg.index in damaged:
                ident = recover_identity(data[off : off + SEG])
                if ident is None or ident[1] <= epoch:
                    report(f"flashman: segment {seg.index}: header damaged, now free")
                    continue
                seg.owner, seg.seq = ident
                recovered = max(recovered, seg.seq)
                report(
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
    return scans, recovered


def rebuild(
    segments: list[Segment],
    owners: dict[int, Owner],
    scans: dict[int, SegmentIndex],
    scan: Callable[[Segment], SegmentScan],
    report: Trace,
    trace: Trace,
) -> list[tuple[int, int]]:
    """Replay every owner's log: committed transactions only, obsolete segments skipped.
    Returns the free segments as a heap of (erase count, index)."""
    for o in owners.values():
        segs = sorted(
            (s for s in segments if s.owner == o.id and s.index in scans),
            key=lambda s: s.seq,
        )
        committed = Commits([scans[s.index] for s in segs])
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
                ix = scans[s.index] = SegmentIndex.from_scan(scan(s))
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
                    report(
                        f"flashman: {o.name} segment {s.index}: uncommitted tail at "
                        f"0x{off:x} ({length} bytes), ignored"
                    )
                else:
                    report(
                        f"flashman: {o.name} segment {s.index}: damaged records at "
                        f"0x{off:x} ({length} bytes) skipped"
                    )
        if uncommitted:
            trace(f"flashman: {o.name}: {len(uncommitted)} uncommitted transaction(s) ignored")
    free = [(s.erase_count, s.index) for s in segments if s.owner == OWNER_FREE]
    heapq.heapify(free)
    return free
