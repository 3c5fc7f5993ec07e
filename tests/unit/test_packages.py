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
        ["ipva.ova", "ipva-ovf.zip", "ipva-proxmox.ova", "ipva-hyperv.zip", "vmware/ipva.vmx"]
        + [f"vmware/hd-{r}.vmdk" for r in ROLES]
        + ["proxmox/ipva-proxmox-install.sh"]
        + [f"proxmox/hd-{r}.qcow2" for r in ROLES]
        + ["libvirt/ipva.xml"]
        + [f"libvirt/hd-{r}.qcow2" for r in ROLES]
    )
    assert not list(dist.glob(".*")), "scratch directories left behind"


@pytest.mark.parametrize("ova", ["ipva.ova", "ipva-proxmox.ova"])
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
    for line, name in zip(lines, ["ipva.ovf"] + names[2:], strict=True):
        m = MANIFEST_RE.match(line)
        assert m and m[1] == "SHA256" and m[2] == name, line
        assert m[3] == hashlib.sha256(contents[name]).hexdigest()
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


def test_ova_sha1_option(tmp_path: Path, disks: dict[str, Path]) -> None:
    from hypervisors.vmware.ova import make_ova

    s = BuildSettings(out_dir=tmp_path, manifest_sha1=True)
    ova = make_ova(s, [(r, disks[r]) for r in ROLES], tmp_path / "x.ova", variant="vmware")
    with tarfile.open(ova) as tar:
        mf = tar.extractfile("ipva.mf").read().decode()
    assert all(re.fullmatch(r"SHA1\([^)]+\)= [0-9a-f]{40}", line) for line in mf.splitlines())


def test_ovf_zip_holds_the_ova(dist: Path) -> None:
    with zipfile.ZipFile(dist / "ipva-ovf.zip") as zf:
        assert zf.namelist() == ["ipva.ova"]
        assert zf.read("ipva.ova") == (dist / "ipva.ova").read_bytes()


def test_vmx_bundle(dist: Path, disks: dict[str, Path]) -> None:
    text = (dist / "vmware/ipva.vmx").read_text()
    cfg = dict(line.split(" = ", 1) for line in text.splitlines())
    assert cfg["monitor_control.pseudo_perfctr"] == '"TRUE"'
    assert cfg["ethernet0.virtualDev"] == '"vlance"'
    assert cfg["serial0.present"] == '"TRUE"'
    assert cfg["memsize"] == '"256"' and cfg["numvcpus"] == '"1"'
    slots = {"boot": "ide0:0", "cf": "ide0:1", "flash": "ide1:0", "dump": "ide1:1"}
    for role, slot in slots.items():
        assert cfg[f"{slot}.fileName"] == f'"hd-{role}.vmdk"'
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
    assert names == [f"hd-{r}.vhdx" for r in ROLES] + ["Import-IPVA.ps1"]
    for role in ROLES:
        disk = tmp_path / f"hd-{role}.vhdx"
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


def test_libvirt_xml(dist: Path) -> None:
    r = subprocess.run(
        ["virt-xml-validate", str(dist / "libvirt/ipva.xml"), "domain"],
        capture_output=True,
        text=True,
    )
    assert r.returncode == 0, r.stdout + r.stderr
    text = (dist / "libvirt/ipva.xml").read_text()
    for needle in ('machine="pc"', '<model type="pcnet"/>', '<serial type="pty">'):
        assert needle in text
    for dev in ("hda", "hdb", "hdc", "hdd"):
        assert f'dev="{dev}" bus="ide"' in text


@pytest.mark.parametrize(
    "package",
    [
        "ipva.ova",
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
    assert result.output.rstrip().endswith(": OK")


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
