"""The crash dump on the dump disk (IDE 1:1): its on-disk format, reader and text form.

One dump slot, the last crash, as on the box. Layout (little endian):

  offset 0        the header sector: u16 body length, the header body (magic `IPVACRSH`,
                  format 2, state, kind, reported, time, uptime, versions, reason, the
                  detail's length and CRC-32), then a CRC-32 over length and body (the
                  CRC trailer, formats.crc); zero padded to 512 bytes. The magic sits at
                  offset 2 so hal.disks recognises a dump disk from its first bytes
                  (DUMP_MAGIC).
  offset 4 KiB    the detail: zlib-compressed construct (hw id, config digest, memory
                  figures, the trace tail, every thread's Python stack, the exception),
                  at most DETAIL_MAX bytes.
  offset 1 MiB    the fault area: an arm record (magic `IPVAFLT`, the boot it belongs to)
                  and, from FAULT_TEXT, the text faulthandler writes on a fatal signal;
                  then the trace mirror (u32 length + the last trace lines), rewritten
                  by the crash watch's writer thread as lines come (at most every
                  MIRROR_INTERVAL_S), so a signal's dump has the trace tail too.

Writing a dump: the header with state WRITING first, then the detail, then the header with
state COMPLETE and the detail's CRC. A power cut or second fault in between leaves a dump
that reads as torn (with the reason it was about), never as a valid one; any other damage
reads as corrupt. Reading never raises on disk content.

A leaf (appliance.formats): `ipva dump show` reads a dump with it without loading the box's
services; the crash dump service (services/dump.py) and the crash watch write through it.
What every boot touches (the record's magic in sector 0, the fault area) is in
formats/dumpdisk.py, so that a boot with no dump to report does not load this module.
"""

from __future__ import annotations

import dataclasses
import enum
import time
import zlib
from dataclasses import dataclass
from typing import TYPE_CHECKING

import construct as cs

from appliance.formats.crc import crc32_trailed
from appliance.formats.dumpdisk import (
    CRASH_RECORD_MAGIC,
    FAULT_OFFSET,
    FAULT_TEXT_MAX,
    HEADER_SIZE,
    TRACE_TAIL,
    cut,
)

if TYPE_CHECKING:  # any block device: the dump disk, a raw image, a test's memory disk
    from appliance.hal.block import BlockDevice

FORMAT = 2
REASON_MAX = 200  # keeps the header well inside one sector
DETAIL_OFFSET = 4096
DETAIL_MAX = FAULT_OFFSET - DETAIL_OFFSET


class DumpKind(enum.IntEnum):
    REBOOT = 1  # `reboot`: the forced watchdog trap
    EXCEPTION = 2  # an unhandled exception in a service or console thread
    SIGNAL = 3  # a fatal signal of the runtime (faulthandler's text)
    DIED = 4  # the runtime process ended without restarting the box
    PANIC = 5  # the kernel panicked (pstore)


class DumpState(enum.IntEnum):
    WRITING = 1
    COMPLETE = 2


_Text8 = cs.PascalString(cs.Int8ul, "utf8")
_Text16 = cs.PascalString(cs.Int16ul, "utf8")

HeaderBody = cs.Struct(
    "magic" / cs.Const(CRASH_RECORD_MAGIC),
    "format" / cs.Const(FORMAT, cs.Int16ul),
    "state" / cs.Enum(cs.Int8ul, DumpState),
    "kind" / cs.Enum(cs.Int8ul, DumpKind),
    "reported" / cs.Flag,  # a boot trace has shown it; `mod cmd DUMP clear` erases it
    "time" / cs.Int64ul,  # unix seconds of the crash
    "uptime_ms" / cs.Int64ul,
    "build" / cs.Int32ul,
    "bootcode_build" / cs.Int32ul,
    "version" / _Text8,
    "reason" / _Text8,
    "detail_length" / cs.Int32ul,
    "detail_crc32" / cs.Int32ul,  # over the stored (compressed) detail bytes
)
PrefixedHeader = cs.Prefixed(cs.Int16ul, HeaderBody)
Header = crc32_trailed(PrefixedHeader)  # the CRC covers the length prefix too

