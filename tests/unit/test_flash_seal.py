"""Seals (format version 2): a finished segment's index, so the mount need not parse every
record. A seal is only an accelerator: with or without it the mount must find exactly the
same state, and a damaged, torn or missing seal falls back to the record-by-record scan."""

from __future__ import annotations

import random
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from unittest import mock

import pytest
from flashdev import MODES, SEG, CutDevice, PowerCut, formatted_image, memdev, mount, state
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_flash_model import apply, check_invariants, op
from test_flash_powercut import Op, sweep

from appliance.flash import Flash
from appliance.flash.format import (
    FLAG_DELETE,
    FLAG_LAST,
    FLAG_MARK,
    FLAG_SEAL,
    HEADER_AREA,
    OWNER_LDAP,
    OWNER_VARS,
    RECORD_HEADER,
    SealIndex,
    SealValue,
    SegmentIndex,
    _parse_seal_index,
    build_record,
    build_seal,
    read_seal,
    scan_records,
)


@contextmanager
def seals_ignored() -> Iterator[None]:
    """Mount as a version 1 reader would: every segment scanned record by record."""
    with mock.patch("appliance.flash.replay.read_seal", lambda *_a: None):
        yield


def fingerprint(flash: Flash) -> tuple:  # type: ignore[type-arg]
    """Everything the mount rebuilds: state, logs, locations, live counts, damage."""
    fm = flash.flashman
    owners = []
    for o in fm.owners.values():
        owners.append(
            (
                o.base,
                o.next_txn,
                [(s.index, s.seq, s.end, s.nlive) for s in o.segs],
                sorted((k, s.index) for k, s in o.loc.items()),
                o.live,
            )
        )
    free = sorted(i for _ec, i in fm._free)
    return state(flash), owners, free, fm.damage


def both_ways(image: bytes) -> tuple[tuple, tuple, Flash]:  # type: ignore[type-arg]
    sealed = mount(memdev(image))
    with seals_ignored():
        scanned = mount(memdev(image))
    return fingerprint(sealed), fingerprint(scanned), sealed


def sealed_segments(image: bytes, flash: Flash) -> list[int]:
    out = []
    for o in flash.flashman.owners.values():
        for s in o.segs:
            mv = memoryview(image)[s.index * SEG : (s.index + 1) * SEG]
            if read_seal(mv, o.id, s.seq) is not None:
                out.append(s.index)
    return out


def _fill_ldap(n: int, size: int = 3000) -> tuple[bytes, Flash]:
    dev = memdev(formatted_image(24))
    f = mount(dev)
    for i in range(n):
        f.flashdir.put(i % 70, f"(cn=u{i})(x={'q' * size})")
        if i % 9 == 0:
            f.flashdir.delete((i * 7) % 70)
        if i % 5 == 0:
            f.vars.commit({f"v{i % 4}": b"%d" % i * 50})
    return bytes(dev.data), f


@pytest.fixture(scope="module")
def filled() -> bytes:
    image, f = _fill_ldap(400)
    assert f.flashman.compactions > 0
    return image


# ---- format --------------------------------------------------------------------------


@settings(max_examples=60)
@given(
    st.lists(st.tuples(*[st.integers(0, 2**32 - 1)] * 3), max_size=10),
    st.binary(max_size=50),
    st.lists(st.integers(0, 2**32 - 1), max_size=20),
    st.lists(st.integers(0, 2**32 - 1), max_size=5),
    st.lists(st.tuples(st.integers(0, 2**32 - 1), st.integers(0, 2**32 - 1)), max_size=4),
)
def test_seal_index_fast_parser_agrees_with_construct(
    layout: list[tuple[int, int, int]],
    flags: bytes,
    lasts: list[int],
    others: list[int],
    damage: list[tuple[int, int]],
) -> None:
    raw = SealIndex.build(
        dict(
            layout=[dict(skip=s, key=k, value=v) for s, k, v in layout],
            flags=flags,
            lasts=lasts,
            others=others,
            damage=[dict(offset=a, length=b) for a, b in damage],
        )
    )
    parsed = SealIndex.parse(raw)
    assert SealIndex.build(parsed) == raw
    f, fl, la, ot, dm = _parse_seal_index(raw)
    assert (list(f), fl, ot, dm) == ([n for t in layout for n in t], flags, others, damage)
    assert la == b"".join(x.to_bytes(4, "little") for x in lasts)
    with pytest.raises(ValueError):
        _parse_seal_index(raw + b"\0")


