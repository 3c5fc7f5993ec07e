"""CF0 on a real FAT image (hosted backend: dosfstools formats, pyfatfs mounts), checked
with mtools as a support engineer would read the card; LOCAL logs on it; a grown disk."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from appliance.hal.block import FileBlockDevice
from appliance.hal.cf import CfError, HostedCfBackend, read_geometry
from appliance.services.cf import CompactFlash
from appliance.services.logtargets import LocalTarget, LogRecord


def mtools(*argv: str) -> str:
    return subprocess.run(argv, check=True, capture_output=True, text=True).stdout


@pytest.fixture
def card(tmp_path: Path):  # type: ignore[no-untyped-def]
    image = tmp_path / "cf.img"
    with image.open("wb") as f:
        f.truncate(32 << 20)
    dev = FileBlockDevice(image)
    cf = CompactFlash(dev, HostedCfBackend(image))
    yield cf, image
    cf.unmount()
    dev.close()


def test_blank_card_info_mount_refused_then_format_and_mount(card) -> None:  # type: ignore[no-untyped-def]
    cf, image = card
    assert "no FAT file system (format it with mod cmd CF0 format yes)" in cf.info()
    with pytest.raises(CfError, match="format it with mod cmd CF0 format yes"):
        cf.mount()
    assert cf.format().startswith("CF0 formatted: FAT16, 32.0MB of 32.0MB")
    assert "IPVACF" in mtools("minfo", "-i", str(image), "::")
    assert cf.mount() == "CF0 mounted (FAT16, 32.0MB)"
    info = cf.info()
    assert "FAT16 32.0MB" in info and ", mounted" in info and "free" in info
    assert cf.unmount() == "CF0 unmounted" and cf.unmount() == "CF0 not mounted"


def test_local_logs_on_the_card_read_back_with_mtools(card) -> None:  # type: ignore[no-untyped-def]
    cf, image = card
    cf.format()
    cf.mount()
    target = LocalTarget(lambda: cf.volume, "LOG0", max_bytes=200)
    for i in range(12):
        target.send(LogRecord(1_700_000_000 + i, "lab7", f"config write by admin #{i:02d}"))
    cf.unmount()  # everything is on the image now
    listing = mtools("mdir", "-b", "-i", str(image), "::/log")
    assert sorted(x.rsplit("/", 1)[1] for x in listing.split()) == [
        "LOG0.0", "LOG0.1", "LOG0.2", "LOG0.3"
    ]  # fmt: skip
    newest = mtools("mtype", "-i", str(image), "::/log/LOG0.0")
    assert newest.rstrip().endswith("lab7 IPVA: config write by admin #11")
    oldest = mtools("mtype", "-i", str(image), "::/log/LOG0.3")
    assert [x[-3:] for x in oldest.splitlines()] == ["#00", "#01", "#02"]  # 3 lines a file


def test_format_while_mounted_remounts_and_empties(card) -> None:  # type: ignore[no-untyped-def]
    cf, image = card
    cf.format()
    cf.mount()
    assert cf.volume is not None
    cf.volume.makedirs("log")
    cf.volume.append("log/x", b"data")
    assert cf.format().endswith(", mounted")
    assert cf.volume is not None and cf.volume.listdir("") == []


def test_grown_disk_is_reported_and_format_uses_all_of_it(tmp_path: Path) -> None:
    image = tmp_path / "cf.img"
    with image.open("wb") as f:
        f.truncate(16 << 20)
    subprocess.run(["mkfs.fat", "-n", "IPVACF", str(image)], check=True, capture_output=True)
    with image.open("r+b") as f:
        f.truncate(48 << 20)  # grown in the hypervisor
    with FileBlockDevice(image) as dev:
        cf = CompactFlash(dev, HostedCfBackend(image))
        info = cf.info()
        assert "disk 48.0MB, FAT16 16.0MB" in info
        assert "32.0MB larger than its file system" in info and "format yes uses all" in info
        cf.format()
        geo = read_geometry(dev)
        assert geo is not None and geo.bytes == 48 << 20
        assert "larger than" not in cf.info()
