"""`ipva dump show DISK` on raw, qcow2, VMDK and VHDX images: the dump, damage, a fatal signal."""

from __future__ import annotations

import dataclasses
import subprocess
from pathlib import Path

import pytest
from click.testing import CliRunner

from appliance.formats.crashdump import CrashDump, DumpKind, Frame, ThreadStack, write_dump
from appliance.formats.dumpdisk import FAULT_TEXT, FaultArm, arm_fault_area
from appliance.hal.block import FileBlockDevice
from tools.cli import main

DUMP = CrashDump(
    kind=DumpKind.REBOOT,
    reason="watchdog trap (reboot command)",
    time=1_700_000_000,
    uptime_ms=5_000,
    version="16r1sr1",
    build=1601001,
    bootcode_build=1601001,
    hw="IPVA-vm",
    trace=("0:0000:030:4 - config: 0 saved objects loaded",),
    threads=(ThreadStack("console-ttyS0", 1, False, (Frame("shell.py", 9, "run", "go()"),)),),
)


@pytest.fixture
def disk(tmp_path: Path) -> Path:
    path = tmp_path / "dump.img"
    with path.open("wb") as fh:
        fh.truncate(4 << 20)
    with FileBlockDevice(path) as dev:
        write_dump(dev, DUMP)
    return path


@pytest.mark.parametrize("fmt", ["raw", "qcow2", "vmdk", "vhdx"])
def test_show_each_disk_format(disk: Path, fmt: str) -> None:
    image = disk
    if fmt != "raw":
        image = disk.with_suffix(f".{fmt}")
        subprocess.run(["qemu-img", "convert", "-O", fmt, disk, image], check=True)
    res = CliRunner().invoke(main, ["dump", "show", str(image)])
    assert res.exit_code == 0, res.output
    assert res.output.startswith("crash: watchdog trap (reboot command)\nkind: reboot\n")
    assert '  File "shell.py", line 9, in run\n    go()' in res.output
    assert res.output.endswith("0:0000:030:4 - config: 0 saved objects loaded\n")


def test_corrupt_dump_says_so_and_fails(disk: Path) -> None:
    with FileBlockDevice(disk) as dev:
        dev.write(4096 + 3, b"\xff\xff")
    res = CliRunner().invoke(main, ["dump", "show", str(disk)])
    assert res.exit_code == 1
    assert res.output.startswith("corrupt crash dump: detail checksum wrong\n")
    assert "crash: watchdog trap (reboot command)" in res.output  # the header still reads


def test_torn_dump_says_so(disk: Path) -> None:
    from appliance.formats.crashdump import DumpState, _header_bytes

    with FileBlockDevice(disk) as dev:
        dev.write(
            0, _header_bytes(dataclasses.replace(DUMP, reason="half"), DumpState.WRITING, 0, 0)
        )
    res = CliRunner().invoke(main, ["dump", "show", str(disk)])
    assert res.exit_code == 1
    assert res.output.startswith("torn crash dump: the box stopped while this dump was being")
    assert "crash: half" in res.output


def test_blank_disk_and_uncollected_fatal_signal(tmp_path: Path) -> None:
    path = tmp_path / "dump.img"
    path.write_bytes(bytes(2 << 20))
    res = CliRunner().invoke(main, ["dump", "show", str(path)])
    assert res.exit_code == 0 and res.output == "no crash dump (blank dump disk)\n"
    with FileBlockDevice(path) as dev:
        arm_fault_area(dev, FaultArm(1_700_000_000, "16r1sr1", 1601001, 1601001))
        dev.write(FAULT_TEXT, b"Fatal Python error: Segmentation fault\n")
    res = CliRunner().invoke(main, ["dump", "show", str(path)])
    assert res.exit_code == 0
    assert "fatal signal of the runtime booted 2023-11-14 22:13:20 UTC" in res.output
    assert res.output.endswith("Fatal Python error: Segmentation fault\n")
