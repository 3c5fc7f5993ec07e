"""The crash record: one sector at the start of the dump disk.

`reboot` (a forced watchdog trap) writes it, as an unsolicited trap would, so the next boot
sees "crashed" and the crash-dump service can pick it up. The boot trace shows it once
(`reported` is then set); the record itself stays until the dump service clears it.

Layout (little endian): u16 body length, then the body (magic `IPVACRSH`, format 1, …),
then a CRC-32 over the length and the body; the rest of the sector is zero. The magic sits
at offset 2 so hal.disks can recognise a dump disk from its first bytes (DUMP_MAGIC).
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass

import construct as cs

from appliance.hal.block import BlockDevice

CRASH_RECORD_MAGIC = b"IPVACRSH"
CRASH_RECORD_SIZE = 512
REASON_MAX = 200  # keeps the record well inside one sector

CrashRecordBody = cs.Struct(
    "magic" / cs.Const(CRASH_RECORD_MAGIC),
    "format" / cs.Const(1, cs.Int16ul),
    "reported" / cs.Int8ul,  # 1 once a boot trace has shown it; the dump service clears it
    "time" / cs.Int64ul,  # unix seconds of the trap
    "uptime_ms" / cs.Int64ul,
    "build" / cs.Int32ul,
    "version" / cs.PascalString(cs.Int8ul, "ascii"),
    "reason" / cs.PascalString(cs.Int8ul, "ascii"),
)
PrefixedBody = cs.Prefixed(cs.Int16ul, CrashRecordBody)
CrashRecord = cs.Struct(
    "body" / PrefixedBody,
    "crc32" / cs.Int32ul,  # over the prefixed body bytes
)


@dataclass(frozen=True)
class CrashInfo:
    time: int
    uptime_ms: int
    build: int
    version: str
    reason: str
    reported: bool


def write_crash_record(dev: BlockDevice, info: CrashInfo) -> None:
    body = PrefixedBody.build(
        dict(
            reported=int(info.reported),
            time=info.time,
            uptime_ms=info.uptime_ms,
            build=info.build,
            version=info.version,
            reason=info.reason[:REASON_MAX],
        )
    )
    raw = body + cs.Int32ul.build(zlib.crc32(body))
    dev.write(0, raw.ljust(CRASH_RECORD_SIZE, b"\x00"))
    dev.flush()


def read_crash_record(dev: BlockDevice) -> CrashInfo | None:
    """The record, or None if the sector holds none (blank disk, torn or foreign data)."""
    raw = dev.read(0, CRASH_RECORD_SIZE)
    if raw[2:10] != CRASH_RECORD_MAGIC:
        return None
    try:
        parsed = CrashRecord.parse(raw)
    except cs.ConstructError:
        return None
    n = cs.Int16ul.parse(raw[:2]) + 2
    if zlib.crc32(raw[:n]) != parsed.crc32:
        return None
    b = parsed.body
    return CrashInfo(b.time, b.uptime_ms, b.build, b.version, b.reason, bool(b.reported))
