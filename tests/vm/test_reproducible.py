"""Two builds with the same SOURCE_DATE_EPOCH give identical ipva.bin and boot disk."""

from __future__ import annotations

import hashlib
from pathlib import Path

from firmware.settings import BuildSettings
from hypervisors.qemu.pytest_plugin import build_lock
from tools.build import REPO, build


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_rebuild_gives_identical_bytes(ipva_dist: Path, tmp_path: Path) -> None:
    settings = BuildSettings(out_dir=tmp_path / "dist", cache_dir=REPO / ".cache", targets=())
    with build_lock(REPO):  # a parallel worker may be building firmware in .cache/work
        build(settings)
    for rel in ("ipva.bin", "disks/boot.img", "disks/flash.img", "debs.json"):
        assert digest(tmp_path / "dist" / rel) == digest(ipva_dist / rel), rel