FrameStruct = cs.Struct(
    "file" / _Text16,
    "line" / cs.Int32ul,
    "function" / _Text16,
    "code" / _Text16,
)
ThreadStruct = cs.Struct(
    "name" / _Text16,
    "ident" / cs.Int64ul,
    "crashed" / cs.Flag,  # the thread the exception came from
    "frames" / cs.PrefixedArray(cs.Int16ul, FrameStruct),  # outermost first
)
DetailStruct = cs.Struct(
    "hw" / _Text8,
    "config_digest" / _Text8,  # hex SHA-256 of the saved config's text
    "config_objects" / cs.Int32ul,
    "memory"
    / cs.Struct(  # bytes; 0 where the platform does not know
        "usable" / cs.Int64ul,
        "dram" / cs.Int64ul,
        "available" / cs.Int64ul,
        "rss" / cs.Int64ul,
    ),
    "trace" / cs.PrefixedArray(cs.Int16ul, _Text16),  # oldest first
    "threads" / cs.PrefixedArray(cs.Int16ul, ThreadStruct),
    "exception" / cs.PascalString(cs.Int32ul, "utf8"),  # the formatted traceback, or ""
    "fault_text" / cs.PascalString(cs.Int32ul, "utf8"),  # faulthandler's output, or ""
)
Detail = cs.Compressed(DetailStruct, "zlib")


@dataclass(frozen=True)
class Frame:
    """One stack frame of a thread in a dump: where it was and the line of code."""

    file: str
    line: int
    function: str
    code: str


@dataclass(frozen=True)
class ThreadStack:
    """One thread's stack in a dump; `crashed`: the thread that crashed."""

    name: str
    ident: int
    crashed: bool
    frames: tuple[Frame, ...]  # outermost first, as traceback prints them


@dataclass(frozen=True)
class MemoryFigures:
    """The memory when the dump was made, in bytes: usable, DRAM, available, the runtime's RSS."""

    usable: int = 0
    dram: int = 0
    available: int = 0
    rss: int = 0


@dataclass(frozen=True)
class CrashDump:
    """One crash dump: what happened, which firmware, the trace and the threads' stacks."""

    kind: DumpKind
    reason: str
    time: int  # unix seconds
    uptime_ms: int
    version: str
    build: int
    bootcode_build: int
    hw: str = ""
    config_digest: str = ""
    config_objects: int = 0
    memory: MemoryFigures = MemoryFigures()
    trace: tuple[str, ...] = ()
    threads: tuple[ThreadStack, ...] = ()
    exception: str = ""
    fault_text: str = ""
    reported: bool = False


class Condition(enum.StrEnum):
    NONE = "no crash dump"
    VALID = "crash dump"
    TORN = "torn crash dump"
    CORRUPT = "corrupt crash dump"


@dataclass(frozen=True)
class DumpReading:
    """What the dump disk holds. `dump` is the whole dump when VALID; for TORN/CORRUPT it
    holds what the header still says (no detail), or None if the header itself is bad."""

    condition: Condition
    dump: CrashDump | None = None
    problem: str = ""  # why TORN/CORRUPT, or what NONE found (blank / foreign data)


class DumpDiskError(ValueError):
    """The dump disk cannot take a dump (too small); nothing was written."""


# --- writing ------------------------------------------------------------------------------


def _header_bytes(dump: CrashDump, state: DumpState, length: int, crc: int) -> bytes:
    fields = dict(
        state=state.name,
        kind=dump.kind.name,
        reported=dump.reported,
        time=dump.time,
        uptime_ms=dump.uptime_ms,
        build=dump.build,
        bootcode_build=dump.bootcode_build,
        version=cut(dump.version, 60),
        reason=cut(dump.reason, REASON_MAX),
        detail_length=length,
        detail_crc32=crc,
    )
    return Header.build({"body": {"value": fields}}).ljust(HEADER_SIZE, b"\x00")


