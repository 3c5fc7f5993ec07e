"""Disks by role, from their IDE/SCSI position — never from sdX names.

libata probes ports in parallel (the boot disk came up as sdd in a spike), so a disk's name
says nothing. Its sysfs path does:
    …/ata2/host1/target1:0:1/1:0:1:0   → ATA port 2 (secondary channel), device 1 (slave)
    …/0000:00:05.0/virtio2/host2/target2:0:3/2:0:3:0   → virtio-scsi controller, target 3
IDE position 0:0 boot, 0:1 CF, 1:0 flash, 1:1 dump (VMware, Hyper-V Gen1). On VirtIO SCSI
(Proxmox) the disks come in order of controller PCI address, then target (0–3); on the LSI
53C895A that Proxmox's OVA import creates, targets 0–3 of one controller.
"""

from __future__ import annotations

import enum
import os
import re
from dataclasses import dataclass
from pathlib import Path

from appliance.hal.block import BlockDevice
from appliance.hal.types import DiskRole

IDE_ROLES: dict[tuple[int | str, int], DiskRole] = {
    (0, 0): DiskRole.BOOT, (0, 1): DiskRole.CF, (1, 0): DiskRole.FLASH, (1, 1): DiskRole.DUMP,
}  # fmt: skip
ROLE_ORDER = [DiskRole.BOOT, DiskRole.CF, DiskRole.FLASH, DiskRole.DUMP]

_ATA_RE = re.compile(r"/(ata\d+)/host\d+/target\d+:\d+:(\d+)/")
_PCI_ADDR = r"[0-9a-f]{4}:[0-9a-f]{2}:[0-9a-f]{2}\.[0-9a-f]"
# …/<controller>/virtioN/hostH/targetH:C:T/H:C:T:L — Proxmox puts each disk at scsi-id 0 and
# lun N, so the LUN counts too. A SCSI HBA that is itself the PCI function (LSI 53C895A,
# Proxmox's default controller) has no virtioN step: …/<controller>/hostH/…
_SCSI_RE = re.compile(rf"/({_PCI_ADDR})(?:/[^/]+)?/host\d+/target\d+:\d+:(\d+)/\d+:\d+:\d+:(\d+)/")


@dataclass(frozen=True)
class DiskPosition:
    """Where a disk sits: IDE channel and unit, or SCSI controller, target and LUN."""

    name: str  # sdX: for opening only
    bus: str  # "ide" or "scsi"
    channel: int | str  # IDE channel (0/1) or controller PCI address
    unit: int  # IDE master/slave (0/1) or SCSI target
    lun: int = 0  # SCSI only

    def describe(self) -> str:
        if self.bus == "ide":
            return f"IDE {self.channel}:{self.unit}"
        lun = f" lun {self.lun}" if self.lun else ""
        return f"SCSI {self.channel} target {self.unit}{lun}"


def position_from_path(name: str, device_path: str, ata_port_no: int | None) -> DiskPosition | None:
    """Position of a disk from the resolved path of /sys/block/<name>/device."""
    path = device_path + "/"
    m = _ATA_RE.search(path)
    if m:
        port = ata_port_no if ata_port_no is not None else int(m[1][3:])
        return DiskPosition(name, "ide", port - 1, int(m[2]))
    m = _SCSI_RE.search(path)
    if m:
        return DiskPosition(name, "scsi", m[1], int(m[2]), int(m[3]))
    return None


def scan_positions(sys_root: Path = Path("/sys")) -> list[DiskPosition]:
    found = []
    for block in sorted((sys_root / "block").glob("sd*")):
        dev = block / "device"
        if not dev.exists():
            continue
        real = os.path.realpath(dev)
        m = _ATA_RE.search(real + "/")
        port = None
        if m:
            try:
                port = int((sys_root / "class/ata_port" / m[1] / "port_no").read_text())
            except (OSError, ValueError):
                port = None
        pos = position_from_path(block.name, real, port)
        if pos:
            found.append(pos)
    return found


