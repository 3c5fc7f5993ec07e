"""FLASHMAN0 on-disk format: declared once here with construct; everything else packs and
parses through these declarations.

Layout of the flash disk (IDE 1:0)
----------------------------------
The flash area is the first ``area_segments`` 64 KiB segments of the disk: 64 MiB (1024
segments) when a blank disk is formatted at first boot, the whole disk up to 512 MiB (8192
segments) after ``!mod cmd FLASHMAN0 reset all``. Bytes beyond the area are never touched.

Every segment::

    0x0000  segment header (64 bytes)          \\ two identical copies, one 128-byte write,
    0x0040  segment header again (64 bytes)    /  so one damaged byte never loses the segment
    0x0080  record, record, ...                   8-byte aligned, appended in order
    ....    zero bytes                            unwritten (a segment is erased before reuse)

Segment header (little endian; ``crc`` is CRC-32 of the 60 bytes before it):

    magic b"FLASHMAN" | version u16 | owner u8 | flags u8 | seq u32 | erase_count u32 |
    epoch u32 | area_segments u32 | 32 reserved zero bytes | crc u32

- ``owner``: 0 free, 1 VARS, 2 LDAP (FLASHDIR0). Room for more.
- ``seq``: allocation sequence, unique and increasing over the whole flash; an owner's log is
  its segments in ``seq`` order. A header is written (and flushed) after the segment's body
  has been erased and before any record goes into it, so a record's ``seg_seq`` can only be
  valid if its header was durable: sequence numbers are never reused.
- ``erase_count``: how often this segment has been erased/reallocated (wear spreading: the
  allocator takes the free segment with the lowest count).
- ``epoch``: the ``seq`` at which the current format was made (``reset all``). The mount
  takes the highest epoch among valid headers; segments from an older epoch are free. So
  ``reset all`` commits with its first durable header, and a torn format is simply new.
- ``area_segments``: size of the flash area of this format, in segments.

Record (8-byte aligned; ``crc`` is CRC-32 of everything after it: header rest, key, value):

    crc u32 | magic u16 0xF1A5 | owner u8 | flags u8 | seg_seq u32 | txn u32 | index u16 |
    klen u16 | vlen u32 | base u32 | key[klen] | value[vlen] | zero padding to 8

- ``flags``: LAST (1) ends a transaction, DELETE (2) is a tombstone for ``key``, MARK (4) is a
  record without key that only carries transaction metadata (an empty GC or a reset).
- ``seg_seq``/``owner`` must equal the segment header's: this rejects leftovers and lets a
  segment whose two header copies are both damaged be recovered from its records.
- ``txn``: per-owner transaction number. A transaction is committed when its LAST record is
  on disk; the LAST record is written and flushed only after all other records of the
  transaction were flushed, so LAST can never survive a power cut without its siblings.
  Records of a transaction without LAST are "not committed" and ignored (a torn tail).
- ``base``: on LAST records, the owner's low-water mark: every segment of this owner with
  ``seq < base`` is obsolete (compacted away or reset) and counts as free. Every LAST record
  repeats the owner's current base, so one damaged record never resurrects old segments.

Seal (format version 2)
-----------------------
When an owner's log moves on to a new segment, the finished segment gets a *seal*: one more
record (flags SEAL, empty key, ``txn`` = 0, ``base`` = 0) appended after its last record. It
is a cache of what the record-by-record scan of that segment would find, so the mount can
take the segment's keys and values with one CRC over the body and one ``struct`` call instead
of parsing every record. Its value (``SealValue``)::

    body_crc u32 | count u32 | txn_max u32 | base_max u32 | index (u32 length + zlib data) |
    pad (u8 length + zero bytes) | seal_offset u32 | b"SEAL"

- ``body_crc``: CRC-32 of the segment bytes from 0x80 up to the seal record (every record,
  damaged range and padding before it). The mount trusts the index only if this matches.
- ``count``: records indexed; ``txn_max``: their highest txn (0 if none); ``base_max``: the
  highest ``base`` of their LAST records.
- ``index``: zlib of ``SealIndex``: ``layout`` (per valid record from 0x80 on: the bytes to
  skip before its key — its header and what lies between records —, its key length and its
  value length; the mount turns it into one in-memory ``struct`` format that yields key,
  value, key, value, ...), ``flags`` (one byte per record),
  ``lasts`` (txn of every LAST record, as differences to the previous one, mod 2**32),
  ``others`` (txns with records here whose LAST is not here), ``damage`` ((offset, length)
  of every range the scan reported as not a valid record).
- ``pad`` makes the record size a multiple of 8 without trailing zero padding, so the seal's
  last byte is the segment's last non-zero byte; ``seal_offset`` (its own offset) and the
  magic then find it from the end of the segment.

A seal is written after the commit that left its segment, is never required, and is only
believed when its own CRC, its ``seal_offset``, the owner/seq of the segment and
``body_crc`` all check out; otherwise the segment is scanned record by record exactly as in
version 1 (a torn or damaged seal is reported like any other damaged record). Records leave
``SEAL_RESERVE`` bytes free at the end of a segment (except for the first record of a
segment, so a maximum-size record still fits) so that the seal normally fits; a segment
whose seal does not fit stays unsealed. Version 1 segments (no seals) are still read; a
version 1 reader must not read version 2 segments (it would take the seal for a key ``b""``).
"""

