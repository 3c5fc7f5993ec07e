"""Boot each package from the files inside it, under the virtual hardware of its target:
VMware (IDE + pcnet + vmport) from the OVA's streamOptimized VMDKs; Proxmox
(virtio-scsi-single + virtio-net) from its qcow2; Hyper-V (IDE + tulip) from the zip's VHDX;
libvirt (IDE + pcnet) from its qcow2. Each must reach the shell prompt."""

from __future__ import annotations

import subprocess
import tarfile
import zipfile
from collections.abc import Callable
from pathlib import Path

import pytest

from firmware.settings import BuildSettings
from hypervisors.qemu.machine import Machine
from hypervisors.qemu.profiles import get_profile
from hypervisors.registry import get_target
from images.archive import extract_plain_files

ROLES = ("boot", "cf", "flash", "dump")
pytestmark = pytest.mark.vm


@pytest.fixture(scope="module")
def packages(ipva_dist: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """All four packages made from the built raw disks, in a scratch dist."""
    out = tmp_path_factory.mktemp("packages")
    # private sparse copies: another session's VM may hold qemu's lock on dist/disks
    disks = {}
    for r in ROLES:
        disks[r] = out / f"{r}.img"
        subprocess.run(
            ["cp", "--sparse=always", ipva_dist / "disks" / f"{r}.img", disks[r]], check=True
        )
    settings = BuildSettings(out_dir=out)
    for target in ("vmware", "proxmox", "hyperv", "libvirt"):
        get_target(target).make(settings, disks)
    return out


def _from_ova(packages: Path, dest: Path) -> list[Path]:
    with tarfile.open(packages / "ipva.ova") as tar:
        extract_plain_files(tar, dest)
    return [dest / f"hd-{r}.vmdk" for r in ROLES]


def _from_hyperv_zip(packages: Path, dest: Path) -> list[Path]:
    with zipfile.ZipFile(packages / "ipva-hyperv.zip") as zf:
        zf.extractall(dest)
    return [dest / f"hd-{r}.vhdx" for r in ROLES]


DISKS: dict[str, Callable[[Path, Path], list[Path]]] = {
    "vmware": _from_ova,
    "proxmox": lambda p, _d: [p / "proxmox" / f"hd-{r}.qcow2" for r in ROLES],
    "hyperv": _from_hyperv_zip,
    "libvirt": lambda p, _d: [p / "libvirt" / f"hd-{r}.qcow2" for r in ROLES],
}


@pytest.mark.parametrize("profile", list(DISKS))
def test_package_boots(packages: Path, tmp_path: Path, profile: str) -> None:
    disks = DISKS[profile](packages, tmp_path / "disks")
    assert all(d.is_file() for d in disks)
    # Machine directly: the ipva_machine factory reads `disks=` as the Profile field of that
    # name (a disk count), so it cannot take a list of files yet
    with Machine(get_profile(profile), disks, tmp_path / "vm") as machine:
        machine.start()
        machine.wait_for_prompt()