def assign_roles(positions: list[DiskPosition]) -> dict[DiskRole, DiskPosition]:
    """IDE disks by channel:unit; SCSI disks in controller/target order after any IDE ones."""
    roles: dict[DiskRole, DiskPosition] = {}
    for p in positions:
        if p.bus == "ide" and (p.channel, p.unit) in IDE_ROLES:
            roles[IDE_ROLES[(p.channel, p.unit)]] = p
    if not roles:
        scsi = sorted(
            (p for p in positions if p.bus == "scsi"), key=lambda p: (p.channel, p.unit, p.lun)
        )
        for role, p in zip(ROLE_ORDER, scsi, strict=False):
            roles[role] = p
    return roles


# --- on-disk signatures: is the disk at a position really the one for its role? ----------

BOOT_LABEL = b"IPVABOOT"
FLASH_MAGIC = b"FLASHMAN"  # appliance.flash.format.SEGMENT_MAGIC at segment 0
DUMP_MAGIC = b"IPVACRSH"  # appliance.formats.dumpdisk.CRASH_RECORD_MAGIC at offset 2


class Signature(enum.StrEnum):
    BLANK = "blank"
    BOOT = "boot disk"
    FAT = "FAT file system"
    FLASH = "flash (FLASHMAN)"
    DUMP = "crash dump"
    UNKNOWN = "unknown data"


# what may sit at each role's position; anything else is reported
ALLOWED = {
    DiskRole.BOOT: {Signature.BOOT},
    DiskRole.CF: {Signature.BLANK, Signature.FAT},
    DiskRole.FLASH: {Signature.BLANK, Signature.FLASH},
    DiskRole.DUMP: {Signature.BLANK, Signature.DUMP},
}
# a disk that plainly belongs to another role: the disks are attached in the wrong order
BELONGS_TO = {Signature.BOOT: DiskRole.BOOT, Signature.FLASH: DiskRole.FLASH,
              Signature.DUMP: DiskRole.DUMP}  # fmt: skip


def _is_fat(sector: bytes) -> bool:
    return sector[510:512] == b"\x55\xaa" and (
        sector[54:59] in (b"FAT12", b"FAT16") or sector[82:87] == b"FAT32"
    )


def classify(sector0: bytes, first_partition: bytes | None) -> Signature:
    """Signature from sector 0 and (for an MBR disk) its first partition's first sector."""
    if sector0[:8] == FLASH_MAGIC:
        return Signature.FLASH
    if sector0[2:10] == DUMP_MAGIC:
        return Signature.DUMP
    if _is_fat(sector0):  # a "superfloppy" FAT on the whole disk (how CF is formatted)
        return Signature.FAT
    if first_partition is not None and _is_fat(first_partition):
        label = first_partition[43:54] if first_partition[54:57] == b"FAT" else b""
        return Signature.BOOT if label.startswith(BOOT_LABEL) else Signature.FAT
    if not any(sector0):
        return Signature.BLANK
    return Signature.UNKNOWN


def first_partition_lba(sector0: bytes) -> int | None:
    if sector0[510:512] != b"\x55\xaa":
        return None
    entry = sector0[446:462]
    lba = int.from_bytes(entry[8:12], "little")
    return lba if entry[4] != 0 and lba else None


def read_signature(dev: BlockDevice) -> Signature:
    sector0 = dev.read(0, 512)
    lba = first_partition_lba(sector0)
    part = None
    if lba is not None and (lba + 1) * 512 <= dev.size:
        part = dev.read(lba * 512, 512)
    return classify(sector0, part)


def check_signatures(signatures: dict[DiskRole, Signature]) -> tuple[str | None, list[str]]:
    """(halt message or None, trace notes). Wrong order stops the box: formatting the
    'blank' flash there could destroy another role's data."""
    notes: list[str] = []
    for role, sig in signatures.items():
        if sig in ALLOWED[role]:
            continue
        owner = BELONGS_TO.get(sig)
        if owner is not None and owner != role:
            return (
                f"disk order wrong: the {role.value} disk position (IDE {role.ide_position}) "
                f"holds the {owner.value} disk; power off and fix the disk order",
                notes,
            )
        expected = " or ".join(sorted(ALLOWED[role]))
        notes.append(f"{role.value} disk holds {sig.value}, expected {expected}")
    if signatures.get(DiskRole.CF) is Signature.BLANK:
        notes.append(
            "CF disk is blank (not formatted): mod cmd CF0 format yes, then mod cmd CF0 mount"
        )
    return None, notes
