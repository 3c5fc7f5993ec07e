"""The boot-control record: layout, newest-valid-copy rule, power cuts, and the bootcode's
busybox twin (firmware/bootcode/bootctl.sh) run against the Python rules on every state."""

from __future__ import annotations

import dataclasses
import shutil
import subprocess
from pathlib import Path

import pytest

from appliance.hal.block import SECTOR
from appliance.hal.bootctl import (
    BOOTCTL_LBAS,
    NO_SLOT,
    Action,
    BootControl,
    SlotState,
    decide,
    decode,
    encode,
    fall_back,
    read_boot_control,
    read_copies,
    write_boot_control,
)
from tests.unit.flashdev import MODES, CutDevice, PowerCut, memdev

BOOTCTL_SH = Path(__file__).resolve().parents[2] / "firmware/bootcode/bootctl.sh"
DISK = 64 * SECTOR  # the record lives in sectors 8 and 9


def blank() -> bytes:
    return bytes(DISK)


def with_record(*records: BootControl) -> bytes:
    dev = memdev(blank())
    for r in records:
        write_boot_control(dev, r)
    return bytes(dev.data)


# --- layout -----------------------------------------------------------------------------


def test_round_trip_and_fixed_offsets() -> None:
    r = BootControl(7, 1, SlotState.TRIAL, 2, 0, NO_SLOT)
    raw = encode(r)
    assert len(raw) == SECTOR
    assert raw[:8] == b"IPVABCTL"
    assert raw[10:14] == (7).to_bytes(4, "little")
    assert raw[14:19] == bytes([1, 1, 2, 0, 0xFF])
    assert raw[19:508] == bytes(489)
    assert decode(raw) == r


@pytest.mark.parametrize("at", [0, 9, 14, 300, 508, 511])
def test_any_flipped_byte_makes_the_copy_invalid(at: int) -> None:
    raw = bytearray(encode(BootControl.initial()))
    raw[at] ^= 0x40
    assert decode(bytes(raw)) is None


def test_blank_or_foreign_sectors_are_no_record() -> None:
    assert decode(bytes(SECTOR)) is None
    assert decode(b"\xff" * SECTOR) is None
    assert read_boot_control(memdev(blank())) is None


def test_newest_valid_copy_wins_and_writes_alternate() -> None:
    dev = memdev(blank())
    a = write_boot_control(dev, BootControl.initial())
    b = write_boot_control(dev, a.with_trial(1))
    assert (a.seq, b.seq) == (1, 2)
    assert read_copies(dev) == (a, b)  # first write into copy 0, the next into copy 1
    c = write_boot_control(dev, b.confirmed())
    assert read_copies(dev) == (c, b)
    assert read_boot_control(dev) == c
    # the newest copy damaged: the one before it stands
    dev.data[BOOTCTL_LBAS[0] * SECTOR + 20] ^= 1
    assert read_boot_control(dev) == b


# --- the update life cycle, as the runtime and the bootcode drive it -------------------------


def test_trial_runs_out_of_tries_and_falls_back_to_the_good_slot() -> None:
    r = BootControl.initial().with_trial(1, tries=2)
    seen = []
    for _ in range(3):
        d = decide(r)
        seen.append((d.action, d.slot))
        r = d.record or r
    assert seen == [(Action.TRY, 1), (Action.TRY, 1), (Action.GIVE_UP, 0)]
    assert (r.active, r.state, r.good, r.failed) == (0, SlotState.CONFIRMED, 0, 1)
    assert decide(r) == dataclasses.replace(decide(r), action=Action.START, slot=0, record=None)


def test_confirmed_trial_becomes_good_and_keeps_running() -> None:
    r = decide(BootControl.initial().with_trial(1)).record
    assert r is not None
    r = r.confirmed()
    assert (r.active, r.state, r.good) == (1, SlotState.CONFIRMED, 1)
    assert decide(r).action is Action.START and decide(r).slot == 1
    # the next update goes back to A, with B as the fallback
    r2 = r.with_trial(0)
    assert (r2.active, r2.good) == (0, 1)


def test_no_record_starts_slot_a_and_writes_nothing() -> None:
    assert decide(None).slot == 0 and decide(None).record is None
    assert fall_back(None, 0) is None


# --- power cuts ---------------------------------------------------------------------------


