"""Every target's package from small synthetic disks: structure, manifest, formats, the
offline validators, `ipva inspect`, and byte-identical rebuilds."""

from __future__ import annotations

import hashlib
import random
import re
import subprocess
import tarfile
import zipfile
from pathlib import Path

import pytest
from click.testing import CliRunner
from lxml import etree

from firmware.settings import BuildSettings
from hypervisors.registry import get_target
from images import convert, vmdk
from images.archive import extract_plain_files
from tools.inspect_cmd import MANIFEST_RE, inspect

ROLES = ("boot", "cf", "flash", "dump")
TARGETS = ("vmware", "proxmox", "hyperv", "libvirt")
SDE = "1700000000"


def _make_disks(root: Path) -> dict[str, Path]:
    rnd = random.Random(66)
    layout = {
        "boot": (6 << 20, [(0, rnd.randbytes(1 << 20)), (3 << 20, b"IPVA BIN" * 8192)]),
        "cf": (4 << 20, [(0, b"CF" * 2048)]),
        "flash": (100_000_000, [(0, b"\xff" * 65536), (90 << 20, rnd.randbytes(4096))]),
        "dump": (2 << 20, []),
    }
    disks = {}
    for role, (size, chunks) in layout.items():
        p = root / f"{role}.raw"
        with p.open("wb") as fh:
            fh.truncate(size)
            for off, data in chunks:
                fh.seek(off)
                fh.write(data)
        disks[role] = p
    return disks


def _build(out: Path, disks: dict[str, Path], **kw: object) -> dict[str, list[Path]]:
    settings = BuildSettings(out_dir=out, **kw)
    return {t: get_target(t).make(settings, disks) for t in TARGETS}


