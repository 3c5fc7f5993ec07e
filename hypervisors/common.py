"""Helpers shared by the packaging targets: disk order, names, work directories."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

ROLES = ("boot", "cf", "flash", "dump")


def disk_name(role: str, ext: str) -> str:
    """hd-boot.vmdk …: the vendor's file names, which admins and the wiki refer to."""
    return f"hd-{role}.{ext}"


def ordered_disks(disks: dict[str, Path]) -> list[tuple[str, Path]]:
    """The disks in role order; every role must be there."""
    missing = [r for r in ROLES if r not in disks]
    if missing:
        raise ValueError(f"missing disks for roles: {', '.join(missing)}")
    return [(r, Path(disks[r])) for r in ROLES]


@contextmanager
def work_dir(out_dir: Path, label: str) -> Iterator[Path]:
    """A scratch directory under out_dir (same filesystem: renames stay cheap), removed after."""
    out_dir.mkdir(parents=True, exist_ok=True)
    path = Path(tempfile.mkdtemp(prefix=f".{label}-", dir=out_dir))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)
