"""`ipva flash info|dump DISK`: decode a flash disk (IDE 1:0) without booting the box.

DISK is a raw image, or a .vmdk/.vhdx/.qcow2 of a package (converted to a temporary raw file
with qemu-img first). The disk is opened read-only; damage is listed, never repaired.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path

import click

from appliance.flash import Flash, FlashError, mount_flash
from appliance.flash.format import OWNER_NAMES
from appliance.hal.block import FileBlockDevice
from tools.disk_image import disk_arg, raw_image

DEFAULT_RAM = 256 * 1024 * 1024  # what the shipped appliance is configured with


@contextlib.contextmanager
def _open(disk: Path, ram: int, trace: list[str]) -> Iterator[Flash]:
    with raw_image(disk) as raw, FileBlockDevice(raw, readonly=True) as dev:
        try:
            yield mount_flash(dev, ram_bytes=ram, trace=trace.append, readonly=True)
        except FlashError as exc:
            raise click.ClickException(f"{disk}: {exc}") from exc


ram_opt = click.option(
    "--ram",
    type=int,
    default=DEFAULT_RAM // (1024 * 1024),
    show_default=True,
    help="RAM of the box in MiB (decides how much FLASHDIR may use).",
)


@click.group()
def flash() -> None:
    """Flash disks (FLASHMAN0: VARS and FLASHDIR0)."""


@flash.command()
@disk_arg
@ram_opt
def info(disk: Path, ram: int) -> None:
    """What `mod cmd FLASHMAN0 info` would say, plus the mount's damage report."""
    trace: list[str] = []
    with _open(disk, ram * 1024 * 1024, trace) as fl:
        if fl.flashman.blank:
            click.echo("blank flash disk (not formatted; the box formats it at first boot)")
            return
        click.echo(fl.flashman.info())
        click.echo(f"VARS keys: {len(fl.vars)}  FLASHDIR items: {len(fl.flashdir)}")
        for line in trace:
            click.echo(line)


@flash.command()
@disk_arg
@ram_opt
@click.option("--records", is_flag=True, help="Also list every record of every segment.")
def dump(disk: Path, ram: int, records: bool) -> None:
    """Segment table, the VARS store and FLASHDIR0 as add-item lines."""
    trace: list[str] = []
    with _open(disk, ram * 1024 * 1024, trace) as fl:
        fm = fl.flashman
        if fm.blank:
            click.echo("blank flash disk")
            return
        for line in trace:
            click.echo(f"# {line}")
        click.echo(f"# epoch {fm.epoch}, {len(fm.segments)} segments")
        click.echo("# seg  owner  seq      erases  end     live-records")
        for seg in fm.segment_table():
            if seg.owner:
                click.echo(
                    f"# {seg.index:4d} {OWNER_NAMES[seg.owner]:6s} {seg.seq:<8d} "
                    f"{seg.erase_count:<7d} 0x{seg.end:05x} {seg.nlive}"
                )
                if records:
                    for r in fm.records_of(seg):
                        click.echo(
                            f"#      0x{r.offset:05x} txn {r.txn} flags {r.flags} "
                            f"key {r.key!r} {len(r.value)} bytes"
                        )
        free = sum(1 for s in fm.segments if not s.owner)
        click.echo(f"# free segments: {free}")
        click.echo(f"# VARS ({len(fl.vars)} keys)")
        for key, value in fl.vars.items():
            click.echo(f"vars {key} = {value!r}")
        click.echo(f"# FLASHDIR0 ({len(fl.flashdir)} items)")
        for line in fl.flashdir.backup_lines():
            click.echo(line)
