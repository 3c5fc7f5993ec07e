"""Reproducible archives: the OVA (USTAR tar) and the zip packages.

Same inputs and SOURCE_DATE_EPOCH → byte-identical files: fixed member order, mtime,
owner (0/0, no names), modes, and a fixed deflate level for zips.
"""

from __future__ import annotations

import hashlib
import os
import tarfile
import time
import zipfile
from collections.abc import Sequence
from pathlib import Path

ZIP_LEVEL = 9
ZIP_MIN_EPOCH = 315532800  # 1980-01-01: zip cannot store earlier dates
CHUNK = 1 << 20


def source_date_epoch() -> int:
    return int(os.environ.get("SOURCE_DATE_EPOCH", "1700000000"))


def file_digest(path: Path, algo: str = "sha256") -> str:
    h = hashlib.new(algo)
    with path.open("rb") as fh:
        while chunk := fh.read(CHUNK):
            h.update(chunk)
    return h.hexdigest()


def manifest_line(name: str, digest: str, algo: str = "sha256") -> str:
    # exactly `SHA256(name)= hex`: no space before "(", none before "=" (ovftool's spelling)
    return f"{algo.upper()}({name})= {digest}\n"


def write_tar(out: Path, members: Sequence[tuple[str, Path]], *, mode: int = 0o644) -> Path:
    """USTAR tar of (arcname, file) in the given order."""
    tmp = out.with_name(out.name + ".tmp")
    mtime = source_date_epoch()
    with tarfile.open(tmp, "w", format=tarfile.USTAR_FORMAT) as tar:
        for arcname, path in members:
            info = tarfile.TarInfo(arcname)
            info.size = path.stat().st_size
            info.mtime = mtime
            info.mode = mode
            info.uid = info.gid = 0
            info.uname = info.gname = ""
            with path.open("rb") as fh:
                tar.addfile(info, fh)
    tmp.replace(out)
    return out


def write_zip(
    out: Path, members: Sequence[tuple[str, Path]], *, executable: Sequence[str] = ()
) -> Path:
    """Deflated zip of (arcname, file) in the given order, with a fixed date."""
    tmp = out.with_name(out.name + ".tmp")
    stamp = time.gmtime(max(source_date_epoch(), ZIP_MIN_EPOCH))[:6]
    with zipfile.ZipFile(tmp, "w", zipfile.ZIP_DEFLATED, compresslevel=ZIP_LEVEL) as zf:
        for arcname, path in members:
            info = zipfile.ZipInfo(arcname, date_time=stamp)
            info.compress_type = zipfile.ZIP_DEFLATED
            info.create_system = 3  # unix, so the mode below means something
            mode = 0o755 if arcname in executable else 0o644
            info.external_attr = (0o100000 | mode) << 16
            with path.open("rb") as src, zf.open(info, "w") as dst:
                while chunk := src.read(CHUNK):
                    dst.write(chunk)
    tmp.replace(out)
    return out


class UnsafeArchiveError(ValueError):
    """An archive member that is not a plain file at a plain relative path."""


def extract_plain_files(tar: tarfile.TarFile, dest: Path) -> list[Path]:
    """Extract a package's members: plain files at safe relative paths only.

    Our packages hold nothing else; refusing the rest is what `filter="data"` does, but that
    argument only exists from CPython 3.11.4 and Debian 12 ships 3.11.2.
    """
    out = []
    for member in tar.getmembers():
        name = Path(member.name)
        if member.isdir():
            continue
        if not member.isfile() or name.is_absolute() or ".." in name.parts:
            raise UnsafeArchiveError(f"archive member {member.name!r} is not a plain file")
        target = dest / name
        target.parent.mkdir(parents=True, exist_ok=True)
        src = tar.extractfile(member)
        assert src is not None  # isfile() members always have data
        with src, open(target, "wb") as f:
            while block := src.read(1 << 20):
                f.write(block)
        out.append(target)
    return out
