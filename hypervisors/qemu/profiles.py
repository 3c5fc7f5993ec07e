"""Virtual hardware profiles: each mimics what one hypervisor presents to the appliance.

A profile is data (a frozen dataclass); `make_hardware_args` turns it plus the disk files
into QEMU arguments. The launcher adds what is not hardware: accelerator, sockets, display.

  vmware   i440fx, IDE 0:0 0:1 1:0 1:1, PCnet ("vlance"), VMware backdoor port (vmport=on)
  proxmox  i440fx, "VirtIO SCSI single" (one virtio-scsi-pci per disk), virtio-net, SeaBIOS
           booting the disk with bootindex=0 (what ipva-proxmox-install.sh creates)
  proxmox-ova  i440fx, Proxmox's default SCSI controller LSI 53C895A with scsi0–3 as
           targets 0–3, e1000: what Proxmox's OVA import makes of ipva-proxmox.ova
  hyperv   i440fx, IDE, DEC 21143 (`tulip`, Hyper-V Gen1 "legacy network adapter")
  libvirt  i440fx, IDE (hda–hdd), PCnet
  libvirt-virtio  i440fx, one virtio-scsi controller (sda–sdd), virtio-net: ipva-virtio.xml
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

DiskBus = Literal["ide", "virtio-scsi-single", "virtio-scsi", "lsi"]
DISK_ROLES = ("boot", "cf", "flash", "dump")
DISK_FORMATS = ("raw", "qcow2", "vmdk", "vhdx")
# IDE position of each role, as the real box expects them: (bus, unit)
IDE_SLOTS = ((0, 0), (0, 1), (1, 0), (1, 1))
GUEST_HTTP_PORT = 80

# SMBIOS type 1 as each hypervisor reports it; presented only with identity=True, because
# the identity changes the guest's behaviour (e.g. VMware → strict perf-counter check).
VMWARE_SMBIOS = (("manufacturer", "VMware, Inc."), ("product", "VMware Virtual Platform"))
HYPERV_SMBIOS = (("manufacturer", "Microsoft Corporation"), ("product", "Virtual Machine"))
PROXMOX_SMBIOS = (("manufacturer", "QEMU"), ("product", "Standard PC (i440FX + PIIX, 1996)"))


@dataclass(frozen=True)
class Profile:
    name: str
    machine: str = "pc"  # i440fx + PIIX3, what all four targets present (Hyper-V Gen1 too)
    disk_bus: DiskBus = "ide"
    nics: tuple[str, ...] = ("pcnet",)  # QEMU device models; "model,prop=val" allowed
    disks: int = 4  # how many of boot, cf, flash, dump are attached (in that order)
    ram_mib: int = 256
    cpu: str | None = None  # e.g. "qemu64,+aes"; None = QEMU's default model
    smp: int = 1
    disk_format: str | None = None  # None: from each file's suffix (.img → raw)
    vmport: bool | None = None  # None = QEMU's default (auto: on for TCG)
    identity: bool = False  # present `vendor_smbios`
    vendor_smbios: tuple[tuple[str, str], ...] = ()
    extra_args: tuple[str, ...] = ()

    def replace(self, **overrides: object) -> Profile:
        """A copy with fields overridden; lists are accepted where tuples are stored."""
        for key in ("nics", "extra_args"):
            if key in overrides and not isinstance(overrides[key], tuple):
                overrides[key] = tuple(overrides[key])  # type: ignore[arg-type]
        profile = dataclasses.replace(self, **overrides)  # type: ignore[arg-type]
        profile.check()
        return profile

    def check(self) -> None:
        if not 1 <= self.disks <= 4:
            raise ValueError(f"profile {self.name}: disks must be 1…4, not {self.disks}")
        if self.disk_format is not None and self.disk_format not in DISK_FORMATS:
            raise ValueError(f"profile {self.name}: unknown disk format {self.disk_format!r}")
        if self.ram_mib < 16 or self.smp < 1:
            raise ValueError(f"profile {self.name}: ram_mib/smp out of range")


PROFILES: dict[str, Profile] = {
    "vmware": Profile("vmware", vmport=True, vendor_smbios=VMWARE_SMBIOS),
    "proxmox": Profile(
        "proxmox",
        disk_bus="virtio-scsi-single",
        nics=("virtio-net-pci",),
        vendor_smbios=PROXMOX_SMBIOS,
    ),
    "proxmox-ova": Profile(
        "proxmox-ova", disk_bus="lsi", nics=("e1000",), vendor_smbios=PROXMOX_SMBIOS
    ),
    "hyperv": Profile("hyperv", nics=("tulip",), vendor_smbios=HYPERV_SMBIOS),
    "libvirt": Profile("libvirt"),
    "libvirt-virtio": Profile("libvirt-virtio", disk_bus="virtio-scsi", nics=("virtio-net-pci",)),
}


def get_profile(name: str, **overrides: object) -> Profile:
    """The named profile with overrides, e.g. get_profile("vmware", nics=["rtl8139"])."""
    try:
        base = PROFILES[name]
    except KeyError:
        raise ValueError(f"unknown profile {name!r}; known: {', '.join(PROFILES)}") from None
    return base.replace(**overrides)


def disk_format_of(path: Path, profile: Profile) -> str:
    if profile.disk_format:
        return profile.disk_format
    suffix = path.suffix.lower().lstrip(".")
    return suffix if suffix in DISK_FORMATS else "raw"


def _opt(value: str) -> str:
    # QEMU's option syntax escapes a comma by doubling it ("VMware,, Inc.")
    return value.replace(",", ",,")


def make_disk_args(profile: Profile, disks: Sequence[Path], formats: Sequence[str]) -> list[str]:
    args: list[str] = []
    for index, (path, fmt) in enumerate(zip(disks, formats, strict=True)):
        drive = f"d{index}"
        args += ["-drive", f"if=none,id={drive},file={_opt(str(path))},format={fmt}"]
        boot = ",bootindex=0" if index == 0 else ""
        if profile.disk_bus == "ide":
            bus, unit = IDE_SLOTS[index]
            args += ["-device", f"ide-hd,drive={drive},bus=ide.{bus},unit={unit}{boot}"]
        elif profile.disk_bus == "virtio-scsi-single":
            # Proxmox's qemu-server for "VirtIO SCSI single": controller virtioscsiN per
            # disk N, the disk at scsi-id 0 with lun=N.
            args += ["-device", f"virtio-scsi-pci,id=virtioscsi{index}"]
            args += [
                "-device",
                f"scsi-hd,drive={drive},bus=virtioscsi{index}.0,channel=0,scsi-id=0,"
                f"lun={index}{boot}",
            ]
        else:  # one controller (virtio-scsi, or Proxmox's "lsi"), the disks as targets 0–3
            if index == 0:
                hba = "lsi53c895a" if profile.disk_bus == "lsi" else "virtio-scsi-pci"
                args += ["-device", f"{hba},id=scsi0"]
            args += [
                "-device",
                f"scsi-hd,drive={drive},bus=scsi0.0,channel=0,scsi-id={index},lun=0{boot}",
            ]
    return args


def make_nic_args(profile: Profile, http_port: int | None) -> list[str]:
    """User-mode networking per NIC (QEMU's DHCP gives 10.0.2.15); ETH0 forwards HTTP."""
    if not profile.nics:
        return ["-nic", "none"]
    args: list[str] = []
    for index, model in enumerate(profile.nics):
        netdev = f"user,id=n{index}"
        if index == 0 and http_port is not None:
            netdev += f",hostfwd=tcp:127.0.0.1:{http_port}-:{GUEST_HTTP_PORT}"
        args += ["-netdev", netdev, "-device", f"{model},netdev=n{index}"]
    return args


def make_hardware_args(
    profile: Profile, disks: Sequence[Path], http_port: int | None = None
) -> list[str]:
    """QEMU arguments for the machine, CPU, RAM, SMBIOS, disks and NICs of `profile`.

    `disks` are the files in role order (boot, cf, flash, dump); only the first
    `profile.disks` of them are attached.
    """
    profile.check()
    if len(disks) < profile.disks:
        raise ValueError(f"profile {profile.name} wants {profile.disks} disks, got {len(disks)}")
    attached = list(disks[: profile.disks])
    machine = profile.machine
    if profile.vmport is not None:
        machine += ",vmport=" + ("on" if profile.vmport else "off")
    args = ["-machine", machine, "-m", str(profile.ram_mib), "-smp", str(profile.smp)]
    if profile.cpu:
        args += ["-cpu", profile.cpu]
    if profile.identity and profile.vendor_smbios:
        fields = ",".join(f"{key}={_opt(value)}" for key, value in profile.vendor_smbios)
        args += ["-smbios", f"type=1,{fields}"]
    formats = [disk_format_of(path, profile) for path in attached]
    args += make_disk_args(profile, attached, formats)
    args += make_nic_args(profile, http_port)
    return args + list(profile.extra_args)


def dist_disks(dist: Path) -> list[Path]:
    """The four raw disks of a built `dist/`, in role order."""
    return [dist / "disks" / f"{role}.img" for role in DISK_ROLES]
