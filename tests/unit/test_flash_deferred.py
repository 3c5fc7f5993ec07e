"""The box's mount defers FLASHDIR0 (`defer_ldap`): headers and VARS at once, the LDAP
segments by finish_mount() or the first use that needs them. Whichever way, the result must
be exactly the full mount's: same state, logs, free segments and damage reports, and the
same bytes on disk after the same writes."""

from __future__ import annotations

import random

import pytest
from flashdev import BIG_RAM, SEG, formatted_image, memdev, mount, state
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_flash_model import apply, check_invariants, op
from test_flash_seal import _fill_ldap, _seal_offset, fingerprint, sealed_segments

from appliance.flash import Flash, FlashError, mount_flash
from appliance.flash.format import HEADER_AREA, OWNER_LDAP, OWNER_VARS
from appliance.hal.block import MemoryBlockDevice


def deferred(dev: MemoryBlockDevice, lines: list[str] | None = None) -> Flash:
    trace = lines.append if lines is not None else (lambda _line: None)
    return mount_flash(dev, ram_bytes=BIG_RAM, trace=trace, defer_ldap=True)


def same_as_full(image: bytes) -> Flash:
    """Mount both ways; before finish_mount() VARS is there and LDAP is not yet read."""
    full_lines: list[str] = []
    full = mount(memdev(image), full_lines.append)
    lines: list[str] = []
    f = deferred(memdev(image), lines)
    assert not f.flashman.mounted or not full.flashman.owners[OWNER_LDAP].segs
    assert dict(f.vars.items()) == dict(full.vars.items())  # VARS needs no finish
    f.flashman.finish_mount()
    assert f.flashman.mounted
    assert fingerprint(f) == fingerprint(full)
    # the same reports (fm.damage, in the fingerprint, even in the same order); on the
    # trace the LDAP ones come after FLASHDIR0's start lines, once they are found
    assert sorted(lines) == sorted(full_lines)
    check_invariants(f)
    return f


@pytest.fixture(scope="module")
def filled() -> bytes:
    image, f = _fill_ldap(400)
    assert f.flashman.compactions > 0 and len(f.flashman.owners[OWNER_LDAP].segs) > 3
    return image


def test_a_deferred_mount_is_the_full_mount(filled: bytes) -> None:
    same_as_full(filled)
    same_as_full(formatted_image(16))  # nothing to defer


@pytest.mark.parametrize("seed", range(8))
def test_damage_is_found_the_same_way_when_deferred(filled: bytes, seed: int) -> None:
    """A flipped byte in a seal, a sealed body or a header (one copy or both, which makes
    the mount recover the segment's identity from its records)."""
    rnd = random.Random(seed)
    f0 = mount(memdev(filled))
    bad = bytearray(filled)
    seg = rnd.choice(sealed_segments(filled, f0))
    at = _seal_offset(filled, seg)
    end = len(filled[seg * SEG : (seg + 1) * SEG].rstrip(b"\0"))
    bad[seg * SEG + rnd.randrange(HEADER_AREA, end)] ^= rnd.randrange(1, 256)  # body or seal
    assert at < end
    victim = rnd.choice([s.index for o in f0.flashman.owners.values() for s in o.segs])
    for copy in rnd.choice([(0,), (0, 1)]):  # one header copy, or both
        bad[victim * SEG + copy * (HEADER_AREA // 2) + rnd.randrange(8)] ^= 0xFF
    lines: list[str] = []
    mount(memdev(bytes(bad)), lines.append)
    assert lines  # the damage is reported …
    same_as_full(bytes(bad))  # … and the deferred mount reports the same, the same way


@settings(
    max_examples=30,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(st.lists(op, min_size=1, max_size=25))
def test_random_histories_mount_the_same_deferred(ops: list[tuple]) -> None:  # type: ignore[type-arg]
    dev = memdev(formatted_image(16))
    f = mount(dev)
    model: tuple[dict[str, bytes], dict[int, str]] = ({}, {})
    for o in ops:
        model = apply(f, model, o)
    again = same_as_full(bytes(dev.data))
    assert state(again) == model


@pytest.mark.parametrize("first", ["vars commit", "ldap put", "ldap read", "info", "reset all"])
def test_any_write_or_ldap_use_finishes_the_mount_first(filled: bytes, first: str) -> None:
    """Nothing is written on a half-known flash: the same operation on a deferred and a
    full mount leaves the same bytes on disk."""
    devs = memdev(filled), memdev(filled)
    flashes = mount(devs[0]), deferred(devs[1])
    assert not flashes[1].flashman.mounted
    answers = []
    for f in flashes:
        if first == "vars commit":
            f.vars.commit({"v0": b"new" * 300})
        elif first == "ldap put":
            f.flashdir.put(3, "(cn=new)")
        elif first == "ldap read":
            answers.append(f.flashdir.get(5))
        elif first == "info":
            answers.append(f.flashman.info())
        else:
            f.flashman.reset_all()
    assert flashes[1].flashman.mounted
    assert devs[0].data == devs[1].data
    assert fingerprint(flashes[0]) == fingerprint(flashes[1])
    assert answers[:1] == answers[1:]


class FailingReads(MemoryBlockDevice):
    """Reads of the given segments fail (an I/O error), once `armed`."""

    def __init__(self, image: bytes, bad: set[int]) -> None:
        super().__init__(0)
        self.data = bytearray(image)
        self.bad = bad
        self.armed = False

    def read(self, offset: int, length: int) -> bytes:
        if self.armed and any(offset < (i + 1) * SEG and i * SEG < offset + length
                              for i in self.bad):  # fmt: skip
            raise OSError(5, "Input/output error")
        return super().read(offset, length)


def test_a_read_error_in_flashdir_keeps_vars_and_refuses_writes(filled: bytes) -> None:
    full = mount(memdev(filled))
    ldap = {s.index for s in full.flashman.owners[OWNER_LDAP].segs}
    dev = FailingReads(filled, ldap)
    f = deferred(dev)
    dev.armed = True
    with pytest.raises(FlashError, match=r"FLASHDIR0 could not be read \(.*Input/output"):
        f.flashman.finish_mount()
    assert dict(f.vars.items()) == dict(full.vars.items())  # the config is still there
    with pytest.raises(FlashError, match="no flash writes until the box restarts"):
        f.vars.commit({"v0": b"x"})
    with pytest.raises(FlashError, match="FLASHDIR0 could not be read"):
        f.flashdir.get(5)
    assert dev.data == bytearray(filled)  # nothing was written
    assert f.flashman.owners[OWNER_VARS].values == full.flashman.owners[OWNER_VARS].values
