"""VHDX via qemu-img made reproducible: headers parse, checksums hold, qemu-img agrees."""

from __future__ import annotations

import random
import subprocess
from pathlib import Path

from images import convert, vhdx


def test_crc32c_known_value() -> None:
    assert vhdx.crc32c(b"123456789") == 0xE3069283


def test_header_round_trip(tmp_path: Path) -> None:
    raw = tmp_path / "d.raw"
    raw.write_bytes(random.Random(1).randbytes(300_000))
    out = convert.make_vhdx(raw, tmp_path / "d.vhdx", "seed")
    data = out.read_bytes()
    for off in vhdx.HEADER_OFFSETS:
        blob = data[off : off + 4096]
        assert vhdx.Header.build(vhdx.Header.parse(blob)) == blob


def test_vhdx_reproducible_and_valid(tmp_path: Path) -> None:
    raw = tmp_path / "d.raw"
    with raw.open("wb") as fh:
        fh.write(random.Random(2).randbytes(1_500_000))
        fh.truncate(5_000_000)  # not whole MiB: the VHDX rounds up
    a = convert.make_vhdx(raw, tmp_path / "a.vhdx", "ipva/boot")
    b_dir = tmp_path / "b"
    b_dir.mkdir()
    b = convert.make_vhdx(raw, b_dir / "a.vhdx", "ipva/boot")
    assert a.read_bytes() == b.read_bytes()
    convert.run_check(a, "vhdx")
    convert.run_compare(raw, a, "vhdx")
    info = convert.image_info(a)
    assert info["virtual-size"] == 5 * 1024 * 1024
    assert info["cluster-size"] == 1 << 20
    with a.open("rb") as fh:
        headers = vhdx.read_headers(fh)
        assert {h["sequence_number"] for h in headers} == {1, 2}
        assert all(h["log_guid"] == bytes(16) for h in headers)
        disk_id = vhdx.read_disk_id(fh)
    c = convert.make_vhdx(raw, tmp_path / "c.vhdx", "ipva/flash")
    with c.open("rb") as fh:
        assert vhdx.read_disk_id(fh) != disk_id  # per-disk ids differ


def test_qcow2_reproducible(tmp_path: Path) -> None:
    raw = tmp_path / "d.raw"
    with raw.open("wb") as fh:
        fh.write(random.Random(3).randbytes(200_000))
        fh.truncate(100_000_000)
    a = convert.make_qcow2(raw, tmp_path / "a.qcow2")
    b = convert.make_qcow2(raw, tmp_path / "b.qcow2")
    assert a.read_bytes() == b.read_bytes()
    convert.run_check(a, "qcow2")
    convert.run_compare(raw, a, "qcow2")
    assert convert.image_info(a)["virtual-size"] == 96 * 1024 * 1024
    r = subprocess.run(["qemu-img", "check", str(a)], capture_output=True)
    assert r.returncode == 0
