"""The boot disk (IDE 0:0): MBR + one active FAT16 partition with SYSLINUX, the bootcode
(kernel + initramfs) and IPVA.BIN — made without loop mounts or root.

Steps (DESIGN.md): truncate; sfdisk (one type-e partition at sector 2048, *active*, else
mbr.bin prints "Missing operating system."); mkfs.fat --offset; mlabel (mkfs's label would
stamp the time); syslinux --offset --install; mcopy; mbr.bin into the first 440 bytes; the
boot-control record (appliance/hal/bootctl.py) into the gap before the partition.
Every timestamp is SOURCE_DATE_EPOCH, so two builds give the same bytes.
"""

from __future__ import annotations

import os
from pathlib import Path

from appliance.hal.block import SECTOR
from appliance.hal.bootctl import BOOTCTL_LBAS, BootControl, encode
from appliance.hal.bootfiles import BOOT_PARTITION_SECTOR
from appliance.hal.disks import BOOT_LABEL
from firmware.run import ToolError, run

PART_START_SECTOR = BOOT_PARTITION_SECTOR  # the runtime writes firmware slots there too
PART_OFFSET = PART_START_SECTOR * 512
DISK_ID = "0x49505641"  # "IPVA": fixed, for reproducible builds
VOLUME_ID = "49505641"
VOLUME_LABEL = BOOT_LABEL.decode()  # how the runtime recognises the boot disk
MBR_BIN_CANDIDATES = ("/usr/lib/syslinux/mbr/mbr.bin", "/usr/share/syslinux/mbr.bin")
KERNEL_ARGS = "console=tty0 console=ttyS0,115200n8 quiet loglevel=3 panic=10"

SYSLINUX_CFG = f"""\
SERIAL 0 115200
DEFAULT ipva
PROMPT 0
TIMEOUT 0
LABEL ipva
  KERNEL vmlinuz
  INITRD initrd.zst
  APPEND {KERNEL_ARGS}
"""


def _mbr_bin() -> Path:
    for c in MBR_BIN_CANDIDATES:
        if Path(c).exists():
            return Path(c)
    raise ToolError("syslinux's mbr.bin not found: apt-get install syslinux-common")


def make_boot_disk(out: Path, files: dict[str, Path], epoch: int, size_mib: int = 64) -> Path:
    """Write a bootable raw disk to `out`; `files` maps FAT names (e.g. IPVA.BIN) → sources."""
    out.unlink(missing_ok=True)
    with open(out, "wb") as f:
        f.truncate(size_mib << 20)
    table = f"label: dos\nlabel-id: {DISK_ID}\nstart={PART_START_SECTOR}, type=e, bootable\n"
    run(["sfdisk", "--no-reread", "--no-tell-kernel", "-q", out], input=table.encode())
    part_kib = ((size_mib << 20) - PART_OFFSET) // 1024
    run(["mkfs.fat", "-F", "16", "-i", VOLUME_ID, "-h", str(PART_START_SECTOR),
         "--offset", str(PART_START_SECTOR), out, str(part_kib)])  # fmt: skip
    img = f"{out}@@{PART_OFFSET}"
    env = {"SOURCE_DATE_EPOCH": str(epoch)}
    run(["mlabel", "-N", VOLUME_ID, "-i", img, f"::{VOLUME_LABEL}"], env=env)
    run(["syslinux", "--offset", str(PART_OFFSET), "--install", out], env=env)
    cfg = out.with_name("syslinux.cfg")
    cfg.write_text(SYSLINUX_CFG)
    sources = {"SYSLINUX.CFG": cfg, **files}
    for name, src in sources.items():
        os.utime(src, (epoch, epoch))
        # -m keeps the (fixed) mtime instead of stamping the current time
        run(["mcopy", "-m", "-o", "-i", img, src, f"::{name}"], env=env)
    cfg.unlink()
    mbr = _mbr_bin().read_bytes()[:440]
    with open(out, "r+b") as f:
        f.write(mbr)
        # boot control: slot A (IPVA.BIN) runs and is good; the second copy stays blank
        f.seek(BOOTCTL_LBAS[0] * SECTOR)
        f.write(encode(BootControl.initial()))
    return out


def make_blank_disk(out: Path, size_bytes: int) -> Path:
    """A blank (sparse, all-zero) disk: CF, flash and dump are formatted by the box."""
    out.unlink(missing_ok=True)
    with open(out, "wb") as f:
        f.truncate(size_bytes)
    return out


def _fat(disk: Path) -> str:
    return f"{disk}@@{PART_OFFSET}"


def read_boot_file(disk: Path, name: str) -> bytes:
    """A file from the boot disk's FAT partition (e.g. IPVA.BIN), read with mtools."""
    return run(["mtype", "-i", _fat(disk), f"::{name}"], capture=True).stdout


def write_boot_file(disk: Path, name: str, data: bytes) -> None:
    """Replace (or add) a file on the boot disk's FAT partition: an offline firmware update."""
    src = disk.with_name(f".{disk.name}.{name}.tmp")
    src.write_bytes(data)
    try:
        run(["mcopy", "-o", "-i", _fat(disk), src, f"::{name}"])
    finally:
        src.unlink()


def delete_boot_file(disk: Path, name: str) -> None:
    run(["mdel", "-i", _fat(disk), f"::{name}"])
