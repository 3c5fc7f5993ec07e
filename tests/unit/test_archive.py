"""Package archives: only plain files at plain relative paths are extracted."""

from __future__ import annotations

import io
import tarfile
from pathlib import Path

import pytest

from images.archive import UnsafeArchiveError, extract_plain_files


def _tar(path: Path, *members: tarfile.TarInfo, data: bytes = b"x") -> Path:
    with tarfile.open(path, "w", format=tarfile.USTAR_FORMAT) as tar:
        for m in members:
            tar.addfile(m, io.BytesIO(data) if m.isfile() else None)
    return path


def _file(name: str, size: int = 1) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.size = size
    return info


def test_extracts_plain_files(tmp_path: Path) -> None:
    archive = _tar(tmp_path / "a.tar", _file("ipva.ovf"), _file("disks/hd-boot.vmdk"))
    with tarfile.open(archive) as tar:
        got = extract_plain_files(tar, tmp_path / "out")
    assert sorted(p.relative_to(tmp_path / "out").as_posix() for p in got) == [
        "disks/hd-boot.vmdk",
        "ipva.ovf",
    ]
    assert (tmp_path / "out/ipva.ovf").read_bytes() == b"x"


@pytest.mark.parametrize("name", ["../evil", "/etc/evil", "a/../../evil"])
def test_refuses_paths_outside(tmp_path: Path, name: str) -> None:
    archive = _tar(tmp_path / "a.tar", _file(name))
    with tarfile.open(archive) as tar, pytest.raises(UnsafeArchiveError, match="plain file"):
        extract_plain_files(tar, tmp_path / "out")
    assert not (tmp_path / "evil").exists()


def test_refuses_links(tmp_path: Path) -> None:
    link = tarfile.TarInfo("hd-boot.vmdk")
    link.type = tarfile.SYMTYPE
    link.linkname = "/etc/passwd"
    archive = _tar(tmp_path / "a.tar", link)
    with tarfile.open(archive) as tar, pytest.raises(UnsafeArchiveError):
        extract_plain_files(tar, tmp_path / "out")
