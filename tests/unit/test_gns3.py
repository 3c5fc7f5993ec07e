"""The GNS3 target checked by gns3-server's own code (its venv: tests/gns3server_env.py):
the appliance file by its Appliance schema, the images by size and md5sum as its image
check computes them, the template and node it makes, and the QEMU command line its QEMU node
builds (booted in tests/vm/test_gns3.py)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from appliance.version import FIRMWARE_VERSION
from firmware.settings import BuildSettings
from hypervisors.registry import get_target

sys.path.insert(0, str(Path(__file__).parents[1]))
from gns3server_env import run_node_script  # noqa: E402
from unit.test_packages import _make_disks  # noqa: E402


@pytest.fixture(scope="module")
def gns3_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    disks = _make_disks(tmp_path_factory.mktemp("raw"))
    out = tmp_path_factory.mktemp("dist")
    get_target("gns3").make(BuildSettings(out_dir=out), disks)
    return out / "gns3"


def test_gns3_server_accepts_the_appliance_and_its_images(gns3_dir: Path) -> None:
    rc, answer, err = run_node_script("check", gns3_dir / "ipva.gns3a", gns3_dir)
    assert rc == 0, err
    assert answer["problems"] == []
    t = answer["template"]
    # the registry entry's hardware: two vmxnet3, four IDE disks, 256 MiB, one vCPU
    assert (t["adapter_type"], t["adapters"], t["ram"], t["cpus"]) == ("vmxnet3", 2, 256, 1)
    assert [t[f"hd{x}_disk_interface"] for x in "abcd"] == ["ide"] * 4
    assert [t[f"hd{x}_disk_image"] for x in "abcd"] == [
        f"ipva-qemu-disk{n}-{FIRMWARE_VERSION}.vmdk" for n in range(1, 5)
    ]
    assert t["console_type"] == "telnet" and t["platform"] == "x86_64"
    assert "fallback to static address 192.168.0.1/24" in t["usage"]


def test_a_changed_image_is_refused_as_gns3_checks_it(gns3_dir: Path, tmp_path: Path) -> None:
    for f in gns3_dir.iterdir():
        (tmp_path / f.name).write_bytes(f.read_bytes())
    changed = tmp_path / f"ipva-qemu-disk2-{FIRMWARE_VERSION}.vmdk"
    with changed.open("ab") as fh:
        fh.write(b"\0")
    (tmp_path / f"ipva-qemu-disk4-{FIRMWARE_VERSION}.vmdk").unlink()
    rc, answer, _ = run_node_script("check", tmp_path / "ipva.gns3a", tmp_path)
    assert rc == 1
    assert answer["problems"] == [
        f"{changed.name}: size {changed.stat().st_size} != filesize",
        f"{changed.name}: md5sum differs",
        f"ipva-qemu-disk4-{FIRMWARE_VERSION}.vmdk: missing",
    ]


def test_gns3_server_refuses_a_file_outside_its_schema(gns3_dir: Path, tmp_path: Path) -> None:
    data = json.loads((gns3_dir / "ipva.gns3a").read_text())
    data["registry_version"] = 8  # the registry's newest: gns3-server 3.0.6 takes 1-6
    bad = tmp_path / "bad.gns3a"
    bad.write_text(json.dumps(data))
    rc, _, err = run_node_script("check", bad)
    assert rc == 1 and "registry_version" in err


def test_the_node_gns3_builds_has_the_box_hardware(gns3_dir: Path, tmp_path: Path) -> None:
    rc, answer, err = run_node_script("command", gns3_dir / "ipva.gns3a", gns3_dir, tmp_path, "tcg")
    assert rc == 0, err
    argv = answer["argv"]
    drives = [argv[i + 1] for i, a in enumerate(argv) if a == "-drive"]
    # a linked clone per disk (qcow2 on top of our VMDK), IDE 0:0 … 1:1 in role order
    assert [d.split(",")[1:3] for d in drives] == [["if=ide", f"index={i}"] for i in range(4)]
    nics = [argv[i + 1] for i, a in enumerate(argv) if a == "-device" and "vmxnet3" in argv[i + 1]]
    assert len(nics) == 2
    netdevs = [argv[i + 1] for i, a in enumerate(argv) if a == "-netdev"]
    assert all(n.startswith("socket,") and ",udp=127.0.0.1:" in n for n in netdevs)
    serial = argv[argv.index("-serial") + 1]
    assert serial == f"telnet:127.0.0.1:{answer['console_port']},server,nowait"
    assert "-enable-kvm" not in argv  # GNS3's switch, set from the suite's KVM probe


def test_rebuilds_are_byte_identical(gns3_dir: Path, tmp_path: Path) -> None:
    """Same sources, same bytes: the appliance file's md5sums stay true for a rebuild."""
    (tmp_path / "raw").mkdir()
    disks = _make_disks(tmp_path / "raw")
    get_target("gns3").make(BuildSettings(out_dir=tmp_path / "again"), disks)
    again = tmp_path / "again" / "gns3"
    names = sorted(p.name for p in gns3_dir.iterdir() if p.is_file())
    assert names == sorted(p.name for p in again.iterdir() if p.is_file())
    for name in names:
        assert (gns3_dir / name).read_bytes() == (again / name).read_bytes(), name
