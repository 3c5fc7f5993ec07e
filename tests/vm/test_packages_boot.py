"""Boot each package from the files inside it, on exactly the virtual hardware its importer
creates by default, to the prompt with a DHCP address:

  vmware          ipva.ova's streamOptimized VMDKs on IDE 0:0–1:1, PCnet, vmport
  vmware-vmx      the vmware/ bundle's monolithicSparse VMDKs, as ipva.vmx attaches them
  proxmox-ova     ipva-proxmox.ova's VMDKs as Proxmox's import makes them: scsi0–3 on its
                  default LSI 53C895A, e1000 (derived from hypervisors.proxmox.importer)
  proxmox         proxmox/ qcow2 as ipva-proxmox-install.sh creates them: VirtIO SCSI single,
                  virtio-net
  hyperv          the zip's VHDX on IDE, DEC 21140 (the legacy NIC Import-IPVA.ps1 adds)
  libvirt         libvirt/ qcow2 as ipva.xml says (IDE hda–hdd, pcnet)
  libvirt-virtio  libvirt/ qcow2 as ipva-virtio.xml says (virtio-scsi sda–sdd, virtio-net)
One build per session (ipva_dist), one boot per scenario.
"""

from __future__ import annotations

import re
import subprocess
import tarfile
import zipfile
from collections.abc import Callable
from pathlib import Path

import pytest
from lxml import etree

from firmware.settings import BuildSettings
from hypervisors.proxmox.importer import read_import
from hypervisors.qemu.machine import Machine
from hypervisors.qemu.profiles import Profile, get_profile
from hypervisors.registry import get_target
from images.archive import extract_plain_files

ROLES = ("boot", "cf", "flash", "dump")
DHCP_ETH0 = "ETH0 IP address 10.0.2.15/24 (dhcp)"
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


def _from_ova(ova: str) -> Callable[[Path, Path], list[Path]]:
    def disks(packages: Path, dest: Path) -> list[Path]:
        with tarfile.open(packages / ova) as tar:
            extract_plain_files(tar, dest)
        return [dest / f"hd-{r}.vmdk" for r in ROLES]

    return disks


def _from_hyperv_zip(packages: Path, dest: Path) -> list[Path]:
    with zipfile.ZipFile(packages / "ipva-hyperv.zip") as zf:
        zf.extractall(dest)
    return [dest / "Virtual Hard Disks" / f"hd-{r}.vhdx" for r in ROLES]


def _qcow2s(target: str) -> Callable[[Path, Path], list[Path]]:
    return lambda packages, _dest: [packages / target / f"hd-{r}.qcow2" for r in ROLES]


def _proxmox_import(packages: Path) -> Profile:
    """The hardware Proxmox's import gives ipva-proxmox.ova: its controller, NIC, memory."""
    with tarfile.open(packages / "ipva-proxmox.ova") as tar:
        vm = read_import(tar.extractfile("ipva.ovf").read())
    assert list(vm.disks) == ["scsi0", "scsi1", "scsi2", "scsi3"]
    assert vm.scsihw == "lsi"  # → one lsi53c895a with the disks as targets 0–3
    return get_profile("proxmox-ova", nics=vm.nics, ram_mib=int(vm.memory_mib))


def _vmx(packages: Path) -> Profile:
    """Workstation opening vmware/ipva.vmx: its IDE slots and ethernet0 model."""
    cfg = dict(
        line.split(" = ", 1) for line in (packages / "vmware/ipva.vmx").read_text().splitlines()
    )
    slots = [f"ide{b}:{u}" for b in (0, 1) for u in (0, 1)]
    assert [cfg[f"{s}.fileName"] for s in slots] == [f'"hd-{r}.vmdk"' for r in ROLES]
    assert {cfg[f"{s}.deviceType"] for s in slots} == {'"ata-hardDisk"'}
    assert cfg["ethernet0.virtualDev"] == '"vlance"'
    return get_profile("vmware", ram_mib=int(cfg["memsize"].strip('"')))


