"""Disks by position (sysfs paths) and role, confirmed by on-disk signatures."""

from __future__ import annotations

from appliance.hal.block import MemoryBlockDevice
from appliance.hal.disks import (
    ROLE_ORDER,
    Signature,
    assign_roles,
    check_signatures,
    classify,
    position_from_path,
    read_signature,
)
from appliance.hal.types import DiskRole, MissingDiskError

PIIX = "/sys/devices/pci0000:00/0000:00:01.1"


def test_ide_positions_from_sysfs_paths() -> None:
    p = position_from_path("sdd", f"{PIIX}/ata1/host0/target0:0:0/0:0:0:0", 1)
    assert (p.bus, p.channel, p.unit) == ("ide", 0, 0)
    p = position_from_path("sda", f"{PIIX}/ata2/host1/target1:0:1/1:0:1:0", 2)
    assert (p.bus, p.channel, p.unit) == ("ide", 1, 1) and p.describe() == "IDE 1:1"


def test_virtio_scsi_single_positions_and_roles() -> None:
    paths = [
        ("sdb", "/sys/devices/pci0000:00/0000:00:05.0/virtio2/host2/target2:0:0/2:0:0:1"),
        ("sda", "/sys/devices/pci0000:00/0000:00:04.0/virtio1/host1/target1:0:0/1:0:0:0"),
        ("sdd", "/sys/devices/pci0000:00/0000:00:07.0/virtio4/host4/target4:0:0/4:0:0:3"),
        ("sdc", "/sys/devices/pci0000:00/0000:00:06.0/virtio3/host3/target3:0:0/3:0:0:2"),
    ]
    positions = [position_from_path(n, p, None) for n, p in paths]
    roles = assign_roles([p for p in positions if p])
    assert {r: p.name for r, p in roles.items()} == {
        DiskRole.BOOT: "sda", DiskRole.CF: "sdb", DiskRole.FLASH: "sdc", DiskRole.DUMP: "sdd"
    }  # fmt: skip


def test_three_ide_disks_leave_dump_missing_and_the_message_names_it() -> None:
    positions = [
        position_from_path(n, f"{PIIX}/ata{c + 1}/host{c}/target{c}:0:{u}/{c}:0:{u}:0", c + 1)
        for n, c, u in [("sda", 0, 0), ("sdb", 0, 1), ("sdc", 1, 0)]
    ]
    roles = assign_roles([p for p in positions if p])
    missing = [r for r in DiskRole if r not in roles]
    assert missing == [DiskRole.DUMP]
    assert str(MissingDiskError(DiskRole.DUMP)).startswith(
        "disk missing: dump disk (IDE 1:1): the IPVA needs 4 virtual disks"
    )


def _boot_disk() -> MemoryBlockDevice:
    dev = MemoryBlockDevice(4 << 20)
    mbr = bytearray(512)
    mbr[446 + 4] = 0x0E
    mbr[446 + 8 : 446 + 12] = (2048).to_bytes(4, "little")
    mbr[510:512] = b"\x55\xaa"
    dev.write(0, bytes(mbr))
    fat = bytearray(512)
    fat[43:54] = b"IPVABOOT   "
    fat[54:62] = b"FAT16   "
    fat[510:512] = b"\x55\xaa"
    dev.write(2048 * 512, bytes(fat))
    return dev


def test_signatures() -> None:
    assert read_signature(_boot_disk()) is Signature.BOOT
    assert read_signature(MemoryBlockDevice(1 << 16)) is Signature.BLANK
    assert classify(b"FLASHMAN" + bytes(504), None) is Signature.FLASH
    assert classify(b"\x00\x00IPVACRSH" + bytes(502), None) is Signature.DUMP
    cf = bytearray(512)
    cf[54:59], cf[510:512] = b"FAT16", b"\x55\xaa"
    assert classify(bytes(cf), None) is Signature.FAT
    assert classify(b"\x01" + bytes(511), None) is Signature.UNKNOWN


def test_swapped_disks_stop_and_blank_cf_is_reported() -> None:
    ok = {DiskRole.BOOT: Signature.BOOT, DiskRole.CF: Signature.BLANK,
          DiskRole.FLASH: Signature.FLASH, DiskRole.DUMP: Signature.BLANK}  # fmt: skip
    halt, notes = check_signatures(ok)
    assert halt is None and notes == ["CF disk is blank (not formatted): mod cmd CF0 format yes"]
    swapped = dict(ok, **{DiskRole.FLASH: Signature.BLANK, DiskRole.DUMP: Signature.FLASH})
    halt, _ = check_signatures(swapped)
    assert halt is not None and "dump disk position (IDE 1:1) holds the flash disk" in halt


def test_scsi_luns_on_one_controller_keep_their_order() -> None:
    """Proxmox addresses disks as scsi-id=0,lun=N: on one controller only the LUN differs."""
    ctrl = "/sys/devices/pci0000:00/0000:00:05.0/virtio1/host2/target2:0:0"
    positions = [
        position_from_path(name, f"{ctrl}/2:0:0:{lun}", None)
        for name, lun in (("sdc", 2), ("sda", 3), ("sdd", 0), ("sdb", 1))
    ]
    roles = assign_roles([p for p in positions if p])
    assert [roles[r].name for r in ROLE_ORDER] == ["sdd", "sdb", "sdc", "sda"]
    assert roles[DiskRole.DUMP].describe() == "SCSI 0000:00:05.0 target 0 lun 3"


def test_lsi_scsi_positions_and_roles() -> None:
    """Proxmox's OVA import: scsi0–3 on its default LSI 53C895A, the HBA is the PCI function."""
    lsi = "/sys/devices/pci0000:00/0000:00:05.0"
    paths = [("sdc", 2), ("sda", 0), ("sdd", 3), ("sdb", 1)]
    positions = [
        position_from_path(n, f"{lsi}/host2/target2:0:{t}/2:0:{t}:0", None) for n, t in paths
    ]
    assert all(p is not None and p.bus == "scsi" for p in positions)
    roles = assign_roles([p for p in positions if p])
    assert {r: p.name for r, p in roles.items()} == {
        DiskRole.BOOT: "sda", DiskRole.CF: "sdb", DiskRole.FLASH: "sdc", DiskRole.DUMP: "sdd"
    }  # fmt: skip
    assert roles[DiskRole.DUMP].describe() == "SCSI 0000:00:05.0 target 3"
