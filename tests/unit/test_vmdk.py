"""streamOptimized VMDK: construct round-trips, VMware's layout, and three readers agree
(qemu-img, dissect.hypervisor, ours) with the raw disk."""

from __future__ import annotations

import os
import random
import subprocess
from pathlib import Path

import pytest
from dissect.hypervisor.disk.vmdk import VMDK

from images import vmdk

MiB = 1 << 20


def _raw(path: Path, size: int, chunks: list[tuple[int, bytes]]) -> Path:
    with path.open("wb") as fh:
        fh.truncate(size)
        for off, data in chunks:
            fh.seek(off)
            fh.write(data)
    return path


@pytest.fixture
def raw(tmp_path: Path) -> Path:
    rnd = random.Random(6)
    # random, zero and compressible regions; an odd size so the last grain is partial
    return _raw(
        tmp_path / "disk.raw",
        3 * MiB + 1536,
        [(0, rnd.randbytes(700_000)), (2 * MiB, b"ipva" * 40_000), (3 * MiB + 1000, b"\xff" * 536)],
    )


def test_header_round_trip() -> None:
    hdr = vmdk._header(12345, vmdk.GD_AT_END)
    parsed = vmdk.parse_header(hdr)
    assert vmdk.SparseExtentHeader.build(parsed) == hdr
    assert parsed["version"] == 3 and parsed["flags"] == 0x30001
    assert parsed["compress_algorithm"] == 1 and parsed["grain_size"] == 128


@pytest.mark.parametrize("kind", ["EOS", "GT", "GD", "FOOTER"])
def test_metadata_marker_round_trip(kind: str) -> None:
    blob = vmdk._marker(kind, 4)
    assert len(blob) == 512
    assert vmdk.MetadataMarker.build(vmdk.MetadataMarker.parse(blob)) == blob


def test_grain_marker_round_trip() -> None:
    x = dict(lba=256, size=5, data=b"abcde")
    blob = vmdk.GrainMarker.build(x)
    assert len(blob) == 17
    parsed = vmdk.GrainMarker.parse(blob)
    assert (parsed.lba, parsed.size, parsed.data) == (256, 5, b"abcde")


def test_bad_magic_is_a_vmdk_error() -> None:
    with pytest.raises(vmdk.VmdkError, match="header"):
        vmdk.parse_header(b"\0" * 512)


def _qemu_img(*args: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["qemu-img", *map(str, args)], capture_output=True, text=True)


def test_stream_matches_raw_in_three_readers(raw: Path, tmp_path: Path) -> None:
    out = tmp_path / "disk.vmdk"
    stats = vmdk.make_stream_optimized(raw, out, capacity_bytes=4 * MiB)
    assert stats.capacity_sectors == 4 * MiB // 512
    check = _qemu_img("check", "-f", "vmdk", out)
    assert check.returncode == 0, check.stdout + check.stderr
    cmp = _qemu_img("compare", "-f", "raw", "-F", "vmdk", raw, out)
    assert cmp.returncode == 0, cmp.stdout + cmp.stderr

    expected = raw.read_bytes()
    expected += bytes(4 * MiB - len(expected))
    with out.open("rb") as fh:
        dis = VMDK(fh)
        assert dis.size == 4 * MiB
        assert dis.read(dis.size) == expected
    with out.open("rb") as fh:
        ours = vmdk.StreamOptimizedReader(fh)
        assert b"".join(ours.iter_chunks()) == expected


def test_layout_is_vmwares(raw: Path, tmp_path: Path) -> None:
    out = tmp_path / "disk.vmdk"
    vmdk.make_stream_optimized(raw, out, capacity_bytes=4 * MiB)
    with out.open("rb") as fh:
        hdr = vmdk.parse_header(fh.read(512))
        assert hdr["gd_offset"] == vmdk.GD_AT_END  # header says "GD in the footer"
        assert hdr["overhead"] == 128 and hdr["descriptor_offset"] == 1
        entries = list(vmdk.walk_stream(fh, hdr["overhead"]))
        reader = vmdk.StreamOptimizedReader(fh)
    kinds = [e.kind for e in entries]
    assert kinds[-4:] == ["GT", "GD", "FOOTER", "EOS"]
    grains = [e.lba for e in entries if e.kind == "GRAIN"]
    assert grains == sorted(grains)
    # the zero grains between the random data and the text are not stored
    assert len(grains) < 4 * MiB // vmdk.GRAIN_BYTES
    assert reader.footer is not None and reader.footer["gd_offset"] != vmdk.GD_AT_END
    desc = reader.descriptor
    assert desc["createType"] == "streamOptimized"
    assert desc["ddb.adapterType"] == "ide"
    assert desc["ddb.geometry.heads"] == "16" and desc["ddb.geometry.sectors"] == "63"
    assert desc["extent"] == f'RW {4 * MiB // 512} SPARSE "disk.vmdk"'


def test_empty_grain_tables_are_left_out(tmp_path: Path) -> None:
    # 100 MB, data only in the first and last 32 MiB table: the middle tables are absent
    raw = _raw(tmp_path / "flash.raw", 100_000_000, [(0, b"\x55" * 4096), (99 * MiB, b"x" * 9)])
    out = tmp_path / "flash.vmdk"
    vmdk.make_stream_optimized(raw, out, capacity_bytes=96 * MiB)
    with out.open("rb") as fh:
        reader = vmdk.StreamOptimizedReader(fh)
    assert reader.gd[0] != 0 and reader.gd[1] == 0 and reader.gd[2] == 0 and reader.gd[3] != 0
    assert out.stat().st_size < 100_000
    assert _qemu_img("compare", "-f", "raw", "-F", "vmdk", raw, out).returncode == 0


def test_reproducible(raw: Path, tmp_path: Path) -> None:
    a, b = tmp_path / "a" / "d.vmdk", tmp_path / "b" / "d.vmdk"
    for p in (a, b):
        p.parent.mkdir()
        vmdk.make_stream_optimized(raw, p, threads=1 if p is a else 4)
    assert a.read_bytes() == b.read_bytes()


def test_set_descriptor_cid(raw: Path, tmp_path: Path) -> None:
    out = tmp_path / "sparse.vmdk"
    subprocess.run(
        ["qemu-img", "convert", "-O", "vmdk", "-o", "subformat=monolithicSparse", raw, out],
        check=True,
    )
    vmdk.set_descriptor_cid(out, 0x1234ABCD)
    assert vmdk.read_descriptor(out)["CID"] == "1234abcd"
    assert _qemu_img("check", out).returncode == 0


def test_truncated_stream_is_reported(raw: Path, tmp_path: Path) -> None:
    out = tmp_path / "d.vmdk"
    vmdk.make_stream_optimized(raw, out)
    data = out.read_bytes()
    out.write_bytes(data[: len(data) - 1024])
    with out.open("rb") as fh, pytest.raises((vmdk.VmdkError, ValueError)):
        vmdk.StreamOptimizedReader(fh)
    with out.open("rb") as fh, pytest.raises(vmdk.VmdkError):
        list(vmdk.walk_stream(fh, 128))
    assert os.path.getsize(out) % 512 == 0
