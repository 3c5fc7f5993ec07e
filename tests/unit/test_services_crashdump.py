"""The crash dump on the dump disk: round trip, the header layout, torn and corrupt dumps,
the fault area, and a fuzzed reader that never raises."""

from __future__ import annotations

import dataclasses
import zlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from appliance.formats.crashdump import (
    DETAIL_OFFSET,
    REASON_MAX,
    Condition,
    CrashDump,
    Detail,
    DumpKind,
    Frame,
    Header,
    MemoryFigures,
    ThreadStack,
    clear_dump,
    format_dump,
    mark_reported,
    read_dump,
    write_dump,
)
from appliance.formats.dumpdisk import (
    CRASH_RECORD_MAGIC,
    FAULT_END,
    FAULT_TEXT,
    HEADER_SIZE,
    FaultArm,
    arm_fault_area,
    read_fault_area,
)
from appliance.hal.block import MemoryBlockDevice
from tests.unit.flashdev import MODES, CutDevice, PowerCut

DISK = 2 << 20

DUMP = CrashDump(
    kind=DumpKind.EXCEPTION,
    reason="unhandled exception in thread console-ttyS0: ZeroDivisionError",
    time=1_700_000_000,
    uptime_ms=123_456,
    version="16r1sr1",
    build=1601001,
    bootcode_build=1601000,
    hw="IPVA-vm",
    config_digest="ab" * 32,
    config_objects=7,
    memory=MemoryFigures(
        usable=205_810_048, dram=268_435_456, available=40_000_000, rss=31_000_000
    ),
    trace=tuple(f"0:0000:030:4 - line {i} äö" for i in range(50)),
    threads=(
        ThreadStack(
            "MainThread",
            0x7F00DEADBEEF,
            False,
            (
                Frame(
                    "/usr/lib/ipva/appliance/boot.py", 201, "serve_consoles", "self.stopped.wait()"
                ),
            ),
        ),
        ThreadStack(
            "console-ttyS0",
            0x7F00CAFE0000,
            True,
            (
                Frame("/usr/lib/ipva/appliance/shell/session.py", 40, "serve", "x = 1 / 0"),
                Frame("<string>", 1, "<module>", ""),
            ),
        ),
    ),
    exception="Traceback (most recent call last):\nZeroDivisionError: division by zero\n",
    fault_text="",
    reported=False,
)


def test_round_trip_whole_dump() -> None:
    dev = MemoryBlockDevice(DISK)
    write_dump(dev, DUMP)
    reading = read_dump(dev)
    assert reading.condition is Condition.VALID and reading.problem == ""
    assert reading.dump == DUMP


def test_detail_construct_round_trips() -> None:
    dev = MemoryBlockDevice(DISK)
    write_dump(dev, DUMP)
    head = Header.parse(dev.read(0, HEADER_SIZE)).body.value
    stored = dev.read(DETAIL_OFFSET, head.detail_length)
    assert Detail.build(Detail.parse(stored)) == stored


def test_header_layout_magic_at_offset_2_crc_and_zero_padding() -> None:
    dev = MemoryBlockDevice(DISK)
    write_dump(dev, DUMP)
    raw = dev.read(0, HEADER_SIZE)
    assert raw[2:10] == CRASH_RECORD_MAGIC  # hal.disks recognises the dump disk by this
    n = int.from_bytes(raw[:2], "little") + 2
    assert int.from_bytes(raw[n : n + 4], "little") == zlib.crc32(raw[:n])
    assert raw[n + 4 :] == bytes(HEADER_SIZE - n - 4)
    assert Header.build(Header.parse(raw)) == raw[: n + 4]


def test_long_fields_are_cut_to_fit() -> None:
    dev = MemoryBlockDevice(DISK)
    write_dump(dev, dataclasses.replace(DUMP, reason="x" * 1000, trace=("y" * 10_000,)))
    d = read_dump(dev).dump
    assert d is not None and d.reason == "x" * (REASON_MAX - 3) + "..."
    assert len(d.trace[0]) == 4000


def test_a_small_disk_keeps_the_newest_trace_lines() -> None:
    # incompressible trace lines: only part of them fit in 16 KiB of detail room
    import random

    rnd = random.Random(1)
    trace = tuple("".join(rnd.choice("abcdefghijk0123") for _ in range(300)) for _ in range(200))
    dev = MemoryBlockDevice(DETAIL_OFFSET + 16 * 1024)
    write_dump(dev, dataclasses.replace(DUMP, trace=trace))
    d = read_dump(dev).dump
    assert d is not None and 0 < len(d.trace) < 200
    assert d.trace == trace[-len(d.trace) :]