from __future__ import annotations

import struct
import sys
import zlib
from array import array
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from itertools import accumulate
from typing import NamedTuple

from construct import (
    Bytes,
    Checksum,
    Const,
    FormatField,
    GreedyBytes,
    Int8ul,
    Int16ul,
    Int32ul,
    Padded,
    Padding,
    Prefixed,
    PrefixedArray,
    RawCopy,
    Struct,
)

from appliance.formats.crc import crc32_trailed

SEGMENT_SIZE = 0x10000
SEGMENT_MAGIC = b"FLASHMAN"
FORMAT_VERSION = 2  # 2: seal records (see "Seal" above)
READ_VERSIONS = (1, 2)  # version 1 segments simply have no seals
HEADER_SIZE = 64
HEADER_AREA = 2 * HEADER_SIZE  # two copies
RECORD_MAGIC = 0xF1A5
RECORD_ALIGN = 8

OWNER_FREE = 0
OWNER_VARS = 1
OWNER_LDAP = 2
OWNER_NAMES = {OWNER_FREE: "free", OWNER_VARS: "VARS", OWNER_LDAP: "LDAP"}

FLAG_LAST = 1
FLAG_DELETE = 2
FLAG_MARK = 4
FLAG_SEAL = 8

SEAL_MAGIC = b"SEAL"
SEAL_RESERVE = 1024  # bytes left free at a segment's end for its seal (see "Seal")

SegmentHeaderBody = Struct(
    "magic" / Const(SEGMENT_MAGIC, Bytes(8)),
    "version" / Int16ul,
    "owner" / Int8ul,
    "flags" / Int8ul,
    "seq" / Int32ul,
    "erase_count" / Int32ul,
    "epoch" / Int32ul,
    "area_segments" / Int32ul,
    Padding(32),
)
SegmentHeader = crc32_trailed(SegmentHeaderBody)

RecordHeader = Struct(
    "crc" / Int32ul,
    "magic" / Const(RECORD_MAGIC, Int16ul),
    "owner" / Int8ul,
    "flags" / Int8ul,
    "seg_seq" / Int32ul,
    "txn" / Int32ul,
    "index" / Int16ul,
    "klen" / Int16ul,
    "vlen" / Int32ul,
    "base" / Int32ul,
)


def _fast_struct(decl: Struct) -> struct.Struct:
    """The same layout as a struct.Struct, derived from the construct declaration.

    Mounting a full 512 MiB flash parses millions of record headers and thousands of
    segment headers; construct's interpreter is ~50x slower than struct, so the hot path
    uses this derived twin (tested to agree byte for byte with the declaration).
    """

    def fmt(d: Struct) -> str:
        out = ""
        for sub in d.subcons:
            if isinstance(sub, Padded):
                out += f"{sub.length}x"
                continue
            field = sub.subcon
            if isinstance(field, Const | RawCopy):
                field = field.subcon
            elif isinstance(field, Checksum):  # the CRC trailer's u32
                field = field.checksumfield
            if isinstance(field, Struct):
                out += fmt(field)
            elif isinstance(field, FormatField):
                out += field.fmtstr.lstrip("<")
            else:  # Bytes(n)
                out += f"{field.length}s"
        return out

    return struct.Struct("<" + fmt(decl))