@pytest.fixture(scope="module")
def disks(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    return _make_disks(tmp_path_factory.mktemp("raw"))


@pytest.fixture(scope="module")
def dist(tmp_path_factory: pytest.TempPathFactory, disks: dict[str, Path]) -> Path:
    mp = pytest.MonkeyPatch()
    mp.setenv("SOURCE_DATE_EPOCH", SDE)
    out = tmp_path_factory.mktemp("dist")
    try:
        _build(out, disks)
    finally:
        mp.undo()
    return out


def test_artifacts(dist: Path) -> None:
    names = sorted(str(p.relative_to(dist)) for p in dist.rglob("*") if p.is_file())
    assert names == sorted(
        ["ipva.ova", "ipva-sha1.ova", "ipva-ovf.zip", "ipva-proxmox.ova", "ipva-hyperv.zip"]
        + ["vmware/ipva.vmx"]
        + [f"vmware/hd-{r}.vmdk" for r in ROLES]
        + ["proxmox/ipva-proxmox-install.sh"]
        + [f"proxmox/hd-{r}.qcow2" for r in ROLES]
        + ["libvirt/ipva.xml", "libvirt/ipva-virtio.xml", "libvirt/ipva-libvirt-install.sh"]
        + [f"libvirt/hd-{r}.qcow2" for r in ROLES]
    )
    assert not list(dist.glob(".*")), "scratch directories left behind"


@pytest.mark.parametrize("ova", ["ipva.ova", "ipva-proxmox.ova", "ipva-sha1.ova"])
def test_ova_tar_layout_and_manifest(dist: Path, ova: str) -> None:
    path = dist / ova
    assert path.read_bytes()[257:265] == b"ustar\x0000"  # POSIX USTAR, not GNU/PAX
    with tarfile.open(path) as tar:
        members = tar.getmembers()
        names = [m.name for m in members]
        assert names == ["ipva.ovf", "ipva.mf"] + [f"hd-{r}.vmdk" for r in ROLES]
        assert {(m.uid, m.gid, m.mtime, m.mode) for m in members} == {(0, 0, int(SDE), 0o644)}
        mf = tar.extractfile("ipva.mf").read().decode()
        contents = {n: tar.extractfile(n).read() for n in names}
    lines = mf.splitlines()
    assert len(lines) == 5 and mf.endswith("\n")
    algo = "SHA1" if "sha1" in ova else "SHA256"
    for line, name in zip(lines, ["ipva.ovf"] + names[2:], strict=True):
        m = MANIFEST_RE.match(line)
        assert m and m[1] == algo and m[2] == name, line
        assert m[3] == hashlib.new(algo.lower(), contents[name]).hexdigest()
    assert "SHA256 (" not in mf and "SHA2-256" not in mf and ") =" not in mf


def test_ova_disks_match_raw(dist: Path, disks: dict[str, Path], tmp_path: Path) -> None:
    from dissect.hypervisor.disk.vmdk import VMDK

    with tarfile.open(dist / "ipva.ova") as tar:
        extract_plain_files(tar, tmp_path)
    for role in ROLES:
        disk = tmp_path / f"hd-{role}.vmdk"
        convert.run_check(disk, "vmdk")
        convert.run_compare(disks[role], disk, "vmdk")
        assert vmdk.read_descriptor(disk)["createType"] == "streamOptimized"
        raw = disks[role].read_bytes()
        with disk.open("rb") as fh:
            v = VMDK(fh)
            assert v.size == convert.whole_mib(len(raw))
            assert v.read(len(raw)) == raw


def test_sha1_ova_differs_only_in_the_manifest(dist: Path) -> None:
    """vCenter 5.x takes SHA-1 manifests only: the same OVF and disks, another .mf."""
    with tarfile.open(dist / "ipva.ova") as a, tarfile.open(dist / "ipva-sha1.ova") as b:
        assert a.getnames() == b.getnames()
        for name in a.getnames():
            same = a.extractfile(name).read() == b.extractfile(name).read()
            assert same == (name != "ipva.mf"), name
        mf = b.extractfile("ipva.mf").read().decode()
    assert all(re.fullmatch(r"SHA1\([^)]+\)= [0-9a-f]{40}", line) for line in mf.splitlines())


def test_ova_rejects_an_unknown_digest(tmp_path: Path, disks: dict[str, Path]) -> None:
    from hypervisors.vmware.ova import make_ovas

    roles = [(r, disks[r]) for r in ROLES]
    with pytest.raises(ValueError, match="md5"):
        make_ovas(BuildSettings(out_dir=tmp_path), roles, {"md5": tmp_path / "x"}, variant="vmware")


def test_ovf_zip_holds_the_ova(dist: Path) -> None:
    with zipfile.ZipFile(dist / "ipva-ovf.zip") as zf:
        assert zf.namelist() == ["ipva.ova"]
        assert zf.read("ipva.ova") == (dist / "ipva.ova").read_bytes()


def test_vmx_bundle(dist: Path, disks: dict[str, Path]) -> None:
    text = (dist / "vmware/ipva.vmx").read_text()
    cfg = dict(line.split(" = ", 1) for line in text.splitlines())
    assert cfg["monitor_control.pseudo_perfctr"] == '"TRUE"'
    # voice quality (the wiki): all memory reserved and locked, high latency sensitivity
    assert cfg["sched.mem.min"] == '"256"' and cfg["sched.mem.pin"] == '"TRUE"'
    assert cfg["sched.cpu.latencySensitivity"] == '"high"'
    assert cfg["ethernet0.virtualDev"] == '"vlance"'
    assert cfg["serial0.present"] == '"TRUE"'
    assert cfg["memsize"] == '"256"' and cfg["numvcpus"] == '"1"'
    slots = {"boot": "ide0:0", "cf": "ide0:1", "flash": "ide1:0", "dump": "ide1:1"}
    assert cfg["virtualHW.version"] == '"7"'  # vSphere 4.0 … 8, Workstation 6.5+
    for role, slot in slots.items():
        assert cfg[f"{slot}.fileName"] == f'"hd-{role}.vmdk"'
        assert cfg[f"{slot}.deviceType"] == '"ata-hardDisk"'
        disk = dist / f"vmware/hd-{role}.vmdk"
        convert.run_check(disk, "vmdk")
        convert.run_compare(disks[role], disk, "vmdk")
        desc = vmdk.read_descriptor(disk)
        assert desc["ddb.adapterType"] == "ide"


def test_vmx_static_mac(tmp_path: Path, disks: dict[str, Path]) -> None:
    from hypervisors.vmware.vmx import render_vmx, vmx_settings

    text = render_vmx(vmx_settings(BuildSettings(mac="00:90:33:12:34:56")))
    assert 'ethernet0.address = "00:90:33:12:34:56"' in text
    assert 'ethernet0.addressType = "static"' in text


def test_proxmox_script(dist: Path) -> None:
    script = dist / "proxmox/ipva-proxmox-install.sh"
    assert script.stat().st_mode & 0o111
    subprocess.run(["bash", "-n", str(script)], check=True)
    text = script.read_text()
    for needle in (
        "--scsihw virtio-scsi-single",
        "--bios seabios",
        "--machine pc",
        "--sockets 1 --cores 1",
        "--balloon 0",  # voice quality: all memory the VM's, the CPU first under load
        "--cpuunits 1000",
        "--serial0 socket",
        "import-from=",
        "virtio,bridge=",
    ):
        assert needle in text
    assert not re.search(r"@[A-Z_]+@", text)  # every placeholder filled in
    r = subprocess.run(["bash", str(script)], capture_output=True, text=True)
    assert r.returncode == 2 and "usage:" in r.stderr
    r = subprocess.run(["bash", str(script), "abc", "local"], capture_output=True, text=True)
    assert r.returncode == 1 and "VMID" in r.stderr


@pytest.mark.parametrize("target", ["proxmox", "libvirt"])
def test_qcow2_disks(dist: Path, disks: dict[str, Path], target: str) -> None:
    for role in ROLES:
        disk = dist / target / f"hd-{role}.qcow2"
        convert.run_check(disk, "qcow2")
        convert.run_compare(disks[role], disk, "qcow2")


def test_hyperv_zip(dist: Path, disks: dict[str, Path], tmp_path: Path) -> None:
    with zipfile.ZipFile(dist / "ipva-hyperv.zip") as zf:
        names = zf.namelist()
        zf.extractall(tmp_path)
    config = [n for n in names if n.startswith("Virtual Machines/")]
    assert len(config) == 1 and re.fullmatch(r"Virtual Machines/[0-9A-F-]{36}\.xml", config[0])
    assert names == config + [f"Virtual Hard Disks/hd-{r}.vhdx" for r in ROLES] + [
        "Import-IPVA.ps1",
        "README.txt",
    ]
    readme = (tmp_path / "README.txt").read_bytes()
    assert b"\r\n" in readme and b"\n\n" not in readme.replace(b"\r\n", b"")
    for needle in (
        b"Set-ExecutionPolicy -Scope Process -ExecutionPolicy RemoteSigned",
        b"Unblock-File .\\Import-IPVA.ps1",
        b"256 MiB static",
        b"Copy the virtual machine",
        b"Add-VMNetworkAdapter -VMName ipva -IsLegacy $true",
    ):
        assert needle in readme
    for role in ROLES:
        disk = tmp_path / "Virtual Hard Disks" / f"hd-{role}.vhdx"
        convert.run_check(disk, "vhdx")
        convert.run_compare(disks[role], disk, "vhdx")
        info = convert.image_info(disk)
        assert info["virtual-size"] % (1 << 20) == 0
        assert info["cluster-size"] == 1 << 20
    ps1 = (tmp_path / "Import-IPVA.ps1").read_bytes()
    assert ps1.startswith(b"\xef\xbb\xbf") and b"\r\n" in ps1
    text = ps1.decode("utf-8-sig")
    for needle in (
        "-Generation 1",
        "-StaticMemory",
        "-ProcessorCount 1",
        "IsLegacy = $true",
        "Set-VMComPort -VM $vm -Number 1",
        "Remove-VMDvdDrive",
        "[Parameter(Mandatory = $true)][string]$SwitchName",
    ):
        assert needle in text
    assert "@NAME@" not in text and "@RAM_MIB@" not in text


def test_hyperv_vm_configuration(dist: Path) -> None:
    """Virtual Machines/<GUID>.xml: 2012 R2 export format 5.0, Gen1, the seed's hardware."""
    with zipfile.ZipFile(dist / "ipva-hyperv.zip") as zf:
        names = set(zf.namelist())
        (config,) = [n for n in names if n.startswith("Virtual Machines/")]
        raw = zf.read(config)
    assert raw.startswith(b"\xff\xfe<\x00?\x00x\x00m\x00l\x00")  # UTF-16LE with BOM
    assert "\r\n" in raw.decode("utf-16") and "\n" not in raw.decode("utf-16").replace("\r\n", "")
    r = subprocess.run(["xmllint", "--noout", "-"], input=raw, capture_output=True)
    assert r.returncode == 0, r.stderr
    doc = etree.fromstring(raw)
    vmid = config.removeprefix("Virtual Machines/").removesuffix(".xml")
    assert doc.findtext("properties/version") == "1280"  # configuration version 5.0
    assert doc.findtext("properties/subtype") == "0"  # Generation 1
    assert (
        doc.findtext("properties/global_id") == vmid == doc.findtext("settings/global/logical_id")
    )
    assert doc.findtext("properties/name") == "ipva"
    assert doc.findtext("settings/memory/bank/size") == "256"
    assert doc.findtext("settings/memory/bank/dynamic_memory_enabled") == "False"
    assert doc.findtext("settings/processors/count") == "1"
    for el in doc.iter():
        if len(el) == 0:  # every value says its type, as Hyper-V writes them
            assert el.get("type") in ("string", "integer", "bool", "bytes"), el.tag
    ide = doc.find("_83f8638b-8dca-4152-9eda-2ca8b33039b4_")
    slots = {}
    for ctl in ide.iterfind("*[drive0]"):
        for drive in ctl:
            if drive.findtext("type") == "VHD":
                slots[f"{ctl.tag[-1]}/{drive.tag[-1]}"] = drive.findtext("pathname")
    assert {k: v.rsplit("\\", 1)[-1] for k, v in slots.items()} == {
        "0/0": "hd-boot.vhdx",
        "0/1": "hd-cf.vhdx",
        "1/0": "hd-flash.vhdx",
        "1/1": "hd-dump.vhdx",
    }
    for path in slots.values():  # each resolves to a disk in the zip's Virtual Hard Disks
        assert path.split("\\")[-2:][0] == "Virtual Hard Disks"
        assert "Virtual Hard Disks/" + path.rsplit("\\", 1)[-1] in names
    com1 = doc.findtext("_8e3a359f-559a-4b6a-98a9-1690a6100ed7_/port0/connection")
    assert com1 == "\\\\.\\pipe\\ipva-com1"
    boot = doc.find("_ac6b8dc1-3257-4a70-b1b2-a9c9215659ad_/boot")
    assert boot.findtext("device0") == "HardDrive"
    # no NIC section: how a legacy adapter is written in this format is unknown, a synthetic one
    # the guest cannot drive (hypervisors.hyperv.vmconfig); the README says to add it
    assert not [el for el in doc.iter("MacAddress", "SwitchName", "ChannelInstanceGuid")]


def test_hyperv_vm_id_follows_build_settings() -> None:
    from hypervisors.hyperv.vmconfig import vm_id

    a = BuildSettings()
    b = BuildSettings(mac="00:90:33:00:00:01")
    assert vm_id(a) == vm_id(BuildSettings()) != vm_id(b)


@pytest.mark.parametrize("xml", ["ipva.xml", "ipva-virtio.xml"])
def test_libvirt_xml(dist: Path, xml: str) -> None:
    path = dist / "libvirt" / xml
    r = subprocess.run(["virt-xml-validate", str(path), "domain"], capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr
    doc = etree.parse(str(path)).getroot()
    assert doc.find("os/type").get("machine") == "pc"
    assert doc.find("devices/serial").get("type") == "pty"
    disks = [
        (
            d.find("target").get("dev"),
            d.find("target").get("bus"),
            Path(d.find("source").get("file")),
        )
        for d in doc.iterfind("devices/disk")
    ]
    assert [src.name for _, _, src in disks] == [f"hd-{r}.qcow2" for r in ROLES]
    assert {src.parent for _, _, src in disks} == {Path("/var/lib/libvirt/images/ipva")}
    model = doc.find("devices/interface/model").get("type")
    if xml == "ipva.xml":
        assert [(dev, bus) for dev, bus, _ in disks] == [(f"hd{c}", "ide") for c in "abcd"]
        assert model == "pcnet"
    else:  # for QEMUs without PCnet: virtio-scsi targets 0-3 and virtio-net
        assert [(dev, bus) for dev, bus, _ in disks] == [(f"sd{c}", "scsi") for c in "abcd"]
        targets = [a.get("target") for a in doc.iterfind("devices/disk/address")]
        assert targets == ["0", "1", "2", "3"]
        assert doc.find("devices/controller").get("model") == "virtio-scsi"
        assert model == "virtio"


FAKE_VIRSH = """#!/bin/bash
# records each call; knows the network "default" and no domains
echo "$*" >> "$VIRSH_LOG"
case "$*" in
  *" uri") echo qemu:///system ;;
  *" dominfo "*) exit 1 ;;
  *" net-info default") exit 0 ;;
  *" net-info "*) exit 1 ;;
  *" define "*) cp "${@: -1}" "$VIRSH_DEFINED" ;;
esac
"""


@pytest.fixture
def fake_virsh(tmp_path: Path) -> dict[str, str]:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    virsh = bin_dir / "virsh"
    virsh.write_text(FAKE_VIRSH)
    virsh.chmod(0o755)
    return {
        "PATH": f"{bin_dir}:/usr/bin:/bin",
        "VIRSH_LOG": str(tmp_path / "virsh.log"),
        "VIRSH_DEFINED": str(tmp_path / "defined.xml"),
    }


def test_libvirt_install_script_places_disks_and_defines(
    dist: Path, disks: dict[str, Path], tmp_path: Path, fake_virsh: dict[str, str]
) -> None:
    script = dist / "libvirt/ipva-libvirt-install.sh"
    assert script.stat().st_mode & 0o111
    subprocess.run(["bash", "-n", str(script)], check=True)
    assert not re.search(r"@[A-Z_]+@", script.read_text())
    dest = tmp_path / "images" / "pbx 1"
    r = subprocess.run(
        [str(script), "--virtio", "--name", "pbx1", "--dir", str(dest)],
        capture_output=True,
        text=True,
        env=fake_virsh,
    )
    assert r.returncode == 0, r.stderr
    for role in ROLES:
        convert.run_compare(disks[role], dest / f"hd-{role}.qcow2", "qcow2")
    defined = Path(fake_virsh["VIRSH_DEFINED"])
    v = subprocess.run(["virt-xml-validate", str(defined), "domain"], capture_output=True)
    assert v.returncode == 0, v.stdout
    doc = etree.parse(str(defined)).getroot()
    assert doc.findtext("name") == "pbx1"
    assert [d.get("file") for d in doc.iterfind("devices/disk/source")] == [
        str(dest / f"hd-{r}.qcow2") for r in ROLES
    ]
    assert doc.find("devices/interface/model").get("type") == "virtio"
    assert "virsh --connect qemu:///system start pbx1" in r.stdout


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--network", "lan"], "network 'lan' not found"),
        (["--dir", "relative/dir"], "absolute path"),
        (["--name", "bad name"], "--name"),
        (["--bogus"], "unknown argument"),
    ],
)
def test_libvirt_install_script_refuses(
    dist: Path, tmp_path: Path, fake_virsh: dict[str, str], args: list[str], message: str
) -> None:
    script = dist / "libvirt/ipva-libvirt-install.sh"
    dest = tmp_path / "d"
    argv = [str(script), *args] if "--dir" in args else [str(script), "--dir", str(dest), *args]
    r = subprocess.run(argv, capture_output=True, text=True, env=fake_virsh)
    assert r.returncode != 0 and message in r.stderr, r.stderr
    assert not dest.exists()  # nothing copied before every check passed