entry = st.tuples(
    st.binary(max_size=20),
    st.binary(max_size=2000),
    st.sampled_from([0, FLAG_LAST, FLAG_DELETE | FLAG_LAST, FLAG_MARK | FLAG_LAST]),
    st.integers(0, 3),  # txn step
)


@settings(max_examples=80, deadline=None)
@given(st.lists(entry, max_size=25), st.integers(1, 2**32 - 1), st.booleans())
def test_seal_reads_back_as_the_scan(
    entries: list[tuple[bytes, bytes, int, int]], seq: int, garbage: bool
) -> None:
    seg = bytearray(SEG)
    pos = HEADER_AREA
    txn = 5
    for i, (k, v, fl, step) in enumerate(entries):
        txn += step
        rec = build_record(
            owner=OWNER_LDAP, flags=fl, seg_seq=seq, txn=txn, index=0, key=k, value=v, base=i
        )
        if pos + len(rec) > SEG - 1024:
            break
        seg[pos : pos + len(rec)] = rec
        pos += len(rec)
        if garbage and i == 1:  # a damaged range in the middle (e.g. an old torn write)
            seg[pos : pos + 24] = b"\x77" * 24
            pos += 24
    sc = scan_records(bytes(seg), OWNER_LDAP, seq)
    seal = build_seal(bytes(seg), sc, OWNER_LDAP, seq)
    assert len(seal) % 8 == 0 and seal[-4:] == b"SEAL"
    assert SealValue.parse(seal[RECORD_HEADER.size :]).seal_offset == sc.end
    seg[sc.end : sc.end + len(seal)] = seal
    got = read_seal(memoryview(bytes(seg)), OWNER_LDAP, seq)
    assert got is not None and got.sealed
    want = SegmentIndex.from_scan(sc)
    assert list(got.keys) == list(want.keys) and list(got.values) == list(want.values)
    assert got.flags == want.flags and list(got.others) == list(want.others)
    assert list(got.last_txns()) == list(want.last_txns())
    assert (got.txn_max, got.base_max, got.end, got.damage) == (
        want.txn_max,
        want.base_max,
        sc.end + len(seal),
        want.damage,
    )
    # the scanner skips the seal: same records, no damage added
    again = scan_records(bytes(seg), OWNER_LDAP, seq)
    assert again.keys == sc.keys and again.damage == sc.damage
    # another segment's seal (stale seq, other owner) is not believed
    assert read_seal(memoryview(bytes(seg)), OWNER_LDAP, seq ^ 1) is None
    assert read_seal(memoryview(bytes(seg)), OWNER_VARS, seq) is None


def test_seal_is_flagged_and_keyless() -> None:
    seg = bytearray(SEG)
    rec = build_record(
        owner=OWNER_VARS, flags=FLAG_LAST, seg_seq=3, txn=1, index=0, key=b"k", value=b"v", base=0
    )
    seg[HEADER_AREA : HEADER_AREA + len(rec)] = rec
    sc = scan_records(bytes(seg), OWNER_VARS, 3)
    seal = build_seal(bytes(seg), sc, OWNER_VARS, 3)
    _crc, _m, owner, flags, sseq, _t, _i, klen, _vl, _b = RECORD_HEADER.unpack_from(seal)
    assert (owner, flags, sseq, klen) == (OWNER_VARS, FLAG_SEAL, 3, 0)


# ---- mount: same result with and without seals ----------------------------------------


def test_finished_segments_are_sealed(filled: bytes) -> None:
    f = mount(memdev(filled))
    o = f.flashman.owners[OWNER_LDAP]
    sealed = sealed_segments(filled, f)
    assert len(o.segs) > 3
    # every finished segment got its seal; the head has none
    assert set(sealed) >= {s.index for s in o.segs[:-1]}
    assert o.segs[-1].index not in sealed


def test_mount_same_with_and_without_seals(filled: bytes) -> None:
    a, b, f = both_ways(filled)
    assert a == b
    check_invariants(f)


@settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(st.lists(op, min_size=1, max_size=30))
def test_random_ops_same_state_with_and_without_seals(ops: list[tuple]) -> None:  # type: ignore[type-arg]
    dev = memdev(formatted_image(16))
    f = mount(dev)
    model: tuple[dict[str, bytes], dict[int, str]] = ({}, {})
    for o in ops:
        model = apply(f, model, o)
    a, b, again = both_ways(bytes(dev.data))
    assert a == b
    assert a[0] == model
    check_invariants(again)


# ---- damaged seals and bodies: fall back to the full scan -------------------------------


def _seal_offset(image: bytes, seg: int) -> int:
    mv = memoryview(image)[seg * SEG : (seg + 1) * SEG]
    end = len(bytes(mv).rstrip(b"\0"))
    return int.from_bytes(mv[end - 8 : end - 4], "little")


@pytest.mark.parametrize("seed", range(12))
def test_damaged_seal_falls_back_without_loss(filled: bytes, seed: int) -> None:
    rnd = random.Random(seed)
    f0 = mount(memdev(filled))
    victims = sealed_segments(filled, f0)
    seg = rnd.choice(victims)
    at = _seal_offset(filled, seg)
    end = len(filled[seg * SEG : (seg + 1) * SEG].rstrip(b"\0"))
    bad = bytearray(filled)
    bad[seg * SEG + rnd.randrange(at, end)] ^= rnd.randrange(1, 256)
    lines: list[str] = []
    f = mount(memdev(bytes(bad)), lines.append)
    assert state(f) == state(f0)  # the seal is only an index: nothing is lost
    assert any(f"segment {seg}: damaged records" in line for line in lines)
    with seals_ignored():
        assert fingerprint(mount(memdev(bytes(bad)))) == fingerprint(f)


@pytest.mark.parametrize("seed", range(12))
def test_damaged_sealed_body_is_scanned(filled: bytes, seed: int) -> None:
    """A byte flipped under a valid seal: the body CRC catches it, the record scan finds
    and reports the damaged record, everything else is still there."""
    rnd = random.Random(seed)
    f0 = mount(memdev(filled))
    seg = rnd.choice(sealed_segments(filled, f0))
    at = _seal_offset(filled, seg)
    spot = seg * SEG + rnd.randrange(HEADER_AREA, at)
    bad = bytearray(filled)
    bad[spot] ^= rnd.randrange(1, 256)
    lines: list[str] = []
    f = mount(memdev(bytes(bad)), lines.append)
    with seals_ignored():
        assert fingerprint(mount(memdev(bytes(bad)))) == fingerprint(f)
    # every live record not hit by the flip is unchanged
    ldap = f0.flashman.owners[OWNER_LDAP]
    hit = None
    for s in ldap.segs:
        if s.index != seg:
            continue
        for r in scan_records(filled[seg * SEG : (seg + 1) * SEG], OWNER_LDAP, s.seq).records:
            if seg * SEG + r.offset <= spot < seg * SEG + r.offset + r.size:
                hit = r.key
    _v, fdir = state(f)
    for k, v in state(f0)[1].items():
        if k.to_bytes(4, "big") != hit:
            assert fdir.get(k) == v
    if hit is not None:
        assert f.flashman.damage


# ---- power cuts around sealing ----------------------------------------------------------


def _count_seal_writes(image: bytes, ops: list[Op]) -> int:
    f = mount(memdev(image))
    dev = f.flashman.dev
    seen = 0
    real = dev.write

    def write(offset: int, data: bytes) -> None:
        nonlocal seen
        if len(data) >= 40 and data[-4:] == b"SEAL" and data[7] & FLAG_SEAL:
            seen += 1
        real(offset, data)

    dev.write = write  # type: ignore[method-assign]
    for o in ops:
        o(f)
    return seen


@pytest.mark.parametrize("mode", MODES)
def test_power_cut_around_sealing(mode: str) -> None:
    """Adds that keep moving FLASHDIR to new segments: cut at every write, including every
    seal write (clean, torn, reordered); always old-or-new, and the flash stays usable."""
    dev = memdev(formatted_image(16))
    f = mount(dev)
    for i in range(6):
        f.flashdir.add_item(i, f"(cn=u{i})(x={'a' * 9000})")
    base = bytes(dev.data)
    ops: list[Op] = [
        (lambda fl, i=i: fl.flashdir.add_item(100 + i, f"(cn=n{i})(x={'b' * 14000})"))
        for i in range(6)
    ]
    assert _count_seal_writes(base, ops) >= 1
    assert sweep(base, ops, mode) >= 8