RECORD_HEADER = _fast_struct(RecordHeader)
SEGMENT_HEADER = _fast_struct(SegmentHeader)
RECORD_HEADER_SIZE = RECORD_HEADER.size  # 28
RECORD_MAGIC_BYTES = struct.pack("<H", RECORD_MAGIC)
MAX_PAYLOAD = SEGMENT_SIZE - HEADER_AREA - RECORD_HEADER_SIZE

assert SegmentHeader.sizeof() == SEGMENT_HEADER.size == HEADER_SIZE
assert RecordHeader.sizeof() == RECORD_HEADER_SIZE


@dataclass(frozen=True)
class Header:
    """A segment header's fields (the layout is in the module's docstring)."""

    owner: int
    seq: int
    erase_count: int
    epoch: int
    area_segments: int
    flags: int = 0
    version: int = FORMAT_VERSION


def build_header(h: Header) -> bytes:
    """Both copies of the segment header (128 bytes, one write)."""
    fields = dict(
        version=h.version,
        owner=h.owner,
        flags=h.flags,
        seq=h.seq,
        erase_count=h.erase_count,
        epoch=h.epoch,
        area_segments=h.area_segments,
    )
    one = SegmentHeader.build({"body": {"value": fields}})
    return one + one


def parse_header(raw: bytes) -> Header | None:
    """The first valid copy of the header in `raw` (>= 128 bytes), or None."""
    for off in (0, HEADER_SIZE):
        if raw[off : off + 8] != SEGMENT_MAGIC:
            continue
        magic, version, owner, flags, seq, ec, epoch, area, crc = SEGMENT_HEADER.unpack_from(
            raw, off
        )
        if zlib.crc32(raw[off : off + HEADER_SIZE - 4]) != crc or version not in READ_VERSIONS:
            continue
        return Header(owner, seq, ec, epoch, area, flags, version)
    return None


def record_size(klen: int, vlen: int) -> int:
    return (RECORD_HEADER_SIZE + klen + vlen + RECORD_ALIGN - 1) & ~(RECORD_ALIGN - 1)


def build_record(
    *,
    owner: int,
    flags: int,
    seg_seq: int,
    txn: int,
    index: int,
    key: bytes,
    value: bytes,
    base: int,
) -> bytes:
    """One record, padded to the record alignment."""
    rest = RECORD_HEADER.pack(
        0, RECORD_MAGIC, owner, flags, seg_seq, txn, index, len(key), len(value), base
    )[4:]
    body = rest + key + value
    rec = zlib.crc32(body).to_bytes(4, "little") + body
    return rec + b"\0" * (record_size(len(key), len(value)) - len(rec))


class Record(NamedTuple):
    """One valid record as found on disk (for tools and tests; the mount uses the lists)."""

    offset: int
    flags: int
    txn: int
    key: bytes
    value: bytes
    base: int
    size: int


@dataclass
class SegmentScan:
    """The valid records of one segment, as parallel lists (the mount's hot path builds no
    per-record objects); `records` gives them as `Record`s."""

    offsets: list[int]
    flags: list[int]
    txns: list[int]
    keys: list[bytes]
    values: list[bytes]
    lasts: list[tuple[int, int]]  # (txn, base) of every LAST record
    damage: list[tuple[int, int]]  # (offset, length) of bytes that are not valid records
    end: int  # first offset after everything non-zero, aligned: where appends go

    @property
    def records(self) -> list[Record]:
        bases = dict(self.lasts)
        return [
            Record(
                off,
                fl,
                txn,
                key,
                value,
                bases.get(txn, 0) if fl & FLAG_LAST else 0,
                record_size(len(key), len(value)),
            )
            for off, fl, txn, key, value in zip(
                self.offsets, self.flags, self.txns, self.keys, self.values, strict=True
            )
        ]


_ZERO_CHUNK = memoryview(bytes(4096))