@pytest.mark.parametrize(
    "package",
    [
        "ipva.ova",
        "ipva-sha1.ova",
        "ipva-ovf.zip",
        "ipva-proxmox.ova",
        "ipva-hyperv.zip",
        "vmware",
        "proxmox",
        "libvirt",
    ],
)
def test_inspect_accepts(dist: Path, package: str) -> None:
    result = CliRunner().invoke(inspect, [str(dist / package)])
    assert result.exit_code == 0, result.output
    assert re.search(r": OK(, \d warning\(s\))?$", result.output.rstrip())


def _inspect(path: Path) -> str:
    result = CliRunner().invoke(inspect, [str(path)])
    assert result.exit_code == 0, result.output
    return result.output


def test_inspect_shows_what_proxmox_makes_of_each_ova(dist: Path) -> None:
    out = _inspect(dist / "ipva-proxmox.ova")
    for n, role in enumerate(ROLES):
        assert f"scsi{n} <- hd-{role}.vmdk" in out
    assert "SCSI controller lsi (LSI 53C895A" in out and "net e1000" in out
    assert "WARN Proxmox" not in out
    out = _inspect(dist / "ipva.ova")
    assert "ide0 <- hd-flash.vmdk" in out and "ide1 <- hd-dump.vmdk" in out
    assert "WARN Proxmox VE imports hd-flash.vmdk as ide0 in place of hd-boot.vmdk" in out
    assert "WARN Proxmox VE imports hd-dump.vmdk as ide1 in place of hd-cf.vmdk" in out
    assert out.rstrip().endswith("ipva.ova: OK, 2 warning(s)")


