"""The crash record on the dump disk: round trip, the sector layout, damage is 'no record'."""

from __future__ import annotations

import zlib

import pytest

from appliance.hal.block import MemoryBlockDevice
from appliance.services.crashdump import (
    CRASH_RECORD_MAGIC,
    CRASH_RECORD_SIZE,
    CrashInfo,
    CrashRecord,
    read_crash_record,
    write_crash_record,
)

INFO = CrashInfo(
    time=1_700_000_000,
    uptime_ms=123_456,
    build=1601001,
    version="16r1sr1",
    reason="watchdog trap (reboot command)",
    reported=False,
)


@pytest.mark.parametrize("reported", [False, True])
def test_round_trip(reported: bool) -> None:
    dev = MemoryBlockDevice(4096)
    info = CrashInfo(**{**INFO.__dict__, "reported": reported})
    write_crash_record(dev, info)
    assert read_crash_record(dev) == info


def test_layout_magic_at_offset_2_crc_and_zero_padding() -> None:
    dev = MemoryBlockDevice(4096)
    write_crash_record(dev, INFO)
    raw = dev.read(0, CRASH_RECORD_SIZE)
    assert raw[2:10] == CRASH_RECORD_MAGIC  # hal.disks recognises the dump disk by this
    n = int.from_bytes(raw[:2], "little") + 2
    assert int.from_bytes(raw[n : n + 4], "little") == zlib.crc32(raw[:n])
    assert raw[n + 4 :] == bytes(CRASH_RECORD_SIZE - n - 4)
    assert CrashRecord.build(CrashRecord.parse(raw)) == raw[: n + 4]


def test_long_reason_is_cut_to_fit_the_sector() -> None:
    dev = MemoryBlockDevice(4096)
    write_crash_record(dev, CrashInfo(**{**INFO.__dict__, "reason": "x" * 1000}))
    record = read_crash_record(dev)
    assert record is not None and record.reason == "x" * 200


@pytest.mark.parametrize("offset", [0, 2, 12, 40, 60])
def test_damage_reads_as_no_record(offset: int) -> None:
    dev = MemoryBlockDevice(4096)
    write_crash_record(dev, INFO)
    byte = dev.read(offset, 1)[0]
    dev.write(offset, bytes([byte ^ 0xFF]))
    assert read_crash_record(dev) is None


def test_blank_disk_has_no_record() -> None:
    assert read_crash_record(MemoryBlockDevice(4096)) is None