def _detail_dict(dump: CrashDump) -> dict[str, object]:
    return dict(
        hw=cut(dump.hw, 200),
        config_digest=cut(dump.config_digest, 200),
        config_objects=dump.config_objects,
        memory=dataclasses.asdict(dump.memory),
        trace=[cut(t) for t in dump.trace[-TRACE_TAIL:]],
        threads=[
            dict(
                name=cut(t.name, 200),
                ident=t.ident & 0xFFFFFFFFFFFFFFFF,
                crashed=t.crashed,
                frames=[
                    dict(file=cut(f.file), line=f.line, function=cut(f.function), code=cut(f.code))
                    for f in t.frames[-500:]
                ],
            )
            for t in dump.threads[:200]
        ],
        exception=cut(dump.exception, 64 * 1024),
        fault_text=cut(dump.fault_text, FAULT_TEXT_MAX),
    )


def build_detail(dump: CrashDump, room: int = DETAIL_MAX) -> bytes:
    """The stored detail; the trace tail, then the stacks are shortened until it fits."""
    while True:
        raw = Detail.build(_detail_dict(dump))
        if len(raw) <= room:
            return raw
        if dump.trace:
            dump = dataclasses.replace(dump, trace=dump.trace[len(dump.trace) // 2 + 1 :])
        elif dump.threads or dump.exception or dump.fault_text:
            dump = dataclasses.replace(
                dump,
                threads=dump.threads[: len(dump.threads) // 2],
                exception=dump.exception[-2000:],
                fault_text=dump.fault_text[:2000] if dump.threads else "",
            )
        else:
            raise DumpDiskError(f"dump disk too small for a dump ({room} bytes of detail room)")


def detail_room(dev: BlockDevice) -> int:
    """Bytes the detail may take: up to the fault area, less on a small (test) disk."""
    return max(0, min(DETAIL_MAX, dev.size - DETAIL_OFFSET))


def write_dump(dev: BlockDevice, dump: CrashDump) -> None:
    """Store `dump` in the slot (replacing the last one): torn-safe, see the module doc."""
    detail = build_detail(dump, detail_room(dev))
    dev.write(0, _header_bytes(dump, DumpState.WRITING, 0, 0))
    dev.flush()
    dev.write(DETAIL_OFFSET, detail)
    dev.flush()
    dev.write(0, _header_bytes(dump, DumpState.COMPLETE, len(detail), zlib.crc32(detail)))
    dev.flush()


def mark_reported(dev: BlockDevice, reading: DumpReading) -> None:
    """Set `reported` in a VALID dump's header (the detail stays as it is)."""
    if reading.condition is not Condition.VALID or reading.dump is None:
        return
    raw = dev.read(0, HEADER_SIZE)
    parsed = Header.parse(raw).body.value
    dump = dataclasses.replace(reading.dump, reported=True)
    dev.write(0, _header_bytes(dump, DumpState.COMPLETE, parsed.detail_length, parsed.detail_crc32))
    dev.flush()


def clear_dump(dev: BlockDevice) -> None:
    """Erase the slot and the fault area's text: the disk reads as holding no dump."""
    dev.write(0, bytes(HEADER_SIZE))
    dev.flush()


# --- reading ------------------------------------------------------------------------------


def _header_dump(b: cs.Container) -> CrashDump:
    return CrashDump(
        kind=DumpKind(int(b.kind)),
        reason=b.reason,
        time=b.time,
        uptime_ms=b.uptime_ms,
        version=b.version,
        build=b.build,
        bootcode_build=b.bootcode_build,
        reported=bool(b.reported),
    )


def _from_detail(head: CrashDump, d: cs.Container) -> CrashDump:
    return dataclasses.replace(
        head,
        hw=d.hw,
        config_digest=d.config_digest,
        config_objects=d.config_objects,
        memory=MemoryFigures(d.memory.usable, d.memory.dram, d.memory.available, d.memory.rss),
        trace=tuple(d.trace),
        threads=tuple(
            ThreadStack(
                t.name,
                t.ident,
                bool(t.crashed),
                tuple(Frame(f.file, f.line, f.function, f.code) for f in t.frames),
            )
            for t in d.threads
        ),
        exception=d.exception,
        fault_text=d.fault_text,
    )


def read_dump(dev: BlockDevice) -> DumpReading:
    """What the slot holds; damage is a reading (TORN/CORRUPT), never an exception."""
    try:
        raw = dev.read(0, HEADER_SIZE)
    except (OSError, ValueError) as e:
        return DumpReading(Condition.CORRUPT, problem=f"cannot read the dump disk: {e}")
    if raw[2:10] != CRASH_RECORD_MAGIC:
        found = "blank" if not any(raw) else "not a crash dump"
        return DumpReading(Condition.NONE, problem=found)
    n = int.from_bytes(raw[:2], "little") + 2
    if n + 4 > HEADER_SIZE:
        return DumpReading(Condition.CORRUPT, problem=f"header length {n - 2} out of range")
    try:
        b = Header.parse(raw).body.value
        head = _header_dump(b)
    except cs.ChecksumError:
        return DumpReading(Condition.CORRUPT, problem="header checksum wrong")
    except (cs.ConstructError, ValueError, UnicodeDecodeError) as e:
        # format 1 (the old one-sector record) fails here too: its Const format differs
        return DumpReading(Condition.CORRUPT, problem=f"header not readable: {_first_line(e)}")
    if b.state == DumpState.WRITING.name:
        return DumpReading(
            Condition.TORN, head, "the box stopped while this dump was being written"
        )
    length = b.detail_length
    if length > detail_room(dev):
        return DumpReading(Condition.CORRUPT, head, f"detail length {length} out of range")
    stored = dev.read(DETAIL_OFFSET, length)
    if zlib.crc32(stored) != b.detail_crc32:
        return DumpReading(Condition.CORRUPT, head, "detail checksum wrong")
    try:
        return DumpReading(Condition.VALID, _from_detail(head, Detail.parse(stored)))
    except (cs.ConstructError, zlib.error, ValueError, UnicodeDecodeError) as e:
        return DumpReading(Condition.CORRUPT, head, f"detail not readable: {_first_line(e)}")


def _first_line(e: Exception) -> str:
    return (str(e).splitlines() or [type(e).__name__])[0]


# --- the text form (`/crash_dump.txt`, `mod cmd DUMP show`, `ipva dump show`) ---------------


def _when(seconds: int) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(seconds))


def _mb(n: int) -> str:
    return f"{n / 1e6:.2f}MB" if n else "?"


def format_dump(reading: DumpReading) -> str:
    """The dump as support staff read it; a torn or corrupt one says so first."""
    lines: list[str] = []
    if reading.condition is Condition.NONE:
        what = "blank dump disk" if reading.problem == "blank" else reading.problem
        return f"no crash dump ({what})\n"
    if reading.condition is not Condition.VALID:
        lines.append(f"{reading.condition.value}: {reading.problem}")
        if reading.dump is None:
            return "\n".join(lines) + "\n"
        lines.append("(header only; the detail is not shown)")
    d = reading.dump
    assert d is not None
    lines += [
        f"crash: {d.reason}",
        f"kind: {d.kind.name.lower()}",
        f"time: {_when(d.time)}",
        f"uptime: {d.uptime_ms / 1000:.1f}s",
        f"firmware: {d.version} build {d.build}, bootcode build {d.bootcode_build}",
        f"reported: {'yes' if d.reported else 'no'}",
    ]
    if reading.condition is not Condition.VALID:
        return "\n".join(lines) + "\n"
    m = d.memory
    lines += [
        f"hw: {d.hw}",
        f"config: {d.config_objects} saved objects, sha256 {d.config_digest}",
        f"memory: usable {_mb(m.usable)}, DRAM {_mb(m.dram)}, available {_mb(m.available)}, "
        f"runtime RSS {_mb(m.rss)}",
    ]
    if d.exception:
        lines += ["", "exception:", *d.exception.rstrip("\n").splitlines()]
    if d.fault_text:
        lines += ["", "fatal signal (faulthandler):", *d.fault_text.rstrip("\n").splitlines()]
    for t in d.threads:
        mark = " (crashed)" if t.crashed else ""
        lines += ["", f"thread {t.name} [{t.ident:#x}]{mark}, most recent call last:"]
        for f in t.frames:
            lines.append(f'  File "{f.file}", line {f.line}, in {f.function}')
            if f.code:
                lines.append(f"    {f.code}")
    lines += ["", f"trace (last {len(d.trace)} lines):", *d.trace]
    return "\n".join(lines) + "\n"