def test_inspect_shows_what_vmware_makes_of_the_ova(dist: Path) -> None:
    out = _inspect(dist / "ipva.ova")
    for role, slot in zip(ROLES, ["ide0:0", "ide0:1", "ide1:0", "ide1:1"], strict=True):
        assert re.search(rf"  {slot} hd-{role}\.vmdk \d+ MiB", out)
    assert "hardware vmx-07: runs on ESX/ESXi 4.0" in out
    assert "ethernet0 vlance (PCNet32)" in out and "memory 256 MiB" in out
    assert "monitor_control.pseudo_perfctr = TRUE from ExtraConfig" in out
    assert "manifest SHA-1" in _inspect(dist / "ipva-sha1.ova")
    assert "WARN VMware puts the disks on a SCSI lsilogic" in _inspect(dist / "ipva-proxmox.ova")


def test_inspect_shows_hyperv_libvirt_and_vmx_views(dist: Path) -> None:
    out = _inspect(dist / "ipva-hyperv.zip")
    assert "script: Generation 1, memory 256 MiB static, Legacy Network Adapter" in out
    assert "script: IDE 1/1 hd-dump.vhdx 2 MiB" in out
    assert "configuration version 5.0 (Generation 1), memory 256 MiB static, 1 vCPU" in out
    assert "wizard: IDE 1/1 Virtual Hard Disks/hd-dump.vhdx 2 MiB" in out
    assert "no 'Virtual Machines' folder" not in out
    assert "WARN Hyper-V: the wizard's VM has no network adapter" in out
    out = _inspect(dist / "libvirt")
    assert "ok   ipva-virtio.xml: virt-xml-validate" in out
    assert "ide hda (bus 0 target 0 unit 0) hd-boot.qcow2 6 MiB" in out
    assert "scsi sdd (bus 0 target 3 unit 0) hd-dump.qcow2 2 MiB" in out
    assert "NIC pcnet" in out and "NIC virtio" in out
    out = _inspect(dist / "vmware")
    assert "ide1:0 hd-flash.vmdk (ata-hardDisk)" in out and "ESXi cannot run" in out


