"""What the built boot disk carries, and nothing the guest never needs (issue 27, a smaller
package): a zstd kernel; a bootcode without a C library (busybox and signify static, busybox
with only the box's applets); no executables but python3.11 and the openssl command
(certificates and requests: services/http), only the codecs the box looks up, and bytecode
without column tables in the payload. The VM tests boot the same disks."""

from __future__ import annotations

import marshal
import subprocess
from collections.abc import Iterator
from pathlib import Path
from types import CodeType

import pytest

from firmware.bootbins import APPLETS
from firmware.initramfs import SIGNIFY
from firmware.ipvabin import HEADER_SIZE
from firmware.kernel import payload_compression
from firmware.payload import CODECS
from images.bootdisk import read_boot_file

pytestmark = pytest.mark.vm  # needs the built dist/


def _payload_files(dist: Path) -> list[str]:
    listing = subprocess.run(
        ["unsquashfs", "-l", "-n", "-o", str(HEADER_SIZE), dist / "ipva.bin"],
        capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    prefix = "squashfs-root/"
    return [line[len(prefix) :] for line in listing.splitlines() if line.startswith(prefix)]


def test_the_kernel_on_the_boot_disk_is_zstd_compressed(ipva_dist: Path) -> None:
    boot = ipva_dist / "disks" / "boot.img"
    assert payload_compression(read_boot_file(boot, "VMLINUZ")) == "ZSTD"


def test_the_payload_has_two_commands_and_only_the_codecs_looked_up(
    ipva_dist: Path,
) -> None:
    files = _payload_files(ipva_dist)
    commands = [f for f in files if f.startswith("usr/bin/")]
    assert commands == ["usr/bin/openssl", "usr/bin/python3.11"]
    codecs = {Path(f).stem for f in files if f.startswith("usr/lib/python3.11/encodings/")}
    # mbcs: encodings/__init__ imports it on Windows, and the import graph follows that
    assert codecs == {"__init__", "aliases", "mbcs", *CODECS}


def _is_static(elf: bytes) -> bool:
    """No PT_INTERP program header: the kernel runs it without a dynamic loader."""
    assert elf[:4] == b"\x7fELF" and elf[4] == 2  # 64-bit
    phoff = int.from_bytes(elf[0x20:0x28], "little")
    size, count = int.from_bytes(elf[0x36:0x38], "little"), int.from_bytes(elf[0x38:0x3A], "little")
    types = [int.from_bytes(elf[phoff + i * size : phoff + i * size + 4], "little")
             for i in range(count)]  # fmt: skip
    return 3 not in types  # PT_INTERP


def test_the_bootcode_has_no_c_library_and_only_the_boxs_applets(
    ipva_dist: Path, tmp_path: Path
) -> None:
    boot = ipva_dist / "disks" / "boot.img"
    cpio = subprocess.run(
        ["zstd", "-d", "-c"], input=read_boot_file(boot, "INITRD.ZST"), capture_output=True,
        check=True,
    ).stdout  # fmt: skip
    subprocess.run(["cpio", "--quiet", "-i", "-d"], input=cpio, cwd=tmp_path, check=True)
    files = [p for p in tmp_path.rglob("*") if p.is_file() and not p.is_symlink()]
    assert not [p for p in files if ".so" in p.name], "a shared library in the bootcode"
    for program in ("bin/busybox", SIGNIFY):
        assert _is_static((tmp_path / program).read_bytes()), f"{program} is not static"
    links = {p.name for p in (tmp_path / "bin").iterdir() if p.is_symlink()}
    assert links == {a.name for a in APPLETS} - {"busybox"}


def _code_objects(code: CodeType) -> Iterator[CodeType]:
    yield code
    for const in code.co_consts:
        if isinstance(const, CodeType):
            yield from _code_objects(const)


def test_the_payloads_bytecode_has_no_column_tables(ipva_dist: Path, tmp_path: Path) -> None:
    # compiled with -X no_debug_ranges: the columns only put carets under a traceback's
    # source line, and the payload has no source (-0.8 MB of IPVA.BIN)
    subprocess.run(["unsquashfs", "-q", "-n", "-o", str(HEADER_SIZE), "-d", tmp_path / "p",
                    ipva_dist / "ipva.bin", "usr/lib/python3.11/json",
                    "usr/lib/ipva/appliance/shell"], check=True)  # fmt: skip
    pycs = sorted((tmp_path / "p").rglob("*.pyc"))
    assert len(pycs) > 5
    for pyc in pycs:
        for code in _code_objects(marshal.loads(pyc.read_bytes()[16:])):
            positions = list(code.co_positions())
            assert positions and all(p[2] is None for p in positions), f"{pyc}: {code.co_name}"
