"""The bootcode's initramfs carries one C library: busybox (Debian's dynamic build) runs on
the loader and libraries that signify runs on, in /lib/signify, never on the payload's.

Made from a build's unpacked packages (.cache/work/debroot-*, made by `ipva build`); the VM
tests boot the same tree."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from firmware.initramfs import SIGNIFY_DIR, make_initramfs_tree
from firmware.run import run

REPO = Path(__file__).resolve().parents[2]


def _debroot() -> Path:
    roots = sorted((REPO / ".cache/work").glob("debroot-*/bin/signify-openbsd"))
    roots = [r for r in roots if not _is_static(r.parent.parent / "bin/busybox")]
    if not roots:
        pytest.skip("no build's unpacked packages with Debian's busybox: run `ipva build` first")
    return roots[-1].parent.parent


def _is_static(elf: Path) -> bool:
    return "INTERP" not in run(["readelf", "-l", elf], capture=True).stdout.decode()


def _dynamic(elf: Path) -> tuple[str, list[str], str]:
    """(interpreter, NEEDED libraries, RPATH) of an ELF file, as readelf shows them."""
    head = run(["readelf", "-l", elf], capture=True).stdout.decode()
    interp = head.split("[Requesting program interpreter: ", 1)[1].split("]", 1)[0]
    dyn = run(["readelf", "-d", elf], capture=True).stdout.decode()
    needed = [line.split("[", 1)[1].rstrip("]") for line in dyn.splitlines() if "(NEEDED)" in line]
    rpath = next((line.split("[", 1)[1].rstrip("]") for line in dyn.splitlines()
                  if "(RPATH)" in line), "")  # fmt: skip
    return interp, needed, rpath


@pytest.fixture(scope="module")
def tree(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("initramfs") / "root"
    make_initramfs_tree(_debroot(), out, "1", [])
    return out


def test_one_c_library_and_busybox_on_the_bootcodes_own(tree: Path) -> None:
    assert [p.relative_to(tree).as_posix() for p in tree.rglob("libc.so.6")] == [
        f"{SIGNIFY_DIR}/libc.so.6"
    ]
    interp, needed, rpath = _dynamic(tree / "bin/busybox")
    assert interp == f"/{SIGNIFY_DIR}/ld-linux-x86-64.so.2"
    assert rpath == f"/{SIGNIFY_DIR}"  # DT_RPATH: searched before the payload's directories
    for lib in needed:
        assert (tree / SIGNIFY_DIR / lib).is_file(), lib


def test_busybox_runs_on_the_libraries_the_initramfs_carries(tree: Path) -> None:
    lib = tree / SIGNIFY_DIR
    done = subprocess.run(
        [lib / "ld-linux-x86-64.so.2", "--library-path", lib, tree / "bin/busybox",
         "sh", "-c", "echo up"],
        capture_output=True, text=True, timeout=30, env={},
    )  # fmt: skip
    assert done.returncode == 0 and done.stdout == "up\n", done.stderr
    # the applets /init and the runtime use are there
    for applet in ("sh", "mount", "losetup", "udhcpc", "ip", "dd", "sha256sum", "mkdosfs"):
        assert (tree / "bin" / applet).is_symlink(), applet