def test_inspect_rejects_tampered_manifest(dist: Path, tmp_path: Path) -> None:
    src = tmp_path / "src"
    src.mkdir()
    with tarfile.open(dist / "ipva.ova") as tar:
        extract_plain_files(tar, src)
        names = tar.getnames()
    mf = src / "ipva.mf"
    mf.write_text(mf.read_text().replace("SHA256(ipva.ovf)= ", "SHA256(ipva.ovf)= 00", 1))
    bad = tmp_path / "bad.ova"
    with tarfile.open(bad, "w", format=tarfile.USTAR_FORMAT) as tar:
        for n in names:
            tar.add(src / n, arcname=n)
    result = CliRunner().invoke(inspect, [str(bad)])
    assert result.exit_code == 1
    assert "FAIL" in result.output and "ipva.mf" in result.output


def test_inspect_rejects_wrong_order(dist: Path, tmp_path: Path) -> None:
    src = tmp_path / "src"
    src.mkdir()
    with tarfile.open(dist / "ipva.ova") as tar:
        extract_plain_files(tar, src)
        names = tar.getnames()
    bad = tmp_path / "bad.ova"
    with tarfile.open(bad, "w", format=tarfile.USTAR_FORMAT) as tar:
        for n in [names[1], names[0], *names[2:]]:
            tar.add(src / n, arcname=n)
    assert CliRunner().invoke(inspect, [str(bad)]).exit_code == 1


def test_reproducible(
    dist: Path, disks: dict[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SOURCE_DATE_EPOCH", SDE)
    again = tmp_path / "dist"
    _build(again, disks)
    files = sorted(p.relative_to(dist) for p in dist.rglob("*") if p.is_file())
    assert files == sorted(p.relative_to(again) for p in again.rglob("*") if p.is_file())
    for rel in files:
        assert (dist / rel).read_bytes() == (again / rel).read_bytes(), rel


def test_missing_role_is_an_error(tmp_path: Path, disks: dict[str, Path]) -> None:
    partial = {r: disks[r] for r in ("boot", "cf", "flash")}
    with pytest.raises(ValueError, match="dump"):
        get_target("libvirt").make(BuildSettings(out_dir=tmp_path), partial)