def data_end(mv: memoryview) -> int:
    """Offset after the last non-zero byte (without copying the segment, as rstrip would)."""
    end = len(mv)
    step = len(_ZERO_CHUNK)
    while end >= step and mv[end - step : end] == _ZERO_CHUNK:
        end -= step
    lo = max(0, end - step)
    return lo + len(mv[lo:end].tobytes().rstrip(b"\0"))


def scan_records(buf: bytes, owner: int, seq: int) -> SegmentScan:
    """Parse the records of one segment (`buf` is the whole segment).

    Stops at the zero tail. Bytes that are not a valid record of this segment (bad CRC,
    wrong seq/owner) are skipped by searching for the next valid record (resync), and
    reported as damage; damage that runs to the tail is a torn (uncommitted) write.
    """
    n = len(buf)
    mv = memoryview(buf)
    tail = data_end(mv)
    unpack = RECORD_HEADER.unpack_from
    crc32 = zlib.crc32
    hsz = RECORD_HEADER_SIZE
    sc = SegmentScan([], [], [], [], [], [], [], HEADER_AREA)
    add_off, add_flags, add_txn = sc.offsets.append, sc.flags.append, sc.txns.append
    add_key, add_value = sc.keys.append, sc.values.append
    pos = HEADER_AREA
    while pos < tail:
        if pos + hsz <= n:
            crc, magic, rown, flags, sseq, txn, _idx, klen, vlen, base = unpack(buf, pos)
            end = pos + hsz + klen + vlen
            if (
                magic == RECORD_MAGIC
                and sseq == seq
                and rown == owner
                and end <= n
                and crc32(mv[pos + 4 : end]) == crc
            ):
                if flags & FLAG_SEAL:  # metadata about the records before it, not a record
                    pos = (end + RECORD_ALIGN - 1) & ~(RECORD_ALIGN - 1)
                    continue
                k = pos + hsz + klen
                add_off(pos)
                add_flags(flags)
                add_txn(txn)
                add_key(buf[pos + hsz : k])
                add_value(buf[k:end])
                if flags & FLAG_LAST:
                    sc.lasts.append((txn, base))
                pos = (end + RECORD_ALIGN - 1) & ~(RECORD_ALIGN - 1)
                continue
        nxt = _resync(buf, mv, pos + RECORD_ALIGN, tail, owner, seq)
        sc.damage.append((pos, (nxt if nxt is not None else tail) - pos))
        if nxt is None:
            pos = tail
            break
        pos = nxt
    sc.end = (max(pos, tail, HEADER_AREA) + RECORD_ALIGN - 1) & ~(RECORD_ALIGN - 1)
    return sc


def _next_valid_record(
    buf: bytes, mv: memoryview, start: int, tail: int, accept: Callable[[int, int], bool]
) -> tuple[int, int, int] | None:
    """(offset, owner, seq) of the first record at or after `start` whose CRC holds and whose
    (owner, seg_seq) `accept` takes; None if there is none before `tail`."""
    i = start + 4
    while True:
        j = buf.find(RECORD_MAGIC_BYTES, i, tail)
        if j < 0:
            return None
        pos = j - 4
        if pos % RECORD_ALIGN == 0 and pos + RECORD_HEADER_SIZE <= len(buf):
            crc, _m, rown, _f, sseq, _t, _i, klen, vlen, _b = RECORD_HEADER.unpack_from(buf, pos)
            end = pos + RECORD_HEADER_SIZE + klen + vlen
            if accept(rown, sseq) and end <= len(buf) and zlib.crc32(mv[pos + 4 : end]) == crc:
                return pos, rown, sseq
        i = j + 1


def _resync(buf: bytes, mv: memoryview, start: int, tail: int, owner: int, seq: int) -> int | None:
    """Offset of the next valid record of this segment at or after `start`, or None."""
    found = _next_valid_record(buf, mv, start, tail, lambda o, s: o == owner and s == seq)
    return found[0] if found else None


def recover_identity(buf: bytes) -> tuple[int, int] | None:
    """(owner, seq) of a segment whose header copies are both damaged, from its records."""
    tail = len(buf.rstrip(b"\0"))
    found = _next_valid_record(
        buf, memoryview(buf), HEADER_AREA, tail, lambda o, _s: o in (OWNER_VARS, OWNER_LDAP)
    )
    return (found[1], found[2]) if found else None


# ---- seals (format version 2) ------------------------------------------------------------