def _life_cycle(dev: CutDevice) -> None:
    """Install → trial → try → confirm → next install, as runtime and bootcode write it."""
    r = write_boot_control(dev, BootControl.initial())
    r = write_boot_control(dev, r.with_trial(1))
    d = decide(r)
    assert d.record is not None
    r = write_boot_control(dev, d.record)
    r = write_boot_control(dev, r.confirmed())
    write_boot_control(dev, r.with_trial(0))


def _states() -> list[BootControl | None]:
    """The record after each write of an uncut life cycle (None: before the first)."""
    dev = CutDevice(blank())
    states: list[BootControl | None] = [None]
    orig = dev.write

    def write(offset: int, data: bytes) -> None:
        orig(offset, data)
        states.append(decode(data))

    dev.write = write  # type: ignore[method-assign]
    _life_cycle(dev)
    return states


@pytest.mark.parametrize("mode", MODES)
def test_power_cut_at_every_write_leaves_old_or_new(mode: str) -> None:
    states = _states()
    writes = len(states) - 1
    assert writes == 5
    outcomes = set()
    for cut_at in range(writes):
        for seed in range(8):
            dev = CutDevice(blank(), cut_at=cut_at, mode=mode, seed=seed)
            with pytest.raises(PowerCut):
                _life_cycle(dev)
            after = read_boot_control(dev.survivor())
            old, new = states[cut_at], states[cut_at + 1]
            assert after in (old, new), (mode, cut_at, seed, after)
            outcomes.add(after == new)
            if mode == "clean":
                assert after == old  # the cut write never landed: the cut was mid-operation
            # whatever survived, the next write still works and wins
            nxt = write_boot_control(dev.survivor(), BootControl.initial())
            assert nxt.seq == (after.seq if after else 0) + 1
    # a reordering cache lands the cut sector sometimes: both outcomes were really seen
    assert outcomes == ({True, False} if mode == "reorder" else {False})


# --- the busybox twin -----------------------------------------------------------------------


REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(params=["host", "box"])
def busybox(request: pytest.FixtureRequest) -> str:
    """The host's busybox, and the box's own (static, only its applets: firmware/bootbins.py,
    the box_bootbins fixture)."""
    if request.param == "box":
        return str(request.getfixturevalue("box_bootbins").busybox)
    found = shutil.which("busybox")
    if found is None:
        pytest.fail("busybox not found: apt-get install busybox-static (./dev installs it)")
    return found


def _sh(disk: Path, script: str, bb: str) -> dict[str, str]:
    """Run bootctl.sh functions in busybox sh on `disk`; the BC_* variables afterwards."""
    tmp = disk.parent / "bctmp"
    tmp.mkdir(exist_ok=True)
    prog = f'. "{BOOTCTL_SH}"\nDEV="{disk}"\n{script}\nset\n'  # the box's busybox has no grep
    out = subprocess.run(
        [bb, "sh", "-c", prog],
        capture_output=True,
        text=True,
        check=True,
        env={"PATH": str(_applets(bb, disk.parent)), "BC_TMP": str(tmp)},
    ).stdout
    lines = (line.partition("=") for line in out.splitlines() if line.startswith("BC_"))
    return {k: v.strip("'") for k, _, v in lines}


def _applets(bb: str, where: Path) -> Path:
    """A bin directory of busybox applets only, as in the initramfs (no host tools)."""
    bindir = where / "bin"
    if not bindir.exists():
        bindir.mkdir()
        for applet in ("od", "head", "crc32", "dd", "xxd", "cat", "rm"):
            (bindir / applet).symlink_to(bb)
    return bindir


CASES: list[BootControl | None] = [
    None,
    BootControl.initial(),
    BootControl(5, 1, SlotState.CONFIRMED, 0, 1, 0),
    BootControl.initial().with_trial(1, tries=2),
    BootControl.initial().with_trial(1, tries=1),
    BootControl.initial().with_trial(1, tries=0),
    BootControl(9, 0, SlotState.TRIAL, 0, NO_SLOT, NO_SLOT),
    BootControl(0xFFFFFFF0, 1, SlotState.TRIAL, 3, 0, 1),
]


