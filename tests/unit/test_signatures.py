"""The HAL recognises disks by magics that other modules write: they must stay the same."""

from __future__ import annotations

from pathlib import Path

from appliance.flash import format as flash_format
from appliance.formats import crashdump
from appliance.hal import disks
from appliance.hal.block import FileBlockDevice
from images.bootdisk import VOLUME_LABEL, make_boot_disk


def test_magics_match_their_formats() -> None:
    assert disks.FLASH_MAGIC == flash_format.SEGMENT_MAGIC
    assert disks.DUMP_MAGIC == crashdump.CRASH_RECORD_MAGIC
    assert disks.BOOT_LABEL.decode() == VOLUME_LABEL


def test_built_boot_disk_is_recognised(tmp_path: Path) -> None:
    payload = tmp_path / "IPVA.BIN"
    payload.write_bytes(b"x" * 1000)
    boot = make_boot_disk(tmp_path / "boot.img", {"IPVA.BIN": payload}, 1700000000, 32)
    with FileBlockDevice(boot, readonly=True) as dev:
        assert disks.read_signature(dev) == disks.Signature.BOOT