SealIndex = Struct(
    "layout" / PrefixedArray(Int32ul, Struct("skip" / Int32ul, "key" / Int32ul, "value" / Int32ul)),
    "flags" / Prefixed(Int32ul, GreedyBytes),
    "lasts" / PrefixedArray(Int32ul, Int32ul),  # differences, mod 2**32
    "others" / PrefixedArray(Int32ul, Int32ul),
    "damage" / PrefixedArray(Int32ul, Struct("offset" / Int32ul, "length" / Int32ul)),
)
SealValue = Struct(
    "body_crc" / Int32ul,
    "count" / Int32ul,
    "txn_max" / Int32ul,
    "base_max" / Int32ul,
    "index" / Prefixed(Int32ul, GreedyBytes),  # zlib of SealIndex
    "pad" / Prefixed(Int8ul, GreedyBytes),
    "seal_offset" / Int32ul,
    "magic" / Const(SEAL_MAGIC),
)
_SEAL_FIXED = struct.Struct("<IIIII")  # SealValue up to and including the index length
_U32 = struct.Struct("<I")
_U32_MASK = 0xFFFFFFFF
_PLAIN = b"\0" + bytes([FLAG_LAST])  # flags of a plain put (the mount's fast path)


@dataclass
class SegmentIndex:
    """What the mount needs of one segment, from a seal or from the record-by-record scan.

    `keys`/`values`/`flags` are per valid record, in order. `txns` is per record for a
    scanned segment and None for a sealed one: there every record belongs to a committed
    transaction unless its txn is in `others` (the txns without a LAST here) and has no
    LAST anywhere; the mount rescans such a segment (rare: only after a power cut).
    """

    keys: Sequence[bytes]
    values: Sequence[bytes]
    flags: bytes
    txns: Sequence[int] | None
    others: Sequence[int]
    txn_max: int  # -1 without records
    base_max: int
    damage: list[tuple[int, int]]
    end: int
    sealed: bool
    _lasts: bytes | Sequence[int] = b""  # sealed: the encoded differences, decoded on use

    @property
    def plain(self) -> bool:
        """Only puts and LASTs (no deletes, marks): the mount can bulk-apply."""
        return not self.flags.translate(None, _PLAIN)

    def last_txns(self) -> Sequence[int]:
        """Txn of every LAST record (decoded only when a commit check needs it)."""
        if isinstance(self._lasts, bytes):
            diffs = array("I")
            diffs.frombytes(self._lasts)
            if sys.byteorder == "big":
                diffs.byteswap()
            self._lasts = [t & _U32_MASK for t in accumulate(diffs)]
        return self._lasts

    @classmethod
    def from_scan(cls, sc: SegmentScan) -> SegmentIndex:
        lasts = [t for t, _b in sc.lasts]
        return cls(
            sc.keys,
            sc.values,
            bytes(sc.flags),
            sc.txns,
            sorted(set(sc.txns).difference(lasts)),
            max(sc.txns, default=-1),
            max((b for _t, b in sc.lasts), default=0),
            sc.damage,
            sc.end,
            False,
            lasts,
        )


def build_seal(buf: bytes, sc: SegmentScan, owner: int, seq: int) -> bytes:
    """The seal record of a segment (`buf`, scanned as `sc`), to be written at `sc.end`."""
    at = sc.end
    layout = []
    prev = HEADER_AREA
    for off, key, value in zip(sc.offsets, sc.keys, sc.values, strict=True):
        start = off + RECORD_HEADER_SIZE
        layout.append(dict(skip=start - prev, key=len(key), value=len(value)))
        prev = start + len(key) + len(value)
    lasts = [t for t, _b in sc.lasts]
    index = SealIndex.build(
        dict(
            layout=layout,
            flags=bytes(sc.flags),
            lasts=[(t - p) & _U32_MASK for p, t in zip([0, *lasts], lasts, strict=False)],
            others=sorted(set(sc.txns).difference(lasts)),
            damage=[dict(offset=o, length=n) for o, n in sc.damage],
        )
    )
    z = zlib.compress(index, 6)
    fixed = _SEAL_FIXED.size + len(z) + 1 + 8
    pad = -(RECORD_HEADER_SIZE + fixed) % RECORD_ALIGN  # no zero padding after the magic
    value = SealValue.build(
        dict(
            body_crc=zlib.crc32(memoryview(buf)[HEADER_AREA:at]),
            count=len(sc.keys),
            txn_max=max(sc.txns, default=0),
            base_max=max((b for _t, b in sc.lasts), default=0),
            index=z,
            pad=bytes(pad),
            seal_offset=at,
        )
    )
    rec = build_record(
        owner=owner, flags=FLAG_SEAL, seg_seq=seq, txn=0, index=0, key=b"", value=value, base=0
    )
    assert len(rec) == RECORD_HEADER_SIZE + len(value)
    return rec