def test_mark_reported_keeps_the_detail() -> None:
    dev = MemoryBlockDevice(DISK)
    write_dump(dev, DUMP)
    mark_reported(dev, read_dump(dev))
    reading = read_dump(dev)
    assert reading.condition is Condition.VALID
    assert reading.dump == dataclasses.replace(DUMP, reported=True)


def test_clear_leaves_no_dump() -> None:
    dev = MemoryBlockDevice(DISK)
    write_dump(dev, DUMP)
    clear_dump(dev)
    assert read_dump(dev).condition is Condition.NONE
    assert format_dump(read_dump(dev)) == "no crash dump (blank dump disk)\n"


def test_blank_and_foreign_disks_hold_no_dump() -> None:
    assert read_dump(MemoryBlockDevice(DISK)).problem == "blank"
    foreign = MemoryBlockDevice(DISK)
    foreign.write(0, b"\xeb\x3c\x90MSDOS5.0")
    reading = read_dump(foreign)
    assert reading.condition is Condition.NONE and reading.problem == "not a crash dump"


@pytest.mark.parametrize("mode", MODES)
def test_power_cut_during_write_reads_torn_or_old_or_new(mode: str) -> None:
    """Cut power at every write point: the reader sees the old dump, the new one, or a
    torn one naming the new reason; never a mix, never an exception."""
    old = dataclasses.replace(DUMP, reason="old crash", kind=DumpKind.REBOOT)
    new = dataclasses.replace(DUMP, reason="new crash", trace=("only line",))
    base = MemoryBlockDevice(DISK)
    write_dump(base, old)
    seen = set()
    for cut in range(10):
        dev = CutDevice(bytes(base.data), cut_at=cut, mode=mode, seed=cut)
        try:
            write_dump(dev, new)
            completed = True
        except PowerCut:
            completed = False
        reading = read_dump(dev.survivor())
        if reading.condition is Condition.VALID:
            assert reading.dump in (old, new)
            seen.add("new" if reading.dump == new else "old")
        else:
            assert reading.condition is Condition.TORN, reading
            assert reading.dump is not None and reading.dump.reason == "new crash"
            assert "torn crash dump: the box stopped while" in format_dump(reading)
            seen.add("torn")
        if completed:
            assert reading.dump == new
            break
    assert "torn" in seen and "new" in seen  # the cuts really landed mid-write


@pytest.mark.parametrize(
    ("offset", "problem"),
    [
        (0, "header"),  # length prefix
        (20, "header checksum wrong"),
        (DETAIL_OFFSET + 5, "detail checksum wrong"),
    ],
)
def test_damage_reads_as_corrupt(offset: int, problem: str) -> None:
    dev = MemoryBlockDevice(DISK)
    write_dump(dev, DUMP)
    dev.write(offset, bytes([dev.read(offset, 1)[0] ^ 0xFF]))
    reading = read_dump(dev)
    assert reading.condition is Condition.CORRUPT and problem in reading.problem
    assert format_dump(reading).startswith("corrupt crash dump: ")


def test_the_old_one_sector_record_reads_as_corrupt_not_as_a_dump() -> None:
    # format 1 (before this one): same magic at offset 2, its own CRC is right
    body = b"IPVACRSH" + (1).to_bytes(2, "little") + bytes(30)
    raw = len(body).to_bytes(2, "little") + body
    raw += zlib.crc32(raw).to_bytes(4, "little")
    dev = MemoryBlockDevice(DISK)
    dev.write(0, raw)
    reading = read_dump(dev)
    assert reading.condition is Condition.CORRUPT and "header not readable" in reading.problem


def test_format_dump_shows_stack_trace_and_memory() -> None:
    dev = MemoryBlockDevice(DISK)
    write_dump(dev, DUMP)
    text = format_dump(read_dump(dev))
    assert text.startswith(f"crash: {DUMP.reason}\nkind: exception\ntime: 2023-11-14 22:13:20 UTC")
    assert "firmware: 16r1sr1 build 1601001, bootcode build 1601000" in text
    assert "memory: usable 205.81MB, DRAM 268.44MB" in text
    assert "thread console-ttyS0 [0x7f00cafe0000] (crashed), most recent call last:" in text
    assert (
        '  File "/usr/lib/ipva/appliance/shell/session.py", line 40, in serve\n    x = 1 / 0'
        in text
    )
    assert text.endswith("0:0000:030:4 - line 49 äö\n")
    assert "ZeroDivisionError: division by zero" in text


