"""mem(…) formatting, DRAM truncation, the 3 GiB cap, too little RAM, FLASHDIR sizing."""

from __future__ import annotations

from pathlib import Path

import pytest

from appliance.flash import plan_limits
from appliance.hal.memory import (
    RAM_CAP,
    MemoryInfo,
    NotEnoughMemoryError,
    check_enough,
    format_mem,
    parse_meminfo,
    parse_memmap,
    trace_lines,
)
from appliance.hal.types import HaltError

MiB = 1 << 20


def test_seed_mem_line() -> None:
    assert format_mem(64946176) == "mem(64946176)=61.93MB"  # the seed's boot trace
    assert format_mem(268435456) == "mem(268435456)=256.00MB"
    assert format_mem(MiB - 1) == "mem(1048575)=0.99MB"  # truncated, not rounded


def test_dram_is_truncated_to_whole_mb() -> None:
    assert MemoryInfo(64946176).dram_mb() == 61
    assert trace_lines(MemoryInfo(64946176)) == ["mem(64946176)=61.93MB", "DRAM 61MB"]


def test_more_than_3_gib_is_capped_and_said() -> None:
    info = MemoryInfo(total=4_000_000_000, given=4 << 30)
    assert info.usable == RAM_CAP and info.capped
    lines = trace_lines(info)
    assert lines[0] == f"mem({RAM_CAP})=3072.00MB"
    assert lines[2].startswith("mem: 4096MB given, only the first 3072MB are used")
    # FLASHDIR is planned from the capped figure: the full 901 segments
    assert plan_limits(1024, info.usable).ldap_granted == 901


def test_flashdir_from_the_seed_figure() -> None:
    assert plan_limits(1024, MemoryInfo(64946176).usable).ldap_granted == 224


def test_too_little_ram_stops_with_a_message() -> None:
    with pytest.raises(NotEnoughMemoryError, match="not enough RAM: 40MB") as e:
        check_enough(MemoryInfo(40 * MiB))
    assert isinstance(e.value, HaltError)
    check_enough(MemoryInfo(100 * MiB))


def test_parsers() -> None:
    assert parse_meminfo("MemTotal:         210752 kB\nMemFree: 1 kB\n") == 210752 * 1024
    entries = [("0x0", "0x9fbff", "System RAM\n"), ("0x9fc00", "0x9ffff", "Reserved"),
               ("0x100000", "0xbffdffff", "System RAM"), ("0x100000000", "0x13fffffff",
               "System RAM")]  # fmt: skip
    assert parse_memmap(entries) == 0x9FC00 + (0xBFFE0000 - 0x100000) + (1 << 30)


def test_hosted_platform_gives_its_figure_as_memory_info(tmp_path: Path) -> None:
    from appliance.hal.hosted import HostedPlatform

    info = HostedPlatform(tmp_path, memory=64946176).memory_info()
    assert info == MemoryInfo(64946176) and trace_lines(info)[0] == "mem(64946176)=61.93MB"


def test_mem_info_command_uses_the_platform_memory_info() -> None:
    from types import SimpleNamespace

    from appliance.modcmd import CommandTable
    from appliance.services.hardware import HardwareService

    lookup = CommandTable(HardwareService().commands()).lookup

    platform = SimpleNamespace(memory_info=lambda: MemoryInfo(4_000_000_000, 4 << 30))
    out = lookup("MEM", "info")(SimpleNamespace(platform=platform), [])  # type: ignore[misc]
    assert out == f"mem({RAM_CAP})=3072.00MB DRAM=3072MB capped=yes"
