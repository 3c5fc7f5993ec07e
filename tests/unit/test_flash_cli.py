"""`ipva flash info|dump DISK` on image files (raw and qcow2), via click's CliRunner."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
from click.testing import CliRunner
from flashdev import SEG, mount

from appliance.hal.block import FileBlockDevice
from tools.cli import main


@pytest.fixture
def image(tmp_path: Path) -> Path:
    path = tmp_path / "hd-flash.raw"
    with path.open("wb") as fh:
        fh.truncate(32 * SEG)
    with FileBlockDevice(path) as dev:
        f = mount(dev)
        f.vars.commit({"IP0": b"config change IP0 /addr 192.168.0.2"})
        f.flashdir.add_item(101, "(cn=pwtest)(h323=pwtest)(loc=Sindelfingen)(node=root)")
    return path


def test_info(image: Path) -> None:
    res = CliRunner().invoke(main, ["flash", "info", str(image)])
    assert res.exit_code == 0, res.output
    lines = res.output.splitlines()
    assert lines[0] == "segments=32, segment-size=0x10000 (64k)"
    assert lines[1].startswith("LDAP - used 1k avail 63k owned 64k (segments 1) maximum ")
    assert lines[2].startswith("VARS - used 1k")
    assert "VARS keys: 1  FLASHDIR items: 1" in res.output


def test_dump(image: Path) -> None:
    res = CliRunner().invoke(main, ["flash", "dump", "--records", str(image)])
    assert res.exit_code == 0, res.output
    assert "vars IP0 = b'config change IP0 /addr 192.168.0.2'" in res.output
    assert (
        "mod cmd FLASHDIR0 add-item 101 (cn=pwtest)(h323=pwtest)(loc=Sindelfingen)(node=root)"
        in res.output.splitlines()
    )


def test_blank_and_wrong_disks(tmp_path: Path) -> None:
    blank = tmp_path / "blank.raw"
    blank.write_bytes(bytes(16 * SEG))
    res = CliRunner().invoke(main, ["flash", "info", str(blank)])
    assert res.exit_code == 0 and "blank flash disk" in res.output
    assert blank.read_bytes() == bytes(16 * SEG)  # read-only: not formatted by the tool
    junk = tmp_path / "junk.raw"
    junk.write_bytes(b"\x55" * (16 * SEG))
    res = CliRunner().invoke(main, ["flash", "info", str(junk)])
    assert res.exit_code != 0 and "reset all" in res.output


@pytest.mark.skipif(shutil.which("qemu-img") is None, reason="needs qemu-img")
def test_info_on_qcow2(image: Path, tmp_path: Path) -> None:
    q = tmp_path / "hd-flash.qcow2"
    subprocess.run(["qemu-img", "convert", "-O", "qcow2", str(image), str(q)], check=True)
    res = CliRunner().invoke(main, ["flash", "dump", str(q)])
    assert res.exit_code == 0, res.output
    assert "mod cmd FLASHDIR0 add-item 101" in res.output