LIBVIRT_BUSES = {("ide", None): "ide", ("scsi", "virtio-scsi"): "virtio-scsi"}
LIBVIRT_NICS = {"pcnet": "pcnet", "virtio": "virtio-net-pci"}


def _libvirt(xml: str) -> Callable[[Path], Profile]:
    """The hardware the domain XML declares, mapped onto a QEMU profile."""

    def profile(packages: Path) -> Profile:
        doc = etree.parse(str(packages / "libvirt" / xml)).getroot()
        buses = {d.get("bus") for d in doc.iterfind("devices/disk/target")}
        assert len(buses) == 1
        bus = buses.pop()
        ctl = doc.find(f"devices/controller[@type='{bus}']")
        model = ctl.get("model") if ctl is not None else None
        nics = [LIBVIRT_NICS[m.get("type")] for m in doc.iterfind("devices/interface/model")]
        return get_profile(
            "libvirt",
            disk_bus=LIBVIRT_BUSES[(bus, model)],
            nics=nics,
            ram_mib=int(doc.findtext("memory")),
        )

    return profile


SCENARIOS: dict[str, tuple[Callable[[Path, Path], list[Path]], Callable[[Path], Profile]]] = {
    "vmware": (_from_ova("ipva.ova"), lambda _p: get_profile("vmware")),
    "vmware-vmx": (
        lambda p, _d: [p / "vmware" / f"hd-{r}.vmdk" for r in ROLES],
        _vmx,
    ),
    "proxmox-ova": (_from_ova("ipva-proxmox.ova"), _proxmox_import),
    "proxmox": (_qcow2s("proxmox"), lambda _p: get_profile("proxmox")),
    "hyperv": (_from_hyperv_zip, lambda _p: get_profile("hyperv")),
    "libvirt": (_qcow2s("libvirt"), _libvirt("ipva.xml")),
    "libvirt-virtio": (_qcow2s("libvirt"), _libvirt("ipva-virtio.xml")),
}
# what the guest reports for each: (its NIC, the boot disk's position as a pattern)
IDE_BOOT, SCSI_BOOT = r"IDE 0:0 ", r"SCSI [0-9a-f:.]+ target 0 "
EXPECTED = {
    "vmware": ("AMD Am79C970A PCnet-PCI II", IDE_BOOT),
    "vmware-vmx": ("AMD Am79C970A PCnet-PCI II", IDE_BOOT),
    "proxmox-ova": ("Intel 82540EM (e1000)", SCSI_BOOT),
    "proxmox": ("virtio-net", SCSI_BOOT),
    "hyperv": ("DEC 2114", IDE_BOOT),  # QEMU's tulip is the 21143, Hyper-V's the 21140
    "libvirt": ("AMD Am79C970A PCnet-PCI II", IDE_BOOT),
    "libvirt-virtio": ("virtio-net", SCSI_BOOT),
}


@pytest.mark.parametrize("scenario", list(SCENARIOS))
def test_package_boots_on_its_importers_hardware(
    packages: Path, tmp_path: Path, scenario: str
) -> None:
    make_disks, make_profile = SCENARIOS[scenario]
    disks = make_disks(packages, tmp_path / "disks")
    assert all(d.is_file() for d in disks)
    profile = make_profile(packages)
    # Machine directly: the ipva_machine factory reads `disks=` as the Profile field of that
    # name (a disk count), so it cannot take a list of files yet
    with Machine(profile, disks, tmp_path / "vm") as machine:
        machine.start()
        machine.wait_for_prompt()
        log = machine.console_log
    nic, boot = EXPECTED[scenario]
    assert DHCP_ETH0 in log
    assert nic in next(line for line in log.splitlines() if " - ETH0 " in line)
    assert re.search(f"disk boot: {boot}", log)
    for role in ROLES[1:]:
        assert f"disk {role}: " in log