def test_fault_area_arm_and_read() -> None:
    dev = MemoryBlockDevice(DISK)
    arm = FaultArm(boot_time=1_700_000_000, version="16r1sr1", build=1601001, bootcode_build=1)
    arm_fault_area(dev, arm)
    assert read_fault_area(dev) is None  # armed, no fault yet
    dev.write(FAULT_TEXT, b"Fatal Python error: Segmentation fault\n\nThread 0x1 ...\n")
    got = read_fault_area(dev)
    assert got is not None and got[0] == arm
    assert got[1].startswith("Fatal Python error: Segmentation fault")
    arm_fault_area(dev, arm)  # re-arming empties the text
    assert read_fault_area(dev) is None
    assert read_fault_area(MemoryBlockDevice(FAULT_END - 1)) is None


@settings(max_examples=300, deadline=None)
@given(
    flips=st.lists(
        st.tuples(st.integers(0, DETAIL_OFFSET + 2048), st.integers(1, 255)), max_size=8
    ),
    cut=st.one_of(st.none(), st.integers(0, DETAIL_OFFSET + 2048)),
)
def test_fuzzed_dumps_never_crash_the_reader(flips: list[tuple[int, int]], cut: int | None) -> None:
    dev = MemoryBlockDevice(DISK)
    write_dump(dev, DUMP)
    for offset, xor in flips:
        dev.write(offset, bytes([dev.read(offset, 1)[0] ^ xor]))
    if cut is not None:  # a torn tail: zeros from `cut` on
        dev.write(cut, bytes(DETAIL_OFFSET + 4096 - cut))
    reading = read_dump(dev)
    text = format_dump(reading)
    if reading.condition is Condition.VALID:
        assert reading.dump is not None and text.startswith("crash: ")
    else:
        assert text.startswith(reading.condition.value)


@settings(max_examples=200, deadline=None)
@given(st.binary(min_size=HEADER_SIZE, max_size=HEADER_SIZE))
def test_random_headers_with_the_magic_never_crash_the_reader(raw: bytes) -> None:
    dev = MemoryBlockDevice(DISK)
    dev.write(0, raw[:2] + CRASH_RECORD_MAGIC + raw[10:])
    assert read_dump(dev).condition in (Condition.CORRUPT, Condition.TORN, Condition.VALID)


def test_trace_mirror_keeps_the_newest_whole_lines() -> None:
    from appliance.formats.dumpdisk import TRACE_MIRROR_MAX, read_trace_mirror, write_trace_mirror

    dev = MemoryBlockDevice(DISK)
    assert read_trace_mirror(dev) == ()
    lines = [f"0:0000:030:4 - line {i} " + "x" * 300 for i in range(400)]  # > 64 KiB
    write_trace_mirror(dev, lines)
    got = read_trace_mirror(dev)
    assert got == tuple(lines[-len(got) :]) and 100 < len(got) < 400
    assert sum(len(x) + 1 for x in got) <= TRACE_MIRROR_MAX
    arm_fault_area(dev, FaultArm(1, "16r1sr1", 1, 1))  # a new boot empties it
    assert read_trace_mirror(dev) == ()


def test_fault_arm_round_trips_and_a_damaged_one_reads_as_none() -> None:
    from appliance.formats.dumpdisk import FAULT_OFFSET, FaultArmStruct, read_fault_arm

    dev = MemoryBlockDevice(DISK)
    arm = FaultArm(1_700_000_000, "16r1sr1", 1601001, 1601002)
    arm_fault_area(dev, arm)
    assert read_fault_arm(dev) == arm
    raw = dev.read(FAULT_OFFSET, 64)
    n = len(FaultArmStruct.build(FaultArmStruct.parse(raw)))
    assert FaultArmStruct.build(FaultArmStruct.parse(raw)) == raw[:n]
    assert int.from_bytes(raw[n - 4 : n], "little") == zlib.crc32(raw[: n - 4])
    dev.write(FAULT_OFFSET + 9, b"\xff")  # boot_time: parses, but the CRC is wrong
    assert read_fault_arm(dev) is None
