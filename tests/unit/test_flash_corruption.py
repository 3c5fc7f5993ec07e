"""Random byte corruption: the mount succeeds, the damage is reported, and every record that
was not hit is still there."""

from __future__ import annotations

import random

import pytest
from flashdev import SEG, formatted_image, memdev, mount, state

from appliance.flash.format import HEADER_AREA, OWNER_LDAP, OWNER_VARS, scan_records


@pytest.fixture(scope="module")
def image() -> bytes:
    dev = memdev(formatted_image(24))
    f = mount(dev)
    rnd = random.Random(1)
    for i in range(1200):
        f.flashdir.put(rnd.randrange(200), f"(cn=u{i})(data={'y' * rnd.randrange(1500)})")
        if i % 7 == 0:
            f.flashdir.delete(rnd.randrange(200))
        if i % 5 == 0:  # single-key commits: a hit record loses only its own key
            f.vars.commit({f"v{rnd.randrange(12)}": bytes(rnd.randrange(256) for _ in range(900))})
    assert f.flashman.compactions > 0
    return bytes(dev.data)


def _live_ranges(image: bytes) -> dict[tuple[int, bytes], tuple[int, int]]:
    """(owner, key) -> byte range of the record holding its current value."""
    f = mount(memdev(image))
    out = {}
    for oid in (OWNER_VARS, OWNER_LDAP):
        o = f.flashman.owners[oid]
        for key, seg in o.loc.items():
            recs = scan_records(image[seg.index * SEG : (seg.index + 1) * SEG], oid, seg.seq)
            rec = [r for r in recs.records if r.key == key][-1]
            out[(oid, key)] = (
                seg.index * SEG + rec.offset,
                seg.index * SEG + rec.offset + rec.size,
            )
    return out


def _hit(lo: int, hi: int, spots: list[int]) -> bool:
    return any(lo <= s < hi for s in spots)


@pytest.mark.parametrize("seed", range(25))
def test_random_corruption(image: bytes, seed: int) -> None:
    rnd = random.Random(seed)
    f0 = mount(memdev(image))
    owned = [s.index for s in f0.flashman.segments if s.owner]
    ranges = _live_ranges(image)
    live = list(ranges.values())
    # half the spots inside live records / headers (so there is damage to report), half anywhere
    spots = [rnd.choice(live)[0] + rnd.randrange(28) for _ in range(3)]
    spots += [rnd.choice(owned) * SEG + rnd.randrange(HEADER_AREA)]
    spots += [rnd.randrange(len(image)) for _ in range(4)]
    bad = bytearray(image)
    for s in spots:
        bad[s] ^= rnd.randrange(1, 256)
    lines: list[str] = []
    f = mount(memdev(bad), lines.append)  # must not raise
    assert f.flashman.damage, "damage not reported"
    assert all(line in lines for line in f.flashman.damage)
    vars_now, fdir_now = state(f)
    vars_was, fdir_was = state(f0)
    for (oid, key), (lo, hi) in ranges.items():
        if _hit(lo, hi, spots):
            continue
        if oid == OWNER_VARS:
            assert vars_now.get(key.decode()) == vars_was[key.decode()]
        else:
            k = int.from_bytes(key, "big")
            assert fdir_now.get(k) == fdir_was[k]
    # and the damaged flash keeps working
    f.vars.commit({"after": b"damage"})
    assert mount(memdev(bytes(f.flashman.dev.data))).vars.get("after") == b"damage"


def test_both_header_copies_damaged_recovers_from_records(image: bytes) -> None:
    f0 = mount(memdev(image))
    seg = next(s for s in f0.flashman.segments if s.owner == OWNER_LDAP and s.nlive)
    bad = bytearray(image)
    bad[seg.index * SEG + 20] ^= 0xFF
    bad[seg.index * SEG + 64 + 20] ^= 0xFF
    lines: list[str] = []
    f = mount(memdev(bad), lines.append)
    assert any("recovered as LDAP" in line for line in lines)
    assert state(f) == state(f0)


def test_torn_tail_is_not_an_error(image: bytes) -> None:
    f0 = mount(memdev(image))
    head = f0.flashman.owners[OWNER_VARS].segs[-1]
    bad = bytearray(image)
    bad[head.index * SEG + head.end : head.index * SEG + head.end + 40] = b"\x5a" * 40
    lines: list[str] = []
    f = mount(memdev(bad), lines.append)
    assert state(f) == state(f0)
    assert any("uncommitted tail" in line for line in lines)