def layout_format(layout: Sequence[int]) -> str:
    """The in-memory `struct` format of a seal's layout (skip, key, value, skip, …)."""
    if len(layout) % 3:
        raise ValueError("seal layout is not whole (skip, key, value) triples")
    return "<" + ("%dx%ds%ds" * (len(layout) // 3)) % tuple(
        layout
    )  # one call: the mount's hot path


def _parse_seal_index(
    raw: bytes,
) -> tuple[Sequence[int], bytes, bytes, list[int], list[tuple[int, int]]]:
    """SealIndex without construct (the mount's hot path; tested to agree with it):
    (layout as flat skip, key, value, …, flags, lasts as encoded bytes, others, damage)."""
    pos = 0
    out: list[bytes] = []
    for width in (12, 1, 4, 4, 8):  # element sizes: layout, flags, lasts, others, damage
        (n,) = _U32.unpack_from(raw, pos)
        pos += 4
        out.append(raw[pos : pos + n * width])
        if len(out[-1]) != n * width:
            raise ValueError("seal index truncated")
        pos += n * width
    if pos != len(raw):
        raise ValueError("seal index too long")
    layout = array("I")
    layout.frombytes(out[0])
    if sys.byteorder == "big":
        layout.byteswap()
    others = [t for (t,) in struct.iter_unpack("<I", out[3])]
    damage = list(struct.iter_unpack("<II", out[4]))
    return layout, out[1], out[2], others, damage


def read_seal(mv: memoryview, owner: int, seq: int) -> SegmentIndex | None:
    """The index of a sealed segment (`mv` is the whole segment), or None if it has no
    seal that checks out completely (then the caller scans it record by record)."""
    end = data_end(mv)
    if end % RECORD_ALIGN or end < HEADER_AREA + RECORD_HEADER_SIZE + 8:
        return None
    if mv[end - 4 : end] != SEAL_MAGIC:
        return None
    (at,) = _U32.unpack_from(mv, end - 8)
    if at < HEADER_AREA or at % RECORD_ALIGN or at + RECORD_HEADER_SIZE + _SEAL_FIXED.size > end:
        return None
    crc, magic, rown, flags, sseq, _txn, _idx, klen, vlen, _base = RECORD_HEADER.unpack_from(mv, at)
    v = at + RECORD_HEADER_SIZE
    if (
        magic != RECORD_MAGIC
        or rown != owner
        or sseq != seq
        or flags != FLAG_SEAL
        or klen
        or v + vlen != end
        or zlib.crc32(mv[at + 4 : end]) != crc
    ):
        return None
    body_crc, count, txn_max, base_max, zlen = _SEAL_FIXED.unpack_from(mv, v)
    if zlib.crc32(mv[HEADER_AREA:at]) != body_crc:
        return None  # the body changed since sealing: the full scan finds out what
    try:
        z = v + _SEAL_FIXED.size
        layout, fl, lasts, others, damage = _parse_seal_index(zlib.decompress(mv[z : z + zlen]))
        fmt = layout_format(layout)
        kv = struct.unpack_from(fmt, mv, HEADER_AREA)
    except (zlib.error, struct.error, ValueError):
        return None  # cannot happen for a seal we wrote (its CRC matched); be safe anyway
    if len(kv) != 2 * count or len(fl) != count or struct.calcsize(fmt) > at - HEADER_AREA:
        return None
    return SegmentIndex(
        kv[0::2],
        kv[1::2],
        fl,
        None,
        others,
        txn_max if count else -1,
        base_max,
        damage,
        end,
        True,
        lasts,
    )