@pytest.mark.parametrize("record", CASES, ids=lambda r: "none" if r is None else repr(r)[:60])
def test_shell_decides_and_writes_as_python(
    tmp_path: Path, record: BootControl | None, busybox: str
) -> None:
    disk = tmp_path / "boot.img"
    disk.write_bytes(with_record(record) if record is not None else blank())
    stored = read_boot_control(memdev(disk.read_bytes()))
    want = decide(stored)
    got = _sh(disk, 'bc_read "$DEV"; bc_decide; [ "$BC_WRITE" = 1 ] && bc_write "$DEV"', busybox)
    assert (got["BC_ACTION"], int(got["BC_SLOT"])) == (want.action.value, want.slot)
    after = read_boot_control(memdev(disk.read_bytes()))
    if want.record is None:
        assert got["BC_WRITE"] == "0" and after == stored
    else:
        assert stored is not None
        assert after == dataclasses.replace(want.record, seq=stored.seq + 1)


@pytest.mark.parametrize("bad", [0, 1])
def test_shell_fall_back_matches_python(tmp_path: Path, bad: int, busybox: str) -> None:
    disk = tmp_path / "boot.img"
    start = BootControl.initial().with_trial(1)
    disk.write_bytes(with_record(start, start.confirmed()))
    stored = read_boot_control(memdev(disk.read_bytes()))
    _sh(disk, f'bc_read "$DEV"; bc_fall_back {bad}; bc_write "$DEV"', busybox)
    want = fall_back(stored, bad)
    assert want is not None and stored is not None
    assert read_boot_control(memdev(disk.read_bytes())) == dataclasses.replace(
        want, seq=stored.seq + 1
    )


def test_shell_skips_a_torn_newest_copy(tmp_path: Path, busybox: str) -> None:
    disk = tmp_path / "boot.img"
    a = BootControl.initial()
    image = bytearray(with_record(a, a.with_trial(1)))  # copy 1 (seq 2) is the newest
    image[BOOTCTL_LBAS[1] * SECTOR + 256 :] = bytes(len(image) - BOOTCTL_LBAS[1] * SECTOR - 256)
    disk.write_bytes(bytes(image))
    got = _sh(disk, 'bc_read "$DEV"; bc_decide', busybox)
    assert (got["BC_OK"], got["BC_SEQ"], got["BC_ACTION"], got["BC_SLOT"]) == (
        "1",
        "1",
        "start",
        "0",
    )


def test_shell_on_a_disk_without_record(tmp_path: Path, busybox: str) -> None:
    disk = tmp_path / "boot.img"
    disk.write_bytes(blank())
    got = _sh(disk, 'bc_read "$DEV"; bc_decide', busybox)
    assert (got["BC_OK"], got["BC_ACTION"], got["BC_SLOT"], got["BC_WRITE"]) == (
        "0",
        "start",
        "0",
        "0",
    )


def test_shell_reads_every_byte_of_the_sequence_number(tmp_path: Path, busybox: str) -> None:
    """Copies whose seq differ only above the low 16 bits: the newer one is the one Python
    reads, and its fields are the ones the shell sets (each byte of the 4 counts)."""
    older = BootControl(0x01020304, 0, SlotState.CONFIRMED, 0, 0, NO_SLOT)
    newer = BootControl(0x02010304, 1, SlotState.TRIAL, 2, 0, NO_SLOT)
    raw = bytearray(blank())
    for lba, record in zip(BOOTCTL_LBAS, (newer, older), strict=True):
        raw[lba * SECTOR : (lba + 1) * SECTOR] = encode(record)
    disk = tmp_path / "boot.img"
    disk.write_bytes(bytes(raw))
    assert read_boot_control(memdev(bytes(raw))) == newer
    got = _sh(disk, 'bc_read "$DEV"', busybox)
    assert (got["BC_OK"], int(got["BC_SEQ"]), got["BC_ACTIVE"], got["BC_STATE"],
            got["BC_TRIES"]) == ("1", newer.seq, "1", "1", "2")  # fmt: skip


def test_a_built_boot_disk_starts_slot_a_and_the_bootcode_reads_it(
    tmp_path: Path, busybox: str
) -> None:
    from appliance.hal.block import FileBlockDevice
    from images.bootdisk import make_boot_disk

    payload = tmp_path / "IPVA.BIN"
    payload.write_bytes(b"x" * 1000)
    boot = make_boot_disk(tmp_path / "boot.img", {"IPVA.BIN": payload}, 1700000000, 32)
    with FileBlockDevice(boot, readonly=True) as dev:
        assert read_boot_control(dev) == BootControl.initial()
    got = _sh(boot, 'bc_read "$DEV"; bc_decide', busybox)
    assert (got["BC_OK"], got["BC_SEQ"], got["BC_ACTION"], got["BC_SLOT"]) == (
        "1",
        "1",
        "start",
        "0",
    )
