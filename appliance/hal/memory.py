"""Memory as the box sees it: the `mem(…)` boot-trace figure, DRAM, the 3 GiB cap.

Figures (all derived from what the VM presents):
- given: System RAM in the firmware's (e820) memory map, /sys/firmware/memmap — what the
  hypervisor configured, minus the BIOS holes;
- total: the kernel's MemTotal — what is left for the box after the kernel reserved its part
  (the seed: "a bit of memory is occupied by the VMM"), the guest's counterpart of the box's
  `mem(64946176)=61.93MB`;
- usable: total, but at most the first 3 GiB: the box has no virtual memory management and
  uses only the first linear 3 GiB (seed: "Maximal 3.072 MiB RAM"). This is the figure the
  boot trace prints and FLASHDIR's size is planned from.
DRAM (the box's General/Info/DRAM) is `usable` truncated down to whole MB.
"""

from __future__ import annotations

from pathlib import Path

from appliance.hal.types import RAM_CAP, HaltError, MemoryInfo, MiB

__all__ = ["RAM_CAP", "MemoryInfo", "MiB", "NotEnoughMemoryError", "format_mem", "trace_lines"]
# Below this the runtime cannot hold Python, the flash copies and its buffers: measured
# under TCG, the runtime's RSS after boot is ~35 MiB on top of the kernel's share, and
# MemTotal at 128 MiB is ~100 MiB. 64 MiB of MemTotal leaves room for a 64 MiB flash's copies.
MIN_TOTAL = 64 * MiB


class NotEnoughMemoryError(HaltError):
    """Too little RAM: stop with what to do, rather than die of OOM later."""


def format_mem(n: int) -> str:
    """`mem(64946176)=61.93MB`: MiB truncated (not rounded) to two decimals, as the box."""
    hundredths = n * 100 // MiB
    return f"mem({n})={hundredths // 100}.{hundredths % 100:02d}MB"


def trace_lines(info: MemoryInfo) -> list[str]:
    """The boot-trace lines after the CPU line: mem(…), DRAM, and the cap if it applies."""
    lines = [format_mem(info.usable), f"DRAM {info.dram_mb()}MB"]
    if info.capped:
        given = info.given or info.total
        lines.append(
            f"mem: {given // MiB}MB given, only the first {RAM_CAP // MiB}MB are used "
            "(no virtual memory management; more RAM gives no benefit)"
        )
    return lines


def check_enough(info: MemoryInfo) -> None:
    """Raise NotEnoughMemoryError with what to do, before the box would run out."""
    if info.total < MIN_TOTAL:
        raise NotEnoughMemoryError(
            f"not enough RAM: {info.total // MiB}MB available to the box, it needs "
            f"{MIN_TOTAL // MiB}MB; power off and give the VM 128 MiB or more (256 MiB advised)"
        )


def parse_meminfo(text: str) -> int:
    for line in text.splitlines():
        if line.startswith("MemTotal:"):
            return int(line.split()[1]) * 1024
    return 0


def parse_memmap(entries: list[tuple[str, str, str]]) -> int:
    """Sum of "System RAM" ranges; entries are (start, end, type) as in /sys/firmware/memmap."""
    total = 0
    for start, end, kind in entries:
        if kind.strip() == "System RAM":
            total += int(end, 16) - int(start, 16) + 1
    return total


def read_memory_info(proc: Path = Path("/proc"), sys: Path = Path("/sys")) -> MemoryInfo:
    try:
        total = parse_meminfo((proc / "meminfo").read_text())
    except OSError:
        total = 0
    entries: list[tuple[str, str, str]] = []
    for d in sorted((sys / "firmware/memmap").glob("*")):
        try:
            start, end, kind = ((d / f).read_text() for f in ("start", "end", "type"))
            entries.append((start, end, kind))
        except OSError:
            continue
    return MemoryInfo(total, parse_memmap(entries))
