"""What every boot reads and writes on the dump disk (IDE 1:1): whether sector 0 holds a dump
record at all, and the fault area (the arm record, faulthandler's text, the trace mirror).
The layout is formats/crashdump.py's (its doc); the dump record itself (its header and
detail, their dataclasses and Structs) is there and is loaded only when there is a dump to
read or one to write, not for a boot's prompt.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import construct as cs

from appliance.formats.crc import crc32_trailed

if TYPE_CHECKING:  # any block device: the dump disk, a raw image, a test's memory disk
    from appliance.hal.block import BlockDevice

CRASH_RECORD_MAGIC = b"IPVACRSH"  # at offset 2 of sector 0 (crashdump.HeaderBody)
HEADER_SIZE = 512
FAULT_OFFSET = 1 << 20
FAULT_ARM_SIZE = 512
FAULT_TEXT = FAULT_OFFSET + FAULT_ARM_SIZE
FAULT_TEXT_MAX = 64 * 1024  # faulthandler's text for a few dozen threads fits easily
TRACE_MIRROR = FAULT_TEXT + FAULT_TEXT_MAX
TRACE_MIRROR_MAX = 64 * 1024
FAULT_END = TRACE_MIRROR + TRACE_MIRROR_MAX
FAULT_MAGIC = b"IPVAFLT\x00"

TRACE_TAIL = 200  # trace lines a dump keeps (the newest)
TEXT_MAX = 4000  # one string field (a trace line, a code line, the exception text)

_Text8 = cs.PascalString(cs.Int8ul, "utf8")

FaultArmBody = cs.Struct(
    "magic" / cs.Const(FAULT_MAGIC),
    "boot_time" / cs.Int64ul,  # unix seconds of the boot that armed it
    "build" / cs.Int32ul,
    "bootcode_build" / cs.Int32ul,
    "version" / _Text8,
)
FaultArmStruct = crc32_trailed(FaultArmBody)


def cut(text: str, limit: int = TEXT_MAX) -> str:
    # string fields are length-prefixed; a runaway repr must not break the build
    return text if len(text) <= limit else text[: limit - 3] + "..."


def may_hold_dump(dev: BlockDevice) -> bool:
    """False when sector 0 reads and has no dump record's magic (a blank disk, foreign data):
    no dump to read. True otherwise, unreadable included (crashdump.read_dump says why)."""
    try:
        raw = dev.read(0, HEADER_SIZE)
    except (OSError, ValueError):
        return True
    return raw[2:10] == CRASH_RECORD_MAGIC


# --- the fault area (faulthandler writes there on a fatal signal) -------------------------


@dataclass(frozen=True)
class FaultArm:
    """The fault area's arm record: which boot and firmware armed it."""

    boot_time: int
    version: str
    build: int
    bootcode_build: int


def _arm_bytes(arm: FaultArm) -> bytes:
    fields = dict(
        boot_time=arm.boot_time,
        build=arm.build,
        bootcode_build=arm.bootcode_build,
        version=cut(arm.version, 60),
    )
    return FaultArmStruct.build({"body": {"value": fields}}).ljust(FAULT_ARM_SIZE, b"\x00")


def arm_fault_area(dev: BlockDevice, arm: FaultArm) -> None:
    """Record which boot the fault area belongs to; empty its text and the trace mirror."""
    dev.write(FAULT_TEXT, bytes(FAULT_TEXT_MAX))
    dev.write(TRACE_MIRROR, bytes(4))
    dev.write(FAULT_OFFSET, _arm_bytes(arm))
    dev.flush()


def read_fault_arm(dev: BlockDevice) -> FaultArm | None:
    """The boot the fault area was last armed by, or None (never armed, damaged)."""
    if dev.size < FAULT_END:
        return None
    raw = dev.read(FAULT_OFFSET, FAULT_ARM_SIZE)
    if raw[:8] != FAULT_MAGIC:
        return None
    try:
        a = FaultArmStruct.parse(raw).body.value
    except (cs.ConstructError, UnicodeDecodeError):  # damaged, or a wrong CRC
        return None
    return FaultArm(a.boot_time, a.version, a.build, a.bootcode_build)


def read_fault_area(dev: BlockDevice) -> tuple[FaultArm, str] | None:
    """(the arming boot, faulthandler's text) when a fatal signal left text; else None."""
    arm = read_fault_arm(dev)
    if arm is None:
        return None
    text = dev.read(FAULT_TEXT, FAULT_TEXT_MAX).split(b"\x00", 1)[0]
    if not text.strip():
        return None
    return arm, text.decode("utf-8", "replace")


def write_trace_mirror(dev: BlockDevice, lines: Sequence[str]) -> None:
    """The newest trace lines that fit TRACE_MIRROR_MAX, for a signal's dump."""
    blob = "\n".join(cut(line) for line in lines).encode("utf-8")
    if len(blob) > TRACE_MIRROR_MAX - 4:
        blob = blob[len(blob) - (TRACE_MIRROR_MAX - 4) :]
        blob = blob[blob.find(b"\n") + 1 :]  # whole lines only
    dev.write(TRACE_MIRROR, cs.Int32ul.build(len(blob)) + blob)
    dev.flush()


def read_trace_mirror(dev: BlockDevice) -> tuple[str, ...]:
    if dev.size < FAULT_END:
        return ()
    n = cs.Int32ul.parse(dev.read(TRACE_MIRROR, 4))
    if not 0 < n <= TRACE_MIRROR_MAX - 4:
        return ()
    text = dev.read(TRACE_MIRROR + 4, n).decode("utf-8", "replace")
    return tuple(text.split("\n"))
