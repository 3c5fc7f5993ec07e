"""QEMU argv per hypervisor profile: the virtual hardware each target presents."""

from __future__ import annotations

from pathlib import Path

import pytest

from hypervisors.qemu.launcher import QemuLauncher
from hypervisors.qemu.profiles import dist_disks, get_profile, make_hardware_args

DISKS = dist_disks(Path("/d"))


def devices(argv: list[str]) -> list[str]:
    return [argv[i + 1] for i, arg in enumerate(argv) if arg == "-device"]


def option(argv: list[str], name: str) -> list[str]:
    return [argv[i + 1] for i, arg in enumerate(argv) if arg == name]


def test_vmware_is_i440fx_ide_pcnet_vmport() -> None:
    argv = make_hardware_args(get_profile("vmware"), DISKS, http_port=8080)
    assert option(argv, "-machine") == ["pc,vmport=on"]
    assert option(argv, "-m") == ["256"]
    assert devices(argv) == [
        "ide-hd,drive=d0,bus=ide.0,unit=0,bootindex=0",
        "ide-hd,drive=d1,bus=ide.0,unit=1",
        "ide-hd,drive=d2,bus=ide.1,unit=0",
        "ide-hd,drive=d3,bus=ide.1,unit=1",
        "pcnet,netdev=n0",
    ]
    assert option(argv, "-drive")[0] == "if=none,id=d0,file=/d/disks/boot.img,format=raw"
    assert option(argv, "-netdev") == ["user,id=n0,hostfwd=tcp:127.0.0.1:8080-:80"]
    assert "-smbios" not in argv


def test_vmware_identity_escapes_the_comma() -> None:
    argv = make_hardware_args(get_profile("vmware", identity=True), DISKS)
    assert option(argv, "-smbios") == [
        "type=1,manufacturer=VMware,, Inc.,product=VMware Virtual Platform"
    ]


def test_proxmox_is_virtio_scsi_single_and_virtio_net() -> None:
    argv = make_hardware_args(get_profile("proxmox"), DISKS)
    devs = devices(argv)
    assert [d for d in devs if d.startswith("virtio-scsi-pci")] == [
        f"virtio-scsi-pci,id=virtioscsi{i}" for i in range(4)
    ]
    assert "scsi-hd,drive=d0,bus=virtioscsi0.0,channel=0,scsi-id=0,lun=0,bootindex=0" in devs
    assert "scsi-hd,drive=d3,bus=virtioscsi3.0,channel=0,scsi-id=0,lun=3" in devs
    assert devs[-1] == "virtio-net-pci,netdev=n0"
    assert not any(d.startswith("ide-hd") for d in devs)


def test_one_virtio_scsi_controller_gives_targets_0_to_3() -> None:
    argv = make_hardware_args(get_profile("proxmox", disk_bus="virtio-scsi"), DISKS)
    devs = devices(argv)
    assert devs.count("virtio-scsi-pci,id=scsi0") == 1
    assert "scsi-hd,drive=d2,bus=scsi0.0,channel=0,scsi-id=2,lun=0" in devs


def test_proxmox_ova_is_what_the_importer_makes_lsi_and_e1000() -> None:
    """Proxmox's OVA import: scsi0–3 on the default controller (LSI 53C895A), e1000."""
    devs = devices(make_hardware_args(get_profile("proxmox-ova"), DISKS))
    assert devs == [
        "lsi53c895a,id=scsi0",
        "scsi-hd,drive=d0,bus=scsi0.0,channel=0,scsi-id=0,lun=0,bootindex=0",
        "scsi-hd,drive=d1,bus=scsi0.0,channel=0,scsi-id=1,lun=0",
        "scsi-hd,drive=d2,bus=scsi0.0,channel=0,scsi-id=2,lun=0",
        "scsi-hd,drive=d3,bus=scsi0.0,channel=0,scsi-id=3,lun=0",
        "e1000,netdev=n0",
    ]


def test_libvirt_virtio_is_one_virtio_scsi_controller_and_virtio_net() -> None:
    devs = devices(make_hardware_args(get_profile("libvirt-virtio"), DISKS))
    assert devs[0] == "virtio-scsi-pci,id=scsi0" and devs[-1] == "virtio-net-pci,netdev=n0"
    assert not any(d.startswith(("ide-hd", "pcnet")) for d in devs)


def test_hyperv_uses_tulip_and_libvirt_pcnet() -> None:
    assert devices(make_hardware_args(get_profile("hyperv"), DISKS))[-1] == "tulip,netdev=n0"
    assert devices(make_hardware_args(get_profile("libvirt"), DISKS))[-1] == "pcnet,netdev=n0"


@pytest.mark.parametrize(
    ("nics", "expected"),
    [
        ([], []),
        (["rtl8139"], ["rtl8139,netdev=n0"]),
        (["pcnet", "pcnet"], ["pcnet,netdev=n0", "pcnet,netdev=n1"]),
    ],
)
def test_nic_overrides(nics: list[str], expected: list[str]) -> None:
    argv = make_hardware_args(get_profile("vmware", nics=nics), DISKS, http_port=1)
    assert [d for d in devices(argv) if not d.startswith("ide-hd")] == expected
    if not nics:
        assert option(argv, "-nic") == ["none"]  # else QEMU adds its default e1000
    else:
        # only ETH0 forwards the HTTP port
        assert sum("hostfwd" in n for n in option(argv, "-netdev")) == 1


def test_disk_count_ram_cpu_smp_format_overrides() -> None:
    profile = get_profile(
        "libvirt", disks=3, ram_mib=4096, cpu="qemu64,-aes", smp=2, disk_format="qcow2"
    )
    argv = make_hardware_args(profile, DISKS)
    assert len(option(argv, "-drive")) == 3
    assert all(d.endswith("format=qcow2") for d in option(argv, "-drive"))
    assert (option(argv, "-m"), option(argv, "-smp"), option(argv, "-cpu")) == (
        ["4096"],
        ["2"],
        ["qemu64,-aes"],
    )


def test_format_follows_the_suffix_by_default() -> None:
    disks = [Path(f"/p/{n}") for n in ("a.vmdk", "b.vhdx", "c.qcow2", "d.img")]
    drives = option(make_hardware_args(get_profile("vmware"), disks), "-drive")
    assert [d.rsplit("format=", 1)[1] for d in drives] == ["vmdk", "vhdx", "qcow2", "raw"]


def test_bad_overrides_are_refused() -> None:
    with pytest.raises(ValueError, match="unknown profile"):
        get_profile("virtualbox")
    with pytest.raises(ValueError, match="disks must be"):
        get_profile("vmware", disks=5)
    with pytest.raises(ValueError, match="disk format"):
        get_profile("vmware", disk_format="vdi")
    with pytest.raises(TypeError):
        get_profile("vmware", colour="blue")


def test_launcher_argv_is_headless_paused_with_sockets(tmp_path: Path) -> None:
    launcher = QemuLauncher(get_profile("vmware"), DISKS, tmp_path, http_port=8080)
    argv = launcher.make_argv("tcg", 4321, tmp_path / "qmp.sock")
    assert option(argv, "-accel") == ["tcg"]
    assert option(argv, "-display") == ["none"] and option(argv, "-vga") == ["std"]
    assert "-S" in argv and "-nodefaults" in argv and "-no-reboot" not in argv
    assert option(argv, "-chardev") == [
        "socket,id=con0,host=127.0.0.1,port=4321,server=on,wait=off"
    ]
    assert option(argv, "-serial") == ["chardev:con0"]
    assert option(argv, "-qmp") == [f"unix:{tmp_path}/qmp.sock,server=on,wait=off"]
