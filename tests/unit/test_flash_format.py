"""The FLASHMAN on-disk format: construct declarations round-trip, the fast struct twin
agrees with them byte for byte, records round-trip through the segment scanner."""

from __future__ import annotations

import zlib

from hypothesis import given, settings
from hypothesis import strategies as st

from appliance.flash.format import (
    FLAG_DELETE,
    FLAG_LAST,
    HEADER_AREA,
    RECORD_HEADER,
    RECORD_MAGIC,
    SEGMENT_HEADER,
    SEGMENT_SIZE,
    Header,
    RecordHeader,
    SegmentHeader,
    SegmentHeaderBody,
    build_header,
    build_record,
    data_end,
    parse_header,
    record_size,
    scan_records,
)

u32 = st.integers(0, 2**32 - 1)
u8 = st.integers(0, 255)


@given(u8, u8, u32, u32, u32, u32)
def test_segment_header_roundtrip(
    owner: int, flags: int, seq: int, ec: int, ep: int, n: int
) -> None:
    h = Header(owner, seq, ec, ep, n, flags)
    raw = build_header(h)
    assert len(raw) == HEADER_AREA and raw[:64] == raw[64:]
    assert parse_header(raw) == h
    parsed = SegmentHeader.parse(raw[:64])
    assert SegmentHeader.build(parsed) == raw[:64]
    assert parsed.crc32 == zlib.crc32(raw[:60])
    body = SegmentHeaderBody.parse(raw[:60])
    assert SegmentHeaderBody.build(body) == raw[:60]


def test_header_one_damaged_copy_still_parses() -> None:
    h = Header(1, 7, 3, 1, 1024)
    raw = bytearray(build_header(h))
    raw[10] ^= 1
    assert parse_header(bytes(raw)) == h
    raw[74] ^= 1
    assert parse_header(bytes(raw)) is None


@given(u8, u8, u32, u32, st.integers(0, 0xFFFF), st.integers(0, 0xFFFF), u32, u32, u32)
def test_record_header_struct_twin(
    owner: int, flags: int, sseq: int, txn: int, idx: int, klen: int, vlen: int, base: int, crc: int
) -> None:
    fields = dict(
        crc=crc,
        owner=owner,
        flags=flags,
        seg_seq=sseq,
        txn=txn,
        index=idx,
        klen=klen,
        vlen=vlen,
        base=base,
    )
    built = RecordHeader.build(fields)
    fast = RECORD_HEADER.pack(crc, RECORD_MAGIC, owner, flags, sseq, txn, idx, klen, vlen, base)
    assert built == fast
    parsed = RecordHeader.parse(built)
    assert RecordHeader.build(parsed) == built
    assert {k: parsed[k] for k in fields} == fields


@settings(max_examples=50)
@given(
    st.lists(
        st.tuples(st.binary(max_size=40), st.binary(max_size=3000), st.booleans()),
        min_size=1,
        max_size=12,
    ),
    u32,
)
def test_records_roundtrip_through_scan(entries: list[tuple[bytes, bytes, bool]], seq: int) -> None:
    seg = bytearray(SEGMENT_SIZE)
    pos = HEADER_AREA
    for i, (k, v, d) in enumerate(entries):
        rec = build_record(
            owner=2,
            flags=(FLAG_DELETE if d else 0) | FLAG_LAST,
            seg_seq=seq,
            txn=i,
            index=0,
            key=k,
            value=v,
            base=i,
        )
        assert len(rec) == record_size(len(k), len(v)) and len(rec) % 8 == 0
        seg[pos : pos + len(rec)] = rec
        pos += len(rec)
    scan = scan_records(bytes(seg), 2, seq)
    assert scan.damage == []
    assert [(r.key, r.value, bool(r.flags & FLAG_DELETE), r.txn, r.base) for r in scan.records] == [
        (k, v, d, i, i) for i, (k, v, d) in enumerate(entries)
    ]
    # a record of another segment (stale seq) is not ours
    assert scan_records(bytes(seg), 2, seq ^ 1).records == []


@given(u8, u8, u32, u32, u32, u32)
def test_segment_header_struct_twin(
    owner: int, flags: int, seq: int, ec: int, ep: int, n: int
) -> None:
    fields = dict(
        version=1, owner=owner, flags=flags, seq=seq, erase_count=ec, epoch=ep, area_segments=n
    )
    built = SegmentHeader.build({"body": {"value": fields}})
    crc = zlib.crc32(built[:60])  # the CRC trailer computes it
    assert built == SEGMENT_HEADER.pack(b"FLASHMAN", 1, owner, flags, seq, ec, ep, n, crc)


@given(st.binary(max_size=9000), st.integers(0, 9000))
def test_data_end_matches_rstrip(data: bytes, zeros: int) -> None:
    buf = data + bytes(zeros)
    assert data_end(memoryview(buf)) == len(buf.rstrip(b"\0"))
