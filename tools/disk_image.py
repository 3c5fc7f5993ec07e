"""Open a disk of a package for reading: raw as it is, VMDK/VHDX/qcow2/VHD through qemu-img.

Used by the offline decoders (`ipva flash`, `ipva dump`): the converted copy is a temporary
raw file, so the original is never touched.
"""

from __future__ import annotations

import contextlib
import tempfile
from collections.abc import Iterator
from pathlib import Path

import click

from firmware.run import run

CONVERT = {".vmdk": "vmdk", ".vhdx": "vhdx", ".qcow2": "qcow2", ".vhd": "vpc"}

disk_arg = click.argument("disk", type=click.Path(exists=True, dir_okay=False, path_type=Path))


@contextlib.contextmanager
def raw_image(disk: Path) -> Iterator[Path]:
    """A raw image of `disk`: the file itself, or a qemu-img conversion of it."""
    fmt = CONVERT.get(disk.suffix.lower())
    if fmt is None:
        yield disk
        return
    with tempfile.TemporaryDirectory(prefix="ipva-disk-") as tmp:
        raw = Path(tmp) / "disk.raw"
        run(["qemu-img", "convert", "-f", fmt, "-O", "raw", disk, raw])
        yield raw