@pytest.mark.parametrize("mode", MODES)
def test_cut_seal_then_remount_matches_full_scan(mode: str) -> None:
    """After a cut anywhere in a run that seals, the seals found agree with the full scan."""
    dev = memdev(formatted_image(16))
    f = mount(dev)
    f.vars.commit({"a": b"x" * 30000})
    base = bytes(dev.data)
    for n in range(40):
        cd = CutDevice(base, n, mode, seed=n)
        try:
            fl = mount(cd)
            fl.vars.commit({"b": b"y" * 30000, "c": b"z" * 30000})  # spans a new segment
            fl.vars.commit({"d": b"1" * 30000})
            fl.vars.commit({"e": b"2" * 30000})
        except PowerCut:
            pass
        else:
            break
        image = bytes(cd.durable)
        a, b, g = both_ways(image)
        assert a == b
        # keep going on the survivor: its next commits seal what is left unsealed
        g.vars.commit({"after": b"%d" % n + b"w" * 30000})
        g.vars.commit({"after2": b"v" * 30000})
        a, b, _ = both_ways(bytes(g.flashman.dev.data))
        assert a == b
        assert a[0][0]["after2"] == b"v" * 30000
    else:
        pytest.fail("the run never completed")


def test_sealed_segment_with_torn_transaction() -> None:
    """A transaction cut before its LAST, in a segment that is sealed later: the mount sees
    the txn is not committed and drops its records, exactly like the full scan."""
    dev = memdev(formatted_image(16))
    f = mount(dev)
    f.vars.commit({"a": b"x" * 40000})
    base = bytes(dev.data)
    found = False
    for n in range(12):
        cd = CutDevice(base, n, "clean")
        fl = mount(cd)
        try:
            fl.vars.commit({"b": b"y" * 20000, "c": b"z" * 30000})  # spans two segments
        except PowerCut:
            pass
        else:
            break
        g = mount(cd.survivor())
        if state(g)[0] != {"a": b"x" * 40000}:
            continue
        for i in range(3):  # move on: the segment with the torn records gets sealed
            g.vars.commit({f"n{i}": b"n" * 30000})
        image = bytes(g.flashman.dev.data)
        lines: list[str] = []
        h = mount(memdev(image), lines.append)
        a, b, _ = both_ways(image)
        assert a == b
        assert set(state(h)[0]) == {"a", "n0", "n1", "n2"}
        if any("uncommitted transaction" in line for line in lines) and sealed_segments(image, h):
            found = True
    assert found, "no cut left a torn transaction in a sealed segment"


def test_v1_segments_without_seals_mount_and_get_sealed() -> None:
    """A version 1 flash (no seals) mounts by the full scan; later commits seal it."""
    image, f = _fill_ldap(60)
    dev = memdev(image)
    # strip every seal: what a version 1 writer would have left
    for o in f.flashman.owners.values():
        for s in o.segs:
            seg = dev.data[s.index * SEG : (s.index + 1) * SEG]
            end = len(bytes(seg).rstrip(b"\0"))
            if bytes(seg[end - 4 : end]) == b"SEAL":
                at = int.from_bytes(seg[end - 8 : end - 4], "little")
                dev.data[s.index * SEG + at : s.index * SEG + end] = bytes(end - at)
    stripped = bytes(dev.data)
    g = mount(memdev(stripped))
    assert sealed_segments(stripped, g) == []
    assert state(g) == state(f)
    g.flashdir.put(1, "(cn=x)")  # each commit seals a few of its owner's segments
    g.flashdir.put(2, "(cn=y)")
    resealed = bytes(g.flashman.dev.data)
    assert sealed_segments(resealed, mount(memdev(resealed)))
    a, b, _ = both_ways(resealed)
    assert a == b


def test_seal_crc_covers_the_body(filled: bytes) -> None:
    f = mount(memdev(filled))
    seg = sealed_segments(filled, f)[0]
    at = _seal_offset(filled, seg)
    raw = filled[seg * SEG : (seg + 1) * SEG]
    v = SealValue.parse(raw[at + RECORD_HEADER.size :])
    assert v.body_crc == zlib.crc32(raw[HEADER_AREA:at])
