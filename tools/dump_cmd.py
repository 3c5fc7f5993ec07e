"""`ipva dump show DISK`: read the crash dump disk (IDE 1:1) without booting the box.

DISK is a raw image or a .vmdk/.vhdx/.qcow2 of a package, opened read-only. The text is the
box's own `/crash_dump.txt` (appliance.formats.crashdump.format_dump). A torn or corrupt
dump is printed as far as it can be read and exits with status 1.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import click

from appliance.formats.crashdump import Condition, format_dump, read_dump
from appliance.formats.dumpdisk import read_fault_area
from appliance.hal.block import FileBlockDevice
from tools.disk_image import disk_arg, raw_image


@click.group()
def dump() -> None:
    """Crash dump disks (IDE 1:1)."""


@dump.command()
@disk_arg
def show(disk: Path) -> None:
    """The last crash: reason, versions, stacks, trace tail; also an uncollected fatal signal."""
    with raw_image(disk) as raw, FileBlockDevice(raw, readonly=True) as dev:
        reading = read_dump(dev)
        fault = read_fault_area(dev)
    click.echo(format_dump(reading), nl=False)
    if fault is not None:
        arm, text = fault
        boot = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(arm.boot_time))
        click.echo(
            f"\nfatal signal of the runtime booted {boot} ({arm.version} build {arm.build}), "
            "not yet collected by a boot:"
        )
        click.echo(text.rstrip("\n"))
    if reading.condition in (Condition.TORN, Condition.CORRUPT):
        sys.exit(1)
